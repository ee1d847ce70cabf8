package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"igmirror/domain"
)

// Ids of the sample business account and customers.
const (
	business = "17841400000000001"
	customer = "5582201937461123"
	other    = "6610293847561290"
)

// t0 is the Instagram timestamp test messages are placed relative to; it
// has microseconds, the finest precision every adapter keeps.
var t0 = time.Date(2025, 11, 21, 23, 6, 40, 123_456_000, time.UTC)

// ctx is the context of the suite's calls: none of them is cancelled.
var ctx = context.Background()

// opt adjusts a test message before it is validated.
type opt func(*domain.Message)

// outbound makes a message the business's reply to customer.
func outbound(m *domain.Message) {
	m.Direction, m.SenderID, m.RecipientID = domain.Outbound, business, customer
}

// from makes customer id the message's sender.
func from(id string) opt { return func(m *domain.Message) { m.SenderID = id } }

// status sets the message's initial mirror state.
func status(st domain.MirrorStatus) opt { return func(m *domain.Message) { m.MirrorStatus = st } }

// at sets the message's Instagram timestamp.
func at(ts time.Time) opt { return func(m *domain.Message) { m.Timestamp = ts } }

// newMsg builds a valid pending inbound message from customer; mid ""
// gives a message without an Instagram id.
func newMsg(t testing.TB, mid string, opts ...opt) domain.Message {
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
		t.Fatalf("test message %q: %v", mid, err)
	}
	return m
}

// mids returns n distinct mids with a prefix.
func mids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%04d", prefix, i)
	}
	return out
}

// mustOpen opens an instance with o.
func mustOpen(t *testing.T, open Opener, o Options) domain.Store {
	t.Helper()
	s := open(t, o)
	if s == nil {
		t.Fatal("opener returned no store")
	}
	return s
}

// mustSave saves msgs in one batch.
func mustSave(t testing.TB, s domain.Store, msgs ...domain.Message) domain.SaveResult {
	t.Helper()
	res, err := s.Save(ctx, domain.Batch{Messages: msgs})
	if err != nil {
		t.Fatalf("Save(%d messages): %v", len(msgs), err)
	}
	return res
}

// mustSaveOne saves m alone and returns it as stored.
func mustSaveOne(t testing.TB, s domain.Store, m domain.Message) domain.Message {
	t.Helper()
	res := mustSave(t, s, m)
	if len(res.New) != 1 {
		t.Fatalf("Save(%q): got %d new, want 1 (duplicates %d)", m.MID(), len(res.New), res.Duplicates)
	}
	return res.New[0]
}

// mustGet reads message id.
func mustGet(t testing.TB, s domain.Store, id int64) domain.Message {
	t.Helper()
	m, err := s.Get(ctx, id)
	if err != nil {
		t.Fatalf("Get(%d): %v", id, err)
	}
	return m
}

// statusOf is message id's mirror state.
func statusOf(t testing.TB, s domain.Store, id int64) domain.MirrorStatus {
	t.Helper()
	return mustGet(t, s, id).MirrorStatus
}

// wantStatus fails the test unless message id is in state want.
func wantStatus(t testing.TB, s domain.Store, id int64, want domain.MirrorStatus) {
	t.Helper()
	if got := statusOf(t, s, id); got != want {
		t.Errorf("message %d mirror status: got %q, want %q", id, got, want)
	}
}

// allMessages lists the whole store, newest first, page by page.
func allMessages(t testing.TB, s domain.Store) []domain.Message {
	t.Helper()
	var out []domain.Message
	f := domain.ListFilter{Limit: 500}
	for {
		page, next, err := s.List(ctx, f)
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		out = append(out, page...)
		if next == "" {
			return out
		}
		f.Cursor = next
	}
}

// countMID counts the stored rows with mid.
func countMID(t testing.TB, s domain.Store, mid string) int {
	t.Helper()
	n := 0
	for _, m := range allMessages(t, s) {
		if m.MID() == mid {
			n++
		}
	}
	return n
}

// idsOf returns the messages' ids in order.
func idsOf(msgs []domain.Message) []int64 {
	out := make([]int64, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID
	}
	return out
}

// claimIDs returns the claims' ids in order.
func claimIDs(cs []domain.Claim) []int64 {
	out := make([]int64, len(cs))
	for i, c := range cs {
		out[i] = c.ID
	}
	return out
}

// midsOf returns the messages' mids in order.
func midsOf(msgs []domain.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.MID()
	}
	return out
}

// mustClaim claims ids on s.
func mustClaim(t testing.TB, s domain.Store, ids ...int64) []domain.Claim {
	t.Helper()
	cs, err := s.Claim(ctx, ids)
	if err != nil {
		t.Fatalf("Claim(%v): %v", ids, err)
	}
	return cs
}

// mustCandidates runs ClaimCandidates on s.
func mustCandidates(t testing.TB, s domain.Store, q domain.CandidateQuery) []domain.Message {
	t.Helper()
	ms, err := s.ClaimCandidates(ctx, q)
	if err != nil {
		t.Fatalf("ClaimCandidates(%+v): %v", q, err)
	}
	return ms
}

// wantIDs fails the test unless got equals want.
func wantIDs(t testing.TB, what string, got, want []int64) {
	t.Helper()
	if got == nil {
		got = []int64{}
	}
	if want == nil {
		want = []int64{}
	}
	if !slices.Equal(got, want) {
		t.Errorf("%s: got %v, want %v", what, got, want)
	}
}

// wantErr fails the test unless errors.Is(err, want).
func wantErr(t testing.TB, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: got error %v, want %v", what, err, want)
	}
}
