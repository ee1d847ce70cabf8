package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"igmirror/domain"
	"igmirror/internal/testkit/check"
	"igmirror/internal/testkit/storetest"
)

// TestLapsedLeaseIsNotRevived: a lease that lapsed is never extended
// again (a takeover may already have seen it lapsed); the store goes on
// under a new owner token, and the old token's messages are orphans that
// another instance takes over.
func TestLapsedLeaseIsNotRevived(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "store.db")
	a := mustOpenAt(t, path, storetest.Options{InstanceID: "a", LeaseTimeout: 3 * time.Second})
	b := mustOpenAt(t, path, storetest.Options{InstanceID: "b"})
	res, err := a.Save(ctx, domain.Batch{Messages: []domain.Message{newMsg(t, "lapsed-1"), newMsg(t, "lapsed-2")}})
	if err != nil || len(res.New) != 2 {
		t.Fatalf("save: %v, %+v", err, res)
	}
	old := a.Lease().Owner
	if _, err := rawDB(t, path).Exec("UPDATE mirror_leases SET expires_at = 0 WHERE owner = ?", old); err != nil {
		t.Fatal(err)
	}
	check.Eventually(t, 10*time.Second, "a new owner token for a", func() bool { return a.Lease().Owner != old })
	var live int
	if err := rawDB(t, path).QueryRow("SELECT COUNT(*) FROM mirror_leases WHERE owner = ? AND expires_at > 0", old).Scan(&live); err != nil || live != 0 {
		t.Fatalf("the old lease: %d live rows (%v), want it left lapsed", live, err)
	}
	ids := []int64{res.New[0].ID, res.New[1].ID}
	if cl, err := a.Claim(ctx, ids); err != nil || len(cl) != 0 {
		t.Fatalf("a claimed %d messages of its lapsed lease (err %v)", len(cl), err)
	}
	got, err := b.ClaimCandidates(ctx, domain.CandidateQuery{Orphans: true, Limit: 10})
	if err != nil || len(got) != 2 {
		t.Fatalf("b took %d of the old lease's 2 messages (err %v)", len(got), err)
	}
}
