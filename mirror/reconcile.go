package mirror

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"igmirror/domain"
	"igmirror/events"
)

// ReconcilerConfig tunes the reconciler.
type ReconcilerConfig struct {
	Interval    time.Duration // 0 = only the start-up pass
	MaxAttempts int           // failed messages tried this often are left to an operator
	// StaleAfter is how old a pending message must be before it counts as
	// lost (its event neither queued nor recorded as dropped). Zero means
	// the interval, at most a minute: offering a pending message whose
	// event is still queued or in a worker's hands is harmless (the bus
	// turns it away as already queued), so "stale" only has to keep the
	// periodic pass from rereading the whole queue's worth of rows each
	// time.
	StaleAfter time.Duration
	// Connected reports whether the CRM took the mirror's last statement.
	// A periodic pass goes on past a full queue only while it does: after
	// an outage the backlog then flows as fast as the CRM takes it, while
	// a CRM that refuses every row (a wrong password) is offered one
	// queueful per interval, not every failed message at once. Nil means
	// always.
	Connected func() bool
	Logger    *slog.Logger
}

// CandidateStore is what the reconciler needs of the local store (a part
// of domain.MirrorStore).
type CandidateStore interface {
	ClaimCandidates(ctx context.Context, q domain.CandidateQuery) ([]domain.Message, error)
	DeferCandidates(ctx context.Context, q domain.CandidateQuery, fromID int64) (int64, error)
	MarkDropped(ids ...int64)
}

var _ CandidateStore = (domain.Store)(nil)

// Reconciler offers the mirror, again, the messages it has not yet
// mirrored: at start-up the pending ones whose owner's lease has lapsed
// (this host's previous run included), then periodically the dropped, the
// failed (up to MaxAttempts), this instance's stale pending and every
// orphan, oldest first. Each message is claimed in the store before it is
// offered, so reconcilers on several instances never offer the same
// message twice, and none touches a message under another's live lease.
// It never pushes into a full queue. When the queue fills, the start-up pass,
// and a periodic pass while the CRM is connected, wait until half of it
// is free and go on, so a backlog flows at the pace the CRM takes it; a
// periodic pass while the CRM is not connected stops there.
type Reconciler struct {
	cfg     ReconcilerConfig
	store   CandidateStore
	bus     *events.Bus
	log     *slog.Logger
	started time.Time

	offered atomic.Uint64
}

// NewReconciler wires a reconciler; Run runs it.
func NewReconciler(cfg ReconcilerConfig, store CandidateStore, bus *events.Bus) *Reconciler {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.StaleAfter <= 0 {
		cfg.StaleAfter = time.Minute
		if cfg.Interval > 0 {
			cfg.StaleAfter = min(cfg.Interval, time.Minute)
		}
	}
	return &Reconciler{cfg: cfg, store: store, bus: bus, log: cfg.Logger.With("component", "reconciler"), started: time.Now().UTC()}
}

// Offered counts events the reconciler and resyncs have queued.
func (r *Reconciler) Offered() uint64 { return r.offered.Load() }

// Run makes the start-up pass, then reconciles every Interval until ctx ends.
func (r *Reconciler) Run(ctx context.Context) {
	r.startupPass(ctx)
	if r.cfg.Interval <= 0 {
		return
	}
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.reconcile(ctx)
	}
}

// reconcile is one periodic pass: every dropped message, every failed one
// with attempts left and every stale pending one, each offered once,
// oldest first. A pass that stopped at a full queue would leave a
// backlog after a CRM outage to one queueful per interval (4,096 messages
// every 30 s by default, hours for a long outage); so while the CRM is
// connected the pass waits for room instead, and goes on at the pace the
// mirror drains the queue.
func (r *Reconciler) reconcile(ctx context.Context) {
	q := domain.CandidateQuery{
		Statuses:           []domain.MirrorStatus{domain.MirrorDropped, domain.MirrorFailed},
		MaxAttempts:        r.cfg.MaxAttempts,
		StalePendingBefore: time.Now().Add(-r.cfg.StaleAfter),
		Orphans:            true,
	}
	n, err := r.offerAll(ctx, q, r.cfg.Connected)
	if err != nil && ctx.Err() == nil {
		r.log.Warn("reconcile", "err", err, "offered", n)
	} else if n > 0 {
		r.log.Info("reconciled", "offered", n)
	}
}

// startupPass offers every pending message whose owner's lease has lapsed
// (the previous run's, after the drain timeout or a crash; another
// instance's that died), waiting for room as long as it takes.
func (r *Reconciler) startupPass(ctx context.Context) {
	total, err := r.offerAll(ctx, domain.CandidateQuery{Orphans: true}, nil)
	if err != nil && ctx.Err() == nil {
		r.log.Warn("offer pending messages at start-up", "err", err)
	}
	if total > 0 {
		r.log.Info("offered messages left pending by the previous run", "count", total)
	}
}

// offerAll offers every candidate of q, oldest first, each once: while the
// queue has room, and, each time it fills, again once half of it is free,
// until none is left or ctx ends. With goOn set, it stops at a full queue
// when goOn says no. It returns how many it queued.
func (r *Reconciler) offerAll(ctx context.Context, q domain.CandidateQuery, goOn func() bool) (int, error) {
	total := 0
	for {
		res, err := r.Offer(ctx, q)
		total += res.Offered
		if err != nil || !res.Full || (goOn != nil && !goOn()) {
			return total, err
		}
		q.AfterID = res.StoppedAt - 1
		r.waitForRoom(ctx)
		if err := ctx.Err(); err != nil {
			return total, err
		}
	}
}

// waitForRoom waits until half the queue is free (or ctx ends), so that a
// backlog is offered in large pages at the pace the mirror drains it,
// without a query per poll.
func (r *Reconciler) waitForRoom(ctx context.Context) {
	want := max(r.bus.Cap()/2, 1)
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for r.bus.Room() < want {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// OfferResult says what one Offer did.
type OfferResult struct {
	Offered int  // queued
	Full    bool // the queue filled before every candidate was offered
	// StoppedAt, when Full, is where the candidates not yet claimed begin:
	// the id after the last one this offer looked at.
	StoppedAt int64
	// TurnedAway counts claimed messages the full queue turned away (now
	// marked dropped).
	TurnedAway int
}

// Offer pages through the candidates oldest first, claiming each page in
// the store (at most as many as the queue has room for), and queues them.
// It never waits for room. It offers through Bus.Offer, so a full queue
// turning it away is not counted as an event the webhook's messages lost;
// a claimed message the queue still turns away is marked dropped, for a
// later pass.
func (r *Reconciler) Offer(ctx context.Context, q domain.CandidateQuery) (OfferResult, error) {
	var res OfferResult
	for ctx.Err() == nil {
		room := r.bus.Room()
		if room == 0 {
			res.Full, res.StoppedAt = true, q.AfterID+1
			return res, nil
		}
		q.Limit = min(room, 500)
		cands, err := r.store.ClaimCandidates(ctx, q)
		if err != nil || len(cands) == 0 {
			return res, err
		}
		for i := range cands {
			m := &cands[i]
			// Whether the CRM is checked first is the worker's claim's to
			// say (an earlier attempt, or a mirrored message).
			ev := events.MessageSaved{Message: *m}
			switch r.bus.Offer(ev) {
			case events.Queued:
				res.Offered++
				r.offered.Add(1)
			case events.AlreadyQueued:
			default:
				rest := make([]int64, 0, len(cands)-i)
				for j := i; j < len(cands); j++ {
					rest = append(rest, cands[j].ID)
				}
				// Already claimed: marked dropped here, and counted, so the
				// caller resumes after the page instead of counting them again.
				r.store.MarkDropped(rest...)
				res.Full, res.StoppedAt, res.TurnedAway = true, cands[len(cands)-1].ID+1, len(rest)
				return res, nil
			}
			q.AfterID = m.ID
		}
	}
	return res, ctx.Err()
}

// Resync offers the messages an operator chose. What the full queue turns
// away is marked dropped, so the reconciler brings it over later; it
// returns how many were offered and how many were turned away.
func (r *Reconciler) Resync(ctx context.Context, q domain.CandidateQuery) (offered, turnedAway int, err error) {
	res, err := r.Offer(ctx, q)
	if err != nil || !res.Full {
		return res.Offered, 0, err
	}
	n, err := r.store.DeferCandidates(ctx, q, res.StoppedAt)
	return res.Offered, res.TurnedAway + int(n), err
}
