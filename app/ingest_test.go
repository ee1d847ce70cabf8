package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"igmirror/domain"
	"igmirror/events"
	"igmirror/sqlite"
)

// TestIngestGivesBackRoom: whatever the save does, the room the ingester
// held before it is used by a publish or given back, never kept.
func TestIngestGivesBackRoom(t *testing.T) {
	tests := []struct {
		name           string
		capacity       int
		msgs           int
		closed         bool // the store is closed: the save fails
		dupes          int  // the first dupes messages are stored beforehand
		wantErr        bool
		wantQueued     int
		wantTurnedAway uint64 // stored as dropped: no room was held for them
	}{
		{name: "save fails", capacity: 4, msgs: 3, closed: true, wantErr: true},
		{name: "all new", capacity: 4, msgs: 3, wantQueued: 3},
		{name: "duplicates", capacity: 4, msgs: 3, dupes: 2, wantQueued: 1},
		{name: "more messages than room", capacity: 2, msgs: 3, wantQueued: 2, wantTurnedAway: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store, err := sqlite.Open(sqlite.Options{Path: filepath.Join(t.TempDir(), "ingest.db"), Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = store.Close() })
			msgs := make([]domain.Message, tt.msgs)
			for i := range msgs {
				mid := fmt.Sprintf("mid.room.%d", i)
				msgs[i] = domain.Message{InstagramMessageID: &mid, SenderID: "u1", RecipientID: "b1", Direction: domain.Inbound,
					MessageText: "room", Timestamp: time.Now(), MirrorStatus: domain.MirrorDisabled}
				if err := msgs[i].Validate(); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := store.Save(context.Background(), domain.Batch{Messages: msgs[:tt.dupes]}); err != nil {
				t.Fatal(err)
			}
			if tt.closed {
				_ = store.Close()
			}
			bus := events.New(tt.capacity, slog.New(slog.DiscardHandler))
			in := &ingester{store: store, bus: bus, mirrorOn: true, metrics: newMetrics()}

			_, err = in.ingest(context.Background(), "webhook", domain.Batch{Messages: msgs})
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
			if !tt.closed {
				counts, err := store.CountByStatus(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				if got := counts[domain.MirrorDropped]; got != int64(tt.wantTurnedAway) {
					t.Errorf("stored as dropped: got %d, want %d", got, tt.wantTurnedAway)
				}
			}
		})
	}
}
