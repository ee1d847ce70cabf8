package sqlite_test

import (
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"igmirror/domain"
	"igmirror/internal/testkit/storetest"
	"igmirror/sqlite"
)

// legacyCopy copies the committed store written before numbered
// migrations into a temp dir; the committed file is never opened.
func legacyCopy(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "legacy.db")
	if err := copyFile(filepath.Join("..", "testdata", "legacy", "store-before-migrations.db"), path); err != nil {
		t.Fatal(err)
	}
	return path
}

// legacyRow is what the legacy file holds of one message.
type legacyRow struct {
	mid, text, status string
	hasMID, deleted   bool
}

func readLegacy(t *testing.T, path string) map[int64]legacyRow {
	t.Helper()
	rows, err := rawDB(t, path).Query("SELECT id, instagram_message_id, message_text, mirror_status, deleted FROM messages")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[int64]legacyRow{}
	for rows.Next() {
		var id int64
		var mid *string
		var r legacyRow
		if err := rows.Scan(&id, &mid, &r.text, &r.status, &r.deleted); err != nil {
			t.Fatal(err)
		}
		if mid != nil {
			r.mid, r.hasMID = *mid, true
		}
		out[id] = r
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// embeddedVersions are the versions of sqlite/migrations/*.sql.
func embeddedVersions(t *testing.T) []int {
	t.Helper()
	var out []int
	err := fs.WalkDir(os.DirFS("migrations"), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".sql") {
			return err
		}
		v, err := strconv.Atoi(strings.SplitN(p, "_", 2)[0])
		if err != nil {
			return err
		}
		out = append(out, v)
		return nil
	})
	if err != nil || len(out) == 0 {
		t.Fatalf("migrations: %v, %v", out, err)
	}
	slices.Sort(out)
	return out
}

func appliedVersions(t *testing.T, path string) []int {
	t.Helper()
	rows, err := rawDB(t, path).Query("SELECT version FROM schema_migrations ORDER BY version")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []int
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

func TestLegacyFileMigrates(t *testing.T) {
	path := legacyCopy(t)
	want := readLegacy(t, path)
	if len(want) != 41 {
		t.Fatalf("legacy fixture: got %d messages, want 41", len(want))
	}

	s, err := sqlite.Open(sqlite.Options{Path: path, Logger: quiet})
	if err != nil {
		t.Fatalf("Open(legacy): %v", err)
	}
	counts, err := s.CountByStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantCounts := map[domain.MirrorStatus]int64{domain.MirrorMirrored: 15, domain.MirrorPending: 15, domain.MirrorFailed: 5, domain.MirrorDropped: 5, domain.MirrorDisabled: 1}
	if !maps.Equal(counts, wantCounts) {
		t.Errorf("CountByStatus after migration: got %v, want %v", counts, wantCounts)
	}
	page, _, err := s.List(ctx, domain.ListFilter{Limit: 500})
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != len(want) {
		t.Errorf("messages after migration: got %d, want %d", len(page), len(want))
	}
	unsent, bare := 0, 0
	var someMID string
	for _, m := range page {
		w, ok := want[m.ID]
		if !ok {
			t.Errorf("message %d: not in the legacy file", m.ID)
			continue
		}
		if m.MID() != w.mid || (m.InstagramMessageID != nil) != w.hasMID || m.MessageText != w.text || string(m.MirrorStatus) != w.status || m.Deleted != w.deleted {
			t.Errorf("message %d: got mid %q text %q status %q deleted %v, want %q, %q, %q, %v", m.ID, m.MID(), m.MessageText, m.MirrorStatus, m.Deleted, w.mid, w.text, w.status, w.deleted)
		}
		if m.Timestamp.IsZero() || m.CreatedAt.IsZero() {
			t.Errorf("message %d: got timestamp %v created %v, want both read", m.ID, m.Timestamp, m.CreatedAt)
		}
		if m.Deleted {
			unsent++
		}
		if !w.hasMID {
			bare++
		} else if someMID == "" && w.status == "mirrored" {
			someMID = w.mid
		}
	}
	if unsent != 1 || bare != 1 {
		t.Errorf("unsent, without mid: got %d, %d, want 1, 1", unsent, bare)
	}
	res, err := s.Save(ctx, domain.Batch{Messages: []domain.Message{newMsg(t, someMID), newMsg(t, "after-migration")}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Duplicates != 1 || len(res.New) != 1 || res.New[0].ID <= 41 {
		t.Errorf("redelivery of legacy %s plus a new mid: got new %v duplicates %d, want one new (id above 41) and one duplicate", someMID, idsOf(res.New), res.Duplicates)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	versions := embeddedVersions(t)
	if got := appliedVersions(t, path); !slices.Equal(got, versions) {
		t.Errorf("schema_migrations after the first open: got %v, want %v", got, versions)
	}
	var old []string
	rows, err := rawDB(t, path).Query("SELECT name FROM sqlite_master WHERE name IN ('mid_keys', 'user_index', 'store_meta', 'legacy_messages')")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var n string
		_ = rows.Scan(&n)
		old = append(old, n)
	}
	rows.Close()
	if len(old) > 0 {
		t.Errorf("old tables after migration: got %v, want none", old)
	}

	// A second open applies nothing and keeps everything.
	again := mustOpenAt(t, path, storetest.Options{})
	if got := appliedVersions(t, path); !slices.Equal(got, versions) {
		t.Errorf("schema_migrations after the second open: got %v, want %v", got, versions)
	}
	all, _, err := again.List(ctx, domain.ListFilter{Limit: 500})
	if err != nil || len(all) != 42 {
		t.Errorf("messages after reopen: got %d, %v, want 42", len(all), err)
	}
	// The legacy pending messages have no owner: the next instance takes
	// them over (with the one stored before the first Close).
	orphans, err := again.ClaimCandidates(ctx, domain.CandidateQuery{Orphans: true, Limit: 100})
	if err != nil || len(orphans) != 16 {
		t.Errorf("orphans after migration: got %d, %v, want 16 (15 legacy pending and one new)", len(orphans), err)
	}
	integrityOK(t, path)
}

func idsOf(ms []domain.Message) []int64 {
	out := make([]int64, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

// TestConcurrentOpenMigratesOnce opens a new file from several stores at
// once: the migrations run once, and every store opens.
func TestConcurrentOpenMigratesOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	const n = 4
	stores := make([]*sqlite.Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			stores[i], errs[i] = sqlite.Open(sqlite.Options{Path: path, Logger: quiet})
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Open %d: %v", i, err)
			continue
		}
		if _, err := stores[i].Save(ctx, domain.Batch{Messages: []domain.Message{newMsg(t, "same")}}); err != nil {
			t.Errorf("Save on store %d: %v", i, err)
		}
	}
	for _, s := range stores {
		if s != nil {
			if err := s.Close(); err != nil {
				t.Error(err)
			}
		}
	}
	if got, want := appliedVersions(t, path), embeddedVersions(t); !slices.Equal(got, want) {
		t.Errorf("schema_migrations: got %v, want %v", got, want)
	}
	if got := midRows(t, path)["same"]; got != 1 {
		t.Errorf("rows of one mid saved by every store: got %d, want 1", got)
	}
	integrityOK(t, path)
}
