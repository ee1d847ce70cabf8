package domain_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"igmirror/domain"
)

func TestListFilters(t *testing.T) {
	ctx := context.Background()
	s := mustOpenStore(t)
	// id: user, direction, status, timestamp
	res := mustSave(t, s,
		newMsg(t, "1", at(t0)),                                                       // 1 customer in  pending  t0
		newMsg(t, "2", outbound, at(t0.Add(time.Minute))),                            // 2 customer out pending  t0+1m
		newMsg(t, "3", from(other), at(t0.Add(2*time.Minute))),                       // 3 other    in  pending  t0+2m
		newMsg(t, "4", withStatus(domain.MirrorDisabled), at(t0.Add(3*time.Minute))), // 4 customer in  disabled t0+3m
		newMsg(t, "5", from(other), outbound, at(t0.Add(4*time.Minute))),             // 5 customer out pending t0+4m (outbound overrides sender)
	)
	if len(res.New) != 5 {
		t.Fatalf("stored %d, want 5", len(res.New))
	}
	for _, tc := range []struct {
		name string
		f    domain.ListFilter
		want []int64 // newest first
	}{
		{"all", domain.ListFilter{}, []int64{5, 4, 3, 2, 1}},
		{"user", domain.ListFilter{UserID: customer}, []int64{5, 4, 2, 1}},
		{"other user", domain.ListFilter{UserID: other}, []int64{3}},
		{"inbound", domain.ListFilter{Direction: domain.Inbound}, []int64{4, 3, 1}},
		{"outbound", domain.ListFilter{Direction: domain.Outbound}, []int64{5, 2}},
		{"status", domain.ListFilter{MirrorStatus: domain.MirrorDisabled}, []int64{4}},
		{"since inclusive", domain.ListFilter{Since: t0.Add(2 * time.Minute)}, []int64{5, 4, 3}},
		{"until exclusive", domain.ListFilter{Until: t0.Add(2 * time.Minute)}, []int64{2, 1}},
		{"since in another zone", domain.ListFilter{Since: t0.Add(3 * time.Minute).In(time.FixedZone("X", 5*3600+45*60))}, []int64{5, 4}},
		{"window", domain.ListFilter{Since: t0.Add(time.Minute), Until: t0.Add(4 * time.Minute)}, []int64{4, 3, 2}},
		{"combined", domain.ListFilter{UserID: customer, Direction: domain.Inbound, MirrorStatus: domain.MirrorPending}, []int64{1}},
		{"nothing", domain.ListFilter{UserID: "nobody"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, next, err := s.List(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(idsOf(got), tc.want) {
				t.Errorf("got %v, want %v", idsOf(got), tc.want)
			}
			if next != "" {
				t.Errorf("next cursor: got %q, want none on the only page", next)
			}
		})
	}
}

func TestListPagingWhileInserting(t *testing.T) {
	ctx := context.Background()
	s := mustOpenStore(t)
	for i := range 10 {
		mustSaveOne(t, s, newMsg(t, mid("old", i)))
	}
	var seen []int64
	cursor := ""
	for page := 0; ; page++ {
		got, next, err := s.List(ctx, domain.ListFilter{Limit: 3, Cursor: cursor})
		if err != nil {
			t.Fatalf("page %d: %v", page, err)
		}
		if len(got) > 3 {
			t.Fatalf("page %d: %d messages, want at most the limit 3", page, len(got))
		}
		seen = append(seen, idsOf(got)...)
		// New messages arrive between pages; they must not shift the pages.
		mustSaveOne(t, s, newMsg(t, mid("new", page)))
		if next == "" {
			break
		}
		cursor = next
	}
	if want := []int64{10, 9, 8, 7, 6, 5, 4, 3, 2, 1}; !slices.Equal(seen, want) {
		t.Errorf("paged ids: got %v, want %v", seen, want)
	}

	// A page that is exactly full has no next page.
	got, next, err := s.List(ctx, domain.ListFilter{Limit: 14})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 14 || next != "" {
		t.Errorf("limit = row count: got %d rows and cursor %q, want 14 and none", len(got), next)
	}
}

func TestListDefaultLimitAndBadCursor(t *testing.T) {
	ctx := context.Background()
	s := mustOpenStore(t)
	var msgs []domain.Message
	for i := range 51 {
		msgs = append(msgs, newMsg(t, mid("m", i)))
	}
	mustSave(t, s, msgs...)
	got, next, err := s.List(ctx, domain.ListFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 50 || next == "" {
		t.Fatalf("default limit: got %d rows, cursor %q; want 50 and a cursor", len(got), next)
	}
	if last, _, _ := s.List(ctx, domain.ListFilter{Cursor: next}); !slices.Equal(idsOf(last), []int64{1}) {
		t.Errorf("second page: got %v, want [1]", idsOf(last))
	}
	for _, c := range []string{"nonsense!", domain.EncodeCursor(0)[:2], "bTow", "eDo1"} { // "m:0", "x:5"
		if _, _, err := s.List(ctx, domain.ListFilter{Cursor: c}); !errors.Is(err, domain.ErrBadCursor) {
			t.Errorf("cursor %q: got %v, want ErrBadCursor", c, err)
		}
	}
}

func TestCursorRoundTrip(t *testing.T) {
	for _, id := range []int64{1, 42, 1 << 40} {
		got, err := domain.DecodeCursor(domain.EncodeCursor(id))
		if err != nil || got != id {
			t.Errorf("DecodeCursor(EncodeCursor(%d)): got %d, %v", id, got, err)
		}
	}
}

// candidateFixture stores one message in each situation the reconciler
// distinguishes and returns their ids by name.
func candidateFixture(t *testing.T, s *domain.Store) (ids map[string]int64, stale time.Time) {
	t.Helper()
	ctx := context.Background()
	ids = map[string]int64{}
	save := func(name string, ts time.Time, status domain.MirrorStatus) {
		ids[name] = mustSaveOne(t, s, newMsg(t, name, at(ts), withStatus(status))).ID
	}
	// Stored first, so that it is older than the cut below.
	save("stalePending", t0, domain.MirrorPending)
	stalePendingAt := mustGet(t, s, ids["stalePending"]).CreatedAt
	save("freshPending", t0, domain.MirrorPending)
	stale = mustGet(t, s, ids["freshPending"]).CreatedAt
	if !stalePendingAt.Before(stale) {
		t.Fatalf("fixture: created_at %v is not before %v", stalePendingAt, stale)
	}
	save("dropped", t0.Add(time.Hour), domain.MirrorPending)
	save("failedOnce", t0.Add(2*time.Hour), domain.MirrorPending)
	save("failedOut", t0.Add(3*time.Hour), domain.MirrorPending)
	save("mirrored", t0.Add(4*time.Hour), domain.MirrorPending)
	save("disabled", t0.Add(5*time.Hour), domain.MirrorDisabled)
	save("droppedLate", t0.Add(6*time.Hour), domain.MirrorPending)
	save("droppedTried", t0.Add(7*time.Hour), domain.MirrorPending)

	// Tried three times, then turned away by a full queue.
	for range 3 {
		if err := s.MarkAttempting(ctx, []int64{ids["droppedTried"]}); err != nil {
			t.Fatal(err)
		}
	}
	s.MarkDropped(ids["dropped"], ids["droppedLate"], ids["droppedTried"])
	for range 3 {
		if err := s.MarkAttempting(ctx, []int64{ids["failedOut"]}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.MarkAttempting(ctx, []int64{ids["failedOnce"]}); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkFailed(ctx, []int64{ids["failedOnce"], ids["failedOut"]}, "crm said no"); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkMirrored(ctx, []int64{ids["mirrored"]}, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "drop marks", func() bool {
		return mustGet(t, s, ids["dropped"]).MirrorStatus == domain.MirrorDropped &&
			mustGet(t, s, ids["droppedLate"]).MirrorStatus == domain.MirrorDropped &&
			mustGet(t, s, ids["droppedTried"]).MirrorStatus == domain.MirrorDropped
	})
	return ids, stale
}

func names(ids map[string]int64, got []domain.Message) []string {
	byID := map[int64]string{}
	for n, id := range ids {
		byID[id] = n
	}
	out := make([]string, len(got))
	for i := range got {
		out[i] = byID[got[i].ID]
		if out[i] == "" {
			out[i] = fmt.Sprint(got[i].ID)
		}
	}
	return out
}

func TestMirrorCandidates(t *testing.T) {
	ctx := context.Background()
	s := mustOpenStore(t)
	ids, stale := candidateFixture(t, s)
	retry := []domain.MirrorStatus{domain.MirrorDropped, domain.MirrorFailed}
	for _, tc := range []struct {
		name string
		q    domain.CandidateQuery
		want []string // oldest first
	}{
		{
			// What the periodic reconciler asks: the status conditions and the
			// stale-pending one are alternatives; over-tried failures are out,
			// dropped ones never (the CRM did not refuse them).
			name: "reconcile",
			q:    domain.CandidateQuery{Statuses: retry, MaxAttempts: 3, StalePendingBefore: stale},
			want: []string{"stalePending", "dropped", "failedOnce", "droppedLate", "droppedTried"},
		},
		{
			// The time window applies to every alternative: an OR that leaked
			// out of its parentheses would let the stale pending one through.
			name: "reconcile within a window",
			q: domain.CandidateQuery{Statuses: retry, MaxAttempts: 3, StalePendingBefore: stale,
				Since: t0.Add(time.Hour), Until: t0.Add(6 * time.Hour)},
			want: []string{"dropped", "failedOnce"},
		},
		{
			name: "window excludes the status match",
			q:    domain.CandidateQuery{Statuses: retry, MaxAttempts: 3, StalePendingBefore: stale, Until: t0.Add(time.Hour)},
			want: []string{"stalePending"},
		},
		{
			name: "no max attempts",
			q:    domain.CandidateQuery{Statuses: retry},
			want: []string{"dropped", "failedOnce", "failedOut", "droppedLate", "droppedTried"},
		},
		{
			name: "max attempts 1 leaves out every tried failure",
			q:    domain.CandidateQuery{Statuses: retry, MaxAttempts: 1},
			want: []string{"dropped", "droppedLate", "droppedTried"},
		},
		{
			name: "stale pending only (start-up pass)",
			q:    domain.CandidateQuery{StalePendingBefore: stale},
			want: []string{"stalePending"},
		},
		{
			name: "every pending",
			q:    domain.CandidateQuery{Statuses: []domain.MirrorStatus{domain.MirrorPending}},
			want: []string{"stalePending", "freshPending"},
		},
		{
			name: "mirrored (resync of mirrored ones)",
			q:    domain.CandidateQuery{Statuses: []domain.MirrorStatus{domain.MirrorMirrored}},
			want: []string{"mirrored"},
		},
		{
			name: "no condition selects nothing",
			q:    domain.CandidateQuery{Since: t0},
			want: []string{},
		},
		{
			name: "after id",
			q:    domain.CandidateQuery{Statuses: retry, AfterID: ids["failedOnce"]},
			want: []string{"failedOut", "droppedLate", "droppedTried"},
		},
		{
			name: "limit",
			q:    domain.CandidateQuery{Statuses: retry, Limit: 2},
			want: []string{"dropped", "failedOnce"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.MirrorCandidates(ctx, tc.q)
			if err != nil {
				t.Fatal(err)
			}
			if g := names(ids, got); !slices.Equal(g, tc.want) {
				t.Errorf("got %v, want %v", g, tc.want)
			}
		})
	}
}

func TestDeferCandidates(t *testing.T) {
	ctx := context.Background()
	s := mustOpenStore(t)
	ids, stale := candidateFixture(t, s)
	q := domain.CandidateQuery{Statuses: []domain.MirrorStatus{domain.MirrorFailed}, MaxAttempts: 3, StalePendingBefore: stale}
	// Candidates: stalePending, failedOnce. From failedOnce on: only failedOnce.
	n, err := s.DeferCandidates(ctx, q, ids["failedOnce"])
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("deferred: got %d, want 1", n)
	}
	want := map[string]domain.MirrorStatus{
		"stalePending": domain.MirrorPending, // before fromID
		"freshPending": domain.MirrorPending,
		"dropped":      domain.MirrorDropped,
		"failedOnce":   domain.MirrorDropped,
		"failedOut":    domain.MirrorFailed, // over the max: not a candidate
		"mirrored":     domain.MirrorMirrored,
		"disabled":     domain.MirrorDisabled,
		"droppedLate":  domain.MirrorDropped,
		"droppedTried": domain.MirrorDropped,
	}
	for name, st := range want {
		if got := mustGet(t, s, ids[name]).MirrorStatus; got != st {
			t.Errorf("%s: got %q, want %q", name, got, st)
		}
	}

	n, err = s.DeferCandidates(ctx, q, 1)
	if err != nil || n != 1 {
		t.Errorf("defer from the start: got %d, %v, want 1 (stalePending)", n, err)
	}
	if got := mustGet(t, s, ids["stalePending"]).MirrorStatus; got != domain.MirrorDropped {
		t.Errorf("stalePending: got %q, want dropped", got)
	}

	// An operator's re-check of mirrored messages turned away by a full
	// queue: they are counted, and stay mirrored (the CRM holds them).
	recheck := domain.CandidateQuery{Statuses: []domain.MirrorStatus{domain.MirrorMirrored, domain.MirrorDisabled}}
	n, err = s.DeferCandidates(ctx, recheck, 1)
	if err != nil || n != 2 {
		t.Errorf("defer mirrored and disabled: got %d, %v, want 2", n, err)
	}
	if got := mustGet(t, s, ids["mirrored"]).MirrorStatus; got != domain.MirrorMirrored {
		t.Errorf("mirrored after defer: got %q, want mirrored", got)
	}
	if got := mustGet(t, s, ids["disabled"]).MirrorStatus; got != domain.MirrorDropped {
		t.Errorf("disabled after defer: got %q, want dropped", got)
	}
}
