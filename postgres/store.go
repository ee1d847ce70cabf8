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
	"slices"
	"strconv"
	"time"

	"igmirror/domain"
	"igmirror/internal/gormlog"
	"igmirror/internal/groupcommit"
	"igmirror/internal/renewal"

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

	// w is the group-commit writer of Saves and small writes; its marks
	// are the ids the full queue turned away (MarkDropped).
	w *groupcommit.Writer[*writeReq]

	lease     *renewal.Lease
	renewStop chan struct{}
	renewDone chan struct{}
}

var (
	_ domain.Store         = (*Store)(nil)
	_ domain.WriterStatser = (*Store)(nil)
)

// writeReq is one caller's share of a group commit.
type writeReq struct {
	groupcommit.Req
	batch *domain.Batch
	res   domain.SaveResult
	isNew []bool                                      // filled by the writer: which messages were stored
	apply func(ctx context.Context, tx *sql.Tx) error // a small write of its own
}

// Messages is how many messages r stores, counted against MaxBatch.
func (r *writeReq) Messages() int {
	if r.batch == nil {
		return 0
	}
	return len(r.batch.Messages)
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
	ls := renewal.NewLease(opts.InstanceID, opts.LeaseTimeout)
	cc.ConnectTimeout = opts.ConnectTimeout
	// Keepalives find a connection whose peer vanished even when idle.
	dialer := &net.Dialer{Timeout: opts.ConnectTimeout, KeepAlive: 10 * time.Second}
	cc.DialFunc = dialer.DialContext
	if cc.RuntimeParams == nil {
		cc.RuntimeParams = map[string]string{}
	}
	cc.RuntimeParams["application_name"] = "igmirror/" + ls.InstanceID
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
		lease:     ls,
		renewStop: make(chan struct{}),
	}
	s.w = groupcommit.New(groupcommit.Config[*writeReq]{
		MaxBatch: opts.MaxBatch,
		Queue:    4096,
		Tx:       s.tx,
		// A caller that stopped waiting has been told its Save failed.
		SkipAbandoned: true,
		// A statement's failure (a deadlock with another instance, a bad
		// row) may be one request's; an unreachable database is everyone's.
		RetryAlone: func(err error) bool { return !isUnavailable(err) },
		MarksDeferred: func(n int, err error) {
			s.log.Warn("record dropped mirror events; retried with the next commit", "count", n, "err", s.scrubbed(err))
		},
	})
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
	s.w.Start()
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

// WriterStats returns the writer's counters.
func (s *Store) WriterStats() domain.WriterStats {
	return s.w.Stats()
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
	if err := s.w.Submit(ctx, r); err != nil {
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

// txContext is the writer transaction's bound: the latest deadline of its
// requests (each at most OpTimeout away), or OpTimeout for drop marks alone.
func (s *Store) txContext(batch []*writeReq) (context.Context, context.CancelFunc) {
	due := time.Now().Add(s.opTimeout)
	if len(batch) > 0 {
		due = time.Time{}
		for _, r := range batch {
			if d, ok := r.Context().Deadline(); ok && d.After(due) {
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
			s.lease.Owner(), drops); err != nil {
			return fmt.Errorf("mark dropped: %w", err)
		}
	}
	return tx.Commit()
}

// MarkDropped records, without waiting, that the queue turned these
// messages away. It never blocks: the writer folds it into its next commit.
func (s *Store) MarkDropped(ids ...int64) { s.w.Mark(ids...) }

// CheckWritable proves the database accepts writes now, through the
// writer: whatever this instance was handed before (drop marks
// included) has been committed when it returns.
func (s *Store) CheckWritable(ctx context.Context) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	err := s.w.Submit(ctx, &writeReq{apply: func(ctx context.Context, tx *sql.Tx) error {
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
	if !s.w.Close() {
		return nil
	}
	close(s.renewStop)
	if s.renewDone != nil {
		<-s.renewDone
	}
	s.w.Wait()
	// Give the lease back, so that another instance takes over this
	// instance's pending messages at once.
	if err := s.releaseLease(); err != nil {
		s.log.Warn("release mirror lease", "owner", s.lease.Owner(), "err", s.scrubbed(err))
	}
	return s.db.Close()
}
