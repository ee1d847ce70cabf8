// Package mirror copies stored messages into the CRM's MySQL table: a pool
// of workers drains the event bus in batches, maps each message to the
// CRM's columns and inserts it, and a reconciler offers again whatever the
// queue dropped or the CRM refused.
package mirror

import (
	"context"
	"time"

	"igmirror/domain"
)

// Row is one CRM row, mapped from a message as CONTRACT.md says.
type Row struct {
	MessageID int64 // the local id, never written to the CRM
	UserID    string
	Username  string
	Direction string // "in" or "out"
	Message   string
	CreatedAt time.Time // UTC, whole seconds (the CRM column has no fraction)
	// Degraded is set by the sink when the row had to be changed to fit
	// the CRM's columns: characters replaced or text cut.
	Degraded bool
}

// Sink is where rows go: the CRM table.
type Sink interface {
	// Insert writes rows in one statement. Before writing it fits every
	// row to the table's columns, setting Row.Degraded where that lost
	// something.
	Insert(ctx context.Context, rows []Row) error
	// Existing reports, for each row, whether the table already holds it
	// (same user, direction, time and text). Before looking it makes sure
	// that no INSERT of unknown outcome can still land, so the answer is
	// final. It fits the rows first, as Insert does.
	Existing(ctx context.Context, rows []Row) ([]bool, error)
	// Ping checks the connection and the table.
	Ping(ctx context.Context) error
}

// Store is what the mirror workers need of the local store (a part of
// domain.MirrorStore).
type Store interface {
	Claim(ctx context.Context, ids []int64) ([]domain.Claim, error)
	MarkMirrored(ctx context.Context, ids []int64, degraded map[int64]bool) error
	MarkFailed(ctx context.Context, ids []int64, reason string) error
}

var _ Store = (domain.Store)(nil)

// Resolver finds a customer's Instagram username; it returns the user id
// itself when it cannot.
type Resolver interface {
	Username(ctx context.Context, userID string) string
}

// ResolverFunc adapts a function to Resolver.
type ResolverFunc func(ctx context.Context, userID string) string

// Username calls f.
func (f ResolverFunc) Username(ctx context.Context, userID string) string { return f(ctx, userID) }

// Observer receives the latency of each CRM insert, in seconds (a
// Prometheus histogram fits).
type Observer interface {
	Observe(float64)
}

// MapRow maps a message to its CRM row. The username is filled later.
func MapRow(m *domain.Message) Row {
	dir := "in"
	if m.Direction == domain.Outbound {
		dir = "out"
	}
	return Row{
		MessageID: m.ID,
		UserID:    domain.CustomerID(m.Direction, m.SenderID, m.RecipientID),
		Direction: dir,
		Message:   domain.DisplayText(m),
		CreatedAt: m.Timestamp.UTC().Truncate(time.Second),
	}
}
