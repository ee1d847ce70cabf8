package postgres_test

import (
	"testing"

	"igmirror/domain"
	"igmirror/internal/testkit/pgtest"
	"igmirror/internal/testkit/storetest"
	"igmirror/postgres"
)

// TestConformance runs the port's conformance suite against PostgreSQL:
// each test gets a database of its own, and each Opener call a new
// instance (a new lease owner) on it.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Opener {
		db := pgtest.New(t)
		return func(t *testing.T, o storetest.Options) domain.Store {
			t.Helper()
			s, err := postgres.Open(postgres.Options{URL: db.URL, InstanceID: o.InstanceID, LeaseTimeout: o.LeaseTimeout, NoRenew: o.NoRenew, Logger: quiet})
			if err != nil {
				t.Fatalf("open postgres store: %v", err)
			}
			t.Cleanup(func() { _ = s.Close() })
			return s
		}
	})
}
