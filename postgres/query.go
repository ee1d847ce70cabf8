package postgres

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"igmirror/domain"
	"igmirror/internal/page"
)

// messageColList are the messages columns, in scanMessage's order.
var messageColList = []string{"id", "instagram_message_id", "sender_id", "recipient_id", "direction", "message_text", "timestamp", "created_at",
	"mirror_status", "user_id", "attachments", "reply_to_mid", "standby", "deleted", "deleted_at", "original_text", "edit_count",
	"mirror_attempts", "mirror_last_error", "mirror_last_attempt_at", "mirrored_at", "mirror_degraded", "mirror_owner"}

var messageCols = strings.Join(messageColList, ", ")

// scanner is a *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

// scanMessage reads one row of messageCols.
func scanMessage(sc scanner) (domain.Message, error) {
	var (
		m                                    domain.Message
		mid, original                        sql.NullString
		direction, status                    string
		deletedAt, lastAttemptAt, mirroredAt sql.NullTime
	)
	err := sc.Scan(&m.ID, &mid, &m.SenderID, &m.RecipientID, &direction, &m.MessageText, &m.Timestamp, &m.CreatedAt,
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
	m.Timestamp, m.CreatedAt = m.Timestamp.UTC(), m.CreatedAt.UTC()
	m.DeletedAt, m.MirrorLastAttemptAt, m.MirroredAt = timePtr(deletedAt), timePtr(lastAttemptAt), timePtr(mirroredAt)
	return m, nil
}

func timePtr(t sql.NullTime) *time.Time {
	if !t.Valid {
		return nil
	}
	u := t.Time.UTC()
	return &u
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
	q, err := page.Messages(f, page.Dollar)
	if err != nil {
		return nil, "", err
	}
	tail, args := q.Tail()
	ctx, cancel := s.bound(ctx)
	defer cancel()
	rows, err := s.db.QueryContext(ctx, "SELECT "+messageCols+" FROM messages "+tail, args...)
	if err != nil {
		return nil, "", s.wrap("list messages", err)
	}
	out, err := scanMessages(rows)
	if err != nil {
		return nil, "", s.wrap("list messages", err)
	}
	out, next := page.Cut(q, out, messageID)
	return out, next, nil
}

func messageID(m domain.Message) int64 { return m.ID }

// Get returns one message by id, or domain.ErrNotFound.
func (s *Store) Get(ctx context.Context, id int64) (domain.Message, error) {
	return s.getOne(ctx, "id = $1", id)
}

// GetByMID returns the message with an Instagram message id, or
// domain.ErrNotFound: a plain read through the UNIQUE index.
func (s *Store) GetByMID(ctx context.Context, mid string) (domain.Message, error) {
	return s.getOne(ctx, "instagram_message_id = $1", mid)
}

func (s *Store) getOne(ctx context.Context, where string, arg any) (domain.Message, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	m, err := scanMessage(s.db.QueryRowContext(ctx, "SELECT "+messageCols+" FROM messages WHERE "+where, arg))
	if errors.Is(err, sql.ErrNoRows) {
		return domain.Message{}, domain.ErrNotFound
	}
	if err != nil {
		return domain.Message{}, s.wrap("get message", err)
	}
	return m, nil
}

// CountByStatus returns how many messages the whole store holds in each
// mirror state: the sum of the deltas the triggers append (a few rows per
// state between two folds), exact and independent of the store's size.
func (s *Store) CountByStatus(ctx context.Context) (map[domain.MirrorStatus]int64, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	rows, err := s.db.QueryContext(ctx, "SELECT status, sum(n)::bigint FROM status_count_deltas GROUP BY status")
	if err != nil {
		return nil, s.wrap("count by mirror status", err)
	}
	defer rows.Close()
	out := map[domain.MirrorStatus]int64{
		domain.MirrorPending: 0, domain.MirrorMirrored: 0, domain.MirrorDropped: 0, domain.MirrorFailed: 0, domain.MirrorDisabled: 0,
	}
	for rows.Next() {
		var st string
		var n int64
		if err := rows.Scan(&st, &n); err != nil {
			return nil, s.wrap("count by mirror status", err)
		}
		out[domain.MirrorStatus(st)] = n
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap("count by mirror status", err)
	}
	return out, nil
}

// compactCounts folds the count deltas into one row per state, in one
// statement: rows appended meanwhile by other transactions are not in its
// snapshot and stay, and rows another fold deleted first are skipped, so
// the sums never change.
func (s *Store) compactCounts(ctx context.Context) error {
	_, err := s.db.ExecContext(ctx, "WITH d AS (DELETE FROM status_count_deltas RETURNING status, n) "+
		"INSERT INTO status_count_deltas (status, n) SELECT status, sum(n) FROM d GROUP BY status HAVING sum(n) <> 0")
	return err
}

// OldestUnmirrored returns the creation time of the oldest message still
// pending, dropped or failed: the first of each state in the mirror
// index, so three index seeks whatever the store's size.
func (s *Store) OldestUnmirrored(ctx context.Context) (time.Time, bool, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	var t sql.NullTime
	err := s.db.QueryRowContext(ctx, "SELECT min(c) FROM ("+
		"(SELECT created_at AS c FROM messages WHERE mirror_status = 'pending' ORDER BY id LIMIT 1) UNION ALL "+
		"(SELECT created_at FROM messages WHERE mirror_status = 'dropped' ORDER BY id LIMIT 1) UNION ALL "+
		"(SELECT created_at FROM messages WHERE mirror_status = 'failed' ORDER BY id LIMIT 1)) f").Scan(&t)
	if err != nil {
		return time.Time{}, false, s.wrap("oldest unmirrored", err)
	}
	if !t.Valid {
		return time.Time{}, false, nil
	}
	return t.Time.UTC(), true, nil
}

// deliveryCols are the journal's columns but the body.
const deliveryCols = "id, received_at, signature, length(body), stored, duplicates, unsent, edited, items"

func scanDelivery(sc scanner, body *[]byte) (domain.Delivery, error) {
	var d domain.Delivery
	var items string
	dest := []any{&d.ID, &d.ReceivedAt, &d.Signature, &d.Size, &d.Stored, &d.Duplicates, &d.Unsent, &d.Edited, &items}
	if body != nil {
		dest = append(dest, body)
	}
	if err := sc.Scan(dest...); err != nil {
		return d, err
	}
	d.ReceivedAt = d.ReceivedAt.UTC()
	if err := json.Unmarshal([]byte(items), &d.Items); err != nil {
		return d, fmt.Errorf("delivery %d items: %w", d.ID, err)
	}
	return d, nil
}

// ListDeliveries returns one page of the journal, newest first, without
// bodies.
func (s *Store) ListDeliveries(ctx context.Context, f domain.DeliveryFilter) ([]domain.Delivery, string, error) {
	q, err := page.Deliveries(f, page.Dollar)
	if err != nil {
		return nil, "", err
	}
	tail, args := q.Tail()
	ctx, cancel := s.bound(ctx)
	defer cancel()
	rows, err := s.db.QueryContext(ctx, "SELECT "+deliveryCols+" FROM deliveries "+tail, args...)
	if err != nil {
		return nil, "", s.wrap("list deliveries", err)
	}
	defer rows.Close()
	var out []domain.Delivery
	for rows.Next() {
		d, err := scanDelivery(rows, nil)
		if err != nil {
			return nil, "", s.wrap("list deliveries", err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, "", s.wrap("list deliveries", err)
	}
	out, next := page.Cut(q, out, deliveryID)
	return out, next, nil
}

func deliveryID(d domain.Delivery) int64 { return d.ID }

// GetDelivery returns one journal record with its body.
func (s *Store) GetDelivery(ctx context.Context, id int64) (domain.Delivery, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	var body []byte
	d, err := scanDelivery(s.db.QueryRowContext(ctx, "SELECT "+deliveryCols+", body FROM deliveries WHERE id = $1", id), &body)
	if errors.Is(err, sql.ErrNoRows) {
		return domain.Delivery{}, domain.ErrNotFound
	}
	if err != nil {
		return domain.Delivery{}, s.wrap(fmt.Sprintf("get delivery %d", id), err)
	}
	d.Body = body
	return d, nil
}

// PurgeDeliveries deletes up to limit journal records received before
// before, oldest first.
func (s *Store) PurgeDeliveries(ctx context.Context, before time.Time, limit int) (int64, error) {
	if limit <= 0 {
		limit = 1000
	}
	ctx, cancel := context.WithTimeout(ctx, s.bulkTimeout)
	defer cancel()
	res, err := s.db.ExecContext(ctx, "DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries WHERE received_at < $1 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)", before.UTC(), limit)
	if err != nil {
		return 0, s.wrap("purge deliveries", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}
