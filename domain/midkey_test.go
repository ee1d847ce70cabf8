package domain

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
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
// probe keys of a mid: the mid must be stored (under its third key), never
// taken for a duplicate, and then found, deduplicated and unsent like any.
func TestCollidingMIDsAreStoredOnce(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "store.db")
	closeStore(t, openTestStore(t, path))
	const target = "mid.target"
	db := rawDB(t, path)
	insertRaw(t, db, 1, "squatter-0", ptr(midKeyProbe(target, 0)))
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
	var n int64
	if err := s.rdb.Raw("SELECT COUNT(*) FROM messages WHERE instagram_message_id = ?", target).Scan(&n).Error; err != nil || n != 1 {
		t.Fatalf("rows with the target mid: %d (%v), want 1", n, err)
	}
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
// mid_key: no key column, a unique index on the mid text.
func oldSchema(t *testing.T, db *sql.DB) {
	execAll(t, db,
		"DROP INDEX idx_messages_mid_key",
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
	s.rdb.Raw("SELECT COUNT(*) FROM sqlite_master WHERE name = ?", oldMIDIndex).Scan(&oldIdx)
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
	execAll(t, db, "CREATE UNIQUE INDEX "+oldMIDIndex+" ON messages(instagram_message_id)")
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
