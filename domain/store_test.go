package domain_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"igmirror/domain"
)

func TestSaveStoresAndReturnsIDs(t *testing.T) {
	s := mustOpenStore(t)
	reply := "aWdfZAG1-original"
	in := []domain.Message{
		newMsg(t, "m1"),
		newMsg(t, "m2", outbound, func(m *domain.Message) { m.MessageText = "Привіт! Olá, café? 😍👍" }),
		newMsg(t, "m3", func(m *domain.Message) {
			m.MessageText = ""
			m.Attachments = `[{"type":"image","url":"https://cdn.example/a?x=1&y=2"}]`
			m.ReplyToMID = reply
		}),
	}
	before := time.Now().UTC()
	res := mustSave(t, s, in...)
	after := time.Now().UTC()

	if got, want := len(res.New), 3; got != want {
		t.Fatalf("stored: got %d, want %d", got, want)
	}
	if res.Duplicates != 0 || res.Unsent != 0 {
		t.Errorf("duplicates, unsent: got %d, %d, want 0, 0", res.Duplicates, res.Unsent)
	}
	if got, want := idsOf(res.New), []int64{1, 2, 3}; !slices.Equal(got, want) {
		t.Errorf("ids: got %v, want %v", got, want)
	}
	for i, want := range in {
		r := res.New[i]
		if r.MID() != want.MID() {
			t.Errorf("New[%d]: got mid %q, want %q (order kept)", i, r.MID(), want.MID())
		}
		if r.CreatedAt.Before(before) || r.CreatedAt.After(after) {
			t.Errorf("New[%d].CreatedAt: got %v, want between %v and %v", i, r.CreatedAt, before, after)
		}
		got := mustGet(t, s, r.ID)
		if got.MID() != want.MID() || got.SenderID != want.SenderID || got.RecipientID != want.RecipientID ||
			got.Direction != want.Direction || got.MessageText != want.MessageText || got.UserID != customer ||
			got.Attachments != want.Attachments || got.ReplyToMID != want.ReplyToMID ||
			got.MirrorStatus != domain.MirrorPending || got.Deleted || got.MirrorAttempts != 0 {
			t.Errorf("stored %d:\n got %+v\nwant %+v", r.ID, got, want)
		}
		if !got.Timestamp.Equal(t0) || got.Timestamp.Location() != time.UTC {
			t.Errorf("stored %d timestamp: got %v, want %v in UTC", r.ID, got.Timestamp, t0)
		}
	}
}

func TestSaveNothingIsANoop(t *testing.T) {
	s := mustOpenStore(t)
	res, err := s.Save(context.Background(), nil, nil)
	if err != nil || len(res.New) != 0 || res.Duplicates != 0 {
		t.Fatalf("Save(nil, nil): got %+v, %v, want nothing", res, err)
	}
}

func TestSaveDuplicateMID(t *testing.T) {
	t.Run("same call", func(t *testing.T) {
		s := mustOpenStore(t)
		first := newMsg(t, "dup")
		second := newMsg(t, "dup", func(m *domain.Message) { m.MessageText = "redelivered" })
		res := mustSave(t, s, first, second, newMsg(t, "other"))
		if got, want := len(res.New), 2; got != want {
			t.Fatalf("stored: got %d, want %d", got, want)
		}
		if got, want := res.Duplicates, 1; got != want {
			t.Errorf("duplicates: got %d, want %d", got, want)
		}
		if got, want := res.New[0].MessageText, first.MessageText; got != want {
			t.Errorf("kept text: got %q, want the first %q", got, want)
		}
		if got, want := len(allIDs(t, s)), 2; got != want {
			t.Errorf("rows: got %d, want %d", got, want)
		}
	})
	t.Run("later call", func(t *testing.T) {
		s := mustOpenStore(t)
		orig := mustSaveOne(t, s, newMsg(t, "dup"))
		res := mustSave(t, s, newMsg(t, "dup"), newMsg(t, "fresh"))
		if got, want := len(res.New), 1; got != want {
			t.Fatalf("stored: got %d, want %d", got, want)
		}
		if got, want := res.New[0].MID(), "fresh"; got != want {
			t.Errorf("stored mid: got %q, want %q", got, want)
		}
		if got, want := res.Duplicates, 1; got != want {
			t.Errorf("duplicates: got %d, want %d", got, want)
		}
		m, err := s.GetByMID(context.Background(), "dup")
		if err != nil || m.ID != orig.ID {
			t.Errorf("GetByMID(dup): got id %d, %v, want %d", m.ID, err, orig.ID)
		}
		if got, want := len(allIDs(t, s)), 2; got != want {
			t.Errorf("rows: got %d, want %d", got, want)
		}
	})
	t.Run("concurrent callers", func(t *testing.T) {
		s := mustOpenStore(t)
		const callers = 16
		var (
			wg         sync.WaitGroup
			mu         sync.Mutex
			stored     []domain.Message
			duplicates int
			errs       []error
		)
		dup := newMsg(t, "dup")
		start := make(chan struct{})
		for range callers {
			wg.Go(func() {
				<-start
				res, err := s.Save(context.Background(), []domain.Message{dup}, nil)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
					return
				}
				stored = append(stored, res.New...)
				duplicates += res.Duplicates
			})
		}
		close(start)
		wg.Wait()
		if len(errs) > 0 {
			t.Fatalf("Save: %v", errs)
		}
		if got, want := len(stored), 1; got != want {
			t.Fatalf("stored across callers: got %d, want %d", got, want)
		}
		if got, want := duplicates, callers-1; got != want {
			t.Errorf("duplicates across callers: got %d, want %d", got, want)
		}
		if got, want := allIDs(t, s), []int64{stored[0].ID}; !slices.Equal(got, want) {
			t.Errorf("rows: got %v, want %v", got, want)
		}
	})
}

func TestConcurrentSavesAllCommitWithDistinctIDs(t *testing.T) {
	s := mustOpenStore(t)
	const callers, perCaller = 32, 5
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		ids []int64
		bad []string
	)
	batches := make([][]domain.Message, callers)
	for c := range batches {
		for i := range perCaller {
			batches[c] = append(batches[c], newMsg(t, fmt.Sprintf("c%d-%d", c, i)))
		}
	}
	start := make(chan struct{})
	for _, msgs := range batches {
		wg.Go(func() {
			<-start
			res, err := s.Save(context.Background(), msgs, nil)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				bad = append(bad, err.Error())
			case len(res.New) != perCaller || res.Duplicates != 0:
				bad = append(bad, fmt.Sprintf("caller stored %d, %d duplicates", len(res.New), res.Duplicates))
			default:
				for i := range res.New {
					if res.New[i].MID() != msgs[i].MID() {
						bad = append(bad, "result out of order for "+msgs[i].MID())
					}
				}
				ids = append(ids, idsOf(res.New)...)
			}
		})
	}
	close(start)
	wg.Wait()
	if len(bad) > 0 {
		t.Fatalf("callers failed: %v", bad)
	}
	slices.Sort(ids)
	if got, want := len(slices.Compact(slices.Clone(ids))), callers*perCaller; got != want {
		t.Fatalf("distinct ids: got %d, want %d", got, want)
	}
	if got := allIDs(t, s); !slices.Equal(got, ids) {
		t.Errorf("stored ids differ from returned ids:\n got %v\nwant %v", got, ids)
	}
	// Each returned id must hold the message it was returned for.
	for _, id := range ids[:5] {
		if m := mustGet(t, s, id); m.MessageText != "text of "+m.MID() {
			t.Errorf("message %d: text %q does not belong to mid %q", id, m.MessageText, m.MID())
		}
	}
}

func TestMessagesWithoutMIDAreAlwaysStored(t *testing.T) {
	s := mustOpenStore(t)
	a := newMsg(t, "")
	res := mustSave(t, s, a, a)
	if got, want := len(res.New), 2; got != want {
		t.Fatalf("first save: stored %d, want %d", got, want)
	}
	res = mustSave(t, s, a)
	if got, want := len(res.New), 1; got != want {
		t.Fatalf("second save: stored %d, want %d", got, want)
	}
	if got, want := allIDs(t, s), []int64{1, 2, 3}; !slices.Equal(got, want) {
		t.Errorf("rows: got %v, want %v", got, want)
	}
	if m := mustGet(t, s, 3); m.InstagramMessageID != nil {
		t.Errorf("mid: got %q, want NULL", *m.InstagramMessageID)
	}
}

func TestUnsendMarksDeleted(t *testing.T) {
	ctx := context.Background()
	s := mustOpenStore(t)
	kept := mustSaveOne(t, s, newMsg(t, "keep"))
	gone := mustSaveOne(t, s, newMsg(t, "gone"))

	res, err := s.Save(ctx, nil, []string{"gone", "never-stored"})
	if err != nil {
		t.Fatalf("Save unsend: %v", err)
	}
	if got, want := res.Unsent, 1; got != want {
		t.Errorf("unsent: got %d, want %d", got, want)
	}
	if len(res.New) != 0 {
		t.Errorf("an unsend stored %d messages, want 0", len(res.New))
	}
	if m := mustGet(t, s, gone.ID); !m.Deleted || m.DeletedAt == nil {
		t.Errorf("unsent message: deleted %v at %v, want true with a time", m.Deleted, m.DeletedAt)
	}
	if m := mustGet(t, s, kept.ID); m.Deleted || m.DeletedAt != nil {
		t.Errorf("other message: deleted %v, want false", m.Deleted)
	}
	again, err := s.Save(ctx, nil, []string{"gone"})
	if err != nil || again.Unsent != 0 {
		t.Errorf("second unsend: got unsent %d, %v, want 0, nil", again.Unsent, err)
	}
	if got, want := len(allIDs(t, s)), 2; got != want {
		t.Errorf("rows: got %d, want %d (an unsend adds none)", got, want)
	}

	// A message and its unsend in one delivery: stored, and deleted.
	res, err = s.Save(ctx, []domain.Message{newMsg(t, "blink")}, []string{"blink"})
	if err != nil {
		t.Fatalf("Save message with its unsend: %v", err)
	}
	if len(res.New) != 1 || res.Unsent != 1 {
		t.Fatalf("message with its unsend: stored %d, unsent %d, want 1, 1", len(res.New), res.Unsent)
	}
	if m := mustGet(t, s, res.New[0].ID); !m.Deleted {
		t.Errorf("message unsent in the same delivery: deleted false, want true")
	}
}

func TestMarkDroppedOnlyTouchesPending(t *testing.T) {
	ctx := context.Background()
	s := mustOpenStore(t)
	pending := mustSaveOne(t, s, newMsg(t, "p"))
	mirrored := mustSaveOne(t, s, newMsg(t, "m"))
	disabled := mustSaveOne(t, s, newMsg(t, "d", withStatus(domain.MirrorDisabled)))
	if err := s.MarkMirrored(ctx, []int64{mirrored.ID}, nil); err != nil {
		t.Fatal(err)
	}

	s.MarkDropped(pending.ID, mirrored.ID, disabled.ID)
	s.MarkDropped() // nothing: must not block or fail

	eventually(t, 5*time.Second, "the drop mark", func() bool {
		return mustGet(t, s, pending.ID).MirrorStatus == domain.MirrorDropped
	})
	if got, want := mustGet(t, s, mirrored.ID).MirrorStatus, domain.MirrorMirrored; got != want {
		t.Errorf("mirrored message after MarkDropped: got %q, want %q", got, want)
	}
	if got, want := mustGet(t, s, disabled.ID).MirrorStatus, domain.MirrorDisabled; got != want {
		t.Errorf("disabled message after MarkDropped: got %q, want %q", got, want)
	}
}

func TestMirrorStateMarks(t *testing.T) {
	ctx := context.Background()
	s := mustOpenStore(t)
	res := mustSave(t, s, newMsg(t, "a"), newMsg(t, "b"), newMsg(t, "c"))
	a, b, c := res.New[0].ID, res.New[1].ID, res.New[2].ID

	before := time.Now().UTC()
	for range 2 {
		if err := s.MarkAttempting(ctx, []int64{a, b}); err != nil {
			t.Fatalf("MarkAttempting: %v", err)
		}
	}
	for _, id := range []int64{a, b} {
		m := mustGet(t, s, id)
		if m.MirrorAttempts != 2 || m.MirrorLastAttemptAt == nil || m.MirrorLastAttemptAt.Before(before) {
			t.Errorf("message %d after two attempts: attempts %d at %v, want 2 at or after %v",
				id, m.MirrorAttempts, m.MirrorLastAttemptAt, before)
		}
		if m.MirrorStatus != domain.MirrorPending {
			t.Errorf("message %d: an attempt changed the status to %q", id, m.MirrorStatus)
		}
	}
	if m := mustGet(t, s, c); m.MirrorAttempts != 0 || m.MirrorLastAttemptAt != nil {
		t.Errorf("untouched message: attempts %d at %v, want 0, nil", m.MirrorAttempts, m.MirrorLastAttemptAt)
	}

	long := strings.Repeat("é", 400) // 800 bytes
	if err := s.MarkFailed(ctx, []int64{a, b}, long); err != nil {
		t.Fatalf("MarkFailed: %v", err)
	}
	ma := mustGet(t, s, a)
	if ma.MirrorStatus != domain.MirrorFailed {
		t.Errorf("after MarkFailed: status %q, want failed", ma.MirrorStatus)
	}
	if n := len(ma.MirrorLastError); n > 500 || n < 499 || !utf8.ValidString(ma.MirrorLastError) || !strings.HasPrefix(long, ma.MirrorLastError) {
		t.Errorf("kept error: %d bytes, valid %v; want the reason cut to at most 500 bytes on a rune boundary",
			n, utf8.ValidString(ma.MirrorLastError))
	}

	if err := s.MarkMirrored(ctx, []int64{a, b, c}, map[int64]bool{b: true}); err != nil {
		t.Fatalf("MarkMirrored: %v", err)
	}
	for _, tc := range []struct {
		id       int64
		degraded bool
	}{{a, false}, {b, true}, {c, false}} {
		m := mustGet(t, s, tc.id)
		if m.MirrorStatus != domain.MirrorMirrored || m.MirroredAt == nil || m.MirrorLastError != "" || m.MirrorDegraded != tc.degraded {
			t.Errorf("message %d after MarkMirrored: status %q at %v, error %q, degraded %v; want mirrored, a time, no error, degraded %v",
				tc.id, m.MirrorStatus, m.MirroredAt, m.MirrorLastError, m.MirrorDegraded, tc.degraded)
		}
	}

	states, err := s.MirrorStates(ctx, []int64{a, c, 999})
	if err != nil {
		t.Fatalf("MirrorStates: %v", err)
	}
	want := map[int64]domain.MirrorState{
		a: {ID: a, Status: domain.MirrorMirrored, Attempts: 2},
		c: {ID: c, Status: domain.MirrorMirrored, Attempts: 0},
	}
	if len(states) != len(want) || states[a] != want[a] || states[c] != want[c] {
		t.Errorf("MirrorStates: got %v, want %v", states, want)
	}
}

func TestCountByStatus(t *testing.T) {
	ctx := context.Background()
	s := mustOpenStore(t)
	got, err := s.CountByStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[domain.MirrorStatus]int64{
		domain.MirrorPending: 0, domain.MirrorMirrored: 0, domain.MirrorDropped: 0, domain.MirrorFailed: 0, domain.MirrorDisabled: 0,
	}
	if !mapsEqual(got, want) {
		t.Errorf("empty store: got %v, want %v", got, want)
	}
	res := mustSave(t, s, newMsg(t, "p1"), newMsg(t, "p2"), newMsg(t, "m1"), newMsg(t, "f1"),
		newMsg(t, "d1", withStatus(domain.MirrorDropped)), newMsg(t, "x1", withStatus(domain.MirrorDisabled)))
	if err := s.MarkMirrored(ctx, []int64{res.New[2].ID}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkFailed(ctx, []int64{res.New[3].ID}, "boom"); err != nil {
		t.Fatal(err)
	}
	got, err = s.CountByStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want = map[domain.MirrorStatus]int64{
		domain.MirrorPending: 2, domain.MirrorMirrored: 1, domain.MirrorDropped: 1, domain.MirrorFailed: 1, domain.MirrorDisabled: 1,
	}
	if !mapsEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func mapsEqual[K comparable, V comparable](a, b map[K]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestCheckWritableAndClose(t *testing.T) {
	ctx := context.Background()
	s, err := domain.OpenStore(domain.StoreOptions{Path: filepath.Join(t.TempDir(), "s.db"), Synchronous: "FULL"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CheckWritable(ctx); err != nil {
		t.Fatalf("CheckWritable: %v", err)
	}
	if err := s.CheckWritable(ctx); err != nil {
		t.Fatalf("CheckWritable twice: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := s.CheckWritable(ctx); !errors.Is(err, domain.ErrClosed) {
		t.Errorf("CheckWritable after Close: got %v, want ErrClosed", err)
	}
	if _, err := s.Save(ctx, []domain.Message{newMsg(t, "late")}, nil); !errors.Is(err, domain.ErrClosed) {
		t.Errorf("Save after Close: got %v, want ErrClosed", err)
	}
	s.MarkDropped(1) // must not block or panic after Close
}

func TestOpenStoreFailsOnUnusablePath(t *testing.T) {
	dir := t.TempDir()
	_, err := domain.OpenStore(domain.StoreOptions{Path: filepath.Join(dir, "missing", "dir", "s.db")})
	if err == nil {
		t.Fatal("OpenStore in a directory that does not exist: got nil error")
	}
}

func TestReopenKeepsDataAndContinuesIDs(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "store.db")
	s, err := domain.OpenStore(domain.StoreOptions{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	first := mustSave(t, s, newMsg(t, "a"), newMsg(t, "b"), newMsg(t, "c"))
	if err := s.MarkMirrored(ctx, []int64{first.New[0].ID}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = mustOpenStoreAt(t, path)
	if got, want := allIDs(t, s), []int64{1, 2, 3}; !slices.Equal(got, want) {
		t.Fatalf("after reopen: ids %v, want %v", got, want)
	}
	if got, want := mustGet(t, s, 1).MirrorStatus, domain.MirrorMirrored; got != want {
		t.Errorf("after reopen: status %q, want %q", got, want)
	}
	res := mustSave(t, s, newMsg(t, "d"))
	if len(res.New) != 1 || res.New[0].ID != 4 {
		t.Fatalf("after reopen: new ids %v, want [4]", idsOf(res.New))
	}
	if m := mustGet(t, s, 4); m.MID() != "d" {
		t.Errorf("message 4: mid %q, want d", m.MID())
	}
	res = mustSave(t, s, newMsg(t, "b"))
	if len(res.New) != 0 || res.Duplicates != 1 {
		t.Errorf("mid stored before reopening: got %d new, %d duplicates, want 0, 1", len(res.New), res.Duplicates)
	}
}

func TestGetNotFound(t *testing.T) {
	s := mustOpenStore(t)
	if _, err := s.Get(context.Background(), 42); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("Get missing: got %v, want ErrNotFound", err)
	}
	if _, err := s.GetByMID(context.Background(), "nope"); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("GetByMID missing: got %v, want ErrNotFound", err)
	}
}

// TestWriterStats: every Save is one request of some commit, and a failed
// transaction is counted apart from the commits.
func TestWriterStats(t *testing.T) {
	s := mustOpenStore(t)
	before := s.WriterStats()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 5 {
				a, b := newMsg(t, mid(fmt.Sprintf("stats-%d", g), i)), newMsg(t, mid(fmt.Sprintf("stats-%d-b", g), i))
				if _, err := s.Save(context.Background(), []domain.Message{a, b}, nil); err != nil {
					t.Errorf("Save: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	got := s.WriterStats()
	if d := got.Requests - before.Requests; d != 40 {
		t.Errorf("requests: got %d, want 40", d)
	}
	if d := got.Commits - before.Commits; d < 1 || d > 40 {
		t.Errorf("commits: got %d, want 1..40", d)
	}
	if got.Busy <= before.Busy || got.Failed != before.Failed {
		t.Errorf("busy %v → %v, failed %d → %d: want busy up, no failures", before.Busy, got.Busy, before.Failed, got.Failed)
	}
}
