package postgres_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"igmirror/domain"
	"igmirror/internal/testkit/check"
	"igmirror/internal/testkit/pgtest"
	"igmirror/postgres"
)

// Three instances, many goroutines each, taking dropped messages over at
// once: every message is claimed exactly once.
func TestConcurrentCandidateClaimsNeverOverlap(t *testing.T) {
	db := pgtest.New(t)
	stores := []*postgres.Store{mustOpen(t, db, "a", 0), mustOpen(t, db, "b", 0), mustOpen(t, db, "c", 0)}
	const n = 1500
	ids := saveN(t, stores[0], "d", n, domain.MirrorDropped)
	var mu sync.Mutex
	claimedBy := map[int64]string{}
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for g := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := stores[g%3]
			for {
				ms, err := s.ClaimCandidates(context.Background(), domain.CandidateQuery{Statuses: []domain.MirrorStatus{domain.MirrorDropped}, Limit: 25})
				if err != nil {
					errs <- err
					return
				}
				if len(ms) == 0 {
					return
				}
				mu.Lock()
				for _, m := range ms {
					if prev, ok := claimedBy[m.ID]; ok {
						errs <- fmt.Errorf("message %d claimed by %s and %s", m.ID, prev, s.Lease().Owner)
					}
					claimedBy[m.ID] = s.Lease().Owner
					if m.MirrorStatus != domain.MirrorDropped {
						errs <- fmt.Errorf("message %d returned as %s, want its state before the claim (dropped)", m.ID, m.MirrorStatus)
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(claimedBy) != n {
		t.Errorf("%d messages claimed, want %d", len(claimedBy), n)
	}
	for _, id := range ids {
		st, owner := status(t, db, id)
		if st != domain.MirrorPending || owner != claimedBy[id] {
			t.Fatalf("message %d is %s owned by %q, want pending owned by %q", id, st, owner, claimedBy[id])
		}
	}
	// Then each instance records its attempts: again never twice.
	total := 0
	for _, s := range stores {
		var mine []int64
		for id, owner := range claimedBy {
			if owner == s.Lease().Owner {
				mine = append(mine, id)
			}
		}
		cl, err := s.Claim(context.Background(), ids) // all ids: only its own are claimed
		if err != nil {
			t.Fatal(err)
		}
		if len(cl) != len(mine) {
			t.Errorf("%s claimed %d, owns %d", s.Lease().Owner, len(cl), len(mine))
		}
		total += len(cl)
	}
	if total != n {
		t.Errorf("claims recorded %d, want %d", total, n)
	}
}

// An instance that closed, or whose lease lapsed, loses its pending
// messages to an orphan scan of another; the old owner then claims nothing.
func TestTakeoverAfterCloseAndAfterALapsedLease(t *testing.T) {
	ctx := context.Background()
	orphans := domain.CandidateQuery{Orphans: true, Limit: 100}
	t.Run("close", func(t *testing.T) {
		db := pgtest.New(t)
		a, b := mustOpen(t, db, "a", 0), mustOpen(t, db, "b", 0)
		ids := saveN(t, a, "p", 5, domain.MirrorPending)
		if got, err := b.ClaimCandidates(ctx, orphans); err != nil || len(got) != 0 {
			t.Fatalf("b took %d of a's messages while a's lease is live (err %v)", len(got), err)
		}
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		got, err := b.ClaimCandidates(ctx, orphans)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(ids) {
			t.Fatalf("b took %d, want %d", len(got), len(ids))
		}
		cl, err := b.Claim(ctx, ids)
		if err != nil || len(cl) != len(ids) || cl[0].Attempts != 1 {
			t.Fatalf("b claims %+v, %v", cl, err)
		}
	})
	t.Run("lapsed", func(t *testing.T) {
		db := pgtest.New(t)
		a, b := mustOpen(t, db, "a", time.Minute), mustOpen(t, db, "b", time.Minute)
		ids := saveN(t, a, "p", 5, domain.MirrorPending)
		if cl, err := a.Claim(ctx, ids[:1]); err != nil || len(cl) != 1 {
			t.Fatalf("a claims its own message: %+v, %v", cl, err)
		}
		expireLease(t, db, a.Lease().Owner)
		// The fence is in the UPDATE: a lapsed lease claims nothing, even its own.
		if cl, err := a.Claim(ctx, ids); err != nil || len(cl) != 0 {
			t.Fatalf("a claimed %d with a lapsed lease (err %v)", len(cl), err)
		}
		got, err := b.ClaimCandidates(ctx, orphans)
		if err != nil || len(got) != len(ids) {
			t.Fatalf("b took %d of %d (err %v)", len(got), len(ids), err)
		}
		for _, m := range got {
			if m.MirrorOwner != a.Lease().Owner {
				t.Errorf("message %d returned with owner %q, want a's (its state before the claim)", m.ID, m.MirrorOwner)
			}
		}
		// Even were a's lease row extended now, the messages are b's.
		if _, err := db.SQL.Exec("UPDATE mirror_leases SET expires_at = now() + interval '1 minute' WHERE owner = $1", a.Lease().Owner); err != nil {
			t.Fatal(err)
		}
		if cl, err := a.Claim(ctx, ids); err != nil || len(cl) != 0 {
			t.Fatalf("a claimed %d messages b took over (err %v)", len(cl), err)
		}
		if err := a.MarkFailed(ctx, ids, "crm said no"); err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			if st, owner := status(t, db, id); st != domain.MirrorPending || owner != b.Lease().Owner {
				t.Fatalf("message %d is %s/%s after a's MarkFailed; want pending/b (MarkFailed fenced to own + pending)", id, st, owner)
			}
		}
	})
}

// The rescuer race (River's: a rescue overwrote a job that had just
// completed): an orphan scan racing the old owner's MarkMirrored must never
// leave a mirrored message pending again.
func TestTakeoverNeverOverwritesAMirroredMessage(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	a, b := mustOpen(t, db, "a", time.Minute), mustOpen(t, db, "b", time.Minute)
	const n = 400
	ids := saveN(t, a, "r", n, domain.MirrorPending)
	expireLease(t, db, a.Lease().Owner)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for part := range slices.Chunk(ids[w*n/4:(w+1)*n/4], 2) {
				if err := a.MarkMirrored(ctx, part, nil); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 300 {
				got, err := b.ClaimCandidates(ctx, domain.CandidateQuery{Orphans: true, Limit: 7})
				if err != nil {
					t.Error(err)
					return
				}
				for _, m := range got {
					if m.MirrorStatus != domain.MirrorPending {
						t.Errorf("orphan scan took message %d in state %s", m.ID, m.MirrorStatus)
					}
				}
			}
		}()
	}
	wg.Wait()
	for _, id := range ids {
		if st, _ := status(t, db, id); st != domain.MirrorMirrored {
			t.Fatalf("message %d is %s after MarkMirrored", id, st)
		}
	}
	// And once mirrored, no scan takes it.
	got, err := b.ClaimCandidates(ctx, domain.CandidateQuery{Orphans: true, Statuses: []domain.MirrorStatus{domain.MirrorDropped, domain.MirrorFailed}, Limit: 100})
	if err != nil || len(got) != 0 {
		t.Errorf("scan after mirroring took %d (err %v)", len(got), err)
	}
	counts, err := a.CountByStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if counts[domain.MirrorMirrored] != n || counts[domain.MirrorPending] != 0 {
		t.Errorf("counts %v, want %d mirrored", counts, n)
	}
}

// A claim that waits on a row lock re-checks its condition on the row the
// other transaction wrote: a message that became mirrored while the scan
// waited is left alone.
func TestCandidateConditionRecheckedAfterALockWait(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	a, b := mustOpen(t, db, "a", time.Minute), mustOpen(t, db, "b", time.Minute)
	ids := saveN(t, a, "w", 3, domain.MirrorDropped)
	tx, err := db.SQL.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.Exec("UPDATE messages SET mirror_status = 'mirrored' WHERE id = $1", ids[1]); err != nil {
		t.Fatal(err)
	}
	got, err := b.ClaimCandidates(ctx, domain.CandidateQuery{Statuses: []domain.MirrorStatus{domain.MirrorDropped}, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != ids[0] || got[1].ID != ids[2] {
		t.Fatalf("took %v; want %d and %d (the locked row skipped)", got, ids[0], ids[2])
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if st, _ := status(t, db, ids[1]); st != domain.MirrorMirrored {
		t.Errorf("locked message is %s, want mirrored", st)
	}
	if got, _ := b.ClaimCandidates(ctx, domain.CandidateQuery{Statuses: []domain.MirrorStatus{domain.MirrorDropped}, Limit: 10}); len(got) != 0 {
		t.Errorf("took %d more", len(got))
	}
}

func TestMarkDroppedAndDeferCandidates(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	a, b := mustOpen(t, db, "a", 0), mustOpen(t, db, "b", 0)
	ids := saveN(t, a, "q", 6, domain.MirrorPending)
	a.MarkDropped(ids[:2]...)
	b.MarkDropped(ids[2]) // not b's: stays pending
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, _ := status(t, db, ids[1])
		if st == domain.MirrorDropped {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("MarkDropped not recorded within 10 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := a.MarkMirrored(ctx, ids[3:4], map[int64]bool{ids[3]: true}); err != nil {
		t.Fatal(err)
	}
	if st, _ := status(t, db, ids[2]); st != domain.MirrorPending {
		t.Errorf("b dropped a's message: %s", st)
	}
	q := domain.CandidateQuery{Statuses: []domain.MirrorStatus{domain.MirrorDropped, domain.MirrorMirrored}, StalePendingBefore: time.Now().Add(time.Minute)}
	n, err := a.DeferCandidates(ctx, q, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	// dropped 0,1 stay dropped (counted), mirrored 3 kept and counted, own stale pending 2,4,5 dropped.
	if n != 6 {
		t.Errorf("deferred %d, want 6", n)
	}
	m3, _ := a.Get(ctx, ids[3])
	if m3.MirrorStatus != domain.MirrorMirrored || !m3.MirrorDegraded || m3.MirroredAt == nil {
		t.Errorf("mirrored message after defer: %+v", m3)
	}
	counts, err := b.CountByStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if counts[domain.MirrorDropped] != 5 || counts[domain.MirrorMirrored] != 1 || counts[domain.MirrorPending] != 0 {
		t.Errorf("counts %v", counts)
	}
	old, ok, err := b.OldestUnmirrored(ctx)
	if err != nil || !ok || old.IsZero() {
		t.Errorf("OldestUnmirrored = %v, %v, %v", old, ok, err)
	}
}

// TestLapsedLeaseIsNotRevived: a lease that lapsed (a database outage
// longer than the timeout, say) is never extended again: a takeover may
// already have seen it lapsed. The instance goes on under a new owner
// token; its earlier messages stay orphans, which another instance takes
// over, and the old owner's claims stay refused.
func TestLapsedLeaseIsNotRevived(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t)
	a, b := mustOpen(t, db, "a", 3*time.Second), mustOpen(t, db, "b", time.Minute)
	ids := saveN(t, a, "p", 3, domain.MirrorPending)
	old := a.Lease().Owner
	expireLease(t, db, old)
	// a's keeper renews every second: it must find its lease lapsed.
	check.Eventually(t, 10*time.Second, "a new owner token for a", func() bool { return a.Lease().Owner != old })
	var live int
	if err := db.SQL.QueryRow("SELECT COUNT(*) FROM mirror_leases WHERE owner = $1 AND expires_at > now()", old).Scan(&live); err != nil || live != 0 {
		t.Fatalf("the old lease: %d live rows (%v), want it left lapsed", live, err)
	}
	if cl, err := a.Claim(ctx, ids); err != nil || len(cl) != 0 {
		t.Fatalf("a claimed %d messages of its lapsed lease (err %v)", len(cl), err)
	}
	got, err := b.ClaimCandidates(ctx, domain.CandidateQuery{Orphans: true, Limit: 100})
	if err != nil || len(got) != len(ids) {
		t.Fatalf("b took %d of the old lease's %d messages (err %v)", len(got), len(ids), err)
	}
	fresh := saveN(t, a, "q", 1, domain.MirrorPending)
	if cl, err := a.Claim(ctx, fresh); err != nil || len(cl) != 1 {
		t.Fatalf("a claims a message stored under its new lease: %+v, %v", cl, err)
	}
}
