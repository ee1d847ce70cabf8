package domain

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"gorm.io/gorm"
)

// openIndexEvery opens a fresh store whose writer indexes customers in
// bulk every n messages; it closes when the test ends.
func openIndexEvery(t *testing.T, n int) *Store {
	t.Helper()
	s, err := OpenStore(StoreOptions{Path: filepath.Join(t.TempDir(), "s.db"), UserIndexEvery: n})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeStore(t, s) })
	return s
}

// TestListByUserAcrossTheIndexMark stores messages of three customers one
// delivery at a time, with the customer index built in bulk every five
// messages, so that every listing reads both user_index and the messages
// above its mark. Each listing, paged two at a time, must equal the same
// filter applied to all messages.
func TestListByUserAcrossTheIndexMark(t *testing.T) {
	ctx := context.Background()
	s := openIndexEvery(t, 5)
	users := []string{"u0", "u1", "u2"}
	for i := range 23 {
		m := testMsg(t, fmt.Sprintf("mid-%d", i), "t")
		m.SenderID, m.RecipientID = users[i%3], "biz"
		if i%4 == 1 {
			m.Direction, m.SenderID, m.RecipientID = Outbound, "biz", users[i%3]
		}
		if i%5 == 2 {
			m.MirrorStatus = MirrorDisabled
		}
		m.Timestamp = testT0.Add(time.Duration(i) * time.Minute)
		if err := m.Validate(); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Save(ctx, []Message{m}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if s.userMark != 20 {
		t.Fatalf("user_index mark: %d, want 20 (four bulk steps of five)", s.userMark)
	}
	all, _, err := s.List(ctx, ListFilter{Limit: 500})
	if err != nil || len(all) != 23 {
		t.Fatalf("list all: %d, %v", len(all), err)
	}
	filters := []ListFilter{
		{}, {Direction: Inbound}, {Direction: Outbound}, {MirrorStatus: MirrorDisabled},
		{Since: testT0.Add(4 * time.Minute), Until: testT0.Add(21 * time.Minute)},
	}
	for _, u := range append(users, "nobody") {
		for _, f := range filters {
			f.UserID = u
			var want []int64
			for _, m := range all {
				if m.UserID == u && (f.Direction == "" || m.Direction == f.Direction) &&
					(f.MirrorStatus == "" || m.MirrorStatus == f.MirrorStatus) &&
					(f.Since.IsZero() || !m.Timestamp.Before(f.Since)) && (f.Until.IsZero() || m.Timestamp.Before(f.Until)) {
					want = append(want, m.ID)
				}
			}
			var got []int64
			f.Limit = 2
			for pages := 0; ; pages++ {
				page, next, err := s.List(ctx, f)
				if err != nil {
					t.Fatal(err)
				}
				for _, m := range page {
					got = append(got, m.ID)
				}
				if next == "" || pages > 20 {
					break
				}
				f.Cursor = next
			}
			if !slices.Equal(got, want) {
				t.Errorf("user %s, filter %+v: got %v, want %v", u, f, got, want)
			}
		}
	}
}

// TestMigrateUserIndex opens a store with the old per-row index on
// user_id and no user_index: every stored message is indexed, the mark is
// the last id, the old index is gone, and listings find old and new.
func TestMigrateUserIndex(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "store.db")
	closeStore(t, openTestStore(t, path))
	db := rawDB(t, path)
	execAll(t, db, "DROP TABLE user_index", "DROP TABLE store_meta", "CREATE INDEX "+oldUserIndex+" ON messages(user_id)")
	for i := range 7 {
		insertRaw(t, db, int64(i+1), fmt.Sprintf("old-%d", i), ptr(MIDKey(fmt.Sprintf("old-%d", i))))
	}
	_ = db.Close()

	s := openTestStore(t, path)
	defer closeStore(t, s)
	var old, indexed int64
	s.rdb.Raw("SELECT COUNT(*) FROM sqlite_master WHERE name = ?", oldUserIndex).Scan(&old)
	s.rdb.Raw("SELECT COUNT(*) FROM user_index WHERE user_id = 'c1'").Scan(&indexed)
	if old != 0 || indexed != 7 || s.userMark != 7 {
		t.Fatalf("after migration: old index %d, %d indexed, mark %d; want 0, 7, 7", old, indexed, s.userMark)
	}
	if _, err := s.Save(ctx, []Message{testMsg(t, "new-1", "n")}, nil); err != nil {
		t.Fatal(err)
	}
	page, _, err := s.List(ctx, ListFilter{UserID: "c1", Limit: 100})
	if err != nil || len(page) != 8 || page[0].MID() != "new-1" || page[7].ID != 1 {
		t.Fatalf("list c1 after migration: %d messages, %v", len(page), err)
	}
}

// TestFailedCommitKeepsTheIndexMark: a transaction that fails after the
// bulk step leaves the mark where the database has it.
func TestFailedCommitKeepsTheIndexMark(t *testing.T) {
	ctx := context.Background()
	s := openIndexEvery(t, 2)
	if _, err := s.Save(ctx, []Message{testMsg(t, "a", "a"), testMsg(t, "b", "b")}, nil); err != nil {
		t.Fatal(err)
	}
	if s.userMark != 2 {
		t.Fatalf("mark after two: %d, want 2", s.userMark)
	}
	// Two more, then a failing write in the same transaction.
	err := s.submit(ctx, &writeReq{msgs: []Message{testMsg(t, "c", "c"), testMsg(t, "d", "d")}, tsText: []string{"x", "y"},
		apply: func(tx *gorm.DB) error { return fmt.Errorf("boom") }})
	if err == nil {
		t.Fatal("failing transaction: no error")
	}
	if s.userMark != 2 {
		t.Fatalf("mark after a rolled-back step: %d, want 2", s.userMark)
	}
	page, _, err := s.List(ctx, ListFilter{UserID: "c1"})
	if err != nil || len(page) != 2 {
		t.Fatalf("list after rollback: %d, %v; want the two committed", len(page), err)
	}
}
