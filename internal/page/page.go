// Package page holds the keyset paging of the store adapters' lists:
// newest first by id, a page resumed below the last id of the one before
// through an opaque cursor (domain.EncodeCursor), so that rows stored
// while a client pages never shift the pages it has yet to fetch. The
// filters' columns are the same in every engine's schema; only the
// placeholders differ.
package page

import (
	"strconv"
	"strings"

	"igmirror/domain"
)

// DefaultLimit is a page's size when the caller gives none.
const DefaultLimit = 50

// Placeholder renders the n-th (from 1) bound argument of a statement.
type Placeholder func(n int) string

// Question is SQLite's and MySQL's placeholder, "?".
func Question(int) string { return "?" }

// Dollar is PostgreSQL's placeholder, "$n".
func Dollar(n int) string { return "$" + strconv.Itoa(n) }

// Query is the tail of one page's SELECT: its conditions, order and limit.
type Query struct {
	// Limit is the page's size.
	Limit int

	before int64 // only ids below it; 0 on the first page
	conds  []string
	args   []any
	mark   Placeholder
}

// New starts the query of the page that cursor names ("" for the first)
// with limit rows (DefaultLimit when 0 or less). A cursor the store did
// not hand out is domain.ErrBadCursor.
func New(cursor string, limit int, mark Placeholder) (*Query, error) {
	q := &Query{Limit: limit, mark: mark}
	if q.Limit <= 0 {
		q.Limit = DefaultLimit
	}
	if cursor != "" {
		var err error
		if q.before, err = domain.DecodeCursor(cursor); err != nil {
			return nil, err
		}
	}
	return q, nil
}

// Messages starts the query of a page of messages that f selects.
func Messages(f domain.ListFilter, mark Placeholder) (*Query, error) {
	q, err := New(f.Cursor, f.Limit, mark)
	if err != nil {
		return nil, err
	}
	if f.UserID != "" {
		q.Where("user_id =", f.UserID)
	}
	if f.Direction != "" {
		q.Where("direction =", string(f.Direction))
	}
	if f.MirrorStatus != "" {
		q.Where("mirror_status =", string(f.MirrorStatus))
	}
	if !f.Since.IsZero() {
		q.Where("timestamp >=", f.Since.UTC())
	}
	if !f.Until.IsZero() {
		q.Where("timestamp <", f.Until.UTC())
	}
	return q, nil
}

// Deliveries starts the query of a page of the delivery journal that f
// selects.
func Deliveries(f domain.DeliveryFilter, mark Placeholder) (*Query, error) {
	q, err := New(f.Cursor, f.Limit, mark)
	if err != nil {
		return nil, err
	}
	if !f.Since.IsZero() {
		q.Where("received_at >=", f.Since.UTC())
	}
	if !f.Until.IsZero() {
		q.Where("received_at <", f.Until.UTC())
	}
	return q, nil
}

// Where adds the condition "expr <placeholder>" bound to arg, as in
// Where("user_id =", id).
func (q *Query) Where(expr string, arg any) {
	q.args = append(q.args, arg)
	q.conds = append(q.conds, expr+" "+q.mark(len(q.args)))
}

// Tail returns "[WHERE …] ORDER BY id DESC LIMIT …", the cursor's bound
// included, and its arguments. It fetches one row more than Limit, which
// tells Cut whether a next page exists. Call it once, last.
func (q *Query) Tail() (string, []any) {
	if q.before > 0 {
		q.Where("id <", q.before)
	}
	var b strings.Builder
	if len(q.conds) > 0 {
		b.WriteString("WHERE " + strings.Join(q.conds, " AND ") + " ")
	}
	q.args = append(q.args, q.Limit+1)
	b.WriteString("ORDER BY id DESC LIMIT " + q.mark(len(q.args)))
	return b.String(), q.args
}

// Cut trims rows, fetched with Tail, to the page and returns the cursor
// of the next page, "" when this is the last.
func Cut[T any](q *Query, rows []T, id func(T) int64) ([]T, string) {
	if len(rows) <= q.Limit {
		return rows, ""
	}
	rows = rows[:q.Limit]
	return rows, domain.EncodeCursor(id(rows[len(rows)-1]))
}
