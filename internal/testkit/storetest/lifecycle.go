package storetest

import (
	"testing"

	"igmirror/domain"
)

func init() {
	register("CheckWritable", testCheckWritable)
	register("CloseThenSaveIsErrClosed", testCloseThenSaveIsErrClosed)
	register("ReopenKeepsDataAndIDsGrow", testReopenKeepsDataAndIDsGrow)
}

func testCheckWritable(t *testing.T, open Opener) {
	s := mustOpen(t, open, Options{})
	for range 3 {
		if err := s.CheckWritable(ctx); err != nil {
			t.Fatalf("CheckWritable: got %v, want nil", err)
		}
	}
	if got := allMessages(t, s); len(got) != 0 {
		t.Errorf("messages after CheckWritable: got %d, want 0 (it stores no message)", len(got))
	}
}

func testCloseThenSaveIsErrClosed(t *testing.T, open Opener) {
	s := mustOpen(t, open, Options{})
	mustSaveOne(t, s, newMsg(t, "before"))
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: got %v, want nil", err)
	}
	_, err := s.Save(ctx, domain.Batch{Messages: []domain.Message{newMsg(t, "after")}})
	wantErr(t, "Save after Close", err, domain.ErrClosed)
	wantErr(t, "CheckWritable after Close", s.CheckWritable(ctx), domain.ErrClosed)
	_, err = s.Claim(ctx, []int64{1})
	wantErr(t, "Claim after Close", err, domain.ErrClosed)
	_, _, err = s.List(ctx, domain.ListFilter{})
	wantErr(t, "List after Close", err, domain.ErrClosed)
	_, err = s.Get(ctx, 1)
	wantErr(t, "Get after Close", err, domain.ErrClosed)
	_, err = s.CountByStatus(ctx)
	wantErr(t, "CountByStatus after Close", err, domain.ErrClosed)
	_, _, err = s.ListDeliveries(ctx, domain.DeliveryFilter{})
	wantErr(t, "ListDeliveries after Close", err, domain.ErrClosed)
	s.MarkDropped(1) // never blocks, never panics

	again := mustOpen(t, open, Options{})
	if got := countMID(t, again, "after"); got != 0 {
		t.Errorf("rows of the save refused after Close: got %d, want 0", got)
	}
	if got := countMID(t, again, "before"); got != 1 {
		t.Errorf("rows saved before Close: got %d, want 1", got)
	}
}

func testReopenKeepsDataAndIDsGrow(t *testing.T, open Opener) {
	first := mustOpen(t, open, Options{InstanceID: "first"})
	res := mustSave(t, first, newMsg(t, "a"), newMsg(t, "b", status(domain.MirrorMirrored)), newMsg(t, ""))
	d := delivery(t0, `{"kept":true}`)
	if _, err := first.Save(ctx, domain.Batch{Delivery: d}); err != nil {
		t.Fatal(err)
	}
	var maxID int64
	for _, m := range res.New {
		maxID = max(maxID, m.ID)
	}
	if err := first.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	second := mustOpen(t, open, Options{InstanceID: "second"})
	wantIDs(t, "ids after reopen", idsOf(allMessages(t, second)), []int64{res.New[2].ID, res.New[1].ID, res.New[0].ID})
	for _, m := range res.New {
		got := mustGet(t, second, m.ID)
		if got.MID() != m.MID() || got.MirrorStatus != m.MirrorStatus || !got.CreatedAt.Equal(m.CreatedAt) || got.MessageText != m.MessageText {
			t.Errorf("message %d after reopen: got %+v, want %+v", m.ID, got, m)
		}
	}
	if g, err := second.GetDelivery(ctx, d.ID); err != nil || string(g.Body) != `{"kept":true}` {
		t.Errorf("delivery after reopen: got %q, %v, want its body", g.Body, err)
	}
	again := mustSave(t, second, newMsg(t, "a"), newMsg(t, "c"))
	if again.Duplicates != 1 || len(again.New) != 1 {
		t.Fatalf("save after reopen: got new %d duplicates %d, want 1, 1", len(again.New), again.Duplicates)
	}
	if again.New[0].ID <= maxID {
		t.Errorf("new id after reopen: got %d, want above %d", again.New[0].ID, maxID)
	}
	d2 := delivery(t0, `{}`)
	if _, err := second.Save(ctx, domain.Batch{Delivery: d2}); err != nil || d2.ID <= d.ID {
		t.Errorf("new delivery id after reopen: got %d, %v, want above %d", d2.ID, err, d.ID)
	}
}
