package postgres_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"igmirror/domain"
	"igmirror/internal/testkit/pgtest"
	"igmirror/postgres"
)

// quiet is a logger for stores under test.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// mustOpen opens a store instance on db; it is closed when the test ends.
func mustOpen(t testing.TB, db *pgtest.DB, instance string, lease time.Duration) *postgres.Store {
	t.Helper()
	return mustOpenURL(t, db.URL, instance, lease)
}

func mustOpenURL(t testing.TB, url, instance string, lease time.Duration) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(postgres.Options{URL: url, InstanceID: instance, LeaseTimeout: lease, Logger: quiet})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// msg is a valid message with mid (none when mid is "").
func msg(t testing.TB, mid string, st domain.MirrorStatus) domain.Message {
	t.Helper()
	m := domain.Message{
		SenderID: "cust1", RecipientID: "biz", Direction: domain.Inbound, MessageText: "hello " + mid,
		Timestamp: time.Date(2026, 1, 2, 3, 4, 5, 6_000_000, time.UTC), MirrorStatus: st,
	}
	if mid != "" {
		m.InstagramMessageID = &mid
	}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	return m
}

// mustSave saves the messages in one batch.
func mustSave(t testing.TB, s domain.Store, ms ...domain.Message) domain.SaveResult {
	t.Helper()
	res, err := s.Save(context.Background(), domain.Batch{Messages: ms})
	if err != nil {
		t.Fatalf("save: %v", err)
	}
	return res
}

// saveN stores n messages with mids prefix-0 … in state st and returns their ids.
func saveN(t testing.TB, s domain.Store, prefix string, n int, st domain.MirrorStatus) []int64 {
	t.Helper()
	var ms []domain.Message
	for i := range n {
		ms = append(ms, msg(t, fmt.Sprintf("%s-%05d", prefix, i), st))
	}
	res := mustSave(t, s, ms...)
	if len(res.New) != n {
		t.Fatalf("saved %d new of %d", len(res.New), n)
	}
	ids := make([]int64, n)
	for i, m := range res.New {
		ids[i] = m.ID
	}
	return ids
}

// expireLease makes owner's lease lapse now, as if its process had stopped renewing.
func expireLease(t testing.TB, db *pgtest.DB, owner string) {
	t.Helper()
	if _, err := db.SQL.Exec("UPDATE mirror_leases SET expires_at = now() - interval '1 second' WHERE owner = $1", owner); err != nil {
		t.Fatal(err)
	}
}

// status reads a message's state and owner straight from the table.
func status(t testing.TB, db *pgtest.DB, id int64) (domain.MirrorStatus, string) {
	t.Helper()
	var st, owner string
	if err := db.SQL.QueryRow("SELECT mirror_status, mirror_owner FROM messages WHERE id = $1", id).Scan(&st, &owner); err != nil {
		t.Fatal(err)
	}
	return domain.MirrorStatus(st), owner
}
