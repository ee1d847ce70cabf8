package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"igmirror/domain"
	"igmirror/internal/testkit/faultproxy"
	"igmirror/internal/testkit/pgtest"
	"igmirror/postgres"
)

// With PostgreSQL blackholed every call fails within a bound (an error
// wrapping domain.ErrUnavailable), never hangs; healed, the same store
// works again by itself.
func TestUnreachableDatabaseFailsFastAndRecovers(t *testing.T) {
	db := pgtest.New(t)
	proxy, err := faultproxy.New(db.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	s, err := postgres.Open(postgres.Options{URL: db.URLVia(proxy.Addr()), InstanceID: "a", Logger: quiet, OpTimeout: 2 * time.Second, LeaseTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	other, err := postgres.Open(postgres.Options{URL: db.URLVia(proxy.Addr()), InstanceID: "b", Logger: quiet, OpTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ids := saveN(t, s, "before", 3, domain.MirrorPending)

	proxy.Blackhole(true)
	calls := []struct {
		name string
		call func() error
	}{
		{"Save", func() error {
			_, err := s.Save(ctx, domain.Batch{Messages: []domain.Message{msg(t, "during", domain.MirrorPending)}})
			return err
		}},
		{"Get", func() error { _, err := s.Get(ctx, ids[0]); return err }},
		{"List", func() error { _, _, err := s.List(ctx, domain.ListFilter{}); return err }},
		{"CountByStatus", func() error { _, err := s.CountByStatus(ctx); return err }},
		{"Claim", func() error { _, err := s.Claim(ctx, ids); return err }},
		{"ClaimCandidates", func() error {
			_, err := s.ClaimCandidates(ctx, domain.CandidateQuery{Orphans: true})
			return err
		}},
		{"MarkMirrored", func() error { return s.MarkMirrored(ctx, ids, nil) }},
		{"CheckWritable", func() error { return s.CheckWritable(ctx) }},
	}
	// In parallel: each alone waits its bound; the group returns when all have.
	t.Run("blackholed", func(t *testing.T) {
		for _, c := range calls {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				done := make(chan error, 1)
				go func() { done <- c.call() }()
				select {
				case err := <-done:
					if err == nil {
						t.Fatal("succeeded with the database blackholed")
					}
					if !errors.Is(err, domain.ErrUnavailable) {
						t.Errorf("error %v does not wrap ErrUnavailable", err)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("did not return within 10 s with the database blackholed")
				}
			})
		}
	})

	closed := make(chan error, 1)
	go func() { closed <- other.Close() }()
	select {
	case <-closed: // its lease could not be given back; it lapses instead
	case <-time.After(15 * time.Second):
		t.Fatal("Close did not return within 15 s with the database blackholed")
	}

	proxy.Blackhole(false)
	healed := time.Now()
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		_, err := s.Save(ctx, domain.Batch{Messages: []domain.Message{msg(t, fmt.Sprint("after-", i), domain.MirrorPending)}})
		if err == nil {
			break
		}
		t.Logf("save %d after the heal: %v", i, err)
		if time.Now().After(deadline) {
			t.Fatalf("store did not recover within 30 s after the heal: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("saves again %v after the heal", time.Since(healed).Round(time.Millisecond))
	if err := s.CheckWritable(ctx); err != nil {
		t.Errorf("CheckWritable after the heal: %v", err)
	}
	if _, err := s.Get(ctx, ids[0]); err != nil {
		t.Errorf("Get after the heal: %v", err)
	}
}
