package domain

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"math"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

var testT0 = time.Date(2025, 11, 21, 23, 6, 40, 0, time.UTC)

func openTestStore(t *testing.T, path string) *Store {
	t.Helper()
	s, err := OpenStore(StoreOptions{Path: path, Synchronous: "NORMAL"})
	if err != nil {
		t.Fatalf("OpenStore: %v", err)
	}
	return s
}

func closeStore(t *testing.T, s *Store) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// rawDB opens the store's file directly, for arranging states that the
// store itself would never write.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func execAll(t *testing.T, db *sql.DB, stmts ...string) {
	t.Helper()
	for _, q := range stmts {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// insertRaw stores a row with mid under key (nil: no key), as no code
// path of the store would choose it.
func insertRaw(t *testing.T, db *sql.DB, id int64, mid string, key *int64) {
	t.Helper()
	_, err := db.Exec(`INSERT INTO messages (id, instagram_message_id, mid_key, sender_id, recipient_id, direction, message_text, timestamp, created_at, mirror_status, user_id)
VALUES (?, ?, ?, 'c1', 'b1', 'inbound', ?, ?, ?, 'pending', 'c1')`, id, mid, key, "raw "+mid, testT0, testT0)
	if err != nil {
		t.Fatalf("insert raw %s: %v", mid, err)
	}
}

// moveKeysUpTo moves the keys of every message up to id into mid_keys
// and marks every range up to id, as the writer's moves would have.
func moveKeysUpTo(t *testing.T, db *sql.DB, id int64) {
	t.Helper()
	execAll(t, db, fmt.Sprintf("INSERT INTO mid_keys (mid_key, id) SELECT mid_key, id FROM messages WHERE id <= %d AND mid_key IS NOT NULL", id))
	for r := range midRanges {
		execAll(t, db, fmt.Sprintf("INSERT INTO store_meta (key, value) VALUES ('%s', %d) ON CONFLICT (key) DO UPDATE SET value = excluded.value", midMark(r), id))
	}
}

func testMsg(t *testing.T, mid, text string) Message {
	t.Helper()
	m := Message{SenderID: "c1", RecipientID: "b1", Direction: Inbound, MessageText: text, Timestamp: testT0, MirrorStatus: MirrorPending}
	if mid != "" {
		m.InstagramMessageID = &mid
	}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	return m
}

func ptr[T any](v T) *T { return &v }

// TestMIDKeyIsStable pins the key function: stored keys are only found
// again if it never changes.
func TestMIDKeyIsStable(t *testing.T) {
	mid := "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDAwMDAwMDAwMDAxOjM0MDI4MjM2Njg0MTcxMDMwMTI0NDI3NjA1NjE3MjU5NzYyMjM1Mg"
	// SHA-256 of 0x00 followed by the mid (and of 0x01 followed by it):
	// the first 8 bytes, big-endian, as int64.
	if got, want := MIDKey(mid), int64(-0x40807cfae3b60a4b); got != want {
		t.Errorf("MIDKey = %#x, want %#x", got, want)
	}
	if got, want := midKeyProbe(mid, 1), int64(0x3d16d7c351dcc7a2); got != want {
		t.Errorf("probe 1 = %#x, want %#x", got, want)
	}
	long := string(make([]byte, 400)) // longer than the stack buffer
	if midKeyProbe(long, 0) == midKeyProbe(long[:399], 0) {
		t.Error("a long mid and its prefix share a key")
	}
}

// TestCollidingMIDsAreStoredOnce arranges two other mids on the first two
// probe keys of a mid, one in mid_keys and one in the writer's buffer:
// the mid must be stored
// (under its third key), never taken for a duplicate, and then found,
// deduplicated and unsent like any.
func TestCollidingMIDsAreStoredOnce(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "store.db")
	closeStore(t, openTestStore(t, path))
	const target = "mid.target"
	db := rawDB(t, path)
	insertRaw(t, db, 1, "squatter-0", ptr(midKeyProbe(target, 0)))
	moveKeysUpTo(t, db, 1)
	insertRaw(t, db, 2, "squatter-1", ptr(midKeyProbe(target, 1)))
	_ = db.Close()

	s := openTestStore(t, path)
	defer closeStore(t, s)
	res, err := s.Save(ctx, []Message{testMsg(t, target, "first"), testMsg(t, "mid.plain", "plain"), testMsg(t, target, "same mid again")}, nil)
	if err != nil {
		t.Fatalf("Save: %v", err)
	}
	if len(res.New) != 2 || res.Duplicates != 1 || res.New[0].MID() != target || res.New[1].MID() != "mid.plain" {
		t.Fatalf("Save: %d new %v, %d duplicates; want the target and the plain one new, 1 duplicate", len(res.New), res.New, res.Duplicates)
	}
	got, err := s.GetByMID(ctx, target)
	if err != nil {
		t.Fatalf("GetByMID: %v", err)
	}
	if got.MessageText != "first" || got.MIDKey == nil || *got.MIDKey != midKeyProbe(target, 2) {
		t.Fatalf("stored target: text %q key %v, want \"first\" under probe key 2 %#x", got.MessageText, got.MIDKey, midKeyProbe(target, 2))
	}

	res, err = s.Save(ctx, []Message{testMsg(t, target, "redelivered")}, []string{target})
	if err != nil {
		t.Fatalf("Save again: %v", err)
	}
	if len(res.New) != 0 || res.Duplicates != 1 || res.Unsent != 1 {
		t.Fatalf("redelivery with unsend: %d new, %d duplicates, %d unsent; want 0, 1, 1", len(res.New), res.Duplicates, res.Unsent)
	}
	for _, id := range []int64{1, 2} {
		m, err := s.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if m.Deleted {
			t.Errorf("squatter %d was marked unsent with the target", id)
		}
	}
	if n := rowsWithMID(t, s, target); n != 1 {
		t.Fatalf("rows with the target mid: %d, want 1", n)
	}
}

// rowsWithMID counts the stored rows of mid.
func rowsWithMID(t *testing.T, s *Store, mid string) int64 {
	t.Helper()
	var n int64
	if err := s.rdb.Raw("SELECT COUNT(*) FROM messages WHERE instagram_message_id = ?", mid).Scan(&n).Error; err != nil {
		t.Fatalf("count rows of mid %s: %v", mid, err)
	}
	return n
}

// TestAllProbeKeysTaken fails the save that cannot place its mid, and
// only that save.
func TestAllProbeKeysTaken(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "store.db")
	closeStore(t, openTestStore(t, path))
	db := rawDB(t, path)
	for p := range maxMIDProbes {
		insertRaw(t, db, int64(p+1), fmt.Sprintf("squatter-%d", p), ptr(midKeyProbe("mid.unlucky", p)))
	}
	moveKeysUpTo(t, db, maxMIDProbes/2) // half in mid_keys, half buffered
	_ = db.Close()

	s := openTestStore(t, path)
	defer closeStore(t, s)
	if _, err := s.Save(ctx, []Message{testMsg(t, "mid.unlucky", "x")}, nil); err == nil {
		t.Fatal("Save of a mid with every probe key taken: no error")
	}
	res, err := s.Save(ctx, []Message{testMsg(t, "mid.lucky", "y")}, nil)
	if err != nil || len(res.New) != 1 {
		t.Fatalf("the next save: %v, %d new; want it stored", err, len(res.New))
	}
	if _, err := s.GetByMID(ctx, "mid.unlucky"); err == nil {
		t.Fatal("the failed mid was stored")
	}
}

// oldSchema turns the store at path into the layout of stores made before
// mid_key: no key column or key tables, a unique index on the mid text.
func oldSchema(t *testing.T, db *sql.DB) {
	execAll(t, db,
		"DROP TABLE mid_keys",
		"DELETE FROM store_meta WHERE key LIKE 'mid_keys_upto_%'",
		"ALTER TABLE messages DROP COLUMN mid_key",
		"CREATE UNIQUE INDEX "+oldMIDIndex+" ON messages(instagram_message_id)")
}

// TestMigrateOldStore opens a store of the old layout holding more rows
// than one migration chunk: every mid gets its key, the old index goes,
// and the old mids are deduplicated and found as before.
func TestMigrateOldStore(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "store.db")
	closeStore(t, openTestStore(t, path))
	db := rawDB(t, path)
	oldSchema(t, db)
	const rows = 12_001
	execAll(t, db, fmt.Sprintf(`WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT %d)
INSERT INTO messages (id, instagram_message_id, sender_id, recipient_id, direction, message_text, timestamp, created_at, mirror_status, user_id)
SELECT x, CASE WHEN x %% 1000 = 0 THEN NULL ELSE 'old-' || x END, 'c1', 'b1', 'inbound', 'old ' || x, '2025-01-01 00:00:00+00:00', '2025-01-01 00:00:00+00:00', 'mirrored', 'c1' FROM c`, rows))
	_ = db.Close()

	s := openTestStore(t, path)
	defer closeStore(t, s)
	var unkeyed, oldIdx, keyed int64
	s.rdb.Raw("SELECT COUNT(*) FROM messages WHERE mid_key IS NULL AND instagram_message_id IS NOT NULL").Scan(&unkeyed)
	s.rdb.Raw("SELECT COUNT(*) FROM messages WHERE mid_key IS NOT NULL").Scan(&keyed)
	s.rdb.Raw("SELECT COUNT(*) FROM sqlite_master WHERE name IN (?, ?)", oldMIDIndex, midIndex).Scan(&oldIdx)
	checkKeyTables(t, s)
	if unkeyed != 0 || keyed != rows-rows/1000 || oldIdx != 0 {
		t.Fatalf("after migration: %d unkeyed, %d keyed (want %d), old index present %d", unkeyed, keyed, rows-rows/1000, oldIdx)
	}
	m, err := s.GetByMID(ctx, "old-11999")
	if err != nil || m.ID != 11999 {
		t.Fatalf("GetByMID(old-11999): id %d, %v", m.ID, err)
	}
	res, err := s.Save(ctx, []Message{testMsg(t, "old-7", "again"), testMsg(t, "new-1", "new")}, []string{"old-8"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Duplicates != 1 || len(res.New) != 1 || res.New[0].MID() != "new-1" || res.New[0].ID <= rows || res.Unsent != 1 {
		t.Fatalf("after migration: %d duplicates, %v new, %d unsent; want 1, [new-1 above id %d], 1", res.Duplicates, res.New, res.Unsent, rows)
	}
}

// TestMigrationResumes opens an old-layout store that a previous run
// keyed in part (the column exists, the old index is still there), with
// an unkeyed mid whose first key another row already holds.
func TestMigrationResumes(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "store.db")
	closeStore(t, openTestStore(t, path))
	db := rawDB(t, path)
	execAll(t, db, "DROP TABLE mid_keys", "DELETE FROM store_meta WHERE key LIKE 'mid_keys_upto_%'",
		"CREATE UNIQUE INDEX "+midIndex+" ON messages(mid_key)",
		"CREATE UNIQUE INDEX "+oldMIDIndex+" ON messages(instagram_message_id)")
	insertRaw(t, db, 1, "done-1", ptr(MIDKey("done-1")))
	insertRaw(t, db, 2, "squatter", ptr(MIDKey("todo-2")))
	insertRaw(t, db, 3, "todo-2", nil)
	insertRaw(t, db, 4, "todo-3", nil)
	_ = db.Close()

	s := openTestStore(t, path)
	defer closeStore(t, s)
	for id, want := range map[int64]int64{1: MIDKey("done-1"), 2: MIDKey("todo-2"), 3: midKeyProbe("todo-2", 1), 4: MIDKey("todo-3")} {
		m, err := s.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if m.MIDKey == nil || *m.MIDKey != want {
			t.Errorf("message %d (%s): key %v, want %#x", id, m.MID(), m.MIDKey, want)
		}
	}
	if m, err := s.GetByMID(ctx, "todo-2"); err != nil || m.ID != 3 {
		t.Fatalf("GetByMID(todo-2): id %d, %v; want 3", m.ID, err)
	}
	res, err := s.Save(ctx, []Message{testMsg(t, "todo-2", "again")}, nil)
	if err != nil || res.Duplicates != 1 {
		t.Fatalf("redelivery of a migrated colliding mid: %v, %d duplicates", err, res.Duplicates)
	}
}

// checkKeyTables fails the test unless every stored mid's key is in
// exactly one place, mid_keys or the writer's buffer, held by its own
// message, and each range's mark holds: every message up to it whose key
// is in the range has its key in mid_keys. (Call it after a Save has
// returned: the writer is then idle, and its commit happened before.)
func checkKeyTables(t *testing.T, s *Store) {
	t.Helper()
	type row struct{ id, key int64 }
	var msgs []row
	rows, err := s.rsql.Query("SELECT id, mid_key FROM messages WHERE mid_key IS NOT NULL")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.id, &r.key); err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, r)
	}
	_ = rows.Close()
	table := map[int64]int64{}
	rows, err = s.rsql.Query("SELECT mid_key, id FROM mid_keys")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k, id int64
		if err := rows.Scan(&k, &id); err != nil {
			t.Fatal(err)
		}
		table[k] = id
	}
	_ = rows.Close()
	b := s.mids
	if len(table)+b.len() != len(msgs) {
		t.Fatalf("%d keys in mid_keys and %d buffered for %d keyed messages", len(table), b.len(), len(msgs))
	}
	for _, m := range msgs {
		r := midRangeOf(m.key)
		id, inTable := table[m.key]
		bid, inBuf := b.keys[r][m.key]
		switch {
		case inTable && inBuf:
			t.Fatalf("message %d: key %#x both in mid_keys and buffered", m.id, m.key)
		case inTable && id != m.id, inBuf && bid != m.id:
			t.Fatalf("message %d: key %#x held for message %d/%d", m.id, m.key, id, bid)
		case !inTable && !inBuf:
			t.Fatalf("message %d: key %#x nowhere", m.id, m.key)
		case m.id <= b.marks[r] && !inTable:
			t.Fatalf("message %d: key %#x below range %d's mark %d but not in mid_keys", m.id, m.key, r, b.marks[r])
		case m.id > b.marks[r] && !inBuf:
			t.Fatalf("message %d: key %#x above range %d's mark %d but not buffered", m.id, m.key, r, b.marks[r])
		}
	}
}

// TestMigrateKeyIndexStore opens a store of the layout before mid_keys
// (a UNIQUE index on messages.mid_key), with a mid stored under its
// second probe key: the keys move into mid_keys, the index goes, and the
// stored mids are still found, deduplicated and unsent.
func TestMigrateKeyIndexStore(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "store.db")
	closeStore(t, openTestStore(t, path))
	db := rawDB(t, path)
	execAll(t, db, "DROP TABLE mid_keys", "DELETE FROM store_meta WHERE key LIKE 'mid_keys_upto_%'",
		"CREATE UNIQUE INDEX "+midIndex+" ON messages(mid_key)")
	for i := int64(1); i <= 300; i++ {
		mid := fmt.Sprintf("old-%d", i)
		insertRaw(t, db, i, mid, ptr(MIDKey(mid)))
	}
	insertRaw(t, db, 301, "squatter", ptr(MIDKey("moved")))
	insertRaw(t, db, 302, "moved", ptr(midKeyProbe("moved", 1)))
	insertRaw(t, db, 303, "no-mid", nil)
	execAll(t, db, "UPDATE messages SET instagram_message_id = NULL WHERE id = 303")
	_ = db.Close()

	s := openTestStore(t, path)
	defer closeStore(t, s)
	checkKeyTables(t, s)
	var idx, inKeys int64
	s.rdb.Raw("SELECT COUNT(*) FROM sqlite_master WHERE name = ?", midIndex).Scan(&idx)
	s.rdb.Raw("SELECT COUNT(*) FROM mid_keys").Scan(&inKeys)
	if idx != 0 || inKeys != 302 || s.mids.len() != 0 || s.mids.marks[0] != 303 {
		t.Fatalf("after migration: index present %d, %d keys in mid_keys, %d buffered, mark %d; want 0, 302, 0, 303", idx, inKeys, s.mids.len(), s.mids.marks[0])
	}
	if m, err := s.GetByMID(ctx, "moved"); err != nil || m.ID != 302 {
		t.Fatalf("GetByMID(moved): id %d, %v; want 302", m.ID, err)
	}
	res, err := s.Save(ctx, []Message{testMsg(t, "moved", "again"), testMsg(t, "old-9", "again"), testMsg(t, "fresh", "new")}, []string{"moved"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Duplicates != 2 || len(res.New) != 1 || res.New[0].MID() != "fresh" || res.Unsent != 1 {
		t.Fatalf("after migration: %d duplicates, %v new, %d unsent; want 2, [fresh], 1", res.Duplicates, res.New, res.Unsent)
	}
	if m, err := s.Get(ctx, 301); err != nil || m.Deleted {
		t.Fatalf("the squatter: deleted %v, %v; want it untouched", m.Deleted, err)
	}
	checkKeyTables(t, s)
}

// TestMIDKeysMove stores messages across many range moves (one every 7
// keys): after every save each key is in exactly one place and the marks
// hold, both places are in use, and every stored mid is found, refused
// when delivered again and unsent; the same after a restart, which
// rebuilds the buffer from the rows.
func TestMIDKeysMove(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "s.db")
	open := func() *Store {
		s, err := OpenStore(StoreOptions{Path: path, MIDMoveEvery: 7})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open()
	const n = 600
	var mids []string
	for i := 0; i < n; i += 3 {
		batch := make([]Message, 0, 3)
		for j := i; j < i+3; j++ {
			mid := fmt.Sprintf("mid.move.%d", j)
			mids = append(mids, mid)
			batch = append(batch, testMsg(t, mid, mid))
		}
		if res, err := s.Save(ctx, batch, nil); err != nil || len(res.New) != 3 {
			t.Fatalf("save %d: %v, %d new", i, err, len(res.New))
		}
		checkKeyTables(t, s)
	}
	var moved int64
	s.rdb.Raw("SELECT COUNT(*) FROM mid_keys").Scan(&moved)
	if buffered := s.mids.len(); buffered == 0 || moved == 0 {
		t.Fatalf("%d keys buffered, %d in mid_keys; want both in use", buffered, moved)
	}
	before := s.mids.keys
	closeStore(t, s)

	s = open()
	defer closeStore(t, s)
	checkKeyTables(t, s)
	for r := range midRanges {
		if !maps.Equal(s.mids.keys[r], before[r]) {
			t.Fatalf("after a restart range %d buffers %d keys, before it %d (or others)", r, len(s.mids.keys[r]), len(before[r]))
		}
	}
	again := make([]Message, 0, n)
	for _, mid := range mids {
		again = append(again, testMsg(t, mid, "again"))
	}
	res, err := s.Save(ctx, again, mids[:50])
	if err != nil || len(res.New) != 0 || res.Duplicates != n || res.Unsent != 50 {
		t.Fatalf("redelivery of all: %v, %d new, %d duplicates, %d unsent; want 0, %d, 50", err, len(res.New), res.Duplicates, res.Unsent, n)
	}
	for _, mid := range mids {
		if m, err := s.GetByMID(ctx, mid); err != nil || m.MessageText != mid {
			t.Fatalf("GetByMID(%s): %q, %v", mid, m.MessageText, err)
		}
	}
	if _, err := s.GetByMID(ctx, "mid.never"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetByMID of an unknown mid: %v, want ErrNotFound", err)
	}
}

// TestMIDRangeOf: the ranges cut the int64 keys in order, into midRanges
// equal parts.
func TestMIDRangeOf(t *testing.T) {
	for _, c := range []struct {
		key  int64
		want int
	}{{math.MinInt64, 0}, {math.MinInt64 + 1<<59 - 1, 0}, {math.MinInt64 + 1<<59, 1}, {-1, 15}, {0, 16}, {1 << 59, 17}, {math.MaxInt64, 31}} {
		if got := midRangeOf(c.key); got != c.want {
			t.Errorf("midRangeOf(%#x) = %d, want %d", c.key, got, c.want)
		}
	}
}

// TestKeyInBothPlacesFailsOneMove: a key both buffered and in mid_keys
// (which the writer never does) fails the commit that moves its range,
// which rolls back whole: the failed messages are not stored, their keys
// do not stay in the buffer, and later moves take the other ranges, so
// the store goes on (one commit in midRanges moves fails).
func TestKeyInBothPlacesFailsOneMove(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "store.db")
	closeStore(t, openTestStore(t, path))
	db := rawDB(t, path)
	insertRaw(t, db, 1, "twice", ptr(MIDKey("twice")))
	execAll(t, db, fmt.Sprintf("INSERT INTO mid_keys (mid_key, id) VALUES (%d, 1)", MIDKey("twice")))
	_ = db.Close()

	s, err := OpenStore(StoreOptions{Path: path, MIDMoveEvery: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer closeStore(t, s)
	var failed []string
	for i := range 2 * midRanges {
		mid := fmt.Sprintf("m%d", i)
		if _, err := s.Save(ctx, []Message{testMsg(t, mid, "x")}, nil); err != nil {
			failed = append(failed, mid)
		}
	}
	if len(failed) == 0 || len(failed) > 3 {
		t.Fatalf("%d of %d saves failed (%v); want one or a few: one per pass over the ranges", len(failed), 2*midRanges, failed)
	}
	for _, mid := range failed {
		if _, err := s.GetByMID(ctx, mid); !errors.Is(err, ErrNotFound) {
			t.Fatalf("failed save of %s: GetByMID %v, want not stored", mid, err)
		}
	}
	s.mids.every = 1 << 30 // no more moves: the retries below must not meet the bad range
	for _, mid := range failed {
		res, err := s.Save(ctx, []Message{testMsg(t, mid, "again")}, nil)
		if err != nil || len(res.New) != 1 {
			t.Fatalf("saving %s again: %v, %d new; want it stored (its failed attempt left no key behind)", mid, err, len(res.New))
		}
	}
}

// TestSecondProcessIsRefused: a store whose file another store holds
// does not open (the lock is per open file description, so a second open
// in the same process stands in for a second process).
func TestSecondProcessIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	s := openTestStore(t, path)
	if _, err := OpenStore(StoreOptions{Path: path}); !errors.Is(err, ErrInUse) {
		t.Fatalf("second OpenStore: %v, want ErrInUse", err)
	}
	closeStore(t, s)
	closeStore(t, openTestStore(t, path)) // free again once closed
}

// TestMIDBufferStaysBounded: under concurrent saves (group commits of
// many requests) the ranges keep moving, so the buffer holds about
// midRanges × MIDMoveEvery keys however many messages are stored.
func TestMIDBufferStaysBounded(t *testing.T) {
	ctx := context.Background()
	const every = 50
	s, err := OpenStore(StoreOptions{Path: filepath.Join(t.TempDir(), "s.db"), MIDMoveEvery: every})
	if err != nil {
		t.Fatal(err)
	}
	defer closeStore(t, s)
	const workers, batches, perBatch = 8, 25, 100
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				msgs := make([]Message, perBatch)
				for i := range msgs {
					msgs[i] = testMsg(t, fmt.Sprintf("mid.bound.%d.%d.%d", w, b, i), "x")
				}
				if res, err := s.Save(ctx, msgs, nil); err != nil || len(res.New) != perBatch {
					errs <- fmt.Errorf("save: %v, %d new", err, len(res.New))
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// A range is moved for every `every` new keys, so the buffer holds
	// about midRanges × every, plus what the last commits brought.
	if n, bound := s.mids.len(), midRanges*every+workers*perBatch; n > bound {
		t.Fatalf("%d keys buffered after %d messages; want at most %d", n, workers*batches*perBatch, bound)
	}
	checkKeyTables(t, s)
}

// TestDuplicatesTakeNoIDs: ids go to stored messages only, so the last id
// handed out is MAX(id) and no mark taken from it passes the table.
func TestDuplicatesTakeNoIDs(t *testing.T) {
	ctx := context.Background()
	s := openTestStore(t, filepath.Join(t.TempDir(), "s.db"))
	defer closeStore(t, s)
	res, err := s.Save(ctx, []Message{testMsg(t, "A", "a"), testMsg(t, "B", "b"), testMsg(t, "A", "again")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.New) != 2 || res.New[0].ID != 1 || res.New[1].ID != 2 || res.Duplicates != 1 {
		t.Fatalf("save: got %+v, want ids 1 and 2 and one duplicate", res)
	}
	res, err = s.Save(ctx, []Message{testMsg(t, "B", "b again"), testMsg(t, "C", "c")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.New) != 1 || res.New[0].ID != 3 {
		t.Fatalf("next save: got %+v, want C stored with id 3", res.New)
	}
}

// TestRedeliveryAfterRangeMovesAndRestarts: a commit whose last message is
// a duplicate, then a commit that moves key ranges, then restarts. The
// next message must be stored above every mark, so that its key is found
// again after another restart and its redelivery is not stored twice.
func TestRedeliveryAfterRangeMovesAndRestarts(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "s.db")
	open := func(every int) *Store {
		t.Helper()
		s, err := OpenStore(StoreOptions{Path: path, MIDMoveEvery: every})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open(1)
	if _, err := s.Save(ctx, []Message{testMsg(t, "A", "a"), testMsg(t, "B", "b"), testMsg(t, "A", "dup")}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckWritable(ctx); err != nil { // a commit that moves ranges
		t.Fatal(err)
	}
	moved := map[int]bool{}
	for r := range midRanges {
		if s.mids.marks[r] > 0 {
			moved[r] = true
		}
	}
	if len(moved) == 0 {
		t.Fatal("no key range moved; the test arranges nothing")
	}
	closeStore(t, s)
	x := ""
	for i := 0; x == ""; i++ {
		if c := fmt.Sprintf("X-%d", i); moved[midRangeOf(MIDKey(c))] {
			x = c
		}
	}
	for _, text := range []string{"first", "redelivered", "redelivered again"} {
		s = open(1 << 20)
		if _, err := s.Save(ctx, []Message{testMsg(t, x, text)}, nil); err != nil {
			t.Fatal(err)
		}
		closeStore(t, s)
	}
	s = open(1 << 20)
	defer closeStore(t, s)
	if n := rowsWithMID(t, s, x); n != 1 {
		t.Fatalf("mid %s stored %d times, want once", x, n)
	}
}

// TestNextIDAboveMarksOfAnOlderStore: a store written by an earlier
// version may have marks above MAX(id) (it gave ids to duplicates). New
// messages go above them, into the buffer and the customer listing.
func TestNextIDAboveMarksOfAnOlderStore(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "s.db")
	closeStore(t, openTestStore(t, path))
	db := rawDB(t, path)
	insertRaw(t, db, 1, "old-1", ptr(MIDKey("old-1")))
	insertRaw(t, db, 2, "old-2", ptr(MIDKey("old-2")))
	moveKeysUpTo(t, db, 5)
	execAll(t, db, fmt.Sprintf("UPDATE store_meta SET value = 5 WHERE key = '%s'", userIndexMark),
		"INSERT INTO user_index (user_id, id) VALUES ('c1', 1), ('c1', 2)")
	_ = db.Close()

	s := openTestStore(t, path)
	res, err := s.Save(ctx, []Message{testMsg(t, "new-1", "n")}, nil)
	closeStore(t, s)
	if err != nil {
		t.Fatal(err)
	}
	if id := res.New[0].ID; id <= 5 {
		t.Fatalf("new message id %d, want above the marks (5)", id)
	}
	s = openTestStore(t, path)
	defer closeStore(t, s)
	res, err = s.Save(ctx, []Message{testMsg(t, "new-1", "redelivered")}, nil)
	if err != nil || len(res.New) != 0 {
		t.Fatalf("redelivery after restart: got %d new (%v), want a duplicate", len(res.New), err)
	}
	page, _, err := s.List(ctx, ListFilter{UserID: "c1", Limit: 10})
	if err != nil || len(page) != 3 {
		t.Fatalf("list by customer: got %d rows (%v), want 3", len(page), err)
	}
}
