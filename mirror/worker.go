package mirror

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"igmirror/domain"
	"igmirror/events"
)

// PoolConfig tunes the mirror workers.
type PoolConfig struct {
	Workers       int
	BatchSize     int           // rows per INSERT at most
	InsertTimeout time.Duration // per statement
	MinBackoff    time.Duration // first wait after a transient error
	MaxBackoff    time.Duration // the longest wait between retries
	PingInterval  time.Duration // how often the CRM is pinged while it answers; 0 means 15 s
	Target        string        // the CRM, described without secrets, for logs
	Latency       Observer      // optional: CRM insert latency in seconds
	Logger        *slog.Logger
}

// Insert outcomes, as counted.
const (
	OutcomeOK        = "ok"              // rows inserted
	OutcomePresent   = "already_present" // a check found the row already in the CRM
	OutcomeTransient = "transient_error" // statement failed; rows retried
	OutcomePermanent = "permanent_error" // the CRM refused; rows marked failed
	OutcomeRowFailed = "row_failed"      // one row's data was refused; that row marked failed
)

// Outcomes lists every insert outcome, for metrics pre-created at zero.
var Outcomes = []string{OutcomeOK, OutcomePresent, OutcomeTransient, OutcomePermanent, OutcomeRowFailed}

// Pool is the set of goroutines draining the bus into the CRM.
type Pool struct {
	cfg      PoolConfig
	bus      *events.Bus
	sink     Sink
	store    Store
	resolver Resolver
	tr       *tracker
	log      *slog.Logger

	ctx    context.Context // cancelled when the drain time is over
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mon    sync.WaitGroup

	outcomes     map[string]*atomic.Uint64
	retried      atomic.Uint64
	claimSkipped atomic.Uint64 // events whose message the store did not let this instance claim
	lastSuccess  atomic.Int64  // unix nanoseconds
	lastError    atomic.Int64
}

// NewPool wires a pool; Start starts it.
func NewPool(cfg PoolConfig, bus *events.Bus, sink Sink, store Store, resolver Resolver) *Pool {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Workers = max(cfg.Workers, 1)
	cfg.BatchSize = max(cfg.BatchSize, 1)
	if cfg.InsertTimeout <= 0 {
		cfg.InsertTimeout = 5 * time.Second
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 250 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = 15 * time.Second
	}
	if resolver == nil {
		resolver = ResolverFunc(func(_ context.Context, id string) string { return id })
	}
	p := &Pool{
		cfg: cfg, bus: bus, sink: sink, store: store, resolver: resolver,
		log:      cfg.Logger.With("component", "mirror"),
		outcomes: make(map[string]*atomic.Uint64, len(Outcomes)),
	}
	p.tr = newTracker(StateConnecting, p.log, cfg.Target)
	for _, o := range Outcomes {
		p.outcomes[o] = new(atomic.Uint64)
	}
	return p
}

// Start launches the workers and the connection monitor.
func (p *Pool) Start() {
	p.ctx, p.cancel = context.WithCancel(context.Background())
	for range p.cfg.Workers {
		p.wg.Add(1)
		go p.work()
	}
	p.mon.Add(1)
	go p.monitor()
}

// Stop closes the bus, lets the workers drain it for at most drain, then
// cuts off whatever is still in flight. Messages not mirrored by then stay
// pending in the store, to be taken over once this instance's lease is
// released. It reports whether the queue drained in time.
func (p *Pool) Stop(drain time.Duration) bool {
	p.bus.Close()
	if p.cancel == nil {
		// Never started: start-up failed before the mirror (a listener's
		// port was taken), and the queue is empty.
		return true
	}
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	drained := true
	select {
	case <-done:
	case <-time.After(drain):
		drained = false
		p.log.Warn("mirror drain timeout: unmirrored messages stay pending and are taken over once this instance's lease is released",
			"queued", p.bus.Len())
	}
	p.cancel()
	<-done
	p.mon.Wait()
	return drained
}

// Status reports the CRM connection.
func (p *Pool) Status() Status { return p.tr.get() }

// Count returns how many rows ended with outcome (see Outcomes).
func (p *Pool) Count(outcome string) uint64 {
	if c, ok := p.outcomes[outcome]; ok {
		return c.Load()
	}
	return 0
}

// ClaimSkipped counts events whose message the store did not let this
// instance claim (failed meanwhile, or owned by another instance, or of
// a lease this instance has lost).
func (p *Pool) ClaimSkipped() uint64 { return p.claimSkipped.Load() }

// Retried counts statements retried after a transient error.
func (p *Pool) Retried() uint64 { return p.retried.Load() }

// LastSuccess is when a row last reached the CRM (zero if never).
func (p *Pool) LastSuccess() time.Time { return unixNano(p.lastSuccess.Load()) }

// LastError is when a CRM write last failed (zero if never).
func (p *Pool) LastError() time.Time { return unixNano(p.lastError.Load()) }

// Workers is the number of worker goroutines.
func (p *Pool) Workers() int { return p.cfg.Workers }

func unixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// monitor pings the CRM at start and then every PingInterval, more often
// (with backoff) while it does not answer, so that logs, stats and
// readiness tell the truth before the first message arrives and when the
// CRM goes away while no message is flowing.
func (p *Pool) monitor() {
	defer p.mon.Done()
	wait := time.Duration(0)
	backoff := time.Duration(0)
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-time.After(wait):
		}
		ctx, cancel := context.WithTimeout(p.ctx, p.cfg.InsertTimeout)
		err := p.sink.Ping(ctx)
		cancel()
		if p.ctx.Err() != nil {
			return
		}
		p.tr.pinged(err)
		if err != nil {
			backoff = p.nextBackoff(backoff)
			wait = backoff
			continue
		}
		backoff, wait = 0, p.cfg.PingInterval
	}
}

func (p *Pool) nextBackoff(cur time.Duration) time.Duration {
	next := max(cur*2, p.cfg.MinBackoff)
	return min(next, p.cfg.MaxBackoff)
}

// jitter spreads retries so that workers do not hit a recovering CRM at
// the same instant.
func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}

func (p *Pool) work() {
	defer p.wg.Done()
	batch := make([]events.MessageSaved, 0, p.cfg.BatchSize)
	for ev := range p.bus.Events() {
		batch = append(batch[:0], ev)
	gather:
		for len(batch) < p.cfg.BatchSize {
			select {
			case more, ok := <-p.bus.Events():
				if !ok {
					break gather
				}
				batch = append(batch, more)
			default:
				break gather
			}
		}
		p.handle(batch)
		for i := range batch {
			p.bus.Done(batch[i].Message.ID)
		}
	}
}

// handle mirrors one batch until every row is in the CRM, refused for
// good, or the drain time is over.
func (p *Pool) handle(batch []events.MessageSaved) {
	if p.ctx.Err() != nil {
		// The drain time is over: what the closed queue still holds is
		// released untouched, pending and with no attempt recorded, for
		// whichever instance takes them over once the lease is released.
		return
	}
	rows, verify := p.claim(batch)
	if len(rows) == 0 {
		return
	}
	p.resolveUsernames(rows)

	pending := make([]int, len(rows))
	for i := range pending {
		pending[i] = i
	}
	wait := time.Duration(0)
	for len(pending) > 0 {
		if wait > 0 {
			select {
			case <-p.ctx.Done():
				return
			case <-time.After(jitter(wait)):
			}
			p.retried.Add(1)
		}
		if p.ctx.Err() != nil {
			return
		}
		var err error
		pending, err = p.attempt(rows, verify, pending)
		if err == nil {
			continue
		}
		class, unknown := Classify(err)
		if errors.Is(err, context.Canceled) && p.ctx.Err() != nil {
			return
		}
		p.lastError.Store(time.Now().UnixNano())
		switch class {
		case Permanent:
			p.tr.set(StateMisconfigure, err)
			p.fail(rows, pending, err)
			return
		default:
			p.tr.set(StateUnreachable, err)
			p.outcomes[OutcomeTransient].Add(uint64(len(pending)))
			if unknown {
				for _, i := range pending {
					verify[i] = true
				}
			}
			wait = p.nextBackoff(wait)
		}
	}
}

// claim records the attempt in the store, under this instance's lease,
// before anything is sent, and returns the rows of the claimed messages
// with whether each must first be looked for in the CRM. A message not
// claimed is left alone: it failed meanwhile, or another instance owns
// it now. When the claim itself fails the batch is not
// sent: without a recorded claim the instance cannot prove its lease, and
// the messages stay pending for the reconciler.
func (p *Pool) claim(batch []events.MessageSaved) ([]Row, []bool) {
	ids := make([]int64, len(batch))
	for i := range batch {
		ids[i] = batch[i].Message.ID
	}
	claims, err := p.store.Claim(p.ctx, ids)
	if err != nil {
		if p.ctx.Err() == nil {
			p.log.Warn("claim messages for the CRM; they stay pending and are offered again", "err", err, "count", len(ids))
		}
		return nil, nil
	}
	verifyFor := make(map[int64]bool, len(claims))
	for _, c := range claims {
		// An earlier attempt (this instance's or a previous owner's) may
		// have reached the CRM; a mirrored message is in it unless an
		// operator's check finds otherwise: look before inserting.
		verifyFor[c.ID] = c.Attempts > 1 || c.Status == domain.MirrorMirrored
	}
	rows := make([]Row, 0, len(claims))
	verify := make([]bool, 0, len(claims))
	for i := range batch {
		v, ok := verifyFor[batch[i].Message.ID]
		if !ok {
			continue
		}
		rows = append(rows, MapRow(&batch[i].Message))
		verify = append(verify, v)
	}
	if skipped := len(batch) - len(rows); skipped > 0 {
		p.claimSkipped.Add(uint64(skipped))
	}
	return rows, verify
}

// attempt writes the pending rows once. It returns the rows still to
// write and the error that stopped it.
func (p *Pool) attempt(rows []Row, verify []bool, pending []int) ([]int, error) {
	// Rows whose earlier attempt has an unknown outcome are looked for first.
	var check []int
	for _, i := range pending {
		if verify[i] {
			check = append(check, i)
		}
	}
	if len(check) > 0 {
		sub := make([]Row, len(check))
		for k, i := range check {
			sub[k] = rows[i]
		}
		ctx, cancel := context.WithTimeout(p.ctx, p.cfg.InsertTimeout)
		found, err := p.sink.Existing(ctx, sub)
		cancel()
		if err != nil {
			return pending, err
		}
		var present []int
		for k, i := range check {
			rows[i] = sub[k] // keep the fitted form
			verify[i] = false
			if found[k] {
				present = append(present, i)
			}
		}
		if len(present) > 0 {
			p.outcomes[OutcomePresent].Add(uint64(len(present)))
			p.succeed(rows, present)
			pending = without(pending, present)
		}
		if len(pending) == 0 {
			return nil, nil
		}
	}

	sub := make([]Row, len(pending))
	for k, i := range pending {
		sub[k] = rows[i]
	}
	err := p.insert(sub)
	if err == nil {
		for k, i := range pending {
			rows[i] = sub[k]
		}
		p.outcomes[OutcomeOK].Add(uint64(len(pending)))
		p.succeed(rows, pending)
		return nil, nil
	}
	if class, _ := Classify(err); class != RowData || len(pending) == 1 {
		if class == RowData {
			p.outcomes[OutcomeRowFailed].Add(1)
			p.fail(rows, pending, err)
			return nil, nil
		}
		return pending, err
	}
	// One bad row must not sink its neighbours: write them one by one.
	var left []int
	for n, i := range pending {
		one := []Row{rows[i]}
		err := p.insert(one)
		rows[i] = one[0]
		switch class, _ := Classify(err); {
		case err == nil:
			p.outcomes[OutcomeOK].Add(1)
			p.succeed(rows, []int{i})
		case class == RowData:
			p.outcomes[OutcomeRowFailed].Add(1)
			p.fail(rows, []int{i}, err)
		default:
			left = append(left, pending[n:]...)
			return left, err
		}
	}
	return nil, nil
}

// insert runs one INSERT with the per-statement timeout.
func (p *Pool) insert(rows []Row) error {
	ctx, cancel := context.WithTimeout(p.ctx, p.cfg.InsertTimeout)
	defer cancel()
	start := time.Now()
	err := p.sink.Insert(ctx, rows)
	if p.cfg.Latency != nil {
		p.cfg.Latency.Observe(time.Since(start).Seconds())
	}
	return err
}

// localTimeout bounds a status write to the store after the CRM write; it
// does not use the pool's context, since a row that reached the CRM must
// be recorded even while shutting down.
const localTimeout = 10 * time.Second

func (p *Pool) succeed(rows []Row, idx []int) {
	p.tr.set(StateConnected, nil)
	p.lastSuccess.Store(time.Now().UnixNano())
	ids := make([]int64, len(idx))
	degraded := map[int64]bool{}
	for k, i := range idx {
		ids[k] = rows[i].MessageID
		if rows[i].Degraded {
			degraded[rows[i].MessageID] = true
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), localTimeout)
	defer cancel()
	if err := p.store.MarkMirrored(ctx, ids, degraded); err != nil {
		p.log.Error("record mirrored messages", "err", err, "count", len(ids))
	}
}

func (p *Pool) fail(rows []Row, idx []int, cause error) {
	if len(idx) == 0 {
		return
	}
	if c, _ := Classify(cause); c == Permanent {
		p.outcomes[OutcomePermanent].Add(uint64(len(idx)))
	}
	ids := make([]int64, len(idx))
	for k, i := range idx {
		ids[k] = rows[i].MessageID
	}
	ctx, cancel := context.WithTimeout(context.Background(), localTimeout)
	defer cancel()
	if err := p.store.MarkFailed(ctx, ids, errText(cause)); err != nil {
		p.log.Error("record failed messages", "err", err, "count", len(ids))
	}
}

func without(all, drop []int) []int {
	gone := make(map[int]bool, len(drop))
	for _, i := range drop {
		gone[i] = true
	}
	out := all[:0:0]
	for _, i := range all {
		if !gone[i] {
			out = append(out, i)
		}
	}
	return out
}

// lookupConcurrency bounds parallel username look-ups of one batch.
const lookupConcurrency = 8

// lookupBudget bounds the time one batch spends on look-ups; users not
// resolved by then fall back to their id.
const lookupBudget = 5 * time.Second

// resolveUsernames fills Row.Username, asking once per distinct user.
func (p *Pool) resolveUsernames(rows []Row) {
	users := make(map[string]string, len(rows))
	var ids []string
	for i := range rows {
		if _, ok := users[rows[i].UserID]; !ok {
			users[rows[i].UserID] = rows[i].UserID
			ids = append(ids, rows[i].UserID)
		}
	}
	ctx, cancel := context.WithTimeout(p.ctx, lookupBudget)
	defer cancel()
	// At most lookupConcurrency goroutines a batch, each taking users in
	// turn, rather than one per user: look-ups mostly hit the cache, and a
	// batch holds up to a few hundred users.
	var mu sync.Mutex
	var wg sync.WaitGroup
	next := make(chan string)
	for range min(lookupConcurrency, len(ids)) {
		wg.Go(func() {
			for id := range next {
				name := p.resolver.Username(ctx, id)
				if name == "" {
					name = id
				}
				mu.Lock()
				users[id] = name
				mu.Unlock()
			}
		})
	}
	for _, id := range ids {
		next <- id
	}
	close(next)
	wg.Wait()
	for i := range rows {
		rows[i].Username = users[rows[i].UserID]
	}
}
