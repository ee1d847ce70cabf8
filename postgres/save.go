package postgres

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"igmirror/domain"
)

// slot is one message of a group commit: request and index.
type slot struct {
	r *writeReq
	i int
}

func (sl slot) msg() *domain.Message { return &sl.r.batch.Messages[sl.i] }

// insertSQL inserts the rows of parallel arrays, one per column, with
// the ids the writer drew for them. The UNIQUE constraint decides which
// are new: a mid already stored (or being stored by another instance's
// transaction, which this one then waits for) is skipped, never an error,
// and RETURNING names the rows actually inserted.
const insertSQL = `INSERT INTO messages (id, instagram_message_id, sender_id, recipient_id, direction, message_text, timestamp, created_at,
	mirror_status, user_id, attachments, reply_to_mid, standby, mirror_owner)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[], $8::timestamptz[],
	$9::text[], $10::text[], $11::text[], $12::text[], $13::boolean[], $14::text[])
ON CONFLICT (instagram_message_id) DO NOTHING
RETURNING id`

// drawIDsSQL draws n ids from the messages' identity sequence, ascending.
const drawIDsSQL = "SELECT nextval(pg_get_serial_sequence('messages', 'id')) FROM generate_series(1, $1) ORDER BY 1"

// rowsPerStmt bounds one INSERT's rows.
const rowsPerStmt = 1000

// columns are the insertSQL arguments being built.
type columns struct {
	id                                 []int64
	mid                                []*string
	sender, recipient, direction, text []string
	ts, created                        []time.Time
	status, user, attachments, replyTo []string
	standby                            []bool
	owner                              []string
}

func (c *columns) reset() { *c = columns{} }

func (c *columns) add(m *domain.Message) {
	c.id = append(c.id, m.ID)
	c.mid = append(c.mid, m.InstagramMessageID)
	c.sender = append(c.sender, m.SenderID)
	c.recipient = append(c.recipient, m.RecipientID)
	c.direction = append(c.direction, string(m.Direction))
	c.text = append(c.text, m.MessageText)
	c.ts = append(c.ts, m.Timestamp)
	c.created = append(c.created, m.CreatedAt)
	c.status = append(c.status, string(m.MirrorStatus))
	c.user = append(c.user, m.UserID)
	c.attachments = append(c.attachments, m.Attachments)
	c.replyTo = append(c.replyTo, m.ReplyToMID)
	c.standby = append(c.standby, m.Standby)
	c.owner = append(c.owner, m.MirrorOwner)
}

func (c *columns) args() []any {
	return []any{c.id, c.mid, c.sender, c.recipient, c.direction, c.text, c.ts, c.created,
		c.status, c.user, c.attachments, c.replyTo, c.standby, c.owner}
}

// insertAll inserts every message of the batch and marks as new exactly
// the messages the database inserted. Ids are drawn from the sequence
// first and given in the order of the messages, so they follow it; rows
// then go to the database in mid order, so that two instances inserting
// overlapping mids wait for each other in one order and never deadlock.
// RETURNING names the ids inserted. The first message of the group with
// a mid is the one offered to the database; any later one with the same
// mid is a duplicate of it, stored now or before. A message without a
// mid is always new.
func (s *Store) insertAll(ctx context.Context, tx *sql.Tx, batch []*writeReq, now time.Time) error {
	var rows []slot
	first := map[string]bool{}
	for _, r := range batch {
		if r.batch == nil {
			continue
		}
		r.isNew = make([]bool, len(r.batch.Messages))
		for i := range r.batch.Messages {
			m := &r.batch.Messages[i]
			m.ID, m.CreatedAt = 0, now
			m.Timestamp = m.Timestamp.UTC().Truncate(time.Microsecond)
			m.MirrorOwner = s.lease.Owner()
			if mid := m.InstagramMessageID; mid != nil {
				if first[*mid] {
					continue
				}
				first[*mid] = true
			}
			rows = append(rows, slot{r, i})
		}
	}
	if len(rows) == 0 {
		return nil
	}
	if err := drawIDs(ctx, tx, rows); err != nil {
		return fmt.Errorf("draw message ids: %w", err)
	}
	slices.SortStableFunc(rows, func(a, b slot) int {
		ma, mb := a.msg().InstagramMessageID, b.msg().InstagramMessageID
		switch {
		case ma == nil || mb == nil:
			return cmp.Compare(boolInt(ma == nil), boolInt(mb == nil))
		}
		return cmp.Compare(*ma, *mb)
	})
	inserted := make(map[int64]bool, len(rows))
	var cols columns
	for part := range slices.Chunk(rows, rowsPerStmt) {
		cols.reset()
		for _, sl := range part {
			cols.add(sl.msg())
		}
		if err := returnIDs(ctx, tx, cols.args(), func(id int64) { inserted[id] = true }); err != nil {
			return fmt.Errorf("insert messages: %w", err)
		}
	}
	for _, sl := range rows {
		m := sl.msg()
		if inserted[m.ID] {
			sl.r.isNew[sl.i] = true
			continue
		}
		if m.InstagramMessageID == nil {
			return fmt.Errorf("insert message without mid: no row inserted")
		}
		m.ID = 0
	}
	return nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// drawIDs gives the rows, in their order, ascending ids from the sequence.
func drawIDs(ctx context.Context, tx *sql.Tx, rows []slot) error {
	res, err := tx.QueryContext(ctx, drawIDsSQL, len(rows))
	if err != nil {
		return err
	}
	defer res.Close()
	i := 0
	for res.Next() {
		if i == len(rows) {
			return fmt.Errorf("more ids than asked for")
		}
		if err := res.Scan(&rows[i].msg().ID); err != nil {
			return err
		}
		i++
	}
	if err := res.Err(); err != nil {
		return err
	}
	if i != len(rows) {
		return fmt.Errorf("%d ids for %d messages", i, len(rows))
	}
	return nil
}

// returnIDs runs insertSQL and calls fn for every inserted row.
func returnIDs(ctx context.Context, tx *sql.Tx, args []any, fn func(id int64)) error {
	rows, err := tx.QueryContext(ctx, insertSQL, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return err
		}
		fn(id)
	}
	return rows.Err()
}

// applyBatch applies one request's unsends and edits and journals its
// delivery, after the group's messages are inserted.
func (s *Store) applyBatch(ctx context.Context, tx *sql.Tx, r *writeReq, now time.Time) error {
	b := r.batch
	r.res = domain.SaveResult{}
	if len(b.Unsends) > 0 {
		mids := slices.Clone(b.Unsends)
		slices.Sort(mids)
		res, err := tx.ExecContext(ctx, "UPDATE messages SET deleted = true, deleted_at = $1 WHERE deleted = false AND instagram_message_id = ANY($2)", now, mids)
		if err != nil {
			return fmt.Errorf("mark unsent: %w", err)
		}
		n, _ := res.RowsAffected()
		r.res.Unsent += int(n)
	}
	for _, e := range b.Edits {
		res, err := tx.ExecContext(ctx, "UPDATE messages SET original_text = COALESCE(original_text, message_text), message_text = $1, edit_count = $2 WHERE instagram_message_id = $3 AND edit_count < $2",
			e.Text, e.NumEdit, e.MID)
		if err != nil {
			return fmt.Errorf("apply edit: %w", err)
		}
		if n, _ := res.RowsAffected(); n > 0 {
			r.res.Edited++
			continue
		}
		var known bool
		if err := tx.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM messages WHERE instagram_message_id = $1)", e.MID).Scan(&known); err != nil {
			return fmt.Errorf("look up edited message: %w", err)
		}
		if !known {
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
		d.ReceivedAt = d.ReceivedAt.UTC().Truncate(time.Microsecond)
		d.Size = len(d.Body)
		items, err := json.Marshal(d.Items)
		if err != nil {
			return fmt.Errorf("journal delivery: %w", err)
		}
		body := d.Body
		if body == nil {
			body = []byte{}
		}
		err = tx.QueryRowContext(ctx, "INSERT INTO deliveries (received_at, signature, body, stored, duplicates, unsent, edited, items) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
			d.ReceivedAt, d.Signature, body, d.Stored, d.Duplicates, d.Unsent, d.Edited, string(items)).Scan(&d.ID)
		if err != nil {
			return fmt.Errorf("journal delivery: %w", err)
		}
		r.res.DeliveryID = d.ID
	}
	return nil
}
