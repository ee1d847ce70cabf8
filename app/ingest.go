package main

import (
	"context"

	"igmirror/domain"
	"igmirror/events"
)

// Store is what the handlers need of the local store.
type Store interface {
	Save(ctx context.Context, msgs []domain.Message, unsends []string) (domain.SaveResult, error)
	MarkDropped(ids ...int64)
	Get(ctx context.Context, id int64) (domain.Message, error)
	GetByMID(ctx context.Context, mid string) (domain.Message, error)
	List(ctx context.Context, f domain.ListFilter) ([]domain.Message, string, error)
	CountByStatus(ctx context.Context) (map[domain.MirrorStatus]int64, error)
	CheckWritable(ctx context.Context) error
}

var _ Store = (*domain.Store)(nil)

// ingester is the one save-then-publish path, shared by the webhook and
// the admin API.
type ingester struct {
	store    Store
	bus      *events.Bus
	mirrorOn bool
	metrics  *metrics
}

// ingest commits msgs (and unsends) to SQLite, then offers each newly
// stored message to the mirror without waiting. Events the full queue
// turns away are recorded on their messages as dropped.
func (in *ingester) ingest(ctx context.Context, source string, msgs []domain.Message, unsends []string) (domain.SaveResult, error) {
	status := domain.MirrorDisabled
	if in.mirrorOn {
		status = domain.MirrorPending
	}
	for i := range msgs {
		msgs[i].MirrorStatus = status
	}
	// A client that hangs up must not leave a committed message unpublished:
	// once handed to the writer the save completes, and so does the publish.
	res, err := in.store.Save(context.WithoutCancel(ctx), msgs, unsends)
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
	var dropped []int64
	for i := range res.New {
		switch in.bus.Publish(events.MessageSaved{Message: res.New[i]}) {
		case events.DroppedFull, events.DroppedClosed:
			dropped = append(dropped, res.New[i].ID)
		}
	}
	in.store.MarkDropped(dropped...)
	return res, nil
}
