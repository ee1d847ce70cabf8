package storetest

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"igmirror/domain"
)

func init() {
	register("ListFilters", testListFilters)
	register("ListDefaultLimitNewestFirst", testListDefaultLimitNewestFirst)
	register("ListPagingStableWhileInserting", testListPagingStableWhileInserting)
	register("ListBadCursor", testListBadCursor)
	register("GetNotFound", testGetNotFound)
}

func testListFilters(t *testing.T, open Opener) {
	s := mustOpen(t, open, Options{})
	h := time.Hour
	fixture := []domain.Message{
		newMsg(t, "in-0", at(t0)),
		newMsg(t, "out-1", outbound, at(t0.Add(h))),
		newMsg(t, "other-2", from(other), at(t0.Add(2*h)), status(domain.MirrorDisabled)),
		newMsg(t, "in-3", at(t0.Add(3*h)), status(domain.MirrorMirrored)),
		newMsg(t, "out-4", outbound, at(t0.Add(4*h)), status(domain.MirrorFailed)),
		newMsg(t, "in-5", at(t0.Add(5*h-time.Microsecond))),
	}
	mustSave(t, s, fixture...)
	for _, tc := range []struct {
		name string
		f    domain.ListFilter
		want []string // newest first
	}{
		{"no filter", domain.ListFilter{}, []string{"in-5", "out-4", "in-3", "other-2", "out-1", "in-0"}},
		{"user", domain.ListFilter{UserID: customer}, []string{"in-5", "out-4", "in-3", "out-1", "in-0"}},
		{"other user", domain.ListFilter{UserID: other}, []string{"other-2"}},
		{"inbound", domain.ListFilter{Direction: domain.Inbound}, []string{"in-5", "in-3", "other-2", "in-0"}},
		{"outbound", domain.ListFilter{Direction: domain.Outbound}, []string{"out-4", "out-1"}},
		{"pending", domain.ListFilter{MirrorStatus: domain.MirrorPending}, []string{"in-5", "out-1", "in-0"}},
		{"failed", domain.ListFilter{MirrorStatus: domain.MirrorFailed}, []string{"out-4"}},
		{"dropped (none)", domain.ListFilter{MirrorStatus: domain.MirrorDropped}, []string{}},
		{"since inclusive", domain.ListFilter{Since: t0.Add(3 * h)}, []string{"in-5", "out-4", "in-3"}},
		{"until exclusive", domain.ListFilter{Until: t0.Add(h)}, []string{"in-0"}},
		{"window", domain.ListFilter{Since: t0.Add(h), Until: t0.Add(4 * h)}, []string{"in-3", "other-2", "out-1"}},
		{"sub-second until", domain.ListFilter{Since: t0.Add(4 * h), Until: t0.Add(5*h - time.Microsecond)}, []string{"out-4"}},
		{"since in another zone", domain.ListFilter{Since: t0.Add(5*h - time.Microsecond).In(time.FixedZone("X", -5*3600))}, []string{"in-5"}},
		{"user, outbound, failed", domain.ListFilter{UserID: customer, Direction: domain.Outbound, MirrorStatus: domain.MirrorFailed}, []string{"out-4"}},
		{"limit", domain.ListFilter{Limit: 2}, []string{"in-5", "out-4"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, _, err := s.List(ctx, tc.f)
			if err != nil {
				t.Fatalf("List: %v", err)
			}
			if g := midsOf(got); !slices.Equal(g, tc.want) {
				t.Errorf("got %v, want %v", g, tc.want)
			}
		})
	}
}

func testListDefaultLimitNewestFirst(t *testing.T, open Opener) {
	s := mustOpen(t, open, Options{})
	var msgs []domain.Message
	for _, mid := range mids("m", 60) {
		msgs = append(msgs, newMsg(t, mid))
	}
	saved := mustSave(t, s, msgs...).New
	page, next, err := s.List(ctx, domain.ListFilter{})
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if got, want := len(page), 50; got != want {
		t.Fatalf("default page: got %d, want %d", got, want)
	}
	ids := idsOf(saved)
	slices.Reverse(ids)
	wantIDs(t, "first page", idsOf(page), ids[:50])
	if next == "" {
		t.Fatal("next cursor: got none, want one (10 more)")
	}
	rest, next2, err := s.List(ctx, domain.ListFilter{Cursor: next})
	if err != nil {
		t.Fatalf("List(next): %v", err)
	}
	wantIDs(t, "second page", idsOf(rest), ids[50:])
	if next2 != "" {
		t.Errorf("cursor after the last page: got %q, want none", next2)
	}
	exact, nextExact, err := s.List(ctx, domain.ListFilter{Limit: 60})
	if err != nil || len(exact) != 60 || nextExact != "" {
		t.Errorf("List(limit = total): got %d, cursor %q, %v, want 60 and no cursor", len(exact), nextExact, err)
	}
}

func testListPagingStableWhileInserting(t *testing.T, open Opener) {
	s := mustOpen(t, open, Options{})
	var first []domain.Message
	for _, mid := range mids("before", 10) {
		first = append(first, newMsg(t, mid))
	}
	want := idsOf(mustSave(t, s, first...).New)
	slices.Reverse(want)

	var got []int64
	f := domain.ListFilter{Limit: 3, UserID: customer}
	for page := 0; ; page++ {
		if page > 10 {
			t.Fatal("more pages than messages")
		}
		ms, next, err := s.List(ctx, f)
		if err != nil {
			t.Fatalf("List page %d: %v", page, err)
		}
		got = append(got, idsOf(ms)...)
		// Messages arriving while the client pages never shift the pages
		// it has yet to fetch.
		mustSave(t, s, newMsg(t, fmt.Sprintf("during-%d", page)), newMsg(t, "", from(customer)))
		if next == "" {
			break
		}
		f.Cursor = next
	}
	wantIDs(t, "paged ids", got, want)
}

func testListBadCursor(t *testing.T, open Opener) {
	s := mustOpen(t, open, Options{})
	mustSave(t, s, newMsg(t, "m"))
	for _, c := range []string{"garbage!", "bTo=", domain.EncodeCursor(1) + "x", "bTow", "bTotMQ"} {
		_, _, err := s.List(ctx, domain.ListFilter{Cursor: c})
		if !errors.Is(err, domain.ErrBadCursor) {
			t.Errorf("List(cursor %q): got %v, want %v", c, err, domain.ErrBadCursor)
		}
		_, _, err = s.ListDeliveries(ctx, domain.DeliveryFilter{Cursor: c})
		if !errors.Is(err, domain.ErrBadCursor) {
			t.Errorf("ListDeliveries(cursor %q): got %v, want %v", c, err, domain.ErrBadCursor)
		}
	}
}

func testGetNotFound(t *testing.T, open Opener) {
	s := mustOpen(t, open, Options{})
	m := mustSaveOne(t, s, newMsg(t, "here"))
	if got := mustGet(t, s, m.ID); got.MID() != "here" {
		t.Errorf("Get(%d): got mid %q, want here", m.ID, got.MID())
	}
	byMID, err := s.GetByMID(ctx, "here")
	if err != nil || byMID.ID != m.ID {
		t.Errorf("GetByMID(here): got id %d, %v, want %d", byMID.ID, err, m.ID)
	}
	_, err = s.Get(ctx, m.ID+1000)
	wantErr(t, "Get(unknown id)", err, domain.ErrNotFound)
	_, err = s.GetByMID(ctx, "not-here")
	wantErr(t, "GetByMID(unknown mid)", err, domain.ErrNotFound)
	_, err = s.GetByMID(ctx, "")
	wantErr(t, "GetByMID(\"\")", err, domain.ErrNotFound)
}
