package storetest

import (
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"igmirror/domain"
	"igmirror/internal/testkit/check"
)

func init() {
	register("ClaimOwnPendingUnderLiveLease", testClaimOwnPendingUnderLiveLease)
	register("ClaimTakeoverAfterClose", testClaimTakeoverAfterClose)
	register("ClaimNothingAfterLeaseLapses", testClaimNothingAfterLeaseLapses)
	register("ClaimTakeoverAfterLeaseLapses", testClaimTakeoverAfterLeaseLapses)
	register("ClaimOperatorCheckOfMirrored", testClaimOperatorCheckOfMirrored)
	register("MarkMirroredUnfenced", testMarkMirroredUnfenced)
	register("MarkFailedFenced", testMarkFailedFenced)
	register("MarkDroppedFencedToOwnPending", testMarkDroppedFencedToOwnPending)
	register("RescuerRaceEndsMirrored", testRescuerRaceEndsMirrored)
}

// lapseLease is the lease of an instance whose lease the tests let
// lapse (opened with NoRenew): long enough for the first steps to run
// under it, short enough to wait for.
const lapseLease = 1500 * time.Millisecond

// waitFor is how long the suite waits for an asynchronous effect.
const waitFor = 15 * time.Second

func testClaimOwnPendingUnderLiveLease(t *testing.T, open Opener) {
	a := mustOpen(t, open, Options{InstanceID: "a"})
	b := mustOpen(t, open, Options{InstanceID: "b"})
	res := mustSave(t, a,
		newMsg(t, "p1"), newMsg(t, "p2"),
		newMsg(t, "disabled", status(domain.MirrorDisabled)),
		newMsg(t, "dropped", status(domain.MirrorDropped)),
		newMsg(t, "failed", status(domain.MirrorFailed)))
	p1, p2, disabled, dropped, failed := res.New[0].ID, res.New[1].ID, res.New[2].ID, res.New[3].ID, res.New[4].ID

	wantIDs(t, "B claims A's messages", claimIDs(mustClaim(t, b, p1, p2)), nil)

	cs := mustClaim(t, a, p2, p1, disabled, dropped, failed, p2+1000)
	wantIDs(t, "A's first claim", claimIDs(cs), []int64{p1, p2})
	for _, c := range cs {
		if c.Attempts != 1 || c.Status != domain.MirrorPending {
			t.Errorf("claim %d: got attempts %d status %q, want 1, pending", c.ID, c.Attempts, c.Status)
		}
	}
	cs = mustClaim(t, a, p1)
	if len(cs) != 1 || cs[0].Attempts != 2 {
		t.Fatalf("A's second claim of %d: got %+v, want attempts 2", p1, cs)
	}
	m := mustGet(t, a, p1)
	if m.MirrorAttempts != 2 || m.MirrorLastAttemptAt == nil || m.MirrorStatus != domain.MirrorPending || m.MirrorOwner != a.Lease().Owner {
		t.Errorf("after two claims: got attempts %d last attempt %v status %q owner %q, want 2, set, pending, %q",
			m.MirrorAttempts, m.MirrorLastAttemptAt, m.MirrorStatus, m.MirrorOwner, a.Lease().Owner)
	}
	if got := mustGet(t, a, disabled).MirrorAttempts; got != 0 {
		t.Errorf("disabled message attempts: got %d, want 0 (not claimed)", got)
	}
	wantIDs(t, "claim of nothing", claimIDs(mustClaim(t, a)), nil)
	if l := a.Lease(); l.Owner == "" || l.InstanceID != "a" || l.Owner == b.Lease().Owner || !l.ExpiresAt.After(time.Now()) {
		t.Errorf("A's lease: got %+v, want a token of its own for instance a, unexpired", l)
	}
}

func testClaimTakeoverAfterClose(t *testing.T, open Opener) {
	a := mustOpen(t, open, Options{InstanceID: "a"})
	b := mustOpen(t, open, Options{InstanceID: "b"})
	p := mustSaveOne(t, a, newMsg(t, "p"))
	if c := mustClaim(t, a, p.ID); len(c) != 1 {
		t.Fatalf("A claims its own: got %v, want one", c)
	}

	wantIDs(t, "B's orphans while A lives", idsOf(mustCandidates(t, b, domain.CandidateQuery{Orphans: true})), nil)
	wantIDs(t, "B's pending while A lives", idsOf(mustCandidates(t, b, domain.CandidateQuery{Statuses: []domain.MirrorStatus{domain.MirrorPending}})), nil)
	if got := mustGet(t, b, p.ID).MirrorOwner; got != a.Lease().Owner {
		t.Errorf("owner while A lives: got %q, want A's %q", got, a.Lease().Owner)
	}

	aOwner := a.Lease().Owner
	if err := a.Close(); err != nil {
		t.Fatalf("A.Close: %v", err)
	}
	got := mustCandidates(t, b, domain.CandidateQuery{Orphans: true})
	wantIDs(t, "B's orphans after A closed", idsOf(got), []int64{p.ID})
	if len(got) == 1 && (got[0].MirrorOwner != aOwner || got[0].MirrorStatus != domain.MirrorPending || got[0].MirrorAttempts != 1) {
		t.Errorf("orphan as returned: got owner %q status %q attempts %d, want as before the claim: %q, pending, 1",
			got[0].MirrorOwner, got[0].MirrorStatus, got[0].MirrorAttempts, aOwner)
	}
	if m := mustGet(t, b, p.ID); m.MirrorOwner != b.Lease().Owner || m.MirrorStatus != domain.MirrorPending {
		t.Errorf("after takeover: got owner %q status %q, want B's %q, pending", m.MirrorOwner, m.MirrorStatus, b.Lease().Owner)
	}
	cs := mustClaim(t, b, p.ID)
	if len(cs) != 1 || cs[0].Attempts != 2 {
		t.Errorf("B's claim after takeover: got %+v, want one with attempts 2", cs)
	}
	wantIDs(t, "B's orphans again", idsOf(mustCandidates(t, b, domain.CandidateQuery{Orphans: true})), nil)
}

func testClaimNothingAfterLeaseLapses(t *testing.T, open Opener) {
	a := mustOpen(t, open, Options{InstanceID: "a", LeaseTimeout: lapseLease, NoRenew: true})
	p := mustSaveOne(t, a, newMsg(t, "p"))
	check.Eventually(t, waitFor, "A's claims to stop once its lease lapsed", func() bool {
		return len(mustClaim(t, a, p.ID)) == 0
	})
	wantIDs(t, "A's candidates after its lease lapsed", idsOf(mustCandidates(t, a, domain.CandidateQuery{Statuses: []domain.MirrorStatus{domain.MirrorPending}})), []int64{p.ID})
	// Taking its own message over renews nothing: the lease has lapsed.
	wantIDs(t, "A's claim still", claimIDs(mustClaim(t, a, p.ID)), nil)
	if m := mustGet(t, a, p.ID); m.MirrorStatus != domain.MirrorPending {
		t.Errorf("status: got %q, want pending", m.MirrorStatus)
	}
}

func testClaimTakeoverAfterLeaseLapses(t *testing.T, open Opener) {
	a := mustOpen(t, open, Options{InstanceID: "a", LeaseTimeout: lapseLease, NoRenew: true})
	b := mustOpen(t, open, Options{InstanceID: "b"})
	p := mustSaveOne(t, a, newMsg(t, "p"))
	var got []domain.Message
	check.Eventually(t, waitFor, "B to take over A's pending message once A's lease lapsed", func() bool {
		got = mustCandidates(t, b, domain.CandidateQuery{Orphans: true})
		return len(got) > 0
	})
	wantIDs(t, "B's orphans", idsOf(got), []int64{p.ID})
	wantIDs(t, "A's claim after B's takeover", claimIDs(mustClaim(t, a, p.ID)), nil)
	cs := mustClaim(t, b, p.ID)
	wantIDs(t, "B's claim after takeover", claimIDs(cs), []int64{p.ID})
	if m := mustGet(t, b, p.ID); m.MirrorOwner != b.Lease().Owner {
		t.Errorf("owner: got %q, want B's %q", m.MirrorOwner, b.Lease().Owner)
	}
}

func testClaimOperatorCheckOfMirrored(t *testing.T, open Opener) {
	a := mustOpen(t, open, Options{InstanceID: "a"})
	b := mustOpen(t, open, Options{InstanceID: "b"})
	m := mustSaveOne(t, a, newMsg(t, "m"))
	mustClaim(t, a, m.ID)
	if err := a.MarkMirrored(ctx, []int64{m.ID}, nil); err != nil {
		t.Fatalf("MarkMirrored: %v", err)
	}
	got := mustCandidates(t, b, domain.CandidateQuery{Statuses: []domain.MirrorStatus{domain.MirrorMirrored}})
	wantIDs(t, "B's mirrored candidates", idsOf(got), []int64{m.ID})
	if len(got) == 1 && got[0].MirrorStatus != domain.MirrorMirrored {
		t.Errorf("candidate as returned: got status %q, want mirrored (as before the claim: the mirror checks the CRM)", got[0].MirrorStatus)
	}
	after := mustGet(t, b, m.ID)
	if after.MirrorStatus != domain.MirrorMirrored || after.MirrorOwner != b.Lease().Owner {
		t.Errorf("after B's claim: got status %q owner %q, want mirrored (the CRM holds it), B's %q", after.MirrorStatus, after.MirrorOwner, b.Lease().Owner)
	}
	cs := mustClaim(t, b, m.ID)
	if len(cs) != 1 || cs[0].Status != domain.MirrorMirrored || cs[0].Attempts != 2 {
		t.Errorf("B's claim for a check: got %+v, want one in state mirrored with attempts 2", cs)
	}
	if err := b.MarkFailed(ctx, []int64{m.ID}, "check failed"); err != nil {
		t.Fatalf("MarkFailed: %v", err)
	}
	wantStatus(t, b, m.ID, domain.MirrorMirrored)
}

func testMarkMirroredUnfenced(t *testing.T, open Opener) {
	a := mustOpen(t, open, Options{InstanceID: "a"})
	b := mustOpen(t, open, Options{InstanceID: "b"})
	res := mustSave(t, a, newMsg(t, "clean"), newMsg(t, "lossy"), newMsg(t, "failed"))
	clean, lossy, failed := res.New[0].ID, res.New[1].ID, res.New[2].ID
	mustClaim(t, a, clean, lossy, failed)
	if err := a.MarkFailed(ctx, []int64{failed}, "crm said no"); err != nil {
		t.Fatalf("MarkFailed: %v", err)
	}
	// B does not own them: the CRM holding a row is a fact, whoever wrote it.
	if err := b.MarkMirrored(ctx, []int64{clean, lossy, failed}, map[int64]bool{lossy: true}); err != nil {
		t.Fatalf("MarkMirrored: %v", err)
	}
	for _, c := range []struct {
		id       int64
		degraded bool
	}{{clean, false}, {lossy, true}, {failed, false}} {
		m := mustGet(t, a, c.id)
		if m.MirrorStatus != domain.MirrorMirrored || m.MirroredAt == nil || m.MirrorDegraded != c.degraded || m.MirrorLastError != "" {
			t.Errorf("message %d: got status %q mirrored_at %v degraded %v last error %q, want mirrored, set, %v, none",
				c.id, m.MirrorStatus, m.MirroredAt, m.MirrorDegraded, m.MirrorLastError, c.degraded)
		}
	}
	if err := a.MarkMirrored(ctx, nil, nil); err != nil {
		t.Errorf("MarkMirrored(nothing): %v", err)
	}
}

func testMarkFailedFenced(t *testing.T, open Opener) {
	a := mustOpen(t, open, Options{InstanceID: "a"})
	b := mustOpen(t, open, Options{InstanceID: "b"})
	res := mustSave(t, a, newMsg(t, "mine"), newMsg(t, "theirs-to-fail"), newMsg(t, "mirrored"), newMsg(t, "long"))
	mine, notB, mirrored, long := res.New[0].ID, res.New[1].ID, res.New[2].ID, res.New[3].ID
	mustClaim(t, a, mine, notB, mirrored, long)
	if err := a.MarkMirrored(ctx, []int64{mirrored}, nil); err != nil {
		t.Fatalf("MarkMirrored: %v", err)
	}
	if err := b.MarkFailed(ctx, []int64{notB}, "not mine"); err != nil {
		t.Fatalf("B.MarkFailed: %v", err)
	}
	wantStatus(t, a, notB, domain.MirrorPending)
	if err := a.MarkFailed(ctx, []int64{mine, mirrored}, "crm refused"); err != nil {
		t.Fatalf("A.MarkFailed: %v", err)
	}
	m := mustGet(t, a, mine)
	if m.MirrorStatus != domain.MirrorFailed || m.MirrorLastError != "crm refused" || m.MirrorAttempts != 1 {
		t.Errorf("failed: got status %q error %q attempts %d, want failed, %q, 1", m.MirrorStatus, m.MirrorLastError, m.MirrorAttempts, "crm refused")
	}
	wantStatus(t, a, mirrored, domain.MirrorMirrored)
	if got := mustGet(t, a, mirrored).MirrorLastError; got != "" {
		t.Errorf("mirrored message's last error: got %q, want none", got)
	}

	reason := strings.Repeat("é", domain.MaxErrorLen) // twice MaxErrorLen bytes
	if err := a.MarkFailed(ctx, []int64{long}, reason); err != nil {
		t.Fatalf("MarkFailed(long reason): %v", err)
	}
	got := mustGet(t, a, long).MirrorLastError
	if len(got) > domain.MaxErrorLen || len(got) == 0 || !utf8.ValidString(got) || !strings.HasPrefix(reason, got) {
		t.Errorf("long reason kept: got %d bytes (valid UTF-8 %v), want a prefix of at most %d bytes, valid UTF-8", len(got), utf8.ValidString(got), domain.MaxErrorLen)
	}
}

func testMarkDroppedFencedToOwnPending(t *testing.T, open Opener) {
	a := mustOpen(t, open, Options{InstanceID: "a"})
	b := mustOpen(t, open, Options{InstanceID: "b"})
	res := mustSave(t, a, newMsg(t, "p1"), newMsg(t, "p2"), newMsg(t, "failed", status(domain.MirrorFailed)), newMsg(t, "mirrored", status(domain.MirrorMirrored)))
	p1, p2, failed, mirrored := res.New[0].ID, res.New[1].ID, res.New[2].ID, res.New[3].ID
	theirs := mustSaveOne(t, b, newMsg(t, "theirs")).ID

	a.MarkDropped() // nothing: no effect, no block
	a.MarkDropped(p1, failed, mirrored, theirs)
	a.MarkDropped(p2)
	check.Eventually(t, waitFor, "A's pending messages to be marked dropped", func() bool {
		return statusOf(t, a, p1) == domain.MirrorDropped && statusOf(t, a, p2) == domain.MirrorDropped
	})
	// A commit that marks some marks all it was given: the others are settled.
	CheckWritableOrFail(t, a)
	wantStatus(t, a, failed, domain.MirrorFailed)
	wantStatus(t, a, mirrored, domain.MirrorMirrored)
	wantStatus(t, a, theirs, domain.MirrorPending)
}

// CheckWritableOrFail is a write through the instance's writer: whatever
// it was handed before has been committed by the time it returns.
func CheckWritableOrFail(t testing.TB, s domain.Store) {
	t.Helper()
	if err := s.CheckWritable(ctx); err != nil {
		t.Fatalf("CheckWritable: %v", err)
	}
}

func testRescuerRaceEndsMirrored(t *testing.T, open Opener) {
	a := mustOpen(t, open, Options{InstanceID: "a", LeaseTimeout: lapseLease, NoRenew: true})
	b := mustOpen(t, open, Options{InstanceID: "b"})
	res := mustSave(t, a, newMsg(t, "taken-then-marked"), newMsg(t, "marked-then-taken"), newMsg(t, "at-once"))
	first, second, both := res.New[0].ID, res.New[1].ID, res.New[2].ID
	// A claims all three under its live lease and sends them; its lease
	// then lapses (a long pause) before it records the CRM's answer.
	if cs := mustClaim(t, a, first, second, both); len(cs) != 3 {
		t.Fatalf("A's claim: got %d, want 3 (lease %v too short for this machine?)", len(cs), lapseLease)
	}
	if err := a.MarkMirrored(ctx, []int64{second}, nil); err != nil {
		t.Fatalf("MarkMirrored(second): %v", err)
	}
	var taken []domain.Message
	check.Eventually(t, waitFor, "B to take over once A's lease lapsed", func() bool {
		taken = mustCandidates(t, b, domain.CandidateQuery{Orphans: true, Limit: 1})
		return len(taken) > 0
	})
	wantIDs(t, "B takes over first", idsOf(taken), []int64{first})
	var wg sync.WaitGroup
	var errA, errB error
	wg.Go(func() { errA = a.MarkMirrored(ctx, []int64{first, both}, nil) })
	wg.Go(func() { _, errB = b.ClaimCandidates(ctx, domain.CandidateQuery{Orphans: true}) })
	wg.Wait()
	if errA != nil || errB != nil {
		t.Fatalf("A.MarkMirrored, B.ClaimCandidates at once: %v, %v", errA, errB)
	}
	for _, id := range []int64{first, second, both} {
		// Stale writers: A's claim, B's failure for an attempt it never
		// made, B's later reconcile pass.
		wantIDs(t, "A's claim after the takeover", claimIDs(mustClaim(t, a, id)), nil)
		if err := b.MarkFailed(ctx, []int64{id}, "late"); err != nil {
			t.Fatalf("B.MarkFailed: %v", err)
		}
		a.MarkDropped(id)
		b.MarkDropped(id)
		mustCandidates(t, b, domain.CandidateQuery{Statuses: []domain.MirrorStatus{domain.MirrorPending, domain.MirrorDropped, domain.MirrorFailed}, Orphans: true})
	}
	CheckWritableOrFail(t, a)
	CheckWritableOrFail(t, b)
	for _, id := range []int64{first, second, both} {
		wantStatus(t, b, id, domain.MirrorMirrored)
	}
}
