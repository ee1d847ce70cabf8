package domain

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"gorm.io/gorm"
)

// Where the mid keys live. A UNIQUE index on messages.mid_key took every
// new key at a random place in an index of every key: each commit wrote
// one index page per message to the WAL (and the checkpointer copied it
// back), which was most of the writer's work past a million rows.
//
// Now a stored mid's key is in one of two places:
//
//   - mid_keys, a table (mid_key, id) keyed by mid_key;
//   - the writer's key buffer, in memory, for the newest messages.
//
// The key space is cut into midRanges equal ranges. For every
// midMoveEvery new keys, the writer moves one range's buffered keys into
// mid_keys, in key order, in the same transaction as the messages it is
// storing, and records in store_meta the last message id that range now
// covers. The ranges take turns. A move writes each mid_keys page it touches once,
// for all the keys it gets there, and no commit moves more than about
// midMoveEvery keys; the messages' own commits write no random page.
//
// The buffer is only ever what the rows say: at open it is rebuilt from
// the messages above each range's mark, and it changes only when a
// commit succeeds, so a rolled-back transaction leaves it as it was.
//
// The writer is the only one that places keys. It looks a key up in its
// buffer, in the keys of the transaction in progress, then in mid_keys
// (a read, one page per key, writing nothing), and stores a message only
// under a key no other row holds. mid_keys' primary key refuses a key
// moved twice, which rolls the commit back. A second process writing the
// same file would not see the buffer, so OpenStore locks the file for
// its process (lock.go).

const (
	// midRanges is how many key ranges the buffer is moved in.
	midRanges = 32
	// defaultMIDMoveEvery is how many new keys make the writer move the
	// next range: the buffer holds about midRanges × this many keys
	// (131,072, about 5 MiB).
	defaultMIDMoveEvery = 4096
)

const midKeysDDL = "CREATE TABLE IF NOT EXISTS mid_keys (mid_key INTEGER PRIMARY KEY, id INTEGER NOT NULL)"

// midIndex is the UNIQUE index on messages.mid_key that stores had before
// mid_keys; migrateMIDTables replaces it.
const midIndex = "idx_messages_mid_key"

// midMark is the store_meta key of range r's mark: every message up to
// that id whose key is in range r has its key in mid_keys.
func midMark(r int) string { return fmt.Sprintf("mid_keys_upto_%02d", r) }

// midRangeOf is the range of key k: its top 5 bits, counted from
// int64's minimum.
func midRangeOf(k int64) int { return int((uint64(k) ^ 1<<63) >> 59) }

// midBuffer is the writer's share of the mid keys. Only the writer
// goroutine touches it.
type midBuffer struct {
	keys  [midRanges]map[int64]int64 // committed keys not in mid_keys: key → message id
	marks [midRanges]int64           // range r's mark, as in store_meta
	every int                        // new keys between moves
	added int                        // keys buffered since the last move
	next  int                        // the range moved next

	// The transaction in progress: the keys it placed, the ranges it
	// moved with their new mark, and what added becomes once it commits.
	tx         map[int64]int64
	moving     []int
	movingUpto int64
	addedAfter int

	sorted []int64 // a move's keys in order, reused
}

// migrateMIDTables creates mid_keys and, in a store that kept its keys
// under the UNIQUE index, moves every key into it, marks every range up
// to the last message, and drops the index, in one transaction. It runs
// after migrateUserIndex, which creates store_meta.
func migrateMIDTables(db *gorm.DB, log *slog.Logger) error {
	old, err := schemaHas(db, "index", midIndex)
	if err != nil {
		return err
	}
	if !old {
		return execEach(db, midKeysDDL)
	}
	start := time.Now()
	var moved int64
	err = db.Transaction(func(tx *gorm.DB) error {
		if err := execEach(tx, midKeysDDL); err != nil {
			return err
		}
		res := tx.Exec("INSERT INTO mid_keys (mid_key, id) SELECT mid_key, id FROM messages WHERE mid_key IS NOT NULL ORDER BY mid_key")
		if res.Error != nil {
			return fmt.Errorf("fill mid_keys: %w", res.Error)
		}
		moved = res.RowsAffected
		for r := range midRanges {
			// WHERE true: without it SQLite reads ON CONFLICT as a join's ON.
			err := tx.Exec("INSERT INTO store_meta (key, value) SELECT ?, COALESCE(MAX(id), 0) FROM messages WHERE true ON CONFLICT (key) DO UPDATE SET value = excluded.value", midMark(r)).Error
			if err != nil {
				return fmt.Errorf("mark mid key ranges: %w", err)
			}
		}
		return tx.Exec("DROP INDEX " + midIndex).Error
	})
	if err != nil {
		return fmt.Errorf("move mid keys into mid_keys: %w", err)
	}
	log.Info("sqlite migration: mid keys moved into mid_keys", "keys", moved, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// loadMIDBuffer reads the ranges' marks and buffers the keys of every
// message above its range's mark.
func loadMIDBuffer(db *gorm.DB, every int) (*midBuffer, error) {
	b := &midBuffer{every: every, tx: make(map[int64]int64)}
	var rows []struct {
		Key   string
		Value int64
	}
	if err := db.Raw("SELECT key, value FROM store_meta WHERE key LIKE 'mid_keys_upto_%'").Scan(&rows).Error; err != nil {
		return nil, fmt.Errorf("read mid key marks: %w", err)
	}
	for r := range midRanges {
		for _, row := range rows {
			if row.Key == midMark(r) {
				b.marks[r] = row.Value
			}
		}
	}
	low := slices.Min(b.marks[:])
	for r := range midRanges {
		b.keys[r] = make(map[int64]int64)
		if b.marks[r] == low {
			b.next = r // the range that waited longest goes first
		}
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, err
	}
	q, err := sqlDB.Query("SELECT id, mid_key FROM messages WHERE id > ? AND mid_key IS NOT NULL", low)
	if err != nil {
		return nil, fmt.Errorf("buffer mid keys: %w", err)
	}
	defer q.Close()
	for q.Next() {
		var id, k int64
		if err := q.Scan(&id, &k); err != nil {
			return nil, fmt.Errorf("buffer mid keys: %w", err)
		}
		if r := midRangeOf(k); id > b.marks[r] {
			b.keys[r][k] = id
		}
	}
	if err := q.Err(); err != nil {
		return nil, fmt.Errorf("buffer mid keys: %w", err)
	}
	return b, nil
}

// begin starts a transaction's share. The maps are cleared, not made
// anew: they keep their room, so a busy writer allocates none of it again.
func (b *midBuffer) begin() {
	clear(b.tx)
	b.moving = b.moving[:0]
}

// commit applies the transaction's share once it has committed: the
// moved range leaves the buffer, the new keys join it.
func (b *midBuffer) commit() {
	for _, r := range b.moving {
		clear(b.keys[r])
		b.marks[r] = b.movingUpto
	}
	if len(b.moving) > 0 {
		b.added = b.addedAfter
	}
	for k, id := range b.tx {
		b.keys[midRangeOf(k)][k] = id
	}
	b.added += len(b.tx)
	b.begin()
}

// holder is the id of the message holding k in the buffer or the
// transaction in progress.
func (b *midBuffer) holder(k int64) (int64, bool) {
	if id, ok := b.tx[k]; ok {
		return id, true
	}
	id, ok := b.keys[midRangeOf(k)][k]
	return id, ok
}

// len is how many keys the buffer holds.
func (b *midBuffer) len() int {
	n := 0
	for _, m := range b.keys {
		n += len(m)
	}
	return n
}

// heldSQL looks up n keys in mid_keys.
func heldSQL(n int) string {
	return "SELECT mid_key, id FROM mid_keys WHERE mid_key IN (" + valuesSQL("", "?", n) + ")"
}

// keyInsertSQL inserts n keys into mid_keys. A key already there is a
// fault: the transaction rolls back.
func keyInsertSQL(n int) string {
	return valuesSQL("INSERT OR ROLLBACK INTO mid_keys (mid_key, id) VALUES ", "(?,?)", n)
}

// keyHolders returns the id of the message holding each of keys that
// is held, wherever the key is.
func (s *Store) keyHolders(ctx context.Context, sqlTx *sql.Tx, keys []int64) (map[int64]int64, error) {
	held := make(map[int64]int64)
	args := make([]any, 0, min(len(keys), rowsPerStmt))
	for _, k := range keys {
		if id, ok := s.mids.holder(k); ok {
			held[k] = id
		} else {
			args = append(args, k)
		}
	}
	err := eachSized(s.held, args, func(part []any, st *sql.Stmt) error {
		rows, err := sqlTx.StmtContext(ctx, st).QueryContext(ctx, part...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var k, id int64
			if err := rows.Scan(&k, &id); err != nil {
				return err
			}
			held[k] = id
		}
		return rows.Err()
	})
	return held, err
}

// heldMIDs returns the mid held under each of keys that is held.
func (s *Store) heldMIDs(ctx context.Context, sqlTx *sql.Tx, keys []int64) (map[int64]string, error) {
	holders, err := s.keyHolders(ctx, sqlTx, keys)
	if err != nil || len(holders) == 0 {
		return nil, err
	}
	byID := make(map[int64]string, len(holders))
	ids := make([]int64, 0, len(holders))
	for _, id := range holders {
		ids = append(ids, id)
	}
	err = inChunks(ids, func(part []int64) error {
		rows, err := sqlTx.QueryContext(ctx, "SELECT id, instagram_message_id FROM messages WHERE id IN ("+placeholders(len(part))+")", int64Args(part)...)
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
			byID[id] = mid.String
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	held := make(map[int64]string, len(holders))
	for k, id := range holders {
		mid, ok := byID[id]
		if !ok {
			return nil, fmt.Errorf("mid key %#x is held by message %d, which does not exist", k, id)
		}
		held[k] = mid
	}
	return held, nil
}

// midIDs returns the ids of the stored messages that may have one of
// mids: those holding any of their probe keys. The caller matches the
// mids themselves.
func (s *Store) midIDs(ctx context.Context, sqlTx *sql.Tx, mids []string) ([]int64, error) {
	held, err := s.keyHolders(ctx, sqlTx, midProbeKeys(mids))
	if err != nil {
		return nil, err
	}
	ids := make([]int64, 0, len(held))
	for _, id := range held {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids, nil
}

// moveMIDKeys moves buffered keys into mid_keys, in key order, a range
// for every midMoveEvery keys that joined the buffer since the last
// move (one, with the default sizes, as a commit holds at most 2,000
// messages), and marks each moved range up to the last message
// committed before this transaction (first is this transaction's first
// id). The buffer itself changes when the transaction commits
// (midBuffer.commit).
func (s *Store) moveMIDKeys(tx *gorm.DB, first int64) error {
	b := s.mids
	if b.added < b.every {
		return nil
	}
	sqlTx, err := sqlTxOf(tx)
	if err != nil {
		return fmt.Errorf("move mid keys: %w", err)
	}
	ctx := tx.Statement.Context
	pending := b.added
	for pending >= b.every && len(b.moving) < midRanges {
		r := b.next
		// The next move takes the next range even if this one fails: a
		// range that cannot move (a key already in mid_keys, which the
		// writer never does) then fails one commit in midRanges moves,
		// not every commit.
		b.next = (r + 1) % midRanges
		if err := s.moveRange(ctx, sqlTx, r, first-1); err != nil {
			return err
		}
		b.moving = append(b.moving, r)
		pending -= b.every
	}
	b.movingUpto, b.addedAfter = first-1, pending
	return nil
}

// moveRange inserts range r's buffered keys into mid_keys, in key order,
// and writes its mark upto.
func (s *Store) moveRange(ctx context.Context, sqlTx *sql.Tx, r int, upto int64) error {
	b := s.mids
	keys := b.sorted[:0]
	for k := range b.keys[r] {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b.sorted = keys
	args := make([]any, 0, 2*min(len(keys), rowsPerStmt))
	err := eachSized(s.keyIns, keys, func(part []int64, st *sql.Stmt) error {
		args = args[:0]
		for _, k := range part {
			args = append(args, k, b.keys[r][k])
		}
		_, err := sqlTx.StmtContext(ctx, st).ExecContext(ctx, args...)
		return err
	})
	if err != nil {
		return fmt.Errorf("move mid keys: %w", err)
	}
	if _, err := sqlTx.ExecContext(ctx, "INSERT INTO store_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
		midMark(r), upto); err != nil {
		return fmt.Errorf("move mid keys: %w", err)
	}
	return nil
}
