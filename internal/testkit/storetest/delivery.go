package storetest

import (
	"bytes"
	"fmt"
	"maps"
	"testing"
	"time"

	"igmirror/domain"
)

func init() {
	register("DeliveryJournaledWithYield", testDeliveryJournaledWithYield)
	register("DeliveryBodyBytesKept", testDeliveryBodyBytesKept)
	register("ListDeliveries", testListDeliveries)
	register("PurgeDeliveries", testPurgeDeliveries)
}

// delivery is a journal record received at ts with body.
func delivery(ts time.Time, body string) *domain.Delivery {
	return &domain.Delivery{ReceivedAt: ts, Signature: "sha256=" + fmt.Sprintf("%064x", len(body)), Body: []byte(body), Items: map[string]int{"message": 1}}
}

func testDeliveryJournaledWithYield(t *testing.T, open Opener) {
	s := mustOpen(t, open, Options{})
	mustSave(t, s, newMsg(t, "old"), newMsg(t, "to-edit", func(m *domain.Message) { m.MessageText = "v0" }))
	body := `{"object":"instagram","entry":[]}`
	d := &domain.Delivery{
		ReceivedAt: t0.In(time.FixedZone("X", 3600)),
		Signature:  "sha256=abc123",
		Body:       []byte(body),
		Items:      map[string]int{"message": 3, "message_edit": 2, "read": 1, "unsend": 1},
	}
	res, err := s.Save(ctx, domain.Batch{
		Messages: []domain.Message{newMsg(t, "new-1"), newMsg(t, "old"), newMsg(t, "new-2")},
		Unsends:  []string{"old"},
		Edits:    []domain.Edit{edit("to-edit", "v1", 1), edit("ghost", "x", 1)},
		Delivery: d,
	})
	if err != nil {
		t.Fatalf("Save: %v", err)
	}
	if d.ID == 0 || res.DeliveryID != d.ID {
		t.Fatalf("delivery id: got %d in the record, %d in the result, want the same non-zero id", d.ID, res.DeliveryID)
	}
	wantYield := [4]int{2, 1, 1, 1} // stored, duplicates, unsent, edited
	if got := [4]int{d.Stored, d.Duplicates, d.Unsent, d.Edited}; got != wantYield {
		t.Errorf("yield filled in: got %v, want %v", got, wantYield)
	}
	got, err := s.GetDelivery(ctx, d.ID)
	if err != nil {
		t.Fatalf("GetDelivery: %v", err)
	}
	if got.ID != d.ID || !got.ReceivedAt.Equal(t0) || got.ReceivedAt.Location() != time.UTC || got.Signature != d.Signature || got.Size != len(body) {
		t.Errorf("record: got id %d at %v sig %q size %d, want %d at %v UTC, %q, %d", got.ID, got.ReceivedAt, got.Signature, got.Size, d.ID, t0, d.Signature, len(body))
	}
	if g := [4]int{got.Stored, got.Duplicates, got.Unsent, got.Edited}; g != wantYield {
		t.Errorf("stored yield: got %v, want %v", g, wantYield)
	}
	if !maps.Equal(got.Items, d.Items) {
		t.Errorf("items: got %v, want %v", got.Items, d.Items)
	}
	if string(got.Body) != body {
		t.Errorf("body: got %q, want %q", got.Body, body)
	}

	// A delivery that yields no message is journaled too.
	empty := &domain.Delivery{ReceivedAt: t0.Add(time.Second), Body: []byte(`{"object":"instagram"}`), Items: map[string]int{"read": 1}}
	res, err = s.Save(ctx, domain.Batch{Delivery: empty})
	if err != nil || res.DeliveryID == 0 || res.DeliveryID <= d.ID {
		t.Fatalf("Save(delivery only): got id %d, %v, want a new id after %d", res.DeliveryID, err, d.ID)
	}
	if g, err := s.GetDelivery(ctx, res.DeliveryID); err != nil || g.Stored != 0 || g.Items["read"] != 1 {
		t.Errorf("delivery only: got %+v, %v, want it journaled with nothing stored", g, err)
	}

	_, err = s.GetDelivery(ctx, res.DeliveryID+1000)
	wantErr(t, "GetDelivery(unknown)", err, domain.ErrNotFound)
}

func testDeliveryBodyBytesKept(t *testing.T, open Opener) {
	s := mustOpen(t, open, Options{})
	// The signature is over the exact bytes: escapes are kept as sent,
	// never normalised.
	bodies := []string{
		`{"text":"caf\u00e9 \ud83d\ude0d","url":"https:\/\/cdn.example\/a?x=1\u0026y=2"}`,
		"{\"text\":\"café 😍 \\\"q\\\" \\\\\",\n  \"pad\": \"\t\"}\r\n",
		`{}`,
	}
	for i, body := range bodies {
		d := delivery(t0.Add(time.Duration(i)*time.Second), body)
		if _, err := s.Save(ctx, domain.Batch{Delivery: d}); err != nil {
			t.Fatalf("Save: %v", err)
		}
		got, err := s.GetDelivery(ctx, d.ID)
		if err != nil {
			t.Fatalf("GetDelivery(%d): %v", d.ID, err)
		}
		if !bytes.Equal(got.Body, []byte(body)) || got.Size != len(body) {
			t.Errorf("body %d: got %q (size %d), want %q (size %d) byte for byte", i, got.Body, got.Size, body, len(body))
		}
	}
}

func testListDeliveries(t *testing.T, open Opener) {
	s := mustOpen(t, open, Options{})
	var ids []int64
	for i := range 7 {
		d := delivery(t0.Add(time.Duration(i)*time.Minute), fmt.Sprintf(`{"n":%d}`, i))
		if _, err := s.Save(ctx, domain.Batch{Delivery: d}); err != nil {
			t.Fatalf("Save: %v", err)
		}
		ids = append(ids, d.ID)
	}
	rev := func(xs ...int64) []int64 {
		out := make([]int64, 0, len(xs))
		for i := len(xs) - 1; i >= 0; i-- {
			out = append(out, xs[i])
		}
		return out
	}
	list := func(f domain.DeliveryFilter) ([]int64, string) {
		t.Helper()
		ds, next, err := s.ListDeliveries(ctx, f)
		if err != nil {
			t.Fatalf("ListDeliveries(%+v): %v", f, err)
		}
		var out []int64
		for _, d := range ds {
			if d.Body != nil {
				t.Errorf("delivery %d listed with its body, want none in lists", d.ID)
			}
			if d.Size == 0 {
				t.Errorf("delivery %d size: got 0, want the body's", d.ID)
			}
			out = append(out, d.ID)
		}
		return out, next
	}
	got, next := list(domain.DeliveryFilter{})
	wantIDs(t, "all, newest first", got, rev(ids...))
	if next != "" {
		t.Errorf("cursor of a full list: got %q, want none", next)
	}
	got, _ = list(domain.DeliveryFilter{Since: t0.Add(2 * time.Minute), Until: t0.Add(5 * time.Minute)})
	wantIDs(t, "since inclusive, until exclusive", got, rev(ids[2:5]...))

	var paged []int64
	f := domain.DeliveryFilter{Limit: 3}
	for range 5 {
		page, next := list(f)
		paged = append(paged, page...)
		// Deliveries arriving between pages do not shift the pages.
		if _, err := s.Save(ctx, domain.Batch{Delivery: delivery(t0.Add(time.Hour), `{}`)}); err != nil {
			t.Fatal(err)
		}
		if next == "" {
			break
		}
		f.Cursor = next
	}
	wantIDs(t, "paged by 3", paged, rev(ids...))
}

func testPurgeDeliveries(t *testing.T, open Opener) {
	s := mustOpen(t, open, Options{})
	var ids []int64
	for i := range 6 {
		d := delivery(t0.Add(time.Duration(i)*time.Hour), `{}`)
		if _, err := s.Save(ctx, domain.Batch{Delivery: d}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, d.ID)
	}
	purge := func(before time.Time, limit int) int64 {
		t.Helper()
		n, err := s.PurgeDeliveries(ctx, before, limit)
		if err != nil {
			t.Fatalf("PurgeDeliveries: %v", err)
		}
		return n
	}
	if got := purge(t0, 10); got != 0 {
		t.Errorf("purge before the first: got %d, want 0", got)
	}
	if got := purge(t0.Add(4*time.Hour), 2); got != 2 {
		t.Errorf("purge with limit 2: got %d, want 2", got)
	}
	for i, id := range ids {
		_, err := s.GetDelivery(ctx, id)
		if gone := i < 2; gone != (err != nil) {
			t.Errorf("delivery %d (hour %d) after the limited purge: got err %v, want gone %v (oldest first)", id, i, err, gone)
		}
	}
	if got := purge(t0.Add(4*time.Hour), 100); got != 2 {
		t.Errorf("purge the rest before hour 4: got %d, want 2 (before is exclusive)", got)
	}
	ds, _, err := s.ListDeliveries(ctx, domain.DeliveryFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var left []int64
	for _, d := range ds {
		left = append(left, d.ID)
	}
	wantIDs(t, "left", left, []int64{ids[5], ids[4]})
}
