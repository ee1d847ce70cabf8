package postgres_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"igmirror/domain"
	"igmirror/internal/testkit/pgtest"
	"igmirror/postgres"
	"igmirror/sqlite"
)

// sqliteFixture writes a SQLite store: n messages with mids in mixed
// states (some mirrored), 3 without mid, and a few journaled deliveries.
func sqliteFixture(t *testing.T, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "store.db")
	ls, err := sqlite.Open(sqlite.Options{Path: path, InstanceID: "old", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer ls.Close()
	ctx := context.Background()
	states := []domain.MirrorStatus{domain.MirrorPending, domain.MirrorDropped, domain.MirrorDisabled, domain.MirrorPending}
	var ms []domain.Message
	for i := range n {
		ms = append(ms, msg(t, fmt.Sprintf("imp-%05d", i), states[i%len(states)]))
	}
	for range 3 {
		ms = append(ms, msg(t, "", domain.MirrorPending))
	}
	res, err := ls.Save(ctx, domain.Batch{Messages: ms, Delivery: &domain.Delivery{Body: []byte("first"), Items: map[string]int{"message": n}}})
	if err != nil {
		t.Fatal(err)
	}
	var mirrored []int64
	for i, m := range res.New {
		if i%4 == 3 {
			mirrored = append(mirrored, m.ID)
		}
	}
	if err := ls.MarkMirrored(ctx, mirrored, nil); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		if _, err := ls.Save(ctx, domain.Batch{Delivery: &domain.Delivery{Body: []byte(fmt.Sprint("delivery ", i)), Signature: "sha256=00"}}); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

// cancelAfter is an out writer that cancels the import after n lines.
type cancelAfter struct {
	mu     sync.Mutex
	n      int
	cancel context.CancelFunc
	buf    bytes.Buffer
}

func (c *cancelAfter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n -= bytes.Count(p, []byte("\n"))
	if c.n <= 0 {
		c.cancel()
	}
	return c.buf.Write(p)
}

func TestImportSQLiteIsIdempotentAndResumable(t *testing.T) {
	const n = 2500
	path := sqliteFixture(t, n)
	db := pgtest.New(t)
	pg := mustOpen(t, db, "a", 0)
	// Something already in PostgreSQL under one of the mids: kept, not overwritten.
	mustSave(t, pg, msg(t, "imp-00000", domain.MirrorPending))

	ctx, cancel := context.WithCancel(context.Background())
	out := &cancelAfter{n: 1, cancel: cancel}
	_, err := postgres.ImportSQLite(ctx, pg, path, out)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted import: %v, want context.Canceled", err)
	}
	var partial int
	if err := db.SQL.QueryRow("SELECT count(*) FROM messages").Scan(&partial); err != nil {
		t.Fatal(err)
	}
	if partial <= 1 || partial >= n+3 {
		t.Fatalf("%d rows after the interrupted import; want a part", partial)
	}

	var buf bytes.Buffer
	res, err := postgres.ImportSQLite(context.Background(), pg, path, &buf)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "imported") {
		t.Errorf("no summary printed: %q", buf.String())
	}
	// All but what the first run copied and imp-00000, which was there before.
	if got, want := res.Messages, int64(n+3-(partial-1)-1); got != want {
		t.Errorf("resumed import copied %d messages, want %d", got, want)
	}
	var rows int
	if err := db.SQL.QueryRow("SELECT count(*) FROM messages").Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != n+3 {
		t.Errorf("%d rows, want %d (every message once)", rows, n+3)
	}
	again, err := postgres.ImportSQLite(context.Background(), pg, path, &buf)
	if err != nil {
		t.Fatal(err)
	}
	if again.Messages != 0 || again.Deliveries != 0 || again.MessagesSkipped != n+3 || again.DeliveriesSkipped != 5 {
		t.Errorf("third import %+v, want nothing copied", again)
	}

	ctxb := context.Background()
	kept, err := pg.GetByMID(ctxb, "imp-00000")
	if err != nil || kept.MirrorOwner != pg.Lease().Owner || kept.MirrorStatus != domain.MirrorPending {
		t.Errorf("message already in PostgreSQL was changed: %+v, %v", kept, err)
	}
	for i, want := range []domain.MirrorStatus{"", domain.MirrorDropped, domain.MirrorDisabled, domain.MirrorMirrored} {
		if i == 0 {
			continue
		}
		m, err := pg.GetByMID(ctxb, fmt.Sprintf("imp-%05d", i))
		if err != nil {
			t.Fatal(err)
		}
		if m.MirrorStatus != want || m.MirrorOwner != "" {
			t.Errorf("imp-%05d imported as %s owned by %q, want %s and no owner", i, m.MirrorStatus, m.MirrorOwner, want)
		}
		if want == domain.MirrorMirrored && m.MirroredAt == nil {
			t.Errorf("mirrored message lost mirrored_at")
		}
	}
	counts, err := pg.CountByStatus(ctxb)
	if err != nil {
		t.Fatal(err)
	}
	if sum := counts[domain.MirrorPending] + counts[domain.MirrorDropped] + counts[domain.MirrorDisabled] + counts[domain.MirrorMirrored]; sum != n+3 {
		t.Errorf("counts %v sum to %d, want %d", counts, sum, n+3)
	}
	ds, _, err := pg.ListDeliveries(ctxb, domain.DeliveryFilter{Limit: 100})
	if err != nil || len(ds) != 5 {
		t.Fatalf("%d deliveries (err %v), want 5", len(ds), err)
	}
	d, err := pg.GetDelivery(ctxb, ds[0].ID)
	if err != nil || string(d.Body) != "delivery 3" || d.Signature != "sha256=00" {
		t.Errorf("newest delivery %q %q, %v", d.Body, d.Signature, err)
	}
	// Any instance's reconciler takes the imported unmirrored messages.
	got, err := pg.ClaimCandidates(ctxb, domain.CandidateQuery{Statuses: []domain.MirrorStatus{domain.MirrorDropped}, Limit: 5000})
	if err != nil || len(got) != int(counts[domain.MirrorDropped]) {
		t.Errorf("reconciler took %d of %d dropped (err %v)", len(got), counts[domain.MirrorDropped], err)
	}
}

func TestImportSQLiteOfAMissingFile(t *testing.T) {
	db := pgtest.New(t)
	pg := mustOpen(t, db, "a", 0)
	if _, err := postgres.ImportSQLite(context.Background(), pg, filepath.Join(t.TempDir(), "nope.db"), &bytes.Buffer{}); err == nil {
		t.Fatal("import of a missing file succeeded")
	}
}
