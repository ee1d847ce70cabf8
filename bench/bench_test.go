package main

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"igmirror/domain"
	"igmirror/instagram"
	"igmirror/internal/testkit/check"
	"igmirror/sqlite"
)

// TestPayloadsAreValidSignedDeliveries: the load generator's deliveries
// pass the service's own signature check and parser, with as many
// messages as asked and no mid twice.
func TestPayloadsAreValidSignedDeliveries(t *testing.T) {
	secret := []byte(appSecret)
	p := newPayloads(secret, 1)
	seen := map[string]bool{}
	for _, n := range []int{1, 1, 100, 7} {
		body, sig := p.delivery(n)
		if err := instagram.VerifySignature(secret, body, sig); err != nil {
			t.Fatalf("delivery of %d: signature: %v", n, err)
		}
		d, err := instagram.Parse(body)
		if err != nil {
			t.Fatalf("delivery of %d: parse: %v", n, err)
		}
		if got, want := len(d.Messages), n; got != want {
			t.Fatalf("messages: got %d, want %d", got, want)
		}
		for _, m := range d.Messages {
			if seen[m.MID()] {
				t.Fatalf("mid %s sent twice", m.MID())
			}
			seen[m.MID()] = true
		}
	}
}

func TestPercentile(t *testing.T) {
	var r loadResult
	for i := 1; i <= 100; i++ {
		r.lat = append(r.lat, time.Duration(i)*time.Millisecond)
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.50, 50 * time.Millisecond}, {0.99, 99 * time.Millisecond}, {1, 100 * time.Millisecond}, {0, time.Millisecond}} {
		if got := r.pct(tc.q); got != tc.want {
			t.Errorf("pct(%v): got %s, want %s", tc.q, got, tc.want)
		}
	}
	if got := (loadResult{}).pct(0.99); got != 0 {
		t.Errorf("pct of nothing: got %s, want 0", got)
	}
}

// TestClientURLRoundRobin: with several instances the clients are spread
// over them in turn; with one URL every client uses it.
func TestClientURLRoundRobin(t *testing.T) {
	s := loadSpec{url: "http://one"}
	if got := s.clientURL(5); got != "http://one" {
		t.Errorf("one URL: client 5 got %q", got)
	}
	s.urls = []string{"a", "b", "c"}
	var got []string
	for i := range 7 {
		got = append(got, s.clientURL(i))
	}
	if want := "a b c a b c a"; strings.Join(got, " ") != want {
		t.Errorf("round-robin: got %v, want %s", got, want)
	}
}

// TestSecondHalfGrowth: the "flat" check compares the last sample with
// the middle one.
func TestSecondHalfGrowth(t *testing.T) {
	r := rssRun{}
	for _, v := range []int64{0, 10, 20, 40, 50, 100, 100, 100, 101, 105, 108} {
		r.samples = append(r.samples, rssSample{v, v})
	}
	if got := r.secondHalfGrowth(); got < 0.079 || got > 0.081 {
		t.Errorf("growth: got %v, want 0.08", got)
	}
}

func TestFmtNum(t *testing.T) {
	for _, tc := range []struct {
		in   float64
		want string
	}{{0, "0"}, {999, "999"}, {1000, "1,000"}, {15234.6, "15,235"}, {10_000_000, "10,000,000"}, {-1234, "-1,234"}} {
		if got := fmtNum(tc.in); got != tc.want {
			t.Errorf("fmtNum(%v): got %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestParseFlags(t *testing.T) {
	t.Run("defaults run everything", func(t *testing.T) {
		o, err := parseFlags(nil, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := len(o.only), len(scenarios); got != want {
			t.Errorf("scenarios: got %d, want %d", got, want)
		}
		if got, want := o.duration, 6*time.Second; got != want {
			t.Errorf("duration: got %s, want %s", got, want)
		}
	})
	t.Run("quick, an explicit flag wins", func(t *testing.T) {
		o, err := parseFlags([]string{"-quick", "-rows", "5000", "-only", "growth,single"}, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := o.rows, int64(5000); got != want {
			t.Errorf("rows: got %d, want %d", got, want)
		}
		if got, want := o.duration, 2*time.Second; got != want {
			t.Errorf("duration: got %s, want %s", got, want)
		}
		if !o.only["growth"] || !o.only["single"] || o.only["batch"] {
			t.Errorf("only: got %v, want growth and single", o.only)
		}
	})
	t.Run("new scenarios and their flags", func(t *testing.T) {
		o, err := parseFlags([]string{"-only", "journal,pg,instances,takeover", "-postgres", "postgres://u@db.example:5433/x", "-journal-deliveries", "5000"}, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{"journal", "pg", "instances", "takeover"} {
			if !o.only[s] {
				t.Errorf("only: %s missing from %v", s, o.only)
			}
		}
		if o.only["single"] {
			t.Errorf("only: got single, not asked for")
		}
		if got, want := o.postgresURL, "postgres://u@db.example:5433/x"; got != want {
			t.Errorf("postgres: got %q, want %q", got, want)
		}
		if got, want := o.journalDeliveries, int64(5000); got != want {
			t.Errorf("journal-deliveries: got %d, want %d", got, want)
		}
	})
	t.Run("journal and postgres defaults", func(t *testing.T) {
		t.Setenv("IGMIRROR_TEST_POSTGRES", "")
		o, err := parseFlags(nil, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := o.journalDeliveries, int64(1_000_000); got != want {
			t.Errorf("journal-deliveries: got %d, want %d", got, want)
		}
		if got, want := o.postgresURL, defaultPostgres; got != want {
			t.Errorf("postgres: got %q, want %q", got, want)
		}
		t.Setenv("IGMIRROR_TEST_POSTGRES", "postgres://from-env@127.0.0.1:1/db")
		if o, _ = parseFlags(nil, io.Discard); o.postgresURL != "postgres://from-env@127.0.0.1:1/db" {
			t.Errorf("postgres: got %q, want $IGMIRROR_TEST_POSTGRES", o.postgresURL)
		}
		q, err := parseFlags([]string{"-quick"}, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := q.journalDeliveries, int64(100_000); got != want {
			t.Errorf("quick journal-deliveries: got %d, want %d", got, want)
		}
		q, _ = parseFlags([]string{"-quick", "-journal-deliveries", "2000"}, io.Discard)
		if got, want := q.journalDeliveries, int64(2000); got != want {
			t.Errorf("quick with explicit journal-deliveries: got %d, want %d", got, want)
		}
	})
	t.Run("unknown scenario", func(t *testing.T) {
		if _, err := parseFlags([]string{"-only", "nope"}, io.Discard); err == nil {
			t.Error("parseFlags(-only nope): got no error")
		}
	})
}

// TestPrefillMakesAStoreTheServiceOpens: the growth figure's pre-filled
// rows are in the service's own schema, counted by its triggers, so the
// service opens the file with nothing to migrate and finds every mid
// through its UNIQUE index.
func TestPrefillMakesAStoreTheServiceOpens(t *testing.T) {
	path := filepath.Join(t.TempDir(), "prefill.db")
	if err := prefill(context.Background(), path, 1500, nil); err != nil {
		t.Fatalf("prefill: %v", err)
	}
	logs := &check.LogBuffer{}
	s, err := sqlite.Open(sqlite.Options{Path: path, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if strings.Contains(logs.String(), "migration") {
		t.Errorf("opening a pre-filled store migrated it:\n%s", logs)
	}
	page, _, err := s.List(context.Background(), domain.ListFilter{Limit: 500})
	if err != nil || len(page) != 500 {
		t.Fatalf("list: %d rows, %v", len(page), err)
	}
	for _, m := range page {
		if m.UserID != m.SenderID {
			t.Fatalf("message %d: user_id %s, sender %s; want the sender", m.ID, m.UserID, m.SenderID)
		}
		got, err := s.GetByMID(context.Background(), m.MID())
		if err != nil || got.ID != m.ID {
			t.Fatalf("GetByMID(%s): id %d, %v; want %d", m.MID(), got.ID, err, m.ID)
		}
	}
	counts, err := s.CountByStatus(context.Background())
	if err != nil || counts[domain.MirrorDisabled] != 1500 {
		t.Fatalf("counts by mirror state after prefill: %v, %v; want 1500 disabled", counts, err)
	}
	byUser, _, err := s.List(context.Background(), domain.ListFilter{UserID: page[0].UserID, Limit: 500})
	if err != nil || len(byUser) == 0 || byUser[0].ID != page[0].ID {
		t.Fatalf("list by the newest message's customer: %d messages, %v; want it first", len(byUser), err)
	}
	res, err := s.Save(context.Background(), domain.Batch{Messages: []domain.Message{page[0], page[1]}})
	if err != nil || res.Duplicates != 2 {
		t.Fatalf("saving two pre-filled mids again: %v, %d duplicates, want 2", err, res.Duplicates)
	}
	for i := range 40 {
		m := page[0]
		mid := fmt.Sprintf("after-prefill-%d", i)
		m.ID, m.InstagramMessageID = 0, &mid
		if res, err := s.Save(context.Background(), domain.Batch{Messages: []domain.Message{m}}); err != nil || len(res.New) != 1 {
			t.Fatalf("save %d after prefill: %v, %d new", i, err, len(res.New))
		}
	}
}

// TestRawBatchInsertsCommitsEveryRow: the SQLite baseline commits every
// row it counts, whatever the rows per commit.
func TestRawBatchInsertsCommitsEveryRow(t *testing.T) {
	for _, perCommit := range []int{100, 300} {
		path := filepath.Join(t.TempDir(), "raw.db")
		rate, err := rawBatchInserts(context.Background(), path, 150*time.Millisecond, perCommit)
		if err != nil || rate <= 0 {
			t.Fatalf("rawBatchInserts(%d): %v rows/s, %v", perCommit, rate, err)
		}
		db, err := sql.Open("sqlite3", "file:"+path)
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		err = db.QueryRow("SELECT COUNT(*) FROM messages").Scan(&n)
		_ = db.Close()
		if err != nil || n == 0 || n%100 != 0 {
			t.Fatalf("rows per commit %d: %d rows stored (%v), want a positive multiple of 100", perCommit, n, err)
		}
	}
}
