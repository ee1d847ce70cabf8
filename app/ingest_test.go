package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"

	"igmirror/domain"
	"igmirror/events"
)

// saveStub is a Store whose Save answers as told, so that a test can
// give the ingester a failed save or duplicates; the ingester calls no
// other method of Store than Save and MarkDropped.
type saveStub struct {
	Store
	err     error
	dupes   int // the first dupes messages count as already stored
	dropped []int64
}

func (s *saveStub) Save(_ context.Context, msgs []domain.Message, _ []string) (domain.SaveResult, error) {
	if s.err != nil {
		return domain.SaveResult{}, s.err
	}
	var res domain.SaveResult
	for i, m := range msgs {
		if i < s.dupes {
			res.Duplicates++
			continue
		}
		m.ID = int64(i + 1)
		res.New = append(res.New, m)
	}
	return res, nil
}

func (s *saveStub) MarkDropped(ids ...int64) { s.dropped = append(s.dropped, ids...) }

// TestIngestGivesBackRoom: whatever the save does, the room the ingester
// held before it is used by a publish or given back, never kept.
func TestIngestGivesBackRoom(t *testing.T) {
	tests := []struct {
		name           string
		capacity       int
		msgs           int
		store          saveStub
		wantErr        bool
		wantQueued     int
		wantTurnedAway uint64 // stored as dropped: no room was held for them
	}{
		{name: "save fails", capacity: 4, msgs: 3, store: saveStub{err: errors.New("disk full")}, wantErr: true},
		{name: "all new", capacity: 4, msgs: 3, wantQueued: 3},
		{name: "duplicates", capacity: 4, msgs: 3, store: saveStub{dupes: 2}, wantQueued: 1},
		{name: "more messages than room", capacity: 2, msgs: 3, wantQueued: 2, wantTurnedAway: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bus := events.New(tt.capacity, slog.New(slog.DiscardHandler))
			in := &ingester{store: &tt.store, bus: bus, mirrorOn: true, metrics: newMetrics()}
			msgs := make([]domain.Message, tt.msgs)
			for i := range msgs {
				mid := fmt.Sprintf("mid.room.%d", i)
				msgs[i] = domain.Message{InstagramMessageID: &mid}
			}

			_, err := in.ingest(context.Background(), "webhook", msgs, nil)
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Fatalf("ingest error: got %v, want error %t", err, tt.wantErr)
			}
			if got := bus.Len(); got != tt.wantQueued {
				t.Errorf("queued: got %d, want %d", got, tt.wantQueued)
			}
			if got, want := bus.Room(), bus.Cap()-bus.Len(); got != want {
				t.Errorf("Room after ingest: got %d, want %d (every held slot used or given back)", got, want)
			}
			if got := bus.Dropped(events.ReasonQueueFull); got != tt.wantTurnedAway {
				t.Errorf("Dropped(queue_full): got %d, want %d", got, tt.wantTurnedAway)
			}
			if len(tt.store.dropped) != 0 {
				t.Errorf("marked dropped after the save: got %v, want none", tt.store.dropped)
			}
		})
	}
}
