package postgres

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"igmirror/domain"
	"igmirror/internal/sqlitetime"
	"igmirror/sqlite"

	_ "github.com/mattn/go-sqlite3" // the "sqlite3" database/sql driver
)

// importBatch is how many rows one import transaction copies: an
// interrupted import keeps every batch it committed.
const importBatch = 1000

// ImportResult says what ImportSQLite copied.
type ImportResult struct {
	Messages          int64 // messages copied now
	MessagesSkipped   int64 // messages already in PostgreSQL (same mid, or copied by an earlier run)
	Deliveries        int64 // journal records copied now
	DeliveriesSkipped int64 // journal records copied by an earlier run
}

// ImportSQLite copies the SQLite store at sqlitePath into pg, keeping
// each message's mirror state as far as it still means something in the
// shared store: mirrored and disabled stay so; pending, dropped and failed
// become dropped with no owner, so that any instance's reconciler offers
// them (attempts and last error are kept). The delivery journal is copied
// too. It is idempotent: a message with a mid is the same message when
// its mid is already stored (the UNIQUE constraint decides), and every
// copied row, with or without a mid, carries a stable key in
// imported_from (a hash of its SQLite id, parties, direction and times),
// which is UNIQUE too. Rows go in batches of importBatch, each in its own
// transaction, so an interrupted import resumes by running it again. It
// prints a line per batch and a summary to out.
//
// The file's migrations are applied first (sqlite.Open, then Close), so a
// file written by an older version is read in the current schema; then it
// is read read-only.
func ImportSQLite(ctx context.Context, pg *Store, sqlitePath string, out io.Writer) (ImportResult, error) {
	var res ImportResult
	if _, err := os.Stat(sqlitePath); err != nil {
		return res, fmt.Errorf("import sqlite: %w", err)
	}
	ls, err := sqlite.Open(sqlite.Options{Path: sqlitePath, InstanceID: "import-sqlite", Logger: pg.log})
	if err != nil {
		return res, fmt.Errorf("import sqlite: migrate %s: %w", sqlitePath, err)
	}
	if err := ls.Close(); err != nil {
		return res, fmt.Errorf("import sqlite: close %s: %w", sqlitePath, err)
	}
	src, err := sql.Open("sqlite3", "file:"+sqlitePath+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		return res, fmt.Errorf("import sqlite: open %s: %w", sqlitePath, err)
	}
	defer src.Close()
	src.SetMaxOpenConns(1)

	if err := importMessages(ctx, pg, src, out, &res); err != nil {
		return res, err
	}
	if err := importDeliveries(ctx, pg, src, out, &res); err != nil {
		return res, err
	}
	fmt.Fprintf(out, "imported %d messages (%d already there) and %d deliveries (%d already there) from %s\n",
		res.Messages, res.MessagesSkipped, res.Deliveries, res.DeliveriesSkipped, sqlitePath)
	return res, nil
}

// importedMsg is a message as read from SQLite, with the columns the
// import keeps.
type importedMsg struct {
	domain.Message
	key string
}

// importKey is a row's stable key: the same row of the same file always
// gets the same one, rows of two files practically never.
func importKey(kind string, id int64, parts ...string) string {
	h := sha256.New()
	h.Write([]byte(strconv.FormatInt(id, 10)))
	for _, p := range parts {
		h.Write([]byte{0})
		h.Write([]byte(p))
	}
	return "sqlite:" + kind + ":" + hex.EncodeToString(h.Sum(nil)[:16])
}

const sqliteMessageCols = "id, instagram_message_id, sender_id, recipient_id, direction, message_text, timestamp, created_at, " +
	"mirror_status, user_id, attachments, reply_to_mid, standby, deleted, deleted_at, original_text, edit_count, " +
	"mirror_attempts, mirror_last_error, mirror_last_attempt_at, mirrored_at, mirror_degraded"

func readSQLiteMessages(ctx context.Context, src *sql.DB, after int64) ([]importedMsg, error) {
	rows, err := src.QueryContext(ctx, "SELECT "+sqliteMessageCols+" FROM messages WHERE id > ? ORDER BY id LIMIT ?", after, importBatch)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []importedMsg
	for rows.Next() {
		var (
			m                                    importedMsg
			mid, original                        sql.NullString
			direction, status                    string
			ts, created                          liteTime
			deletedAt, lastAttemptAt, mirroredAt liteTime
		)
		if err := rows.Scan(&m.ID, &mid, &m.SenderID, &m.RecipientID, &direction, &m.MessageText, &ts, &created,
			&status, &m.UserID, &m.Attachments, &m.ReplyToMID, &m.Standby, &m.Deleted, &deletedAt, &original, &m.EditCount,
			&m.MirrorAttempts, &m.MirrorLastError, &lastAttemptAt, &mirroredAt, &m.MirrorDegraded); err != nil {
			return nil, err
		}
		if mid.Valid {
			m.InstagramMessageID = &mid.String
		}
		if original.Valid {
			m.OriginalText = &original.String
		}
		m.Direction, m.MirrorStatus = domain.Direction(direction), domain.MirrorStatus(status)
		m.Timestamp, m.CreatedAt = ts.T, created.T
		m.DeletedAt, m.MirrorLastAttemptAt, m.MirroredAt = deletedAt.Ptr(), lastAttemptAt.Ptr(), mirroredAt.Ptr()
		switch m.MirrorStatus {
		case domain.MirrorMirrored, domain.MirrorDisabled:
		default:
			// Its owner was a process of the old instance: any reconciler
			// may offer it now.
			m.MirrorStatus = domain.MirrorDropped
		}
		m.key = importKey("message", m.ID, m.SenderID, m.RecipientID, direction,
			m.Timestamp.Format(time.RFC3339Nano), m.CreatedAt.Format(time.RFC3339Nano))
		out = append(out, m)
	}
	return out, rows.Err()
}

// importMessagesSQL inserts a batch of imported messages; any unique
// violation (mid, imported_from) skips the row.
const importMessagesSQL = `INSERT INTO messages (instagram_message_id, sender_id, recipient_id, direction, message_text, timestamp, created_at,
	mirror_status, user_id, attachments, reply_to_mid, standby, deleted, deleted_at, original_text, edit_count,
	mirror_attempts, mirror_last_error, mirror_last_attempt_at, mirrored_at, mirror_degraded, imported_from)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::timestamptz[],
	$8::text[], $9::text[], $10::text[], $11::text[], $12::boolean[], $13::boolean[], $14::timestamptz[], $15::text[], $16::integer[],
	$17::integer[], $18::text[], $19::timestamptz[], $20::timestamptz[], $21::boolean[], $22::text[])
ON CONFLICT DO NOTHING`

func importMessages(ctx context.Context, pg *Store, src *sql.DB, out io.Writer, res *ImportResult) error {
	var after int64
	for {
		batch, err := readSQLiteMessages(ctx, src, after)
		if err != nil {
			return fmt.Errorf("import sqlite: read messages after id %d: %w", after, err)
		}
		if len(batch) == 0 {
			return nil
		}
		n := len(batch)
		var (
			mid                                         []*string
			sender, recipient, direction, text          []string
			ts, created                                 []time.Time
			status, user, attachments, replyTo, lastErr []string
			standby, deleted, degraded                  []bool
			deletedAt, lastAttempt, mirroredAt          []*time.Time
			original, keys                              []*string
			edits, attempts                             []int
		)
		for i := range batch {
			m := &batch[i]
			mid = append(mid, m.InstagramMessageID)
			sender, recipient = append(sender, m.SenderID), append(recipient, m.RecipientID)
			direction, text = append(direction, string(m.Direction)), append(text, m.MessageText)
			ts, created = append(ts, m.Timestamp), append(created, m.CreatedAt)
			status, user = append(status, string(m.MirrorStatus)), append(user, m.UserID)
			attachments, replyTo = append(attachments, m.Attachments), append(replyTo, m.ReplyToMID)
			standby, deleted = append(standby, m.Standby), append(deleted, m.Deleted)
			deletedAt, original = append(deletedAt, m.DeletedAt), append(original, m.OriginalText)
			edits, attempts = append(edits, m.EditCount), append(attempts, m.MirrorAttempts)
			lastErr, lastAttempt = append(lastErr, m.MirrorLastError), append(lastAttempt, m.MirrorLastAttemptAt)
			mirroredAt, degraded = append(mirroredAt, m.MirroredAt), append(degraded, m.MirrorDegraded)
			keys = append(keys, &m.key)
		}
		copied, err := pg.importTx(ctx, importMessagesSQL, mid, sender, recipient, direction, text, ts, created,
			status, user, attachments, replyTo, standby, deleted, deletedAt, original, edits,
			attempts, lastErr, lastAttempt, mirroredAt, degraded, keys)
		if err != nil {
			return fmt.Errorf("import sqlite: copy messages after id %d: %w", after, err)
		}
		res.Messages += copied
		res.MessagesSkipped += int64(n) - copied
		after = batch[n-1].ID
		fmt.Fprintf(out, "messages: up to sqlite id %d: %d read, %d copied\n", after, n, copied)
	}
}

// importTx runs one import statement in a transaction of its own and
// returns how many rows it inserted.
func (s *Store) importTx(ctx context.Context, query string, args ...any) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, s.bulkTimeout)
	defer cancel()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, s.wrap("begin", err)
	}
	defer func() { _ = tx.Rollback() }()
	r, err := tx.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, s.wrap("insert", err)
	}
	n, _ := r.RowsAffected()
	if err := tx.Commit(); err != nil {
		return 0, s.wrap("commit", err)
	}
	return n, nil
}

const importDeliveriesSQL = `INSERT INTO deliveries (received_at, signature, body, stored, duplicates, unsent, edited, items, imported_from)
SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::bytea[], $4::integer[], $5::integer[], $6::integer[], $7::integer[], $8::text[], $9::text[])
ON CONFLICT DO NOTHING`

func importDeliveries(ctx context.Context, pg *Store, src *sql.DB, out io.Writer, res *ImportResult) error {
	var exists int
	if err := src.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'deliveries'").Scan(&exists); err != nil {
		return fmt.Errorf("import sqlite: look for the delivery journal: %w", err)
	}
	if exists == 0 {
		return nil
	}
	var after int64
	for {
		rows, err := src.QueryContext(ctx, "SELECT id, received_at, signature, body, stored, duplicates, unsent, edited, items FROM deliveries WHERE id > ? ORDER BY id LIMIT ?", after, importBatch)
		if err != nil {
			return fmt.Errorf("import sqlite: read deliveries after id %d: %w", after, err)
		}
		var (
			at                          []time.Time
			sig, items, keys            []string
			bodies                      [][]byte
			stored, dups, unsent, edits []int
			last                        int64
		)
		for rows.Next() {
			var id int64
			var t liteTime
			var sg, it string
			var body []byte
			var st, du, un, ed int
			if err := rows.Scan(&id, &t, &sg, &body, &st, &du, &un, &ed, &it); err != nil {
				rows.Close()
				return fmt.Errorf("import sqlite: read deliveries after id %d: %w", after, err)
			}
			if body == nil {
				body = []byte{}
			}
			sum := sha256.Sum256(body)
			at, sig, bodies, items = append(at, t.T), append(sig, sg), append(bodies, body), append(items, it)
			stored, dups, unsent, edits = append(stored, st), append(dups, du), append(unsent, un), append(edits, ed)
			keys = append(keys, importKey("delivery", id, t.T.Format(time.RFC3339Nano), sg, hex.EncodeToString(sum[:])))
			last = id
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("import sqlite: read deliveries after id %d: %w", after, err)
		}
		if len(keys) == 0 {
			return nil
		}
		copied, err := pg.importTx(ctx, importDeliveriesSQL, at, sig, bodies, stored, dups, unsent, edits, items, keys)
		if err != nil {
			return fmt.Errorf("import sqlite: copy deliveries after id %d: %w", after, err)
		}
		res.Deliveries += copied
		res.DeliveriesSkipped += int64(len(keys)) - copied
		after = last
		fmt.Fprintf(out, "deliveries: up to sqlite id %d: %d read, %d copied\n", after, len(keys), copied)
	}
}

// liteTime is a SQLite DATETIME cut to microseconds, PostgreSQL's
// precision.
type liteTime struct{ sqlitetime.Time }

// Scan implements sql.Scanner.
func (lt *liteTime) Scan(v any) error {
	if err := lt.Time.Scan(v); err != nil {
		return err
	}
	lt.T = lt.T.Truncate(time.Microsecond)
	return nil
}
