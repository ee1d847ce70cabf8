package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"igmirror/domain"
	"igmirror/internal/testkit/storetest"
	"igmirror/sqlite"
)

var ctx = context.Background()

var t0 = time.Date(2025, 11, 21, 23, 6, 40, 123_456_000, time.UTC)

// newMsg is a valid pending inbound message; mid "" has none.
func newMsg(t testing.TB, mid string, opts ...func(*domain.Message)) domain.Message {
	t.Helper()
	m := domain.Message{SenderID: "5582201937461123", RecipientID: "17841400000000001", Direction: domain.Inbound,
		MessageText: "text of " + mid, Timestamp: t0, MirrorStatus: domain.MirrorPending}
	if mid != "" {
		m.InstagramMessageID = &mid
	}
	for _, o := range opts {
		o(&m)
	}
	if err := m.Validate(); err != nil {
		t.Fatalf("test message %q: %v", mid, err)
	}
	return m
}

// rawDB opens path with database/sql alone, to look at the file as it is.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// integrityOK fails the test unless PRAGMA integrity_check says ok.
func integrityOK(t *testing.T, path string) {
	t.Helper()
	var res string
	if err := rawDB(t, path).QueryRow("PRAGMA integrity_check").Scan(&res); err != nil {
		t.Fatalf("integrity_check: %v", err)
	}
	if res != "ok" {
		t.Errorf("integrity_check: got %q, want ok", res)
	}
}

// midRows counts the rows holding each mid in the file.
func midRows(t *testing.T, path string) map[string]int {
	t.Helper()
	rows, err := rawDB(t, path).Query("SELECT instagram_message_id, COUNT(*) FROM messages WHERE instagram_message_id IS NOT NULL GROUP BY 1")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var mid string
		var n int
		if err := rows.Scan(&mid, &n); err != nil {
			t.Fatal(err)
		}
		out[mid] = n
	}
	return out
}

func TestHardLinkedFileRefused(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("hard-link counts are read on unix only")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "store.db")
	s := mustOpenAt(t, path, storetest.Options{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(path, filepath.Join(dir, "other-name.db")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, filepath.Join(dir, "other-name.db")} {
		s, err := sqlite.Open(sqlite.Options{Path: p, Logger: quiet})
		if err == nil {
			_ = s.Close()
			t.Fatalf("Open(%s) with two hard links: got a store, want %v", p, sqlite.ErrHardLinked)
		}
		if !errors.Is(err, sqlite.ErrHardLinked) {
			t.Errorf("Open(%s): got %v, want %v", p, err, sqlite.ErrHardLinked)
		}
		if msg := err.Error(); !strings.Contains(msg, "remove the other links") || !strings.Contains(msg, "SQLITE_PATH") {
			t.Errorf("error: got %q, want one that names the fix (remove the other links, point SQLITE_PATH at one name)", msg)
		}
	}
}

func TestSymlinkOpensTheSameFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "store.db")
	link := filepath.Join(dir, "link.db")
	direct := mustOpenAt(t, path, storetest.Options{InstanceID: "direct"})
	if err := os.Symlink(path, link); err != nil {
		t.Skipf("symlink: %v", err)
	}
	linked := mustOpenAt(t, link, storetest.Options{InstanceID: "linked"})

	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range n {
		for _, s := range []*sqlite.Store{direct, linked} {
			wg.Go(func() {
				_, err := s.Save(ctx, domain.Batch{Messages: []domain.Message{newMsg(t, fmt.Sprintf("same-%d", i))}})
				errs <- err
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Save: %v", err)
		}
	}
	for _, s := range []*sqlite.Store{direct, linked} {
		page, _, err := s.List(ctx, domain.ListFilter{Limit: 500})
		if err != nil || len(page) != n {
			t.Errorf("messages seen by %s: got %d, %v, want %d", s.Lease().InstanceID, len(page), err, n)
		}
	}
	for _, s := range []*sqlite.Store{direct, linked} {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	rows := midRows(t, path)
	if len(rows) != n {
		t.Errorf("mids in the file: got %d, want %d", len(rows), n)
	}
	for mid, c := range rows {
		if c != 1 {
			t.Errorf("rows of %s: got %d, want 1", mid, c)
		}
	}
	if _, err := os.Stat(link + "-wal"); err == nil {
		t.Errorf("a WAL named after the link exists, want the one named after the file only")
	}
	integrityOK(t, path)
}

func TestTwoStoresOnOneFileConcurrently(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	stores := []*sqlite.Store{
		mustOpenAt(t, path, storetest.Options{InstanceID: "one"}),
		mustOpenAt(t, path, storetest.Options{InstanceID: "two"}),
	}
	const goroutines, nMIDs = 8, 40
	var wg sync.WaitGroup
	var mu sync.Mutex
	stored, dups := map[string]int{}, 0
	start := make(chan struct{})
	for _, s := range stores {
		for g := range goroutines {
			wg.Go(func() {
				<-start
				for i := range nMIDs {
					// Each goroutine goes through the mids from its own place.
					mid := fmt.Sprintf("mid-%03d", (i+g*5)%nMIDs)
					res, err := s.Save(ctx, domain.Batch{Messages: []domain.Message{newMsg(t, mid)}})
					mu.Lock()
					if err != nil {
						t.Errorf("Save(%s): %v", mid, err)
					}
					for _, m := range res.New {
						stored[m.MID()]++
					}
					dups += res.Duplicates
					mu.Unlock()
				}
			})
		}
	}
	close(start)
	wg.Wait()
	if got, want := len(stored), nMIDs; got != want {
		t.Errorf("mids reported stored: got %d, want %d", got, want)
	}
	for mid, n := range stored {
		if n != 1 {
			t.Errorf("%s reported stored %d times, want once", mid, n)
		}
	}
	if got, want := dups, nMIDs*(2*goroutines-1); got != want {
		t.Errorf("duplicates: got %d, want %d", got, want)
	}
	for _, s := range stores {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	rows := midRows(t, path)
	if len(rows) != nMIDs {
		t.Errorf("mids in the file: got %d, want %d", len(rows), nMIDs)
	}
	for mid, c := range rows {
		if c != 1 {
			t.Errorf("rows of %s: got %d, want 1", mid, c)
		}
	}
	integrityOK(t, path)
}

func TestMovedFileFailsWrites(t *testing.T) {
	for _, tc := range []struct {
		name string
		away func(t *testing.T, path string) (back func())
	}{
		{"renamed", func(t *testing.T, path string) func() {
			if err := os.Rename(path, path+".moved"); err != nil {
				t.Fatal(err)
			}
			return func() {
				if err := os.Rename(path+".moved", path); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"removed", func(t *testing.T, path string) func() {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			return nil
		}},
		{"replaced", func(t *testing.T, path string) func() {
			if err := os.Rename(path, path+".old"); err != nil {
				t.Fatal(err)
			}
			if err := copyFile(path+".old", path); err != nil {
				t.Fatal(err)
			}
			return nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "store.db")
			s := mustOpenAt(t, path, storetest.Options{})
			if _, err := s.Save(ctx, domain.Batch{Messages: []domain.Message{newMsg(t, "before")}}); err != nil {
				t.Fatal(err)
			}
			back := tc.away(t, path)
			_, err := s.Save(ctx, domain.Batch{Messages: []domain.Message{newMsg(t, "while-away")}})
			if !errors.Is(err, sqlite.ErrFileMoved) {
				t.Errorf("Save with the file %s: got %v, want %v", tc.name, err, sqlite.ErrFileMoved)
			}
			if err := s.CheckWritable(ctx); !errors.Is(err, sqlite.ErrFileMoved) {
				t.Errorf("CheckWritable with the file %s: got %v, want %v", tc.name, err, sqlite.ErrFileMoved)
			}
			if back == nil {
				return
			}
			back()
			res, err := s.Save(ctx, domain.Batch{Messages: []domain.Message{newMsg(t, "after")}})
			if err != nil || len(res.New) != 1 {
				t.Errorf("Save with the file back: got %+v, %v, want it stored", res, err)
			}
		})
	}
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// TestSaveAcrossStatementSizes saves batches that the writer cuts into
// several prepared statements (400, 256, ..., 32 rows, then an exact
// remainder), with mids already stored at the edges of those statements.
// Which messages are new must come out by mid, never by position.
func TestSaveAcrossStatementSizes(t *testing.T) {
	sizes := []int{}
	for n := 1; n <= 17; n++ {
		sizes = append(sizes, n)
	}
	sizes = append(sizes, 31, 32, 33, 399, 400, 401, 1000)
	for _, n := range sizes {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			s := mustOpenAt(t, filepath.Join(t.TempDir(), "store.db"), storetest.Options{})
			// Duplicates at the first and last place, at every cut of a kept
			// statement size, one repeated inside the batch, and one bare message.
			dupAt := map[int]bool{0: true, n - 1: true}
			for _, cut := range []int{16, 32, 64, 128, 256, 400} {
				for _, at := range []int{cut - 1, cut} {
					if at < n {
						dupAt[at] = true
					}
				}
			}
			var old []domain.Message
			for i := range n {
				if dupAt[i] {
					old = append(old, newMsg(t, fmt.Sprintf("m-%04d", i)))
				}
			}
			if _, err := s.Save(ctx, domain.Batch{Messages: old}); err != nil {
				t.Fatal(err)
			}
			var msgs []domain.Message
			var wantNew []string
			for i := range n {
				mid := fmt.Sprintf("m-%04d", i)
				msgs = append(msgs, newMsg(t, mid))
				if !dupAt[i] {
					wantNew = append(wantNew, mid)
				}
			}
			wantDups := len(old)
			if n > 2 {
				// The same mid again later in the batch, and a message without one.
				msgs = append(msgs, newMsg(t, fmt.Sprintf("m-%04d", 1)), newMsg(t, ""))
				wantNew = append(wantNew, "")
				wantDups++
			}
			res, err := s.Save(ctx, domain.Batch{Messages: msgs})
			if err != nil {
				t.Fatalf("Save(%d): %v", len(msgs), err)
			}
			var gotNew []string
			for _, m := range res.New {
				gotNew = append(gotNew, m.MID())
				stored, err := s.Get(ctx, m.ID)
				if err != nil || stored.MID() != m.MID() {
					t.Fatalf("id %d: Save said mid %q, the table holds %q (%v)", m.ID, m.MID(), stored.MID(), err)
				}
			}
			if !slices.Equal(gotNew, wantNew) {
				t.Errorf("new: got %d mids, want %d (first got %v)", len(gotNew), len(wantNew), gotNew[:min(3, len(gotNew))])
			}
			if res.Duplicates != wantDups {
				t.Errorf("duplicates: got %d, want %d", res.Duplicates, wantDups)
			}
		})
	}
}
