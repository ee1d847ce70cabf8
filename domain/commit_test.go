package domain

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"gorm.io/gorm"
)

// TestDropMarksSurviveAFailedGroup: drop marks folded into a group commit
// that fails (one request's error) are recorded all the same, not lost
// with the group.
func TestDropMarksSurviveAFailedGroup(t *testing.T) {
	ctx := context.Background()
	s := openTestStore(t, filepath.Join(t.TempDir(), "s.db"))
	defer closeStore(t, s)
	res, err := s.Save(ctx, []Message{testMsg(t, "p", "p")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	id := res.New[0].ID

	// Hold the writer inside a transaction while the drop mark and a
	// failing request queue up behind it, so that both share the next one.
	hold, entered := make(chan struct{}), make(chan struct{})
	held := make(chan error, 1)
	go func() {
		held <- s.exec(ctx, func(*gorm.DB) error { close(entered); <-hold; return nil })
	}()
	<-entered
	s.MarkDropped(id)
	failed := make(chan error, 1)
	go func() { failed <- s.exec(ctx, func(*gorm.DB) error { return errors.New("one bad request") }) }()
	deadline := time.Now().Add(5 * time.Second)
	for len(s.reqs) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the failing request never reached the writer's queue")
		}
		time.Sleep(time.Millisecond)
	}
	close(hold)
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	if err := <-failed; err == nil {
		t.Fatal("the failing request succeeded")
	}
	// MarkDropped never waits: the mark lands in a later transaction of
	// the writer's, all of which end before this write is served.
	if err := s.CheckWritable(ctx); err != nil {
		t.Fatal(err)
	}

	m, err := s.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if m.MirrorStatus != MirrorDropped {
		t.Fatalf("message %d after MarkDropped and a failed group: got %s, want dropped", id, m.MirrorStatus)
	}
}

// TestFailedCommitAfterADuplicateKeepsTheCustomerListing: the commit that
// reaches the customer index's step ends with a duplicate, then a commit
// fails and the ids are reloaded. The next message must still be listed
// by its customer.
func TestFailedCommitAfterADuplicateKeepsTheCustomerListing(t *testing.T) {
	ctx := context.Background()
	s := openIndexEvery(t, 2)
	if _, err := s.Save(ctx, []Message{testMsg(t, "a", "a"), testMsg(t, "b", "b"), testMsg(t, "a", "dup")}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.exec(ctx, func(*gorm.DB) error { return errors.New("boom") }); err == nil {
		t.Fatal("the failing commit succeeded")
	}
	if _, err := s.Save(ctx, []Message{testMsg(t, "c", "c")}, nil); err != nil {
		t.Fatal(err)
	}
	byUser, _, err := s.List(ctx, ListFilter{UserID: "c1", Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	all, _, err := s.List(ctx, ListFilter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(byUser) != 3 || len(all) != 3 {
		t.Fatalf("listing: %d by customer, %d in all, want 3 and 3", len(byUser), len(all))
	}
}
