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

// insertSQL inserts the rows of parallel arrays, one per column. The
// UNIQUE constraint decides which are new: a mid already stored (or being
// stored by another instance's transaction, which this one then waits
// for) is skipped, never an error, and RETURNING names the rows actually
// inserted.
const insertSQL = `INSERT INTO messages (instagram_message_id, sender_id, recipient_id, direction, message_text, timestamp, created_at,
	mirror_status, user_id, attachments, reply_to_mid, standby, mirror_owner)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::timestamptz[],
	$8::text[], $9::text[], $10::text[], $11::text[], $12::boolean[], $13::text[])
ON CONFLICT (instagram_message_id) DO NOTHING
RETURNING id, instagram_message_id`

// rowsPerStmt bounds one INSERT's rows.
const rowsPerStmt = 1000

// columns are the insertSQL arguments being built.
type columns struct {
	mid                                []*string
	sender, recipient, direction, text []string
	ts, created                        []time.Time
	status, user, attachments, replyTo []string
	standby                            []bool
	owner                              []string
}

func (c *columns) reset() { *c = columns{} }

func (c *columns) add(m *domain.Message) {
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
	return []any{c.mid, c.sender, c.recipient, c.direction, c.text, c.ts, c.created,
		c.status, c.user, c.attachments, c.replyTo, c.standby, c.owner}
}

// insertAll inserts every message of the batch and marks as new exactly
// the messages the database inserted. Ids are mapped back by mid, never
// by position: the first message of the group with a mid gets the row
// the statement inserted for it, any later one with the same mid is a
// duplicate (it is not sent to the database at all). Rows go in mid
// order, so that two instances inserting overlapping mids wait for each
// other in one order and never deadlock. A message without a mid is
// always new; each has a statement of its own, so its id is its row's.
func (s *Store) insertAll(ctx context.Context, tx *sql.Tx, batch []*writeReq, now time.Time) error {
	var keyed, bare []slot
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
			m.MirrorOwner = s.lease.owner
			switch {
			case m.InstagramMessageID == nil:
				bare = append(bare, slot{r, i})
			case !first[m.MID()]:
				first[m.MID()] = true
				keyed = append(keyed, slot{r, i})
			}
		}
	}
	slices.SortFunc(keyed, func(a, b slot) int { return cmp.Compare(a.msg().MID(), b.msg().MID()) })
	ids := make(map[string]int64, len(keyed))
	var cols columns
	for part := range slices.Chunk(keyed, rowsPerStmt) {
		cols.reset()
		for _, sl := range part {
			cols.add(sl.msg())
		}
		if err := returnIDs(ctx, tx, cols.args(), func(id int64, mid string) { ids[mid] = id }); err != nil {
			return fmt.Errorf("insert messages: %w", err)
		}
	}
	for _, sl := range keyed {
		m := sl.msg()
		if id, ok := ids[m.MID()]; ok {
			m.ID = id
			sl.r.isNew[sl.i] = true
		}
	}
	for _, sl := range bare {
		m := sl.msg()
		cols.reset()
		cols.add(m)
		err := returnIDs(ctx, tx, cols.args(), func(id int64, _ string) { m.ID = id })
		if err != nil {
			return fmt.Errorf("insert message without mid: %w", err)
		}
		if m.ID == 0 {
			return fmt.Errorf("insert message without mid: no row returned")
		}
		sl.r.isNew[sl.i] = true
	}
	return nil
}

// returnIDs runs insertSQL and calls fn for every inserted row.
func returnIDs(ctx context.Context, tx *sql.Tx, args []any, fn func(id int64, mid string)) error {
	rows, err := tx.QueryContext(ctx, insertSQL, args...)
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
