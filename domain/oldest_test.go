package domain_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"igmirror/domain"
)

// TestOldestUnmirrored follows the oldest message that the CRM does not
// hold yet as messages are mirrored, fail and are dropped.
func TestOldestUnmirrored(t *testing.T) {
	ctx := context.Background()
	s := mustOpenStore(t)
	oldest := func() (time.Time, bool) {
		t.Helper()
		at, ok, err := s.OldestUnmirrored(ctx)
		if err != nil {
			t.Fatalf("OldestUnmirrored: %v", err)
		}
		return at, ok
	}
	if _, ok := oldest(); ok {
		t.Fatal("empty store: got a message, want none")
	}
	mustSaveOne(t, s, newMsg(t, "disabled", withStatus(domain.MirrorDisabled)))
	if _, ok := oldest(); ok {
		t.Fatal("only a disabled message: got one, want none (no mirror is coming for it)")
	}
	a := mustSaveOne(t, s, newMsg(t, "a"))
	b := mustSaveOne(t, s, newMsg(t, "b"))
	c := mustSaveOne(t, s, newMsg(t, "c"))
	want := func(what string, m domain.Message) {
		t.Helper()
		got, ok := oldest()
		stored := mustGet(t, s, m.ID).CreatedAt
		if !ok || !got.Equal(stored) {
			t.Fatalf("%s: got %v (found %v), want %s's created_at %v", what, got, ok, m.MID(), stored)
		}
	}
	want("three pending", a)

	if err := s.MarkMirrored(ctx, []int64{a.ID}, nil); err != nil {
		t.Fatal(err)
	}
	want("a mirrored", b)

	if err := s.MarkAttempting(ctx, []int64{b.ID}); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkFailed(ctx, []int64{b.ID}, "crm said no"); err != nil {
		t.Fatal(err)
	}
	want("b failed", b)

	if err := s.MarkMirrored(ctx, []int64{b.ID}, nil); err != nil {
		t.Fatal(err)
	}
	s.MarkDropped(c.ID)
	eventually(t, 5*time.Second, "c marked dropped", func() bool {
		return mustGet(t, s, c.ID).MirrorStatus == domain.MirrorDropped
	})
	want("c dropped", c)

	if err := s.MarkMirrored(ctx, []int64{c.ID}, nil); err != nil {
		t.Fatal(err)
	}
	if at, ok := oldest(); ok {
		t.Fatalf("everything mirrored: got %v, want none", at)
	}
}

// TestOldestUnmirroredUsesTheIndex checks the query plan: a scan of the
// messages table would read every row on each scrape of /metrics.
func TestOldestUnmirroredUsesTheIndex(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	s := mustOpenStoreAt(t, path)
	mustSaveOne(t, s, newMsg(t, "a"))
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query("EXPLAIN QUERY PLAN SELECT MIN(id) FROM messages WHERE mirror_status = ?", "pending")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(plan, "; ")
	if !strings.Contains(got, "SEARCH messages USING COVERING INDEX idx_messages_mirror (mirror_status=?)") {
		t.Errorf("plan %q: want a search of the covering index idx_messages_mirror", got)
	}
}
