package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"igmirror/domain"
)

// slot is one message of a group commit: request and index.
type slot struct {
	r *writeReq
	i int
}

func (sl slot) msg() *domain.Message { return &sl.r.batch.Messages[sl.i] }

// insertAll inserts every message of the batch with INSERT … ON CONFLICT
// (instagram_message_id) DO NOTHING RETURNING id, instagram_message_id,
// and marks as new exactly the messages the database inserted. Messages
// are inserted in the order given, so ids follow it. Ids are mapped back
// by mid, never by position: the first message of the group with a mid
// the statement inserted gets its id, any later one with the same mid is
// a duplicate. A message without a mid is always new; each such message
// has a statement of its own, so its id is its row's.
func (s *Store) insertAll(ctx context.Context, tx *sql.Tx, batch []*writeReq, now time.Time) error {
	var run []slot // consecutive messages with a mid, inserted together
	args := make([]any, 0, rowsPerStmt*colsPerRow)
	flush := func() error {
		ids := make(map[string]int64, len(run))
		err := eachSized(s.ins, run, func(part []slot, st *sql.Stmt) error {
			args = args[:0]
			for _, sl := range part {
				args = appendRow(args, sl.msg())
			}
			return returnIDs(ctx, tx.StmtContext(ctx, st), args, func(id int64, mid string) { ids[mid] = id })
		})
		if err != nil {
			return fmt.Errorf("insert messages: %w", err)
		}
		for _, sl := range run {
			m := sl.msg()
			if id, ok := ids[m.MID()]; ok {
				m.ID = id
				sl.r.isNew[sl.i] = true
				delete(ids, m.MID()) // a later message with this mid is a duplicate
			}
		}
		run = run[:0]
		return nil
	}
	one := s.ins.byRows[1]
	for _, r := range batch {
		if r.batch == nil {
			continue
		}
		r.isNew = make([]bool, len(r.batch.Messages))
		for i := range r.batch.Messages {
			m := &r.batch.Messages[i]
			m.ID, m.CreatedAt = 0, now
			m.MirrorOwner = s.lease.Owner()
			if m.InstagramMessageID != nil {
				run = append(run, slot{r, i})
				continue
			}
			if err := flush(); err != nil {
				return err
			}
			err := returnIDs(ctx, tx.StmtContext(ctx, one), appendRow(args[:0], m), func(id int64, _ string) { m.ID = id })
			if err != nil {
				return fmt.Errorf("insert message without mid: %w", err)
			}
			if m.ID == 0 {
				return fmt.Errorf("insert message without mid: no id returned")
			}
			r.isNew[i] = true
		}
	}
	return flush()
}

// appendRow appends m's insertCols values.
func appendRow(args []any, m *domain.Message) []any {
	return append(args, m.InstagramMessageID, m.SenderID, m.RecipientID, string(m.Direction), m.MessageText,
		m.Timestamp.UTC(), m.CreatedAt, string(m.MirrorStatus), m.UserID, m.Attachments, m.ReplyToMID, m.Standby, m.MirrorOwner)
}

// returnIDs runs an INSERT … RETURNING id, instagram_message_id and calls
// fn for every inserted row.
func returnIDs(ctx context.Context, st *sql.Stmt, args []any, fn func(id int64, mid string)) error {
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var mid sql.NullString
		if err := rows.Scan(&id, &mid); err != nil {
			return err
		}
		fn(id, mid.String)
	}
	return rows.Err()
}

// applyBatch applies one request's unsends and edits and journals its
// delivery, after the group's messages are inserted.
func (s *Store) applyBatch(ctx context.Context, tx *sql.Tx, r *writeReq, now time.Time) error {
	b := r.batch
	r.res = domain.SaveResult{}
	if len(b.Unsends) > 0 {
		err := inChunks(b.Unsends, func(part []string) error {
			args := append([]any{now}, stringArgs(part)...)
			res, err := tx.ExecContext(ctx, "UPDATE messages SET deleted = 1, deleted_at = ? WHERE deleted = 0 AND instagram_message_id IN ("+placeholders(len(part))+")", args...)
			if err != nil {
				return err
			}
			n, _ := res.RowsAffected()
			r.res.Unsent += int(n)
			return nil
		})
		if err != nil {
			return fmt.Errorf("mark unsent: %w", err)
		}
	}
	for _, e := range b.Edits {
		res, err := tx.ExecContext(ctx, "UPDATE messages SET original_text = COALESCE(original_text, message_text), message_text = ?, edit_count = ? WHERE instagram_message_id = ? AND edit_count < ?",
			e.Text, e.NumEdit, e.MID, e.NumEdit)
		if err != nil {
			return fmt.Errorf("apply edit: %w", err)
		}
		if n, _ := res.RowsAffected(); n > 0 {
			r.res.Edited++
			continue
		}
		var known int
		if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM messages WHERE instagram_message_id = ?", e.MID).Scan(&known); err != nil {
			return fmt.Errorf("look up edited message: %w", err)
		}
		if known == 0 {
			r.res.UnknownEdits++
		}
	}
	if d := b.Delivery; d != nil {
		stored := 0
		for _, ok := range r.isNew {
			if ok {
				stored++
			}
		}
		d.Stored, d.Duplicates, d.Unsent, d.Edited = stored, len(r.isNew)-stored, r.res.Unsent, r.res.Edited
		if d.ReceivedAt.IsZero() {
			d.ReceivedAt = now
		}
		d.ReceivedAt = d.ReceivedAt.UTC()
		d.Size = len(d.Body)
		items, err := json.Marshal(d.Items)
		if err != nil {
			return fmt.Errorf("journal delivery: %w", err)
		}
		err = tx.StmtContext(ctx, s.journal).QueryRowContext(ctx,
			d.ReceivedAt, d.Signature, nonNil(d.Body), d.Stored, d.Duplicates, d.Unsent, d.Edited, string(items)).Scan(&d.ID)
		if err != nil {
			return fmt.Errorf("journal delivery: %w", err)
		}
		r.res.DeliveryID = d.ID
	}
	return nil
}

// nonNil is b, or an empty body for nil: the column is NOT NULL, and a
// journaled delivery without bytes is still a record (as in PostgreSQL).
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// journalInsertSQL records one delivery in the journal.
const journalInsertSQL = "INSERT INTO deliveries (received_at, signature, body, stored, duplicates, unsent, edited, items) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id"

// inChunks calls fn with items in slices small enough for one IN list.
func inChunks[T any](items []T, fn func(part []T) error) error {
	for len(items) > 0 {
		n := min(len(items), 500)
		if err := fn(items[:n]); err != nil {
			return err
		}
		items = items[n:]
	}
	return nil
}

func int64Args(ids []int64) []any {
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	return args
}

func stringArgs(ss []string) []any {
	args := make([]any, len(ss))
	for i, s := range ss {
		args[i] = s
	}
	return args
}

// placeholders returns "?,?,...,?" for n values.
func placeholders(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat("?,", n-1) + "?"
}
