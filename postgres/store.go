// Package postgres is the PostgreSQL adapter of the store's port
// (domain.Store): the shared store that any number of instances use at
// once (DATABASE_URL=postgres://…). Each instance folds its concurrent
// Saves into one transaction (group commit) in a writer goroutine; every
// other call runs on the pool. Every promise is the engine's: the UNIQUE
// constraint on instagram_message_id decides what is a duplicate (INSERT …
// ON CONFLICT DO NOTHING, so a race between instances never fails a
// transaction), mirror leases are rows on the database's clock checked in
// the WHERE of every claim, candidates are taken with FOR UPDATE SKIP
// LOCKED, and statement-level triggers keep the state counts. Every call
// is bounded in time: a database that does not answer yields an error
// wrapping domain.ErrUnavailable, and the pool recovers by itself.
package postgres

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"igmirror/domain"
	"igmirror/internal/gormlog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
)

// Options configures Open.
type Options struct {
	// URL is the database, postgres://… or postgresql://… (DATABASE_URL).
	// It is never logged nor put in an error; see Redacted.
	URL string
	// InstanceID names this instance in its lease (INSTANCE_ID); "" = the host name.
	InstanceID string
	// LeaseTimeout is how long the mirror lease lasts unrenewed; 0 means 30 s.
	LeaseTimeout time.Duration
	Logger       *slog.Logger
	// OpTimeout bounds each call (waiting for a connection, the statements
	// and, for Save, the group commit it joins); 0 means 5 s. A bulk call
	// (DeferCandidates, PurgeDeliveries, an import batch) gets 12 times it.
	OpTimeout time.Duration
	// ConnectTimeout bounds a new connection's dial and start-up; 0 means
	// OpTimeout.
	ConnectTimeout time.Duration
	// MaxConns bounds the pool; 0 means 16.
	MaxConns int
	// MaxBatch bounds how many messages one group commit may hold; 0 means 2000.
	MaxBatch int
	// NoRenew, for tests only, takes the lease once at open and never
	// renews it, so that it lapses after LeaseTimeout while the store
	// stays open (a process that hangs). Close still releases it.
	NoRenew bool
}

// Store is the PostgreSQL store.
type Store struct {
	gdb *gorm.DB
	db  *sql.DB
	log *slog.Logger

	opTimeout   time.Duration
	bulkTimeout time.Duration
	secret      string // the URL's password, scrubbed from every error

	reqs   chan *writeReq
	kick   chan struct{}
	stop   chan struct{}
	done   chan struct{}
	closed atomic.Bool
	max    int

	dropMu sync.Mutex
	drops  []int64 // ids the full queue turned away, recorded with the next commit

	stats writerStats

	lease     *lease
	renewStop chan struct{}
	renewDone chan struct{}
}

var (
	_ domain.Store         = (*Store)(nil)
	_ domain.WriterStatser = (*Store)(nil)
)

// writeReq is one caller's share of a group commit.
type writeReq struct {
	ctx   context.Context
	batch *domain.Batch
	res   domain.SaveResult
	isNew []bool                                      // filled by the writer: which messages were stored
	apply func(ctx context.Context, tx *sql.Tx) error // a small write of its own
	done  chan error
}

// Open connects to the database, applies the migrations, takes this
// instance's mirror lease and starts the writer.
func Open(opts Options) (*Store, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 2000
	}
	if opts.LeaseTimeout <= 0 {
		opts.LeaseTimeout = 30 * time.Second
	}
	if opts.OpTimeout <= 0 {
		opts.OpTimeout = 5 * time.Second
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = opts.OpTimeout
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = 16
	}
	secret := urlPassword(opts.URL)
	cc, err := pgx.ParseConfig(opts.URL)
	if err != nil {
		return nil, scrub(fmt.Errorf("open postgres %s: %w", Redacted(opts.URL), err), secret)
	}
	if secret == "" {
		secret = cc.Password
	}
	ls := newLease(opts.InstanceID, opts.LeaseTimeout)
	cc.ConnectTimeout = opts.ConnectTimeout
	// Keepalives find a connection whose peer vanished even when idle.
	dialer := &net.Dialer{Timeout: opts.ConnectTimeout, KeepAlive: 10 * time.Second}
	cc.DialFunc = dialer.DialContext
	if cc.RuntimeParams == nil {
		cc.RuntimeParams = map[string]string{}
	}
	cc.RuntimeParams["application_name"] = "igmirror/" + ls.instanceID
	cc.RuntimeParams["timezone"] = "UTC"
	// The server gives up too, so that a statement whose client is gone
	// does not hold its locks for long.
	bulk := 12 * opts.OpTimeout
	cc.RuntimeParams["statement_timeout"] = strconv.FormatInt(bulk.Milliseconds(), 10)
	cc.RuntimeParams["idle_in_transaction_session_timeout"] = strconv.FormatInt(bulk.Milliseconds(), 10)
	db := stdlib.OpenDB(*cc)
	db.SetMaxOpenConns(opts.MaxConns)
	db.SetMaxIdleConns(opts.MaxConns)
	db.SetConnMaxIdleTime(5 * time.Minute)
	db.SetConnMaxLifetime(time.Hour)
	gdb, err := gorm.Open(postgres.New(postgres.Config{Conn: db}), &gorm.Config{
		Logger:                 gormlog.New(opts.Logger, 300),
		SkipDefaultTransaction: true,
		// Open pings itself, within ConnectTimeout.
		DisableAutomaticPing: true,
		NowFunc:              func() time.Time { return time.Now().UTC() },
	})
	if err != nil {
		_ = db.Close()
		return nil, scrub(fmt.Errorf("open postgres %s: %w", Redacted(opts.URL), err), secret)
	}
	s := &Store{
		gdb: gdb, db: db, log: opts.Logger,
		opTimeout: opts.OpTimeout, bulkTimeout: bulk, secret: secret,
		reqs:      make(chan *writeReq, 4096),
		kick:      make(chan struct{}, 1),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
		max:       opts.MaxBatch,
		lease:     ls,
		renewStop: make(chan struct{}),
	}
	fail := func(what string, err error) (*Store, error) {
		_ = db.Close()
		return nil, s.wrap(fmt.Sprintf("open postgres %s: %s", Redacted(opts.URL), what), err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), opts.OpTimeout)
	err = db.PingContext(ctx)
	cancel()
	if err != nil {
		return fail("connect", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 10*bulk)
	err = migrate(ctx, db, opts.Logger)
	cancel()
	if err != nil {
		return fail("migrate", err)
	}
	go s.run()
	ctx, cancel = context.WithTimeout(context.Background(), opts.OpTimeout)
	err = s.renewLease(ctx)
	cancel()
	if err != nil {
		_ = s.Close()
		return nil, s.wrap(fmt.Sprintf("open postgres %s: take mirror lease", Redacted(opts.URL)), err)
	}
	if !opts.NoRenew {
		s.renewDone = make(chan struct{})
		go s.keepLease()
	}
	return s, nil
}

// bound returns ctx limited to the store's per-call timeout.
func (s *Store) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.opTimeout)
}

// maxYields is how many times the writer lets other goroutines run
// before it commits what it gathered (see sqlite's writer): handlers a
// few microseconds from submitting join this commit instead of the next.
const maxYields = 3

// writerStats counts the writer's transactions, for metrics.
type writerStats struct {
	commits, failed, requests, nanos atomic.Int64
}

func (w *writerStats) record(requests int, d time.Duration, err error) {
	w.nanos.Add(int64(d))
	if err != nil {
		w.failed.Add(1)
		return
	}
	w.commits.Add(1)
	w.requests.Add(int64(requests))
}

// WriterStats returns the writer's counters.
func (s *Store) WriterStats() domain.WriterStats {
	return domain.WriterStats{
		Commits: s.stats.commits.Load(), Failed: s.stats.failed.Load(), Requests: s.stats.requests.Load(),
		Busy: time.Duration(s.stats.nanos.Load()),
	}
}

// Save stores b in one transaction, shared with whatever other Saves of
// this instance are waiting, and returns only after the commit. It waits
// at most the store's OpTimeout (or ctx); a Save given up on may still
// commit, and is then a duplicate when delivered again.
func (s *Store) Save(ctx context.Context, b domain.Batch) (domain.SaveResult, error) {
	if len(b.Messages) == 0 && len(b.Unsends) == 0 && len(b.Edits) == 0 && b.Delivery == nil {
		return domain.SaveResult{}, nil
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	// The writer fills in its own copy: a caller whose context ends stops
	// waiting while the write may still commit, and may reuse its memory.
	callerDelivery := b.Delivery
	b.Messages = slices.Clone(b.Messages)
	if callerDelivery != nil {
		d := *callerDelivery
		b.Delivery = &d
	}
	r := &writeReq{batch: &b}
	if err := s.submit(ctx, r); err != nil {
		return domain.SaveResult{}, s.wrap("save", err)
	}
	if callerDelivery != nil {
		*callerDelivery = *b.Delivery
	}
	res := r.res
	for i, ok := range r.isNew {
		if ok {
			res.New = append(res.New, b.Messages[i])
		} else {
			res.Duplicates++
		}
	}
	return res, nil
}

// submit hands r to the writer and waits for its commit.
func (s *Store) submit(ctx context.Context, r *writeReq) error {
	if s.closed.Load() {
		return domain.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	r.ctx = ctx
	r.done = make(chan error, 1)
	select {
	case s.reqs <- r:
	case <-s.stop:
		return domain.ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-r.done:
		return err
	case <-s.done:
		select {
		case err := <-r.done:
			return err
		default:
			return domain.ErrClosed
		}
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Store) run() {
	defer close(s.done)
	batch := make([]*writeReq, 0, 64)
	for {
		batch = batch[:0]
		select {
		case r := <-s.reqs:
			batch = append(batch, r)
		case <-s.kick:
		case <-s.stop:
			for {
				select {
				case r := <-s.reqs:
					s.commit([]*writeReq{r})
					continue
				default:
				}
				break
			}
			s.commit(nil)
			return
		}
		n := countMsgs(batch)
		for yields := 0; ; yields++ {
			before := len(batch)
		gather:
			for n < s.max {
				select {
				case r := <-s.reqs:
					batch = append(batch, r)
					n += countMsgs([]*writeReq{r})
				default:
					break gather
				}
			}
			if yields >= maxYields || n >= s.max || (yields > 0 && len(batch) == before) {
				break
			}
			runtime.Gosched()
		}
		s.commit(batch)
	}
}

func countMsgs(b []*writeReq) int {
	n := 0
	for _, r := range b {
		if r.batch != nil {
			n += len(r.batch.Messages)
		}
	}
	return n
}

// commit writes batch (and pending drop marks) in one transaction.
// Requests whose caller stopped waiting are left out. When a shared
// transaction fails on a statement (a deadlock with another instance, a
// bad row), each request is retried alone so that one request's failure
// is never another's; when the database is unreachable, all fail at once.
func (s *Store) commit(in []*writeReq) {
	batch := in[:0]
	for _, r := range in {
		if err := r.ctx.Err(); err != nil {
			r.done <- err
			continue
		}
		batch = append(batch, r)
	}
	s.dropMu.Lock()
	drops := s.drops
	s.drops = nil
	s.dropMu.Unlock()
	if len(batch) == 0 && len(drops) == 0 {
		return
	}
	start := time.Now()
	err := s.tx(batch, drops)
	s.stats.record(len(batch), time.Since(start), err)
	if err == nil {
		for _, r := range batch {
			r.done <- nil
		}
		return
	}
	if len(drops) > 0 {
		s.dropMu.Lock()
		s.drops = append(drops, s.drops...)
		s.dropMu.Unlock()
		s.log.Warn("record dropped mirror events; retried with the next commit", "count", len(drops), "err", s.scrubbed(err))
	}
	if len(batch) == 1 || isUnavailable(err) {
		for _, r := range batch {
			r.done <- err
		}
		return
	}
	for _, r := range batch {
		start := time.Now()
		err := s.tx([]*writeReq{r}, nil)
		s.stats.record(1, time.Since(start), err)
		r.done <- err
	}
}

// txContext is the writer transaction's bound: the latest deadline of its
// requests (each at most OpTimeout away), or OpTimeout for drop marks alone.
func (s *Store) txContext(batch []*writeReq) (context.Context, context.CancelFunc) {
	due := time.Now().Add(s.opTimeout)
	if len(batch) > 0 {
		due = time.Time{}
		for _, r := range batch {
			if d, ok := r.ctx.Deadline(); ok && d.After(due) {
				due = d
			}
		}
		if due.IsZero() {
			due = time.Now().Add(s.opTimeout)
		}
	}
	return context.WithDeadline(context.Background(), due)
}

// tx is one transaction of the writer: the batch's messages, unsends,
// edits and journal records, the small writes, and the drop marks.
func (s *Store) tx(batch []*writeReq, drops []int64) (err error) {
	ctx, cancel := s.txContext(batch)
	defer cancel()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	now := time.Now().UTC().Truncate(time.Microsecond)
	if err := s.insertAll(ctx, tx, batch, now); err != nil {
		return err
	}
	for _, r := range batch {
		if r.batch != nil {
			if err := s.applyBatch(ctx, tx, r, now); err != nil {
				return err
			}
		}
		if r.apply != nil {
			if err := r.apply(ctx, tx); err != nil {
				return err
			}
		}
	}
	if len(drops) > 0 {
		if _, err := tx.ExecContext(ctx, "UPDATE messages SET mirror_status = 'dropped' WHERE mirror_status = 'pending' AND mirror_owner = $1 AND id = ANY($2)",
			s.lease.owner, drops); err != nil {
			return fmt.Errorf("mark dropped: %w", err)
		}
	}
	return tx.Commit()
}

// MarkDropped records, without waiting, that the queue turned these
// messages away. It never blocks: the writer folds it into its next commit.
func (s *Store) MarkDropped(ids ...int64) {
	if len(ids) == 0 || s.closed.Load() {
		return
	}
	s.dropMu.Lock()
	s.drops = append(s.drops, ids...)
	s.dropMu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// CheckWritable proves the database accepts writes now, through the
// writer: whatever this instance was handed before (drop marks
// included) has been committed when it returns.
func (s *Store) CheckWritable(ctx context.Context) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	err := s.submit(ctx, &writeReq{apply: func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO health_checks (id, checked_at) VALUES (1, now()) ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at")
		return err
	}})
	if err != nil {
		return s.wrap("check writable", err)
	}
	return nil
}

// Close stops the lease keeper and the writer (after it has committed
// what it was handed), gives the lease back, then closes the pool.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	close(s.renewStop)
	if s.renewDone != nil {
		<-s.renewDone
	}
	close(s.stop)
	<-s.done
	// Give the lease back, so that another instance takes over this
	// instance's pending messages at once.
	if err := s.releaseLease(); err != nil {
		s.log.Warn("release mirror lease", "owner", s.lease.owner, "err", s.scrubbed(err))
	}
	return s.db.Close()
}
