package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"igmirror/domain"
	"igmirror/internal/testkit/pgtest"
	"igmirror/postgres"
)

func TestSaveDedupesByTheConstraint(t *testing.T) {
	db := pgtest.New(t)
	s := mustOpen(t, db, "a", 0)
	ctx := context.Background()

	res := mustSave(t, s, msg(t, "m1", domain.MirrorPending), msg(t, "m2", domain.MirrorPending), msg(t, "m1", domain.MirrorPending), msg(t, "", domain.MirrorPending))
	if got, want := len(res.New), 3; got != want {
		t.Fatalf("new = %d, want %d", got, want)
	}
	if res.Duplicates != 1 {
		t.Errorf("duplicates = %d, want 1", res.Duplicates)
	}
	if res.New[0].MID() != "m1" || res.New[1].MID() != "m2" || res.New[2].MID() != "" {
		t.Errorf("new in wrong order: %q %q %q", res.New[0].MID(), res.New[1].MID(), res.New[2].MID())
	}
	for _, m := range res.New {
		got, err := s.Get(ctx, m.ID)
		if err != nil {
			t.Fatalf("get %d: %v", m.ID, err)
		}
		if got.MID() != m.MID() || got.MirrorOwner != s.Lease().Owner || !got.CreatedAt.Equal(m.CreatedAt) || !got.Timestamp.Equal(m.Timestamp) {
			t.Errorf("got %+v, want %+v", got, m)
		}
	}
	again := mustSave(t, s, msg(t, "m2", domain.MirrorPending), msg(t, "m3", domain.MirrorPending))
	if len(again.New) != 1 || again.New[0].MID() != "m3" || again.Duplicates != 1 {
		t.Errorf("second save: new %d, duplicates %d; want m3 new, 1 duplicate", len(again.New), again.Duplicates)
	}
	if _, err := s.GetByMID(ctx, "nope"); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("GetByMID(nope) = %v, want ErrNotFound", err)
	}
	counts, err := s.CountByStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if counts[domain.MirrorPending] != 4 {
		t.Errorf("pending = %d, want 4", counts[domain.MirrorPending])
	}
}

func TestUnsendEditAndJournalInTheSameTransaction(t *testing.T) {
	db := pgtest.New(t)
	s := mustOpen(t, db, "a", 0)
	ctx := context.Background()
	mustSave(t, s, msg(t, "m1", domain.MirrorPending), msg(t, "m2", domain.MirrorPending))
	d := &domain.Delivery{Signature: "sha256=ab", Body: []byte(`{"object":"instagram"}`), Items: map[string]int{"message": 1}}
	res, err := s.Save(ctx, domain.Batch{
		Messages: []domain.Message{msg(t, "m3", domain.MirrorPending)},
		Unsends:  []string{"m1", "m1", "gone"},
		Edits:    []domain.Edit{{MID: "m2", Text: "edited", NumEdit: 1}, {MID: "m2", Text: "older", NumEdit: 1}, {MID: "unknown", Text: "x", NumEdit: 1}},
		Delivery: d,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Unsent != 1 || res.Edited != 1 || res.UnknownEdits != 1 || res.DeliveryID == 0 || len(res.New) != 1 {
		t.Fatalf("result %+v", res)
	}
	m2, err := s.GetByMID(ctx, "m2")
	if err != nil {
		t.Fatal(err)
	}
	if m2.MessageText != "edited" || m2.OriginalText == nil || *m2.OriginalText != "hello m2" || m2.EditCount != 1 {
		t.Errorf("m2 after edit: %q (original %v, count %d)", m2.MessageText, m2.OriginalText, m2.EditCount)
	}
	m1, _ := s.GetByMID(ctx, "m1")
	if !m1.Deleted || m1.DeletedAt == nil {
		t.Errorf("m1 not marked deleted")
	}
	got, err := s.GetDelivery(ctx, res.DeliveryID)
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Body) != string(d.Body) || got.Signature != d.Signature || got.Stored != 1 || got.Unsent != 1 || got.Edited != 1 || got.Items["message"] != 1 {
		t.Errorf("journal record %+v", got)
	}
	list, next, err := s.ListDeliveries(ctx, domain.DeliveryFilter{})
	if err != nil || len(list) != 1 || next != "" || list[0].Size != len(d.Body) {
		t.Errorf("ListDeliveries = %+v, %q, %v", list, next, err)
	}
	n, err := s.PurgeDeliveries(ctx, time.Now().Add(time.Hour), 10)
	if err != nil || n != 1 {
		t.Errorf("PurgeDeliveries = %d, %v; want 1", n, err)
	}
}

func TestListPagesNewestFirst(t *testing.T) {
	db := pgtest.New(t)
	s := mustOpen(t, db, "a", 0)
	ids := saveN(t, s, "p", 7, domain.MirrorPending)
	var got []int64
	cursor := ""
	for {
		page, next, err := s.List(context.Background(), domain.ListFilter{Limit: 3, Cursor: cursor, MirrorStatus: domain.MirrorPending, UserID: "cust1"})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range page {
			got = append(got, m.ID)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	want := slices.Clone(ids)
	slices.Reverse(want)
	if !slices.Equal(got, want) {
		t.Errorf("paged ids %v, want %v", got, want)
	}
	if _, _, err := s.List(context.Background(), domain.ListFilter{Cursor: "junk"}); !errors.Is(err, domain.ErrBadCursor) {
		t.Errorf("bad cursor: %v", err)
	}
}

// Two instances storing the same mids at once, in different orders: each
// mid is stored once, no transaction fails (no unique violation, no
// deadlock), and the instances' New lists together hold each mid once.
func TestTwoInstancesSavingTheSameMIDs(t *testing.T) {
	db := pgtest.New(t)
	stores := []*postgres.Store{mustOpen(t, db, "a", 0), mustOpen(t, db, "b", 0)}
	const mids = 300
	var mu sync.Mutex
	newBy := map[string]int{}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := stores[g%2]
			order := make([]int, mids)
			for i := range order {
				order[i] = i
			}
			if g%4 >= 2 {
				slices.Reverse(order)
			}
			for start := 0; start < mids; start += 10 {
				var ms []domain.Message
				for _, i := range order[start : start+10] {
					ms = append(ms, msg(t, fmt.Sprintf("shared-%04d", i), domain.MirrorPending))
				}
				res, err := s.Save(context.Background(), domain.Batch{Messages: ms})
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				for _, m := range res.New {
					newBy[m.MID()]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("save: %v", err)
	}
	if len(newBy) != mids {
		t.Errorf("%d mids reported new, want %d", len(newBy), mids)
	}
	for mid, n := range newBy {
		if n != 1 {
			t.Errorf("mid %s reported new %d times", mid, n)
		}
	}
	var rows int
	if err := db.SQL.QueryRow("SELECT count(*) FROM messages").Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != mids {
		t.Errorf("%d rows, want %d", rows, mids)
	}
	counts, err := stores[0].CountByStatus(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if counts[domain.MirrorPending] != mids {
		t.Errorf("count pending = %d, want %d", counts[domain.MirrorPending], mids)
	}
}

func TestMigrationsRunOnceWhenInstancesStartTogether(t *testing.T) {
	db := pgtest.New(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := postgres.Open(postgres.Options{URL: db.URL, InstanceID: fmt.Sprint("i", i), Logger: quiet})
			if err != nil {
				errs <- err
				return
			}
			errs <- s.Close()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("open: %v", err)
		}
	}
	var n int
	if err := db.SQL.QueryRow("SELECT count(*) FROM schema_migrations").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("%d migrations recorded, want 1", n)
	}
}

func TestCloseReleasesTheLease(t *testing.T) {
	db := pgtest.New(t)
	s := mustOpen(t, db, "a", 0)
	l := s.Lease()
	if !strings.HasPrefix(l.Owner, "a/") || l.InstanceID != "a" || !l.ExpiresAt.After(time.Now()) {
		t.Fatalf("lease %+v", l)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	var n int
	if err := db.SQL.QueryRow("SELECT count(*) FROM mirror_leases WHERE owner = $1", l.Owner).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("lease row still there after Close")
	}
	if _, err := s.Save(context.Background(), domain.Batch{Messages: []domain.Message{msg(t, "x", domain.MirrorPending)}}); !errors.Is(err, domain.ErrClosed) {
		t.Errorf("save after close: %v, want ErrClosed", err)
	}
}

func TestRedacted(t *testing.T) {
	for _, tc := range []struct{ in, secret string }{
		{"postgres://igm:s3cret@db:5432/igm?sslmode=disable", "s3cret"},
		{"postgresql://igm@db/igm?password=s3cret", "s3cret"},
		{"host=db user=igm password=s3cret dbname=igm", "s3cret"},
		{"host=db user=igm password='s3 cret' dbname=igm", "s3 cret"},
	} {
		if got := postgres.Redacted(tc.in); strings.Contains(got, tc.secret) || !strings.Contains(got, "db") {
			t.Errorf("Redacted(%q) = %q", tc.in, got)
		}
	}
}

func TestOpenErrorsNeverShowThePassword(t *testing.T) {
	_, err := postgres.Open(postgres.Options{URL: "postgres://igm:Pa55word@127.0.0.1:1/igm?sslmode=disable", Logger: quiet, OpTimeout: 2 * time.Second})
	if err == nil {
		t.Fatal("open of a closed port succeeded")
	}
	if strings.Contains(err.Error(), "Pa55word") {
		t.Errorf("error shows the password: %v", err)
	}
	if !errors.Is(err, domain.ErrUnavailable) {
		t.Errorf("error %v does not wrap ErrUnavailable", err)
	}
}

func TestWriterStatsCountEveryRequest(t *testing.T) {
	db := pgtest.New(t)
	s := mustOpen(t, db, "a", 0)
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Save(context.Background(), domain.Batch{Messages: []domain.Message{msg(t, fmt.Sprint("w", i), domain.MirrorPending)}}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	w := s.WriterStats()
	if w.Requests != 40 || w.Commits < 1 || w.Commits > 40 || w.Failed != 0 || w.Busy <= 0 {
		t.Errorf("writer stats %+v, want 40 requests in 1..40 commits, none failed", w)
	}
}
