package domain

import (
	"context"
	"errors"
	"time"
)

// The store's port: what app and mirror need of the source of truth. Each
// storage technology (sqlite/, postgres/) implements Store and passes the
// same conformance suite (internal/testkit/storetest) against a real
// database. Uniqueness of instagram_message_id, who may mirror a message
// and every state transition are kept by the database's constraints and
// transactions, never by what one process remembers.

// Sentinel errors of the store.
var (
	// ErrClosed is returned by a store that has been closed.
	ErrClosed = errors.New("store closed")
	// ErrBadCursor is returned for a cursor the store did not hand out.
	ErrBadCursor = errors.New("bad cursor")
	// ErrUnavailable wraps a failure to reach the database at all (down,
	// blackholed, refusing connections), as opposed to a statement error.
	ErrUnavailable = errors.New("store unavailable")
)

// Batch is one unit of ingestion, committed in one transaction: the
// messages of a delivery, the unsends and edits it carries, and the
// delivery itself for the journal.
type Batch struct {
	Messages []Message // each has passed Validate and carries its initial MirrorStatus
	Unsends  []string  // mids whose messages the customer deleted
	Edits    []Edit
	// Delivery, when set, is journaled in the same transaction; its
	// yield (Stored, Duplicates, ...) is filled by the store.
	Delivery *Delivery
}

// Edit is a sender's change to the text of a message already sent
// (Instagram's message_edit): the message's mid, its new text and how
// many times it has now been edited.
type Edit struct {
	MID     string
	Text    string
	NumEdit int // Meta's count of edits so far; an older edit never overwrites a newer one
}

// SaveResult says what one Save did.
type SaveResult struct {
	// New holds the messages stored now, with ID, CreatedAt and
	// MirrorOwner set, in the order given. A message whose mid was stored
	// before, or earlier in the same batch, is not in it.
	New          []Message
	Duplicates   int
	Unsent       int   // stored messages newly marked deleted
	Edited       int   // stored messages whose text an edit changed
	UnknownEdits int   // edits of a mid this store does not hold
	DeliveryID   int64 // the journal record's id, 0 when not journaled
}

// Claim is a message the mirror may now write to the CRM: the store
// recorded the attempt under this instance's live lease.
type Claim struct {
	ID       int64
	Attempts int          // attempts so far, this one included
	Status   MirrorStatus // state when claimed (mirrored: an operator asked for a check)
}

// Lease describes the mirror lease this store instance holds.
type Lease struct {
	Owner      string // the token written on the messages this instance owns
	InstanceID string
	ExpiresAt  time.Time
}

// Store is the whole port.
type Store interface {
	MessageStore
	MirrorStore
	DeliveryStore
	// CheckWritable proves the database accepts writes now.
	CheckWritable(ctx context.Context) error
	// Close stops background work and closes the database; it releases
	// the instance's lease, so other instances may take over at once.
	Close() error
}

// MessageStore saves and reads messages.
type MessageStore interface {
	// Save commits b in one transaction and returns only after the commit.
	// A message whose mid is already stored is a duplicate, not an error.
	Save(ctx context.Context, b Batch) (SaveResult, error)
	Get(ctx context.Context, id int64) (Message, error)
	GetByMID(ctx context.Context, mid string) (Message, error)
	// List returns one page, newest first, and the next page's cursor ("" at the end).
	List(ctx context.Context, f ListFilter) ([]Message, string, error)
	// CountByStatus counts the whole store's messages by mirror state.
	CountByStatus(ctx context.Context) (map[MirrorStatus]int64, error)
	// OldestUnmirrored is the creation time of the oldest message not yet
	// mirrored (pending, dropped or failed); ok is false when there is none.
	OldestUnmirrored(ctx context.Context) (t time.Time, ok bool, err error)
}

// MirrorStore is what the mirror and the reconciler need. Every write
// that moves a message toward the CRM is fenced in its UPDATE's WHERE by
// this instance's lease: an instance that can no longer prove its lease
// claims nothing and so sends nothing.
type MirrorStore interface {
	// Claim records an attempt on each of ids that this instance owns
	// under a live lease and that is pending or mirrored, and returns
	// those; the mirror sends only them. A mirrored one (an operator's
	// check, or an event that arrived after its message was mirrored) is
	// looked for in the CRM before anything is inserted, and keeps its
	// state whatever the check finds out.
	Claim(ctx context.Context, ids []int64) ([]Claim, error)
	// MarkMirrored records that the CRM holds these messages; degraded
	// lists those whose CRM copy lost characters or was cut to fit.
	MarkMirrored(ctx context.Context, ids []int64, degraded map[int64]bool) error
	// MarkFailed records that the CRM refused these messages (those still
	// pending under this instance's ownership; a mirrored one keeps its state).
	MarkFailed(ctx context.Context, ids []int64, reason string) error
	// MarkDropped records, without waiting, that the queue turned these
	// pending messages away; it never blocks.
	MarkDropped(ids ...int64)
	// ClaimCandidates takes over, oldest first, up to q.Limit messages
	// that q selects and no live lease of another instance covers: it
	// makes this instance their owner (dropped, failed and disabled ones
	// pending; mirrored ones stay mirrored) in one statement, skipping
	// rows another instance is claiming at the same moment, and returns
	// them as they were before the claim.
	ClaimCandidates(ctx context.Context, q CandidateQuery) ([]Message, error)
	// DeferCandidates marks dropped every message q selects from id fromID
	// on that no live lease of another instance covers, so that a
	// reconciler offers it when a queue has room; mirrored ones keep their
	// state. It returns how many it turned away, mirrored ones included.
	DeferCandidates(ctx context.Context, q CandidateQuery, fromID int64) (int64, error)
	// Lease is this instance's current lease.
	Lease() Lease
}

// DeliveryStore is the delivery journal.
type DeliveryStore interface {
	ListDeliveries(ctx context.Context, f DeliveryFilter) ([]Delivery, string, error)
	// GetDelivery returns one record with its body.
	GetDelivery(ctx context.Context, id int64) (Delivery, error)
	// PurgeDeliveries deletes up to limit records received before before,
	// oldest first, and returns how many it deleted.
	PurgeDeliveries(ctx context.Context, before time.Time, limit int) (int64, error)
}

// WriterStats is what a group-commit writer has done since the store
// opened: Requests/Commits is the mean group size.
type WriterStats struct {
	Commits  int64         // transactions committed
	Failed   int64         // transactions rolled back
	Requests int64         // writes folded into the commits
	Busy     time.Duration // time spent in transactions, committed or not
}

// WriterStatser is implemented by stores with a group-commit writer.
type WriterStatser interface {
	WriterStats() WriterStats
}

// ListFilter selects messages for the admin list. Zero fields do not filter.
type ListFilter struct {
	UserID       string
	Direction    Direction
	MirrorStatus MirrorStatus
	Since, Until time.Time // on Timestamp; Since inclusive, Until exclusive
	Limit        int
	Cursor       string // from a previous page's next cursor
}

// CandidateQuery selects messages to offer to the mirror again.
type CandidateQuery struct {
	// Statuses are taken whole (pending ones only where no other
	// instance's live lease covers them).
	Statuses []MirrorStatus
	// MaxAttempts, when above 0, leaves out failed messages tried that
	// often already. Dropped ones are never left out: the CRM did not
	// refuse them.
	MaxAttempts int
	// StalePendingBefore, when set, adds this instance's own pending
	// messages stored before it (their event was lost in this process).
	StalePendingBefore time.Time
	// Orphans adds pending messages whose owner's lease has lapsed (an
	// instance that died or stopped, this host's previous run included).
	Orphans      bool
	Since, Until time.Time // on Timestamp
	AfterID      int64     // resume after this id (oldest first)
	Limit        int
}
