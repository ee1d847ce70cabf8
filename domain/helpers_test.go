package domain_test

import (
	"context"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"igmirror/domain"
	"igmirror/internal/testkit/check"
)

// Ids of the sample business account and customers.
const (
	business = "17841400000000001"
	customer = "5582201937461123"
	other    = "6610293847561290"
)

// t0 is an Instagram timestamp every test message is placed relative to.
var t0 = time.Date(2025, 11, 21, 23, 6, 40, 123_000_000, time.UTC)

// mustOpenStore opens a store on a fresh SQLite file and closes it when
// the test ends.
func mustOpenStore(t testing.TB) *domain.Store {
	t.Helper()
	return mustOpenStoreAt(t, filepath.Join(t.TempDir(), "store.db"))
}

// mustOpenStoreAt opens a store on path and closes it when the test ends.
func mustOpenStoreAt(t testing.TB, path string) *domain.Store {
	t.Helper()
	s, err := domain.OpenStore(domain.StoreOptions{Path: path, Synchronous: "NORMAL"})
	if err != nil {
		t.Fatalf("OpenStore: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// newMsg builds a valid pending inbound message from customer; mid ""
// gives a message without an Instagram id. opts adjust it before Validate.
func newMsg(t testing.TB, mid string, opts ...func(*domain.Message)) domain.Message {
	t.Helper()
	m := domain.Message{
		SenderID:     customer,
		RecipientID:  business,
		Direction:    domain.Inbound,
		MessageText:  "text of " + mid,
		Timestamp:    t0,
		MirrorStatus: domain.MirrorPending,
	}
	if mid != "" {
		m.InstagramMessageID = &mid
	}
	for _, o := range opts {
		o(&m)
	}
	if err := m.Validate(); err != nil {
		t.Fatalf("newMsg %q: %v", mid, err)
	}
	return m
}

func outbound(m *domain.Message) {
	m.Direction = domain.Outbound
	m.SenderID, m.RecipientID = business, customer
}

func withStatus(s domain.MirrorStatus) func(*domain.Message) {
	return func(m *domain.Message) { m.MirrorStatus = s }
}

func at(ts time.Time) func(*domain.Message) {
	return func(m *domain.Message) { m.Timestamp = ts }
}

func from(sender string) func(*domain.Message) {
	return func(m *domain.Message) { m.SenderID = sender }
}

// mustSave saves msgs and fails the test on error.
func mustSave(t testing.TB, s *domain.Store, msgs ...domain.Message) domain.SaveResult {
	t.Helper()
	res, err := s.Save(context.Background(), msgs, nil)
	if err != nil {
		t.Fatalf("Save: %v", err)
	}
	return res
}

// mustSaveOne saves m alone and returns it as stored.
func mustSaveOne(t testing.TB, s *domain.Store, m domain.Message) domain.Message {
	t.Helper()
	res := mustSave(t, s, m)
	if len(res.New) != 1 {
		t.Fatalf("Save one: stored %d, want 1", len(res.New))
	}
	return res.New[0]
}

func mustGet(t testing.TB, s *domain.Store, id int64) domain.Message {
	t.Helper()
	m, err := s.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("Get %d: %v", id, err)
	}
	return m
}

// allIDs lists every stored id, oldest first, through List.
func allIDs(t testing.TB, s *domain.Store) []int64 {
	t.Helper()
	var ids []int64
	cursor := ""
	for {
		page, next, err := s.List(context.Background(), domain.ListFilter{Limit: 500, Cursor: cursor})
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		for _, m := range page {
			ids = append(ids, m.ID)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	slices.Sort(ids)
	return ids
}

func idsOf(msgs []domain.Message) []int64 {
	out := make([]int64, len(msgs))
	for i := range msgs {
		out[i] = msgs[i].ID
	}
	return out
}

// eventually polls cond until it holds or the deadline passes.
var eventually = check.Eventually

func mid(prefix string, i int) string { return prefix + "-" + strconv.Itoa(i) }
