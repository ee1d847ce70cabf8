package storetest

import (
	"slices"
	"testing"
	"time"

	"igmirror/domain"
)

func init() {
	register("ClaimCandidatesSelection", testClaimCandidatesSelection)
	register("DeferCandidates", testDeferCandidates)
}

// candidates is a fixture of messages in every situation a reconcile
// query meets, placed in its own hour of Instagram time so that several
// fixtures share a database without meeting.
type candidates struct {
	ids   map[string]int64
	names map[int64]string
	stale time.Time // StalePendingBefore that selects "stale" alone
	from  time.Time // the fixture's first timestamp; every message is within the next hour
}

// newCandidates stores the fixture: a and b are live instances, and the
// orphan's owner is an instance opened and closed here.
func newCandidates(t *testing.T, open Opener, a, b domain.Store, from time.Time) candidates {
	t.Helper()
	c := candidates{ids: map[string]int64{}, names: map[int64]string{}, from: from}
	ts := func(i int) opt { return at(from.Add(time.Duration(i) * time.Minute)) }
	add := func(name string, m domain.Message) {
		c.ids[name] = m.ID
		c.names[m.ID] = name
	}
	key := func(name string) string { return from.Format("060102T150405") + "-" + name }
	stale := mustSaveOne(t, a, newMsg(t, key("stale"), ts(0)))
	add("stale", stale)
	// The store's clock must move on between the two saves.
	for {
		time.Sleep(2 * time.Millisecond)
		fresh := mustSaveOne(t, a, newMsg(t, key("fresh")+time.Now().Format(".000000000"), ts(1)))
		if fresh.CreatedAt.After(stale.CreatedAt) {
			add("fresh", fresh)
			c.stale = fresh.CreatedAt
			break
		}
	}
	add("dropped", mustSaveOne(t, a, newMsg(t, key("dropped"), ts(2), status(domain.MirrorDropped))))
	for i, name := range []string{"failedOnce", "failedOut"} {
		m := mustSaveOne(t, a, newMsg(t, key(name), ts(3+i)))
		for range 1 + 2*i {
			mustClaim(t, a, m.ID)
		}
		if err := a.MarkFailed(ctx, []int64{m.ID}, "refused"); err != nil {
			t.Fatalf("MarkFailed: %v", err)
		}
		add(name, m)
	}
	add("mirrored", mustSaveOne(t, a, newMsg(t, key("mirrored"), ts(5), status(domain.MirrorMirrored))))
	add("disabled", mustSaveOne(t, a, newMsg(t, key("disabled"), ts(6), status(domain.MirrorDisabled))))
	add("foreign", mustSaveOne(t, b, newMsg(t, key("foreign"), ts(7))))
	add("foreignDropped", mustSaveOne(t, b, newMsg(t, key("foreignDropped"), ts(8), status(domain.MirrorDropped))))
	gone := mustOpen(t, open, Options{InstanceID: "gone"})
	add("orphan", mustSaveOne(t, gone, newMsg(t, key("orphan"), ts(9))))
	if err := gone.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return c
}

// window confines q to the fixture's hour unless it has a window of its own.
func (c candidates) window(q domain.CandidateQuery) domain.CandidateQuery {
	if q.Since.IsZero() && q.Until.IsZero() {
		q.Since, q.Until = c.from, c.from.Add(time.Hour)
	}
	return q
}

// snapshot reads every message of the fixture.
func (c candidates) snapshot(t *testing.T, s domain.Store) map[string]domain.Message {
	t.Helper()
	out := map[string]domain.Message{}
	for name, id := range c.ids {
		out[name] = mustGet(t, s, id)
	}
	return out
}

func (c candidates) namesOf(ms []domain.Message) []string {
	out := []string{}
	for _, m := range ms {
		out = append(out, c.names[m.ID])
	}
	return out
}

func testClaimCandidatesSelection(t *testing.T, open Opener) {
	a := mustOpen(t, open, Options{InstanceID: "a"})
	b := mustOpen(t, open, Options{InstanceID: "b"})
	retry := []domain.MirrorStatus{domain.MirrorDropped, domain.MirrorFailed}
	for i, tc := range []struct {
		name    string
		byB     bool // B claims instead of A
		q       func(c candidates) domain.CandidateQuery
		want    []string // oldest first
		unnamed bool     // q carries a window of its own
	}{
		{name: "dropped and failed under max attempts", q: func(candidates) domain.CandidateQuery {
			return domain.CandidateQuery{Statuses: retry, MaxAttempts: 3}
		}, want: []string{"dropped", "failedOnce", "foreignDropped"}},
		{name: "dropped and failed, no max attempts", q: func(candidates) domain.CandidateQuery {
			return domain.CandidateQuery{Statuses: retry}
		}, want: []string{"dropped", "failedOnce", "failedOut", "foreignDropped"}},
		{name: "max attempts 1 leaves out every tried failure, never a dropped one", q: func(candidates) domain.CandidateQuery {
			return domain.CandidateQuery{Statuses: retry, MaxAttempts: 1}
		}, want: []string{"dropped", "foreignDropped"}},
		{name: "disabled", q: func(candidates) domain.CandidateQuery {
			return domain.CandidateQuery{Statuses: []domain.MirrorStatus{domain.MirrorDisabled}}
		}, want: []string{"disabled"}},
		{name: "mirrored", q: func(candidates) domain.CandidateQuery {
			return domain.CandidateQuery{Statuses: []domain.MirrorStatus{domain.MirrorMirrored}}
		}, want: []string{"mirrored"}},
		{name: "pending: own and orphaned, never under another live lease", q: func(candidates) domain.CandidateQuery {
			return domain.CandidateQuery{Statuses: []domain.MirrorStatus{domain.MirrorPending}}
		}, want: []string{"stale", "fresh", "orphan"}},
		{name: "pending claimed by the other instance", byB: true, q: func(candidates) domain.CandidateQuery {
			return domain.CandidateQuery{Statuses: []domain.MirrorStatus{domain.MirrorPending}}
		}, want: []string{"foreign", "orphan"}},
		{name: "own stale pending", q: func(c candidates) domain.CandidateQuery {
			return domain.CandidateQuery{StalePendingBefore: c.stale}
		}, want: []string{"stale"}},
		{name: "stale pending of the other instance is not own", byB: true, q: func(c candidates) domain.CandidateQuery {
			return domain.CandidateQuery{StalePendingBefore: c.stale.Add(time.Hour)}
		}, want: []string{"foreign"}},
		{name: "orphans", q: func(candidates) domain.CandidateQuery {
			return domain.CandidateQuery{Orphans: true}
		}, want: []string{"orphan"}},
		{name: "reconcile pass", q: func(c candidates) domain.CandidateQuery {
			return domain.CandidateQuery{Statuses: retry, MaxAttempts: 3, StalePendingBefore: c.stale, Orphans: true}
		}, want: []string{"stale", "dropped", "failedOnce", "foreignDropped", "orphan"}},
		{name: "after id", q: func(c candidates) domain.CandidateQuery {
			return domain.CandidateQuery{Statuses: retry, AfterID: c.ids["failedOnce"]}
		}, want: []string{"failedOut", "foreignDropped"}},
		{name: "limit", q: func(c candidates) domain.CandidateQuery {
			return domain.CandidateQuery{Statuses: retry, StalePendingBefore: c.stale, Limit: 2}
		}, want: []string{"stale", "dropped"}},
		{name: "since inclusive, until exclusive", unnamed: true, q: func(c candidates) domain.CandidateQuery {
			return domain.CandidateQuery{Statuses: append(retry, domain.MirrorDisabled), StalePendingBefore: c.stale,
				Since: c.from.Add(3 * time.Minute), Until: c.from.Add(6 * time.Minute)}
		}, want: []string{"failedOnce", "failedOut"}},
		{name: "no condition selects nothing", q: func(candidates) domain.CandidateQuery {
			return domain.CandidateQuery{}
		}, want: []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCandidates(t, open, a, b, t0.Add(time.Duration(i)*24*time.Hour))
			claimer := a
			if tc.byB {
				claimer = b
			}
			before := c.snapshot(t, a)
			q := tc.q(c)
			if !tc.unnamed {
				q = c.window(q)
			}
			got := mustCandidates(t, claimer, q)
			if g := c.namesOf(got); !slices.Equal(g, tc.want) {
				t.Fatalf("got %v, want %v", g, tc.want)
			}
			after := c.snapshot(t, a)
			for _, m := range got {
				name := c.names[m.ID]
				was, now := before[name], after[name]
				if m.MirrorStatus != was.MirrorStatus || m.MirrorOwner != was.MirrorOwner || m.MirrorAttempts != was.MirrorAttempts {
					t.Errorf("%s as returned: got %q owned by %q attempts %d, want as before the claim: %q, %q, %d",
						name, m.MirrorStatus, m.MirrorOwner, m.MirrorAttempts, was.MirrorStatus, was.MirrorOwner, was.MirrorAttempts)
				}
				wantNow := domain.MirrorPending
				if was.MirrorStatus == domain.MirrorMirrored {
					wantNow = domain.MirrorMirrored // the CRM holds it: a check, never a second send
				}
				if now.MirrorStatus != wantNow || now.MirrorOwner != claimer.Lease().Owner || now.MirrorAttempts != was.MirrorAttempts {
					t.Errorf("%s after the claim: got %q owned by %q attempts %d, want %q, the claimer's %q, %d",
						name, now.MirrorStatus, now.MirrorOwner, now.MirrorAttempts, wantNow, claimer.Lease().Owner, was.MirrorAttempts)
				}
				delete(before, name)
			}
			for name, was := range before {
				now := after[name]
				if now.MirrorStatus != was.MirrorStatus || now.MirrorOwner != was.MirrorOwner {
					t.Errorf("%s, not selected: got %q owned by %q, want untouched: %q, %q", name, now.MirrorStatus, now.MirrorOwner, was.MirrorStatus, was.MirrorOwner)
				}
			}
			// Taken over: the claimer may now claim what it was given.
			var ids []int64
			for _, m := range got {
				ids = append(ids, m.ID)
			}
			wantIDs(t, "claim of the candidates", claimIDs(mustClaim(t, claimer, ids...)), ids)
		})
	}
}

func testDeferCandidates(t *testing.T, open Opener) {
	a := mustOpen(t, open, Options{InstanceID: "a"})
	b := mustOpen(t, open, Options{InstanceID: "b"})
	c := newCandidates(t, open, a, b, t0)
	q := c.window(domain.CandidateQuery{Statuses: []domain.MirrorStatus{domain.MirrorFailed}, MaxAttempts: 3, StalePendingBefore: c.stale})
	steps := []struct {
		name   string
		q      domain.CandidateQuery
		from   string
		n      int64
		states map[string]domain.MirrorStatus // changed by this step
	}{
		{"failed under the max, from failedOnce", q, "failedOnce", 1, map[string]domain.MirrorStatus{"failedOnce": domain.MirrorDropped}},
		{"the same from the start", q, "stale", 1, map[string]domain.MirrorStatus{"stale": domain.MirrorDropped}},
		{"pending: never under another live lease", c.window(domain.CandidateQuery{Statuses: []domain.MirrorStatus{domain.MirrorPending}}), "stale", 2,
			map[string]domain.MirrorStatus{"fresh": domain.MirrorDropped, "orphan": domain.MirrorDropped}},
		{"mirrored kept and counted, disabled dropped", c.window(domain.CandidateQuery{Statuses: []domain.MirrorStatus{domain.MirrorMirrored, domain.MirrorDisabled}}), "stale", 2,
			map[string]domain.MirrorStatus{"disabled": domain.MirrorDropped}},
	}
	want := map[string]domain.MirrorStatus{}
	for name, m := range c.snapshot(t, a) {
		want[name] = m.MirrorStatus
	}
	for _, st := range steps {
		n, err := a.DeferCandidates(ctx, st.q, c.ids[st.from])
		if err != nil {
			t.Fatalf("%s: DeferCandidates: %v", st.name, err)
		}
		if n != st.n {
			t.Errorf("%s: turned away: got %d, want %d", st.name, n, st.n)
		}
		for name, s := range st.states {
			want[name] = s
		}
		for name, m := range c.snapshot(t, a) {
			if m.MirrorStatus != want[name] {
				t.Errorf("%s: %s: got %q, want %q", st.name, name, m.MirrorStatus, want[name])
			}
			if _, changed := st.states[name]; changed && m.MirrorOwner != a.Lease().Owner {
				t.Errorf("%s: %s owner: got %q, want the deferring instance's %q", st.name, name, m.MirrorOwner, a.Lease().Owner)
			}
		}
	}
	if got := statusOf(t, a, c.ids["foreign"]); got != domain.MirrorPending {
		t.Errorf("foreign: got %q, want pending (another instance's live lease)", got)
	}
}
