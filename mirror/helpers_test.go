package mirror

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"igmirror/domain"
	"igmirror/events"
	"igmirror/internal/testkit/check"
	"igmirror/internal/testkit/mysqltest"
	"igmirror/sqlite"
)

// t0 is the Instagram time of the first test message.
var t0 = time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC)

// mustOpenStore opens a real SQLite store in the test's temp dir.
func mustOpenStore(t testing.TB) *sqlite.Store {
	t.Helper()
	return mustOpenStoreAt(t, filepath.Join(t.TempDir(), "mirror.db"))
}

// mustOpenStoreAt opens a store instance on the file at path (a new
// instance, with a lease of its own, each call) and closes it when the
// test ends.
func mustOpenStoreAt(t testing.TB, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(sqlite.Options{Path: path, InstanceID: "mirror-test", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// previousRun stores msgs through an instance that then stops (as a
// previous run of the service would), and returns a new instance on the
// same file with the messages as stored.
func previousRun(t testing.TB, fill func(s *sqlite.Store)) *sqlite.Store {
	t.Helper()
	path := filepath.Join(t.TempDir(), "mirror.db")
	before := mustOpenStoreAt(t, path)
	fill(before)
	if err := before.Close(); err != nil {
		t.Fatalf("close the previous run's store: %v", err)
	}
	return mustOpenStoreAt(t, path)
}

// setState moves a stored pending message to status with attempts
// recorded, through the port as the mirror would: claims, then the mark.
func setState(t testing.TB, s *sqlite.Store, id int64, status domain.MirrorStatus, attempts int) {
	t.Helper()
	ctx := context.Background()
	for range attempts {
		if c, err := s.Claim(ctx, []int64{id}); err != nil || len(c) != 1 {
			t.Fatalf("claim %d: got %v, %v; want it claimed", id, c, err)
		}
	}
	switch status {
	case domain.MirrorPending:
	case domain.MirrorMirrored:
		if err := s.MarkMirrored(ctx, []int64{id}, nil); err != nil {
			t.Fatal(err)
		}
	case domain.MirrorFailed:
		if err := s.MarkFailed(ctx, []int64{id}, "refused"); err != nil {
			t.Fatal(err)
		}
	case domain.MirrorDropped:
		s.MarkDropped(id)
		eventually(t, 5*time.Second, "the drop mark", func() bool { return mustGet(t, s, id).MirrorStatus == domain.MirrorDropped })
	default:
		t.Fatalf("setState: cannot move a pending message to %s", status)
	}
	if got := mustGet(t, s, id); got.MirrorStatus != status || got.MirrorAttempts != attempts {
		t.Fatalf("message %d: got %s with %d attempts, want %s with %d", id, got.MirrorStatus, got.MirrorAttempts, status, attempts)
	}
}

// newMessage is an inbound message from customer user with text, sent
// at t0 plus n seconds.
func newMessage(n int, user, text string) domain.Message {
	mid := fmt.Sprintf("mid.%s.%d", user, n)
	return domain.Message{
		InstagramMessageID: &mid,
		SenderID:           user,
		RecipientID:        "17841400000000001",
		Direction:          domain.Inbound,
		MessageText:        text,
		Timestamp:          t0.Add(time.Duration(n) * time.Second),
		MirrorStatus:       domain.MirrorPending,
	}
}

// mustSave stores msgs and returns them with their ids.
func mustSave(t testing.TB, s domain.MessageStore, msgs ...domain.Message) []domain.Message {
	t.Helper()
	for i := range msgs {
		if err := msgs[i].Validate(); err != nil {
			t.Fatalf("validate: %v", err)
		}
	}
	res, err := s.Save(context.Background(), domain.Batch{Messages: msgs})
	if err != nil {
		t.Fatalf("save: %v", err)
	}
	if len(res.New) != len(msgs) {
		t.Fatalf("save: got %d new, want %d", len(res.New), len(msgs))
	}
	return res.New
}

// mustGet reads one message.
func mustGet(t testing.TB, s domain.MessageStore, id int64) domain.Message {
	t.Helper()
	m, err := s.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("get %d: %v", id, err)
	}
	return m
}

// eventually polls cond until it holds or the deadline passes.
var eventually = check.Eventually

// sinkTo opens a sink on crm's table, reached at host:port (the server
// itself or a fault proxy in front of it).
func sinkTo(t testing.TB, crm *mysqltest.DB, host string, port int, timeout time.Duration, log *slog.Logger) *MySQLSink {
	t.Helper()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	sink, err := OpenMySQL(MySQLConfig{
		Host: host, Port: port, User: crm.User, Password: crm.Password,
		Database: crm.Name, Table: crm.Table, TLS: "false", Workers: 2,
		Timeout: timeout, Logger: log,
	})
	if err != nil {
		t.Fatalf("open sink: %v", err)
	}
	t.Cleanup(func() { _ = sink.Close() })
	return sink
}

// logBuffer is a goroutine-safe slog sink for asserting on log lines.
type logBuffer = check.LogBuffer

// rig is a pool with its bus, store and sink, all real.
type rig struct {
	store *sqlite.Store
	path  string // the store's file
	bus   *events.Bus
	sink  Sink
	pool  *Pool
	logs  *logBuffer
}

// newRig starts a pool draining a fresh bus into sink and stops it when
// the test ends.
func newRig(t testing.TB, sink Sink, logs *logBuffer, cfg PoolConfig) *rig {
	t.Helper()
	path := filepath.Join(t.TempDir(), "mirror.db")
	store := mustOpenStoreAt(t, path)
	bus := events.New(64, logs.Logger())
	cfg.Logger = logs.Logger()
	if cfg.Workers == 0 {
		cfg.Workers = 2
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = 10
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = 20 * time.Millisecond
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 200 * time.Millisecond
	}
	if cfg.InsertTimeout == 0 {
		cfg.InsertTimeout = 2 * time.Second
	}
	pool := NewPool(cfg, bus, sink, store, nil)
	pool.Start()
	t.Cleanup(func() { pool.Stop(5 * time.Second) })
	return &rig{store: store, path: path, bus: bus, sink: sink, pool: pool, logs: logs}
}

// publish saves msgs and offers them to the pool as the webhook does.
func (r *rig) publish(t testing.TB, msgs ...domain.Message) []domain.Message {
	t.Helper()
	saved := mustSave(t, r.store, msgs...)
	for i := range saved {
		if got := r.bus.Publish(events.MessageSaved{Message: saved[i]}); got != events.Queued {
			t.Fatalf("publish %d: got outcome %d, want queued", saved[i].ID, got)
		}
	}
	return saved
}

// waitStatus waits until every message in msgs has status want.
func (r *rig) waitStatus(t testing.TB, within time.Duration, want domain.MirrorStatus, msgs ...domain.Message) {
	t.Helper()
	eventually(t, within, fmt.Sprintf("%d messages %s", len(msgs), want), func() bool {
		for i := range msgs {
			if mustGet(t, r.store, msgs[i].ID).MirrorStatus != want {
				return false
			}
		}
		return true
	})
}

// wantCounts is the CRM content msgs should produce, once each.
func wantCounts(msgs []domain.Message) map[mysqltest.RowKey]int {
	out := map[mysqltest.RowKey]int{}
	for i := range msgs {
		r := MapRow(&msgs[i])
		out[mysqltest.RowKey{UserID: r.UserID, Direction: r.Direction, Message: r.Message, CreatedAt: r.CreatedAt}]++
	}
	return out
}
