package storetest

import (
	"slices"
	"sync"
	"testing"
	"time"

	"igmirror/domain"
)

func init() {
	register("SaveReturnsIDsInOrder", testSaveReturnsIDsInOrder)
	register("SaveRoundTripsEveryField", testSaveRoundTripsEveryField)
	register("SaveNothingIsANoop", testSaveNothingIsANoop)
	register("SaveWithoutMIDAlwaysStored", testSaveWithoutMIDAlwaysStored)
	register("DedupeRedeliveryAcrossCalls", testDedupeRedeliveryAcrossCalls)
	register("DedupeSameMIDInOneBatch", testDedupeSameMIDInOneBatch)
	register("DedupeConcurrentCallers", testDedupeConcurrentCallers)
	register("DedupeTwoInstances", testDedupeTwoInstances)
}

func testSaveReturnsIDsInOrder(t *testing.T, open Opener) {
	s := mustOpen(t, open, Options{})
	in := []domain.Message{newMsg(t, "m1"), newMsg(t, "m2", outbound), newMsg(t, ""), newMsg(t, "m4")}
	before := time.Now()
	res := mustSave(t, s, in...)
	after := time.Now()
	if got, want := len(res.New), len(in); got != want {
		t.Fatalf("new: got %d, want %d", got, want)
	}
	if res.Duplicates != 0 || res.Unsent != 0 || res.Edited != 0 || res.UnknownEdits != 0 || res.DeliveryID != 0 {
		t.Errorf("result: got %+v, want only New", res)
	}
	for i, m := range res.New {
		if got, want := m.MID(), in[i].MID(); got != want {
			t.Errorf("New[%d] mid: got %q, want %q (the order given)", i, got, want)
		}
		if i > 0 && m.ID <= res.New[i-1].ID {
			t.Errorf("New[%d] id: got %d after %d, want ids increasing in the order given", i, m.ID, res.New[i-1].ID)
		}
		if m.CreatedAt.Before(before.Add(-time.Minute)) || m.CreatedAt.After(after.Add(time.Minute)) || m.CreatedAt.Location() != time.UTC {
			t.Errorf("New[%d] created_at: got %v, want the time of the save (%v..%v) in UTC", i, m.CreatedAt, before, after)
		}
		if m.MirrorOwner == "" || m.MirrorOwner != s.Lease().Owner {
			t.Errorf("New[%d] mirror owner: got %q, want this instance's %q", i, m.MirrorOwner, s.Lease().Owner)
		}
		got := mustGet(t, s, m.ID)
		if !got.CreatedAt.Equal(m.CreatedAt) {
			t.Errorf("message %d created_at: Save said %v, the store holds %v", m.ID, m.CreatedAt, got.CreatedAt)
		}
		if got.MID() != m.MID() {
			t.Errorf("message %d mid: got %q, want %q", m.ID, got.MID(), m.MID())
		}
	}
}

func testSaveRoundTripsEveryField(t *testing.T, open Opener) {
	s := mustOpen(t, open, Options{})
	kyiv := time.FixedZone("EET", 2*3600)
	in := []domain.Message{
		newMsg(t, "round-1", func(m *domain.Message) {
			m.MessageText = "Привіт! Olá, café? 😍👍 \"quoted\" \\ back\nslash\t中文 \u200d"
			m.Timestamp = t0.In(kyiv) // Validate makes it UTC; the store must keep the instant
		}),
		newMsg(t, "round-2", outbound, status(domain.MirrorDisabled), func(m *domain.Message) {
			m.MessageText = ""
			m.Attachments = `[{"type":"image","url":"https://cdn.example/a?x=1&y=2"},{"type":"video","url":"https://cdn.example/\u00e9.mp4"}]`
			m.ReplyToMID = "aWdfZAG1-original"
			m.Standby = true
			m.Timestamp = time.Date(2025, 1, 2, 3, 4, 5, 999_999_000, time.UTC)
		}),
	}
	res := mustSave(t, s, in...)
	if got, want := len(res.New), 2; got != want {
		t.Fatalf("new: got %d, want %d", got, want)
	}
	for i, want := range in {
		for _, how := range []string{"Get", "GetByMID"} {
			var got domain.Message
			var err error
			if how == "Get" {
				got, err = s.Get(ctx, res.New[i].ID)
			} else {
				got, err = s.GetByMID(ctx, want.MID())
			}
			if err != nil {
				t.Fatalf("%s(%s): %v", how, want.MID(), err)
			}
			checks := []struct {
				field     string
				got, want any
			}{
				{"id", got.ID, res.New[i].ID},
				{"mid", got.MID(), want.MID()},
				{"sender_id", got.SenderID, want.SenderID},
				{"recipient_id", got.RecipientID, want.RecipientID},
				{"direction", got.Direction, want.Direction},
				{"message_text", got.MessageText, want.MessageText},
				{"mirror_status", got.MirrorStatus, want.MirrorStatus},
				{"user_id", got.UserID, customer},
				{"attachments", got.Attachments, want.Attachments},
				{"reply_to_mid", got.ReplyToMID, want.ReplyToMID},
				{"standby", got.Standby, want.Standby},
				{"deleted", got.Deleted, false},
				{"deleted_at nil", got.DeletedAt == nil, true},
				{"original_text nil", got.OriginalText == nil, true},
				{"edit_count", got.EditCount, 0},
				{"mirror_attempts", got.MirrorAttempts, 0},
				{"mirror_last_error", got.MirrorLastError, ""},
				{"mirror_last_attempt_at nil", got.MirrorLastAttemptAt == nil, true},
				{"mirrored_at nil", got.MirroredAt == nil, true},
				{"mirror_degraded", got.MirrorDegraded, false},
				{"mirror_owner", got.MirrorOwner, s.Lease().Owner},
				{"timestamp UTC", got.Timestamp.Location(), time.UTC},
				{"created_at UTC", got.CreatedAt.Location(), time.UTC},
			}
			for _, c := range checks {
				if c.got != c.want {
					t.Errorf("%s(%s) %s: got %v, want %v", how, want.MID(), c.field, c.got, c.want)
				}
			}
			if !got.Timestamp.Equal(want.Timestamp) {
				t.Errorf("%s(%s) timestamp: got %v, want %v (sub-second precision kept)", how, want.MID(), got.Timestamp, want.Timestamp)
			}
		}
	}
}

func testSaveNothingIsANoop(t *testing.T, open Opener) {
	s := mustOpen(t, open, Options{})
	for name, b := range map[string]domain.Batch{
		"zero batch":   {},
		"empty slices": {Messages: []domain.Message{}, Unsends: []string{}, Edits: []domain.Edit{}},
	} {
		res, err := s.Save(ctx, b)
		if err != nil {
			t.Errorf("Save(%s): %v", name, err)
		}
		if len(res.New) != 0 || res.Duplicates != 0 || res.DeliveryID != 0 {
			t.Errorf("Save(%s): got %+v, want nothing", name, res)
		}
	}
	if got := allMessages(t, s); len(got) != 0 {
		t.Errorf("stored: got %d messages, want 0", len(got))
	}
}

func testSaveWithoutMIDAlwaysStored(t *testing.T, open Opener) {
	s := mustOpen(t, open, Options{})
	a, b := newMsg(t, ""), newMsg(t, "")
	first := mustSave(t, s, a, b, a)
	second := mustSave(t, s, a)
	if got, want := len(first.New)+len(second.New), 4; got != want {
		t.Fatalf("stored: got %d, want %d (a message without a mid is never a duplicate)", got, want)
	}
	if got := first.Duplicates + second.Duplicates; got != 0 {
		t.Errorf("duplicates: got %d, want 0", got)
	}
	ids := append(idsOf(first.New), idsOf(second.New)...)
	for i := 1; i < len(ids); i++ {
		if ids[i] <= ids[i-1] {
			t.Errorf("ids: got %v, want distinct and increasing", ids)
			break
		}
	}
	for _, id := range ids {
		if m := mustGet(t, s, id); m.InstagramMessageID != nil {
			t.Errorf("message %d mid: got %q, want none", id, m.MID())
		}
	}
	if got, want := len(allMessages(t, s)), 4; got != want {
		t.Errorf("rows: got %d, want %d", got, want)
	}
}

func testDedupeRedeliveryAcrossCalls(t *testing.T, open Opener) {
	s := mustOpen(t, open, Options{})
	orig := mustSaveOne(t, s, newMsg(t, "dup"))
	res := mustSave(t, s, newMsg(t, "dup", func(m *domain.Message) { m.MessageText = "redelivered" }), newMsg(t, "fresh"))
	if got, want := midsOf(res.New), []string{"fresh"}; !slices.Equal(got, want) {
		t.Errorf("new: got %v, want %v", got, want)
	}
	if got, want := res.Duplicates, 1; got != want {
		t.Errorf("duplicates: got %d, want %d", got, want)
	}
	m, err := s.GetByMID(ctx, "dup")
	if err != nil {
		t.Fatalf("GetByMID(dup): %v", err)
	}
	if m.ID != orig.ID || m.MessageText != orig.MessageText {
		t.Errorf("dup: got id %d text %q, want the first: id %d text %q", m.ID, m.MessageText, orig.ID, orig.MessageText)
	}
	if got, want := countMID(t, s, "dup"), 1; got != want {
		t.Errorf("rows with mid dup: got %d, want %d", got, want)
	}
}

func testDedupeSameMIDInOneBatch(t *testing.T, open Opener) {
	s := mustOpen(t, open, Options{})
	first := newMsg(t, "dup")
	second := newMsg(t, "dup", func(m *domain.Message) { m.MessageText = "second" })
	res := mustSave(t, s, first, newMsg(t, "other"), second)
	if got, want := midsOf(res.New), []string{"dup", "other"}; !slices.Equal(got, want) {
		t.Fatalf("new: got %v, want %v", got, want)
	}
	if got, want := res.Duplicates, 1; got != want {
		t.Errorf("duplicates: got %d, want %d", got, want)
	}
	m, err := s.GetByMID(ctx, "dup")
	if err != nil {
		t.Fatalf("GetByMID(dup): %v", err)
	}
	if got, want := m.MessageText, first.MessageText; got != want {
		t.Errorf("kept text: got %q, want the first's %q", got, want)
	}
	if got, want := m.ID, res.New[0].ID; got != want {
		t.Errorf("dup id: got %d, Save said %d", got, want)
	}
	if got, want := len(allMessages(t, s)), 2; got != want {
		t.Errorf("rows: got %d, want %d", got, want)
	}
}

// saveConcurrently saves msg on each store from n goroutines released at
// once, and returns every result.
func saveConcurrently(t *testing.T, stores []domain.Store, n int, batch func() []domain.Message) []domain.SaveResult {
	t.Helper()
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		results []domain.SaveResult
		errs    []error
	)
	start := make(chan struct{})
	for _, s := range stores {
		for range n {
			wg.Go(func() {
				<-start
				res, err := s.Save(ctx, domain.Batch{Messages: batch()})
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
					return
				}
				results = append(results, res)
			})
		}
	}
	close(start)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("concurrent Save: %d failed, first: %v", len(errs), errs[0])
	}
	return results
}

func testDedupeConcurrentCallers(t *testing.T, open Opener) {
	s := mustOpen(t, open, Options{})
	const callers = 8
	results := saveConcurrently(t, []domain.Store{s}, callers, func() []domain.Message { return []domain.Message{newMsg(t, "dup")} })
	var stored []domain.Message
	dups := 0
	for _, r := range results {
		stored, dups = append(stored, r.New...), dups+r.Duplicates
	}
	if got, want := len(stored), 1; got != want {
		t.Fatalf("stored across callers: got %d, want %d", got, want)
	}
	if got, want := dups, callers-1; got != want {
		t.Errorf("duplicates across callers: got %d, want %d", got, want)
	}
	wantIDs(t, "rows", idsOf(allMessages(t, s)), []int64{stored[0].ID})
}

func testDedupeTwoInstances(t *testing.T, open Opener) {
	a := mustOpen(t, open, Options{InstanceID: "a"})
	b := mustOpen(t, open, Options{InstanceID: "b"})
	const perStore, nMIDs = 4, 20
	all := mids("shared", nMIDs)
	results := saveConcurrently(t, []domain.Store{a, b}, perStore, func() []domain.Message {
		msgs := make([]domain.Message, len(all))
		for i, mid := range all {
			msgs[i] = newMsg(t, mid)
		}
		return msgs
	})
	stored, dups := map[string]int{}, 0
	for _, r := range results {
		for _, m := range r.New {
			stored[m.MID()]++
		}
		dups += r.Duplicates
	}
	for _, mid := range all {
		if stored[mid] != 1 {
			t.Errorf("%s: reported stored %d times, want once", mid, stored[mid])
		}
	}
	if got, want := dups, nMIDs*(2*perStore-1); got != want {
		t.Errorf("duplicates: got %d, want %d", got, want)
	}
	for _, s := range []domain.Store{a, b} {
		rows := allMessages(t, s)
		if got, want := len(rows), nMIDs; got != want {
			t.Errorf("rows seen by %s: got %d, want %d", s.Lease().InstanceID, got, want)
		}
	}
}
