package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"igmirror/domain"
	"igmirror/internal/page"
	"igmirror/internal/sqlitetime"

	"gorm.io/gorm"
)

// messageCols are the messages columns, in scanMessage's order.
const messageCols = "id, instagram_message_id, sender_id, recipient_id, direction, message_text, timestamp, created_at, " +
	"mirror_status, user_id, attachments, reply_to_mid, standby, deleted, deleted_at, original_text, edit_count, " +
	"mirror_attempts, mirror_last_error, mirror_last_attempt_at, mirrored_at, mirror_degraded, mirror_owner"

// scanner is a *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

// scanMessage reads one row of messageCols.
func scanMessage(sc scanner) (domain.Message, error) {
	var (
		m                                    domain.Message
		mid, original                        sql.NullString
		direction, status                    string
		ts, created                          sqlitetime.Time
		deletedAt, lastAttemptAt, mirroredAt sqlitetime.Time
	)
	err := sc.Scan(&m.ID, &mid, &m.SenderID, &m.RecipientID, &direction, &m.MessageText, &ts, &created,
		&status, &m.UserID, &m.Attachments, &m.ReplyToMID, &m.Standby, &m.Deleted, &deletedAt, &original, &m.EditCount,
		&m.MirrorAttempts, &m.MirrorLastError, &lastAttemptAt, &mirroredAt, &m.MirrorDegraded, &m.MirrorOwner)
	if err != nil {
		return domain.Message{}, err
	}
	m.Direction, m.MirrorStatus = domain.Direction(direction), domain.MirrorStatus(status)
	if mid.Valid {
		m.InstagramMessageID = &mid.String
	}
	if original.Valid {
		m.OriginalText = &original.String
	}
	m.Timestamp, m.CreatedAt = ts.T, created.T
	m.DeletedAt, m.MirrorLastAttemptAt, m.MirroredAt = deletedAt.Ptr(), lastAttemptAt.Ptr(), mirroredAt.Ptr()
	return m, nil
}

// queryMessages runs a SELECT of messageCols (rest follows "FROM
// messages ") through GORM on the read pool, which logs a failed or slow
// statement with its placeholders, and scans every row.
func (s *Store) queryMessages(ctx context.Context, rest string, args ...any) ([]domain.Message, error) {
	rows, err := s.rdb.WithContext(ctx).Raw("SELECT "+messageCols+" FROM messages "+rest, args...).Rows()
	if err != nil {
		return nil, err
	}
	return scanMessages(rows)
}

// queryMessagesOn is queryMessages on a transaction of the writer.
func queryMessagesOn(ctx context.Context, tx *sql.Tx, rest string, args ...any) ([]domain.Message, error) {
	rows, err := tx.QueryContext(ctx, "SELECT "+messageCols+" FROM messages "+rest, args...)
	if err != nil {
		return nil, err
	}
	return scanMessages(rows)
}

func scanMessages(rows *sql.Rows) ([]domain.Message, error) {
	defer rows.Close()
	var out []domain.Message
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			return nil, fmt.Errorf("scan message: %w", err)
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// List returns one page of messages, newest first, and the cursor of the
// next page ("" when this is the last).
func (s *Store) List(ctx context.Context, f domain.ListFilter) ([]domain.Message, string, error) {
	q, err := page.Messages(f, page.Question)
	if err != nil {
		return nil, "", err
	}
	tail, args := q.Tail()
	out, err := s.queryMessages(ctx, tail, args...)
	if err != nil {
		return nil, "", s.readErr("list messages", err)
	}
	out, next := page.Cut(q, out, messageID)
	return out, next, nil
}

func messageID(m domain.Message) int64 { return m.ID }

// Get returns one message by id, or domain.ErrNotFound.
func (s *Store) Get(ctx context.Context, id int64) (domain.Message, error) {
	return s.getOne(ctx, "WHERE id = ?", id)
}

// GetByMID returns the message with an Instagram message id, or
// domain.ErrNotFound: a plain read through the UNIQUE index.
func (s *Store) GetByMID(ctx context.Context, mid string) (domain.Message, error) {
	return s.getOne(ctx, "WHERE instagram_message_id = ?", mid)
}

func (s *Store) getOne(ctx context.Context, where string, arg any) (domain.Message, error) {
	out, err := s.queryMessages(ctx, where+" LIMIT 1", arg)
	if err != nil {
		return domain.Message{}, s.readErr("get message", err)
	}
	if len(out) == 0 {
		return domain.Message{}, domain.ErrNotFound
	}
	return out[0], nil
}

// CountByStatus returns how many messages are in each mirror state, from
// the counts the triggers keep.
func (s *Store) CountByStatus(ctx context.Context) (map[domain.MirrorStatus]int64, error) {
	rows, err := s.rsql.QueryContext(ctx, "SELECT status, n FROM status_counts")
	if err != nil {
		return nil, s.readErr("count by mirror status", err)
	}
	defer rows.Close()
	out := map[domain.MirrorStatus]int64{
		domain.MirrorPending: 0, domain.MirrorMirrored: 0, domain.MirrorDropped: 0, domain.MirrorFailed: 0, domain.MirrorDisabled: 0,
	}
	for rows.Next() {
		var st string
		var n int64
		if err := rows.Scan(&st, &n); err != nil {
			return nil, s.readErr("count by mirror status", err)
		}
		out[domain.MirrorStatus(st)] = n
	}
	return out, rows.Err()
}

// OldestUnmirrored returns the creation time of the oldest message still
// pending, dropped or failed: the first of each state in the mirror
// index, so three index seeks whatever the store's size.
func (s *Store) OldestUnmirrored(ctx context.Context) (time.Time, bool, error) {
	var oldest time.Time
	found := false
	for _, st := range []domain.MirrorStatus{domain.MirrorPending, domain.MirrorDropped, domain.MirrorFailed} {
		var c sqlitetime.Time
		err := s.rsql.QueryRowContext(ctx, "SELECT created_at FROM messages WHERE mirror_status = ? ORDER BY id LIMIT 1", string(st)).Scan(&c)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return time.Time{}, false, s.readErr("oldest unmirrored", err)
		}
		if !found || c.T.Before(oldest) {
			oldest, found = c.T, true
		}
	}
	return oldest, found, nil
}

// deliveryCols are the journal's columns but the body.
const deliveryCols = "id, received_at, signature, length(body), stored, duplicates, unsent, edited, items"

func scanDelivery(sc scanner, body *[]byte) (domain.Delivery, error) {
	var d domain.Delivery
	var at sqlitetime.Time
	var items string
	dest := []any{&d.ID, &at, &d.Signature, &d.Size, &d.Stored, &d.Duplicates, &d.Unsent, &d.Edited, &items}
	if body != nil {
		dest = append(dest, body)
	}
	if err := sc.Scan(dest...); err != nil {
		return d, err
	}
	d.ReceivedAt = at.T
	if err := json.Unmarshal([]byte(items), &d.Items); err != nil {
		return d, fmt.Errorf("delivery %d items: %w", d.ID, err)
	}
	return d, nil
}

// ListDeliveries returns one page of the journal, newest first, without
// bodies.
func (s *Store) ListDeliveries(ctx context.Context, f domain.DeliveryFilter) ([]domain.Delivery, string, error) {
	q, err := page.Deliveries(f, page.Question)
	if err != nil {
		return nil, "", err
	}
	tail, args := q.Tail()
	rows, err := s.rsql.QueryContext(ctx, "SELECT "+deliveryCols+" FROM deliveries "+tail, args...)
	if err != nil {
		return nil, "", s.readErr("list deliveries", err)
	}
	defer rows.Close()
	var out []domain.Delivery
	for rows.Next() {
		d, err := scanDelivery(rows, nil)
		if err != nil {
			return nil, "", s.readErr("list deliveries", err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, "", s.readErr("list deliveries", err)
	}
	out, next := page.Cut(q, out, deliveryID)
	return out, next, nil
}

func deliveryID(d domain.Delivery) int64 { return d.ID }

// GetDelivery returns one journal record with its body.
func (s *Store) GetDelivery(ctx context.Context, id int64) (domain.Delivery, error) {
	var body []byte
	d, err := scanDelivery(s.rsql.QueryRowContext(ctx, "SELECT "+deliveryCols+", body FROM deliveries WHERE id = ?", id), &body)
	if errors.Is(err, sql.ErrNoRows) {
		return domain.Delivery{}, domain.ErrNotFound
	}
	if err != nil {
		return domain.Delivery{}, s.readErr(fmt.Sprintf("get delivery %d", id), err)
	}
	d.Body = body
	return d, nil
}

// PurgeDeliveries deletes up to limit journal records received before
// before, oldest first, in one short write of the writer.
func (s *Store) PurgeDeliveries(ctx context.Context, before time.Time, limit int) (int64, error) {
	if limit <= 0 {
		limit = 1000
	}
	var n int64
	err := s.exec(ctx, func(tx *gorm.DB) error {
		res := tx.Exec("DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries WHERE received_at < ? ORDER BY id LIMIT ?)", before.UTC(), limit)
		n = res.RowsAffected
		return res.Error
	})
	if err != nil {
		return 0, fmt.Errorf("purge deliveries: %w", err)
	}
	return n, nil
}

// readErr wraps a read's error, as domain.ErrClosed once the store is
// closed (the pools are gone then), as the port promises.
func (s *Store) readErr(what string, err error) error {
	if s.w.Closed() {
		return fmt.Errorf("%s: %w", what, domain.ErrClosed)
	}
	return fmt.Errorf("%s: %w", what, err)
}
