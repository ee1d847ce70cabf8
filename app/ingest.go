package main

import (
	"context"
	"time"

	"igmirror/domain"
	"igmirror/events"
)

// Store is what the ingester needs of the local store.
type Store interface {
	Save(ctx context.Context, b domain.Batch) (domain.SaveResult, error)
	MarkDropped(ids ...int64)
}

var _ Store = (domain.Store)(nil)

// saveTimeout bounds one save of the ingester.
const saveTimeout = 8 * time.Second

// ingester is the one save-then-publish path, shared by the webhook and
// the admin API.
type ingester struct {
	store    Store
	bus      *events.Bus
	mirrorOn bool
	metrics  *metrics
}

// ingest commits the batch to the store, then offers each newly
// stored message to the mirror without waiting. Room on the queue is
// held before the save: a message the full queue has no room for is
// stored as dropped at once (counted and logged as a drop), and one that
// still finds the queue full after the save is marked dropped then.
func (in *ingester) ingest(ctx context.Context, source string, b domain.Batch) (domain.SaveResult, error) {
	msgs := b.Messages
	held := 0
	var room *events.Reservation
	if in.mirrorOn {
		room = in.bus.Reserve(len(msgs))
		defer room.Close() // no return path keeps the room
		held = room.Held()
	}
	for i := range msgs {
		switch {
		case !in.mirrorOn:
			msgs[i].MirrorStatus = domain.MirrorDisabled
		case i < held:
			msgs[i].MirrorStatus = domain.MirrorPending
		default:
			msgs[i].MirrorStatus = domain.MirrorDropped
		}
	}
	// A client that hangs up must not leave a committed message unpublished:
	// once handed to the writer the save completes, and so does the publish.
	// The save is bounded all the same, so that a store that does not
	// answer (a blackholed PostgreSQL) is answered 503 well inside Meta's
	// timeout instead of hanging; a save that still commits after that is
	// pending and this instance's reconciler offers it as stale.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), saveTimeout)
	defer cancel()
	res, err := in.store.Save(sctx, b)
	if err != nil {
		return res, err
	}
	in.metrics.messages.WithLabelValues(source, "stored").Add(float64(len(res.New)))
	if res.Duplicates > 0 {
		in.metrics.messages.WithLabelValues(source, "duplicate").Add(float64(res.Duplicates))
	}
	if !in.mirrorOn {
		return res, nil
	}
	var late []int64
	turnedAway := 0
	for i := range res.New {
		if res.New[i].MirrorStatus == domain.MirrorDropped {
			turnedAway++
			continue
		}
		switch room.Publish(events.MessageSaved{Message: res.New[i]}) {
		case events.DroppedFull, events.DroppedClosed:
			late = append(late, res.New[i].ID)
		}
	}
	room.Close() // the duplicates' room: free for others now, not at return
	room.TurnedAway(turnedAway)
	in.store.MarkDropped(late...)
	return res, nil
}
