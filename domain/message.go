// Package domain holds igmirror's central types: the direct Message, its
// rules, and the SQLite store that is the service's source of truth.
package domain

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Direction says who wrote a message, seen from the business account.
type Direction string

// The two directions a message can travel.
const (
	Inbound  Direction = "inbound"  // the customer wrote to the business
	Outbound Direction = "outbound" // the business wrote to the customer (an echo)
)

// Valid reports whether d is one of the known directions.
func (d Direction) Valid() bool { return d == Inbound || d == Outbound }

// MirrorStatus is where a message stands in its journey to the CRM.
type MirrorStatus string

// The mirror states of CONTRACT.md.
const (
	MirrorPending  MirrorStatus = "pending"  // stored, waiting for (or in) the mirror
	MirrorMirrored MirrorStatus = "mirrored" // the CRM holds it
	MirrorDropped  MirrorStatus = "dropped"  // the queue was full; the reconciler offers it again
	MirrorFailed   MirrorStatus = "failed"   // the CRM refused it; the reconciler retries up to the max attempts
	MirrorDisabled MirrorStatus = "disabled" // stored while the mirror was off
)

// Valid reports whether s is one of the known states.
func (s MirrorStatus) Valid() bool {
	switch s {
	case MirrorPending, MirrorMirrored, MirrorDropped, MirrorFailed, MirrorDisabled:
		return true
	}
	return false
}

// Sentinel errors the store and the validation return.
var (
	ErrNotFound = errors.New("not found")
	ErrInvalid  = errors.New("invalid message")
)

// Attachment is one media item of a message, kept as Instagram sent it.
type Attachment struct {
	Type string `json:"type"`
	URL  string `json:"url,omitempty"`
}

// Message is one direct message, inbound or outbound, as stored locally.
// The first block of fields is CONTRACT.md's; the rest serves the mirror
// and the admin API.
type Message struct {
	ID                 int64        `gorm:"primaryKey;autoIncrement" json:"id"`
	InstagramMessageID *string      `gorm:"column:instagram_message_id" json:"instagram_message_id"`
	SenderID           string       `gorm:"not null" json:"sender_id"`
	RecipientID        string       `gorm:"not null" json:"recipient_id"`
	Direction          Direction    `gorm:"type:text;not null" json:"direction"`
	MessageText        string       `gorm:"not null;default:''" json:"message_text"`
	Timestamp          time.Time    `gorm:"not null;index" json:"timestamp"`
	CreatedAt          time.Time    `gorm:"not null" json:"created_at"`
	MirrorStatus       MirrorStatus `gorm:"type:text;not null;index:idx_messages_mirror,priority:1" json:"mirror_status"`

	// MIDKey keeps InstagramMessageID unique: see midkey.go and
	// midtables.go. Set by Save.
	MIDKey *int64 `gorm:"column:mid_key" json:"-"`

	// UserID is the customer: the sender of an inbound message, the
	// recipient of an outbound one. Derived once, kept for filtering
	// through user_index (userindex.go).
	UserID string `gorm:"not null" json:"user_id"`
	// Attachments is the JSON list of attachments, empty when there are none.
	Attachments string     `gorm:"not null;default:''" json:"attachments,omitempty"`
	ReplyToMID  string     `gorm:"column:reply_to_mid;not null;default:''" json:"reply_to_mid,omitempty"`
	Deleted     bool       `gorm:"not null;default:false" json:"deleted"`
	DeletedAt   *time.Time `json:"deleted_at,omitempty"`
	// Standby is true for a message that came in entry[].standby[]: the
	// thread belonged to another app (Meta's handover protocol), so this
	// service saw the message without owning the conversation.
	Standby bool `gorm:"not null;default:false" json:"standby"`

	MirrorAttempts      int        `gorm:"not null;default:0" json:"mirror_attempts"`
	MirrorLastError     string     `gorm:"not null;default:''" json:"mirror_last_error,omitempty"`
	MirrorLastAttemptAt *time.Time `json:"mirror_last_attempt_at,omitempty"`
	MirroredAt          *time.Time `json:"mirrored_at,omitempty"`
	// MirrorDegraded is true when the CRM holds a lossy copy: characters its
	// charset cannot hold were replaced, or the text was cut to fit.
	MirrorDegraded bool `gorm:"not null;default:false" json:"mirror_degraded"`
}

// Edit is a sender's change to the text of a message already sent
// (Instagram's message_edit): the message's mid, its new text and how
// many times it has now been edited.
type Edit struct {
	MID     string
	Text    string
	NumEdit int
}

// MID returns the Instagram message id, or "" when the message has none.
func (m *Message) MID() string {
	if m.InstagramMessageID == nil {
		return ""
	}
	return *m.InstagramMessageID
}

// CustomerID returns the customer's Instagram id for a direction.
func CustomerID(d Direction, senderID, recipientID string) string {
	if d == Outbound {
		return recipientID
	}
	return senderID
}

// Validate checks the fields every stored message must have and fills the
// derived ones (UserID, a UTC Timestamp). It returns an error wrapping
// ErrInvalid that names the first bad field.
func (m *Message) Validate() error {
	switch {
	case strings.TrimSpace(m.SenderID) == "":
		return fmt.Errorf("%w: sender_id is required", ErrInvalid)
	case strings.TrimSpace(m.RecipientID) == "":
		return fmt.Errorf("%w: recipient_id is required", ErrInvalid)
	case !m.Direction.Valid():
		return fmt.Errorf("%w: direction must be inbound or outbound", ErrInvalid)
	case m.InstagramMessageID != nil && *m.InstagramMessageID == "":
		return fmt.Errorf("%w: instagram_message_id must not be empty when given", ErrInvalid)
	case m.Timestamp.IsZero():
		return fmt.Errorf("%w: timestamp is required", ErrInvalid)
	}
	if len(m.SenderID) > maxIDLen || len(m.RecipientID) > maxIDLen || len(m.MID()) > maxMIDLen {
		return fmt.Errorf("%w: an id is longer than allowed", ErrInvalid)
	}
	m.UserID = CustomerID(m.Direction, m.SenderID, m.RecipientID)
	m.Timestamp = m.Timestamp.UTC()
	return nil
}

// Limits on ids: Instagram's are far shorter; these keep junk out.
const (
	maxIDLen  = 100
	maxMIDLen = 512
)
