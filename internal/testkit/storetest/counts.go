package storetest

import (
	"maps"
	"testing"
	"time"

	"igmirror/domain"
	"igmirror/internal/testkit/check"
)

func init() {
	register("CountByStatus", testCountByStatus)
	register("OldestUnmirrored", testOldestUnmirrored)
}

// allStatuses are the five mirror states.
var allStatuses = []domain.MirrorStatus{domain.MirrorPending, domain.MirrorMirrored, domain.MirrorDropped, domain.MirrorFailed, domain.MirrorDisabled}

// wantCounts fails the test unless s counts want, every state present.
func wantCounts(t *testing.T, what string, s domain.Store, want map[domain.MirrorStatus]int64) {
	t.Helper()
	got, err := s.CountByStatus(ctx)
	if err != nil {
		t.Fatalf("%s: CountByStatus: %v", what, err)
	}
	full := map[domain.MirrorStatus]int64{}
	for _, st := range allStatuses {
		full[st] = want[st]
		if _, ok := got[st]; !ok {
			t.Errorf("%s: CountByStatus has no %q key, want all five", what, st)
		}
	}
	if !maps.Equal(got, full) {
		t.Errorf("%s: got %v, want %v", what, got, full)
	}
	// The counts agree with the rows.
	rows := map[domain.MirrorStatus]int64{}
	for _, st := range allStatuses {
		rows[st] = 0
	}
	for _, m := range allMessages(t, s) {
		rows[m.MirrorStatus]++
	}
	if !maps.Equal(got, rows) {
		t.Errorf("%s: counts %v disagree with the rows %v", what, got, rows)
	}
}

func testCountByStatus(t *testing.T, open Opener) {
	a := mustOpen(t, open, Options{InstanceID: "a"})
	b := mustOpen(t, open, Options{InstanceID: "b"})
	wantCounts(t, "empty store", a, nil)

	res := mustSave(t, a, newMsg(t, "p1"), newMsg(t, "p2"), newMsg(t, "p3"), newMsg(t, "d", status(domain.MirrorDisabled)), newMsg(t, "", status(domain.MirrorDisabled)))
	mustSave(t, b, newMsg(t, "b1"), newMsg(t, "p1")) // one duplicate: not counted twice
	p1, p2, p3, d := res.New[0].ID, res.New[1].ID, res.New[2].ID, res.New[3].ID
	counts := map[domain.MirrorStatus]int64{domain.MirrorPending: 4, domain.MirrorDisabled: 2}
	wantCounts(t, "after inserts, seen by A", a, counts)
	wantCounts(t, "after inserts, seen by B", b, counts)

	mustClaim(t, a, p1, p2, p3)
	if err := a.MarkMirrored(ctx, []int64{p1}, nil); err != nil {
		t.Fatal(err)
	}
	if err := a.MarkMirrored(ctx, []int64{p1}, nil); err != nil { // twice: counted once
		t.Fatal(err)
	}
	if err := a.MarkFailed(ctx, []int64{p2}, "no"); err != nil {
		t.Fatal(err)
	}
	a.MarkDropped(p3)
	check.Eventually(t, waitFor, "the drop mark", func() bool { return statusOf(t, a, p3) == domain.MirrorDropped })
	counts = map[domain.MirrorStatus]int64{domain.MirrorPending: 1, domain.MirrorMirrored: 1, domain.MirrorFailed: 1, domain.MirrorDropped: 1, domain.MirrorDisabled: 2}
	wantCounts(t, "after transitions", b, counts)

	mustCandidates(t, b, domain.CandidateQuery{Statuses: []domain.MirrorStatus{domain.MirrorDropped, domain.MirrorFailed}})
	if got := mustCandidates(t, b, domain.CandidateQuery{Statuses: []domain.MirrorStatus{domain.MirrorDisabled}, Limit: 1}); len(got) != 1 || got[0].ID != d {
		t.Fatalf("disabled candidate: got %v, want [%d]", idsOf(got), d)
	}
	counts = map[domain.MirrorStatus]int64{domain.MirrorPending: 4, domain.MirrorMirrored: 1, domain.MirrorDisabled: 1}
	wantCounts(t, "after candidates were claimed", a, counts)
	if _, err := a.DeferCandidates(ctx, domain.CandidateQuery{Statuses: []domain.MirrorStatus{domain.MirrorDisabled}}, 0); err != nil {
		t.Fatal(err)
	}
	counts = map[domain.MirrorStatus]int64{domain.MirrorPending: 4, domain.MirrorMirrored: 1, domain.MirrorDropped: 1}
	wantCounts(t, "after a deferral", a, counts)
}

func testOldestUnmirrored(t *testing.T, open Opener) {
	s := mustOpen(t, open, Options{})
	oldest := func(what string) (time.Time, bool) {
		t.Helper()
		ts, ok, err := s.OldestUnmirrored(ctx)
		if err != nil {
			t.Fatalf("%s: OldestUnmirrored: %v", what, err)
		}
		return ts, ok
	}
	if ts, ok := oldest("empty"); ok {
		t.Errorf("empty store: got %v, true, want ok false", ts)
	}
	mustSave(t, s, newMsg(t, "m", status(domain.MirrorMirrored)), newMsg(t, "d", status(domain.MirrorDisabled)))
	if ts, ok := oldest("only mirrored and disabled"); ok {
		t.Errorf("only mirrored and disabled: got %v, true, want ok false", ts)
	}
	p := mustSaveOne(t, s, newMsg(t, "p"))
	time.Sleep(2 * time.Millisecond)
	f := mustSaveOne(t, s, newMsg(t, "f", status(domain.MirrorFailed)))
	time.Sleep(2 * time.Millisecond)
	dr := mustSaveOne(t, s, newMsg(t, "dr", status(domain.MirrorDropped)))
	for _, step := range []struct {
		name string
		do   func()
		want *domain.Message
	}{
		{"pending is the oldest", func() {}, &p},
		{"pending mirrored: the failed one", func() { mark(t, s, p.ID) }, &f},
		{"failed mirrored: the dropped one", func() { mark(t, s, f.ID) }, &dr},
		{"all mirrored", func() { mark(t, s, dr.ID) }, nil},
	} {
		step.do()
		ts, ok := oldest(step.name)
		switch {
		case step.want == nil && ok:
			t.Errorf("%s: got %v, true, want ok false", step.name, ts)
		case step.want != nil && (!ok || !ts.Equal(step.want.CreatedAt)):
			t.Errorf("%s: got %v, %v, want %v, true", step.name, ts, ok, step.want.CreatedAt)
		}
	}
}

func mark(t *testing.T, s domain.Store, id int64) {
	t.Helper()
	if err := s.MarkMirrored(ctx, []int64{id}, nil); err != nil {
		t.Fatalf("MarkMirrored(%d): %v", id, err)
	}
}
