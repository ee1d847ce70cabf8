// Package sqlite is the SQLite adapter of the store's port (domain.Store):
// the zero-set-up default for one instance. One writer goroutine owns the
// only write connection and folds concurrent requests into one
// transaction (group commit), so a commit's fsync is shared by everyone
// waiting on it; reads use a pool of their own, which WAL mode lets run
// beside the writer. Every promise is the engine's: the UNIQUE constraint
// on instagram_message_id decides what is a duplicate, triggers keep the
// state counts, and the mirror lease is a row checked in the WHERE of
// every claim.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"time"

	"igmirror/domain"
	"igmirror/internal/gormlog"
	"igmirror/internal/groupcommit"
	"igmirror/internal/renewal"

	"github.com/mattn/go-sqlite3"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
)

// Options configures Open.
type Options struct {
	Path        string // the SQLite file
	Synchronous string // NORMAL or FULL
	// InstanceID names this instance in its lease (CONTRACT.md's INSTANCE_ID).
	InstanceID string
	// LeaseTimeout is how long the mirror lease lasts unrenewed; 0 means 30 s.
	LeaseTimeout time.Duration
	Logger       *slog.Logger
	// MaxBatch bounds how many messages one group commit may hold; 0 means 2000.
	MaxBatch int
	// NoRenew, for tests only, takes the lease once at open and never
	// renews it, so that it lapses after LeaseTimeout while the store
	// stays open (a process that hangs). Close still releases it.
	NoRenew bool
}

// ErrFileMoved is returned by writes while the SQLite file is no longer at
// its path.
var ErrFileMoved = errors.New("sqlite file removed, moved or replaced while open")

// ErrHardLinked is returned by Open for a file with more than one name:
// SQLite keeps a WAL per name, so two processes opening it under two
// names would write it without seeing each other's writes.
var ErrHardLinked = errors.New("sqlite file has more than one hard link")

// Store is the SQLite store.
type Store struct {
	wdb  *gorm.DB
	wsql *sql.DB
	rdb  *gorm.DB
	rsql *sql.DB
	log  *slog.Logger

	// w is the group-commit writer on wdb; its marks are the ids the full
	// queue turned away (MarkDropped).
	w    *groupcommit.Writer[*writeReq]
	ckpt *checkpointer // nil if it could not start: the writer checkpoints alone
	ins  *sizedStmts   // the writer's prepared INSERTs of messages
	// journal is the writer's prepared INSERT of a delivery record: one
	// per delivery, so preparing it in every commit cost the writer as
	// much as the record itself.
	journal *sql.Stmt

	lease     *renewal.Lease
	renewStop chan struct{}
	renewDone chan struct{}

	path string      // the SQLite file, symlinks resolved
	file os.FileInfo // what path named at open
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
	isNew []bool                  // filled by the writer: which messages were stored
	apply func(tx *gorm.DB) error // a small write of its own (state updates)
}

// Messages is how many messages r stores, counted against MaxBatch.
func (r *writeReq) Messages() int {
	if r.batch == nil {
		return 0
	}
	return len(r.batch.Messages)
}

// Open opens (creating if needed) the SQLite file, applies the
// migrations, takes this instance's mirror lease and starts the writer.
func Open(opts Options) (*Store, error) {
	// Processes opening a new file at the same moment race to switch it
	// to WAL and to migrate it; SQLite answers some of those steps "busy"
	// at once, without waiting on the busy timeout. Each step is safe to
	// do again, so a busy open is tried again, for a few seconds at most.
	var err error
	for wait := 20 * time.Millisecond; ; wait *= 2 {
		var s *Store
		if s, err = open(opts); err == nil || !isBusy(err) || wait > 2*time.Second {
			return s, err
		}
		time.Sleep(wait)
	}
}

// isBusy reports whether err is SQLite's "database is locked" (or busy).
func isBusy(err error) bool {
	var se sqlite3.Error
	if errors.As(err, &se) {
		return se.Code == sqlite3.ErrBusy || se.Code == sqlite3.ErrLocked
	}
	return false
}

func open(opts Options) (*Store, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 2000
	}
	if opts.LeaseTimeout <= 0 {
		opts.LeaseTimeout = 30 * time.Second
	}
	syncMode := opts.Synchronous
	if syncMode == "" {
		syncMode = "NORMAL"
	}
	path, err := resolvePath(opts.Path)
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", opts.Path, err)
	}
	gcfg := &gorm.Config{
		Logger:                 gormlog.New(opts.Logger, 1000),
		SkipDefaultTransaction: true,
		NowFunc:                func() time.Time { return time.Now().UTC() },
	}
	q := url.Values{}
	q.Set("_journal_mode", "WAL")
	q.Set("_busy_timeout", "5000")
	q.Set("_synchronous", syncMode)
	q.Set("_txlock", "immediate")
	wdb, err := gorm.Open(sqlite.New(sqlite.Config{DriverName: writerDriverName(), DSN: "file:" + path + "?" + q.Encode()}), gcfg)
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	wsql, err := wdb.DB()
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	// One writer connection: SQLite serialises writers anyway, and a pool of
	// them only adds lock contention and busy-timeout stalls.
	wsql.SetMaxOpenConns(1)
	wsql.SetMaxIdleConns(1)
	wsql.SetConnMaxLifetime(0)
	fail := func(err error, closers ...*sql.DB) (*Store, error) {
		for _, c := range closers {
			_ = c.Close()
		}
		return nil, err
	}
	if err := wsql.Ping(); err != nil {
		return fail(fmt.Errorf("open sqlite %s: %w", path, err), wsql)
	}
	fi, err := checkLinks(path)
	if err != nil {
		return fail(fmt.Errorf("open sqlite %s: %w", path, err), wsql)
	}
	if err := migrate(context.Background(), wsql, opts.Logger); err != nil {
		return fail(fmt.Errorf("migrate sqlite %s: %w", path, err), wsql)
	}

	rq := url.Values{}
	rq.Set("_journal_mode", "WAL")
	rq.Set("_busy_timeout", "5000")
	rq.Set("_query_only", "true")
	rdb, err := gorm.Open(sqlite.Open("file:"+path+"?"+rq.Encode()), gcfg)
	if err != nil {
		return fail(fmt.Errorf("open sqlite reader %s: %w", path, err), wsql)
	}
	rsql, err := rdb.DB()
	if err != nil {
		return fail(fmt.Errorf("open sqlite reader %s: %w", path, err), wsql)
	}
	rsql.SetMaxOpenConns(4)
	rsql.SetMaxIdleConns(4)

	s := &Store{
		wdb: wdb, wsql: wsql, rdb: rdb, rsql: rsql, log: opts.Logger,
		path: path, file: fi,
		lease:     renewal.NewLease(opts.InstanceID, opts.LeaseTimeout),
		renewStop: make(chan struct{}),
	}
	s.w = groupcommit.New(groupcommit.Config[*writeReq]{
		MaxBatch: opts.MaxBatch,
		Queue:    4096,
		Tx:       s.tx,
		Check:    s.checkFile,
		// A drop mark never waits on a request's failure: a message whose
		// event was turned away but is still pending would be offered
		// again only as stale.
		RetryMarks: true,
		MarksDeferred: func(n int, err error) {
			s.log.Warn("record dropped mirror events; retried with the next commit", "count", n, "err", err)
		},
	})
	if s.ins, err = prepareSized(context.Background(), wsql, "insert", insertSQL); err != nil {
		return fail(fmt.Errorf("open sqlite %s: %w", path, err), wsql, rsql)
	}
	if s.journal, err = wsql.PrepareContext(context.Background(), journalInsertSQL); err != nil {
		_ = s.ins.close()
		return fail(fmt.Errorf("open sqlite %s: prepare the journal insert: %w", path, err), wsql, rsql)
	}
	if s.ckpt, err = startCheckpointer(path, syncMode, opts.Logger); err != nil {
		opts.Logger.Warn("sqlite background checkpointer not started; the writer checkpoints by itself", "err", err)
	}
	s.w.Start()
	if err := s.renewLease(context.Background()); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("open sqlite %s: take mirror lease: %w", path, err)
	}
	if !opts.NoRenew {
		s.renewDone = make(chan struct{})
		go s.keepLease()
	}
	return s, nil
}

// resolvePath makes path absolute with symlinks resolved, so that the
// file is known by one name whatever link it was reached through (SQLite
// names the WAL after the name it is given).
func resolvePath(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		return real, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	// A new file: its directory may still be reached through a link.
	dir, err := filepath.EvalSymlinks(filepath.Dir(abs))
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, filepath.Base(abs)), nil
}

// checkLinks refuses a file with more than one hard link and returns what
// the path names now, for checkFile.
func checkLinks(path string) (os.FileInfo, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if n := linkCount(fi); n > 1 {
		return nil, fmt.Errorf("%w (%d names): SQLite keeps a WAL per name, and two processes opening it under two names would corrupt it; give it one name (remove the other links) and point SQLITE_PATH at it", ErrHardLinked, n)
	}
	return fi, nil
}

// checkFile fails when the path no longer names the file the store has
// open: the file or its directory was removed, renamed or replaced.
// SQLite itself would go on writing into the unlinked file, acknowledging
// messages that the next start would not find. Moving the file back makes
// the store usable again.
func (s *Store) checkFile() error {
	if s.file == nil {
		return nil
	}
	fi, err := os.Stat(s.path)
	if err != nil || !os.SameFile(fi, s.file) {
		return fmt.Errorf("%w: %s", ErrFileMoved, s.path)
	}
	return nil
}

// WriterStats returns the writer's counters.
func (s *Store) WriterStats() domain.WriterStats {
	return s.w.Stats()
}

// Save stores b in one transaction, shared with whatever other writes are
// waiting, and returns only after the commit.
func (s *Store) Save(ctx context.Context, b domain.Batch) (domain.SaveResult, error) {
	if len(b.Messages) == 0 && len(b.Unsends) == 0 && len(b.Edits) == 0 && b.Delivery == nil {
		return domain.SaveResult{}, nil
	}
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
		return domain.SaveResult{}, err
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

// exec runs fn in the writer, inside a group commit.
func (s *Store) exec(ctx context.Context, fn func(tx *gorm.DB) error) error {
	return s.w.Submit(ctx, &writeReq{apply: fn})
}

// tx is one transaction of the writer: the batch's messages, unsends,
// edits and journal records, the small writes, and the drop marks.
func (s *Store) tx(batch []*writeReq, drops []int64) error {
	return s.wdb.Transaction(func(tx *gorm.DB) error {
		sqlTx, ok := tx.Statement.ConnPool.(*sql.Tx)
		if !ok {
			return fmt.Errorf("writer transaction is a %T, not a *sql.Tx", tx.Statement.ConnPool)
		}
		ctx := tx.Statement.Context
		now := time.Now().UTC()
		if err := s.insertAll(ctx, sqlTx, batch, now); err != nil {
			return err
		}
		for _, r := range batch {
			if r.batch != nil {
				if err := s.applyBatch(ctx, sqlTx, r, now); err != nil {
					return err
				}
			}
			if r.apply != nil {
				if err := r.apply(tx); err != nil {
					return err
				}
			}
		}
		return inChunks(drops, func(part []int64) error {
			args := append([]any{s.lease.Owner()}, int64Args(part)...)
			_, err := sqlTx.ExecContext(ctx, "UPDATE messages SET mirror_status = 'dropped' WHERE mirror_status = 'pending' AND mirror_owner = ? AND id IN ("+placeholders(len(part))+")", args...)
			if err != nil {
				return fmt.Errorf("mark dropped: %w", err)
			}
			return nil
		})
	})
}

// MarkDropped records, without waiting, that the queue turned these
// messages away. It never blocks: the writer folds it into its next commit.
func (s *Store) MarkDropped(ids ...int64) { s.w.Mark(ids...) }

// CheckWritable proves the database accepts writes, through the writer.
func (s *Store) CheckWritable(ctx context.Context) error {
	return s.exec(ctx, func(tx *gorm.DB) error {
		return tx.Exec("INSERT INTO health_checks (id, checked_at) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at",
			time.Now().UTC()).Error
	})
}

// Close stops the lease keeper and the writer (after it has committed
// what it was handed), gives the lease back, then closes the pools.
func (s *Store) Close() error {
	if !s.w.Close() {
		return nil
	}
	close(s.renewStop)
	if s.renewDone != nil {
		<-s.renewDone
	}
	s.w.Wait()
	var errs []error
	// Give the lease back, so that the next start (or another instance)
	// takes over this instance's pending messages at once.
	if err := s.releaseLease(); err != nil {
		s.log.Warn("release mirror lease", "err", err)
	}
	errs = append(errs, s.ins.close(), s.journal.Close())
	if s.ckpt != nil {
		errs = append(errs, s.ckpt.close())
	}
	errs = append(errs, s.rsql.Close(), s.wsql.Close())
	return errors.Join(errs...)
}
