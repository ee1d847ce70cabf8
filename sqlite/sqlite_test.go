package sqlite_test

import (
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"igmirror/domain"
	"igmirror/internal/testkit/storetest"
	"igmirror/sqlite"
)

// quiet is the stores' logger: the tests assert on results, not logs.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// mustOpenAt opens a store on path, closed when the test ends.
func mustOpenAt(t *testing.T, path string, o storetest.Options) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(sqlite.Options{Path: path, InstanceID: o.InstanceID, LeaseTimeout: o.LeaseTimeout, NoRenew: o.NoRenew, Logger: quiet})
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close(%s): %v", path, err)
		}
	})
	return s
}

// fresh is the conformance suite's database: a new file in a temp dir.
func fresh(t *testing.T) storetest.Opener {
	path := filepath.Join(t.TempDir(), "store.db")
	return func(t *testing.T, o storetest.Options) domain.Store {
		t.Helper()
		return mustOpenAt(t, path, o)
	}
}

func TestConformance(t *testing.T) {
	storetest.Run(t, fresh)
}
