package domain

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mattn/go-sqlite3"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
)

// ErrClosed is returned by a store that has been closed.
var ErrClosed = errors.New("store closed")

// ErrInUse is returned by OpenStore when another process has the file open.
var ErrInUse = errors.New("sqlite file in use by another process")

// StoreOptions configures OpenStore.
type StoreOptions struct {
	Path        string       // SQLite file
	Synchronous string       // NORMAL or FULL
	Logger      *slog.Logger // for GORM's warnings and slow queries
	// MaxBatch bounds how many messages one group commit may hold.
	MaxBatch int
	// UserIndexEvery is how many messages may wait above the customer
	// index's mark before the writer indexes them in bulk (userindex.go);
	// 0 means 32768.
	UserIndexEvery int
	// MIDMoveEvery is how many new mid keys make the writer move one key
	// range from its buffer into mid_keys (midtables.go); 0 means 4096.
	MIDMoveEvery int
}

// Store is the SQLite store of messages. Every write goes through one
// writer goroutine owning the only write connection: concurrent requests'
// writes are coalesced into one transaction (group commit), so a commit's
// fsync is shared by everyone waiting on it. Reads use a separate pool,
// which WAL mode lets run beside the writer.
type Store struct {
	wdb    *gorm.DB
	rdb    *gorm.DB
	rsql   *sql.DB // rdb's pool, for reads that scan rows themselves (scan.go)
	log    *slog.Logger
	reqs   chan *writeReq
	kick   chan struct{}
	stop   chan struct{}
	done   chan struct{}
	closed atomic.Bool
	max    int

	dropMu sync.Mutex
	drops  []int64 // ids whose event the full queue turned away, recorded asynchronously

	stats writerStats

	userMark  int64 // user_index holds every message up to this id; owned by the writer
	userEvery int   // messages allowed above userMark before the writer indexes them

	nextID int64 // owned by the writer goroutine

	mids *midBuffer // the newest mid keys (midtables.go); owned by the writer

	ckpt   *checkpointer // nil if it could not start: the writer checkpoints alone
	ins    *sizedStmts   // the writer's prepared INSERTs of messages,
	keyIns *sizedStmts   // of mid keys into mid_keys,
	held   *sizedStmts   // and look-ups in mid_keys
	counts *sql.Stmt     // adds new messages to status_counts (statuscounts.go)

	unlock func() error // releases the process lock (lock.go)

	path string      // the SQLite file, as configured
	file os.FileInfo // what path named at open; nil when it cannot be checked
}

// writeReq is one caller's share of a group commit.
type writeReq struct {
	msgs    []Message
	unsends []string
	apply   func(tx *gorm.DB) error // status updates and other small writes
	done    chan error
	isNew   []bool   // filled by the writer: which msgs were stored (not duplicates)
	tsText  []string // each msg's Timestamp as the driver would write it, formatted by the caller
	unsent  int
}

// OpenStore opens (creating if needed) the SQLite file, migrates the
// schema and starts the writer. One process at a time may have a file
// open (lock.go); another gets ErrInUse.
func OpenStore(opts StoreOptions) (*Store, error) {
	unlock, err := lockStore(opts.Path)
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", opts.Path, err)
	}
	s, err := openStore(opts)
	if err != nil {
		_ = unlock()
		return nil, err
	}
	s.unlock = unlock
	return s, nil
}

func openStore(opts StoreOptions) (*Store, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 2000
	}
	sync := opts.Synchronous
	if sync == "" {
		sync = "NORMAL"
	}
	gcfg := &gorm.Config{
		Logger:                 newGormLogger(opts.Logger),
		SkipDefaultTransaction: true,
		PrepareStmt:            false,
		NowFunc:                func() time.Time { return time.Now().UTC() },
	}
	q := url.Values{}
	q.Set("_journal_mode", "WAL")
	q.Set("_busy_timeout", "5000")
	q.Set("_synchronous", sync)
	q.Set("_txlock", "immediate")
	q.Set("_foreign_keys", "on")
	wdb, err := gorm.Open(sqlite.New(sqlite.Config{DriverName: writerDriverName(), DSN: "file:" + opts.Path + "?" + q.Encode()}), gcfg)
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", opts.Path, err)
	}
	wsql, err := wdb.DB()
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", opts.Path, err)
	}
	// One writer connection: SQLite serialises writers anyway, and a pool of
	// them only adds lock contention and busy-timeout stalls.
	wsql.SetMaxOpenConns(1)
	wsql.SetMaxIdleConns(1)
	wsql.SetConnMaxLifetime(0)
	if err := wdb.AutoMigrate(&Message{}, &healthCheck{}); err != nil {
		_ = wsql.Close()
		return nil, fmt.Errorf("migrate sqlite %s: %w", opts.Path, err)
	}
	for _, migrate := range []func(*gorm.DB, *slog.Logger) error{migrateMIDKeys, migrateUserIndex, migrateMIDTables, migrateStatusCounts} {
		if err := migrate(wdb, opts.Logger); err != nil {
			_ = wsql.Close()
			return nil, fmt.Errorf("migrate sqlite %s: %w", opts.Path, err)
		}
	}
	userMark, err := loadUserIndexMark(wdb)
	if err != nil {
		_ = wsql.Close()
		return nil, err
	}
	if opts.UserIndexEvery <= 0 {
		opts.UserIndexEvery = defaultUserIndexEvery
	}
	if opts.MIDMoveEvery <= 0 {
		opts.MIDMoveEvery = defaultMIDMoveEvery
	}
	mids, err := loadMIDBuffer(wdb, opts.MIDMoveEvery)
	if err != nil {
		_ = wsql.Close()
		return nil, err
	}

	rq := url.Values{}
	rq.Set("_journal_mode", "WAL")
	rq.Set("_busy_timeout", "5000")
	rq.Set("_query_only", "true")
	rdb, err := gorm.Open(sqlite.Open("file:"+opts.Path+"?"+rq.Encode()), gcfg)
	if err != nil {
		_ = wsql.Close()
		return nil, fmt.Errorf("open sqlite reader %s: %w", opts.Path, err)
	}
	rsql, err := rdb.DB()
	if err != nil {
		_ = wsql.Close()
		return nil, fmt.Errorf("open sqlite reader %s: %w", opts.Path, err)
	}
	rsql.SetMaxOpenConns(4)
	rsql.SetMaxIdleConns(4)

	s := &Store{
		wdb:  wdb,
		rdb:  rdb,
		rsql: rsql,
		log:  opts.Logger,
		reqs: make(chan *writeReq, 4096),
		kick: make(chan struct{}, 1),
		stop: make(chan struct{}),
		done: make(chan struct{}),
		max:  opts.MaxBatch,

		userMark:  userMark,
		userEvery: opts.UserIndexEvery,
		mids:      mids,
	}
	if err := s.loadNextID(); err != nil {
		_ = wsql.Close()
		_ = rsql.Close()
		return nil, err
	}
	s.path = opts.Path
	if fi, err := os.Stat(opts.Path); err == nil {
		s.file = fi
	}
	if err := s.prepare(context.Background(), wsql); err != nil {
		_ = wsql.Close()
		_ = rsql.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", opts.Path, err)
	}
	if s.ckpt, err = startCheckpointer(opts.Path, sync, opts.Logger); err != nil {
		opts.Logger.Warn("sqlite background checkpointer not started; the writer checkpoints by itself", "err", err)
	}
	go s.run()
	return s, nil
}

// prepare prepares the writer's statements on its pool (no transaction
// may be open).
func (s *Store) prepare(ctx context.Context, wsql *sql.DB) error {
	var err error
	if s.ins, err = prepareSized(ctx, wsql, "insert", insertSQL); err != nil {
		return err
	}
	if s.keyIns, err = prepareSized(ctx, wsql, "mid key insert", keyInsertSQL); err != nil {
		return errors.Join(err, s.ins.close())
	}
	if s.held, err = prepareSized(ctx, wsql, "mid key look-up", heldSQL); err != nil {
		return errors.Join(err, s.ins.close(), s.keyIns.close())
	}
	if s.counts, err = wsql.PrepareContext(ctx, countNewSQL); err != nil {
		return errors.Join(fmt.Errorf("prepare status count: %w", err), s.ins.close(), s.keyIns.close(), s.held.close())
	}
	return nil
}

// maxYields is how many times the writer lets other goroutines run
// before it commits what it gathered: while each yield brings more
// writes, the group grows. Handlers that are a few microseconds from
// submitting (parsing, validating) then join this commit instead of
// waiting for the next. Measured on 2 CPUs with 32 single-message
// clients: 2.8 writes per commit without, 8.5 with, and the writer's
// busy time from 63% to 51%. With nothing else runnable a yield returns
// at once, so an idle store commits without delay.
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

// WriterStats is what the single writer has done since the store opened.
type WriterStats struct {
	Commits  int64         // transactions committed
	Failed   int64         // transactions rolled back
	Requests int64         // writes (a Save, a status update) folded into the commits
	Busy     time.Duration // time spent in transactions, committed or not
}

// WriterStats returns the writer's counters: Requests/Commits is the mean
// group-commit size, and Busy's rate how busy the writer is.
func (s *Store) WriterStats() WriterStats {
	return WriterStats{
		Commits: s.stats.commits.Load(), Failed: s.stats.failed.Load(), Requests: s.stats.requests.Load(),
		Busy: time.Duration(s.stats.nanos.Load()),
	}
}

// healthCheck is a one-row table that readiness writes to, proving the
// file is writable.
type healthCheck struct {
	ID        int `gorm:"primaryKey"`
	CheckedAt time.Time
}

// loadNextID sets the next id above every stored message and above every
// mark (user_index's, each mid key range's). A mark says "every message up
// to here is indexed": a new message at or below one would be in no index.
// Since ids go only to stored messages, the marks never pass MAX(id); a
// store written before that was so may have them a few ids above it.
func (s *Store) loadNextID() error {
	var maxID int64
	if err := s.wdb.Raw("SELECT COALESCE(MAX(id), 0) FROM messages").Scan(&maxID).Error; err != nil {
		return fmt.Errorf("read last message id: %w", err)
	}
	s.nextID = max(maxID, s.userMark, slices.Max(s.mids.marks[:])) + 1
	return nil
}

// SaveResult says what one Save stored.
type SaveResult struct {
	// New holds the messages that were stored now, with ID and CreatedAt set,
	// in the order given. Duplicates (a mid already stored) are not in it.
	New        []Message
	Duplicates int
	Unsent     int // stored messages newly marked deleted
}

// Save stores msgs and applies unsends in one transaction, shared with
// whatever other writes are waiting. It returns only after the commit. A
// message whose instagram_message_id is already stored is skipped and
// counted as a duplicate, not an error. Each message must have passed
// Validate and carry its initial MirrorStatus.
func (s *Store) Save(ctx context.Context, msgs []Message, unsends []string) (SaveResult, error) {
	if len(msgs) == 0 && len(unsends) == 0 {
		return SaveResult{}, nil
	}
	setMIDKeys(msgs)
	r := &writeReq{msgs: msgs, unsends: unsends, tsText: make([]string, len(msgs))}
	for i := range msgs {
		r.tsText[i] = sqliteTime(msgs[i].Timestamp)
	}
	if err := s.submit(ctx, r); err != nil {
		return SaveResult{}, err
	}
	res := SaveResult{Unsent: r.unsent}
	for i, ok := range r.isNew {
		if ok {
			res.New = append(res.New, r.msgs[i])
		} else {
			res.Duplicates++
		}
	}
	return res, nil
}

// submit hands r to the writer and waits for its commit. A caller whose
// context ends stops waiting, but the write may still commit.
func (s *Store) submit(ctx context.Context, r *writeReq) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		// Otherwise the select below could still hand the write over.
		return err
	}
	r.done = make(chan error, 1)
	select {
	case s.reqs <- r:
	case <-s.stop:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-r.done:
		return err
	case <-s.done:
		// The writer may have answered just before it stopped.
		select {
		case err := <-r.done:
			return err
		default:
			return ErrClosed
		}
	case <-ctx.Done():
		return ctx.Err()
	}
}

// exec runs fn in the writer, inside a group commit.
func (s *Store) exec(ctx context.Context, fn func(tx *gorm.DB) error) error {
	return s.submit(ctx, &writeReq{apply: fn})
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
			// Finish what was handed over before Close, then stop.
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
					n += len(r.msgs)
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
		n += len(r.msgs)
	}
	return n
}

// commit writes batch (and pending drop marks) in one transaction. When a
// shared transaction fails, each request is retried alone so that one
// request's failure is never another's.
func (s *Store) commit(batch []*writeReq) {
	if err := s.checkFile(); err != nil {
		// Drop marks stay queued for a commit that can land.
		for _, r := range batch {
			r.done <- err
		}
		return
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
		defer s.retryDrops(drops)
	}
	if len(batch) == 1 {
		batch[0].done <- err
		return
	}
	for _, r := range batch {
		// The failed attempt may have moved a message to a later probe key;
		// alone, it starts again from its first.
		setMIDKeys(r.msgs)
		start := time.Now()
		err := s.tx([]*writeReq{r}, nil)
		s.stats.record(1, time.Since(start), err)
		r.done <- err
	}
}

// retryDrops records drop marks whose shared transaction failed, in a
// transaction of their own; if that fails too, they wait for the next
// commit. Never lost: a message whose event was turned away but is still
// pending would be offered again only as stale.
func (s *Store) retryDrops(drops []int64) {
	start := time.Now()
	err := s.tx(nil, drops)
	s.stats.record(0, time.Since(start), err)
	if err == nil {
		return
	}
	s.log.Warn("record dropped mirror events; retried with the next commit", "count", len(drops), "err", err)
	s.dropMu.Lock()
	s.drops = append(drops, s.drops...)
	s.dropMu.Unlock()
}

func (s *Store) tx(batch []*writeReq, drops []int64) error {
	s.mids.begin()    // also forgets what a rolled-back transaction left
	first := s.nextID // the first id this transaction hands out
	err := s.wdb.Transaction(func(tx *gorm.DB) error {
		if err := s.insertAll(tx, batch); err != nil {
			return err
		}
		if err := s.moveMIDKeys(tx, first); err != nil {
			return err
		}
		if err := s.indexUsers(tx); err != nil {
			return err
		}
		for _, r := range batch {
			if len(r.unsends) > 0 {
				n, err := s.markUnsent(tx, r.unsends)
				if err != nil {
					return err
				}
				r.unsent = n
			}
			if r.apply != nil {
				if err := r.apply(tx); err != nil {
					return err
				}
			}
		}
		for len(drops) > 0 {
			n := min(len(drops), 500)
			if err := tx.Exec("UPDATE messages SET mirror_status = ? WHERE mirror_status = ? AND id IN ?",
				MirrorDropped, MirrorPending, drops[:n]).Error; err != nil {
				return fmt.Errorf("mark dropped: %w", err)
			}
			drops = drops[n:]
		}
		return nil
	})
	if err != nil {
		// The customer index's mark may not have moved, and ids handed out
		// inside the rolled-back transaction may be reused.
		if mark, lerr := loadUserIndexMark(s.wdb); lerr != nil {
			s.log.Error("reload user_index mark", "err", lerr)
		} else {
			s.userMark = mark
		}
		if lerr := s.loadNextID(); lerr != nil {
			s.log.Error("reload last message id", "err", lerr)
		}
		return err
	}
	s.mids.commit()
	return nil
}

// sqlTxOf is the database/sql transaction under the writer's GORM one,
// for the statements it runs without GORM.
func sqlTxOf(tx *gorm.DB) (*sql.Tx, error) {
	sqlTx, ok := tx.Statement.ConnPool.(*sql.Tx)
	if !ok {
		return nil, fmt.Errorf("writer transaction is a %T, not a *sql.Tx", tx.Statement.ConnPool)
	}
	return sqlTx, nil
}

// markUnsent marks the stored messages with these mids deleted, and
// returns how many it newly marked. The mids are found through their keys.
func (s *Store) markUnsent(tx *gorm.DB, mids []string) (int, error) {
	sqlTx, err := sqlTxOf(tx)
	if err != nil {
		return 0, fmt.Errorf("mark unsent: %w", err)
	}
	now := time.Now().UTC()
	marked := 0
	err = inChunks(mids, func(part []string) error {
		ids, err := s.midIDs(tx.Statement.Context, sqlTx, part)
		if err != nil || len(ids) == 0 {
			return err
		}
		res := tx.Exec("UPDATE messages SET deleted = 1, deleted_at = ? WHERE deleted = 0 AND id IN ? AND instagram_message_id IN ?", now, ids, part)
		if res.Error != nil {
			return res.Error
		}
		marked += int(res.RowsAffected)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("mark unsent: %w", err)
	}
	return marked, nil
}

// sqliteTime formats t exactly as the SQLite driver writes a time.Time,
// so that the writer binds a ready string.
func sqliteTime(t time.Time) string {
	return t.Format(sqlite3.SQLiteTimestampFormats[0])
}

// ErrFileMoved is returned by writes while the SQLite file is no longer at
// its path.
var ErrFileMoved = errors.New("sqlite file removed, moved or replaced while open")

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

// insertSlot is one message of a group commit: request and index.
type insertSlot struct {
	r *writeReq
	i int
}

func (sl insertSlot) msg() *Message { return &sl.r.msgs[sl.i] }

// insertAll inserts every message of the batch that is not a duplicate.
// The writer hands out ids itself (it is the only writer). Each message
// with a mid is first placed under a key (midkey.go): its probe keys are
// looked up in the key tables, and in this batch, until one is free (the
// message is new, and takes it) or holds its very mid (a duplicate). The
// new messages are then inserted with the statements prepared at open,
// on the transaction's connection, without GORM in between; their keys
// join the writer's buffer when the transaction commits.
func (s *Store) insertAll(tx *gorm.DB, batch []*writeReq) error {
	n := countMsgs(batch)
	if n == 0 {
		return nil
	}
	sqlTx, err := sqlTxOf(tx)
	if err != nil {
		return fmt.Errorf("insert messages: %w", err)
	}
	ctx := tx.Statement.Context
	keyed := make([]insertSlot, 0, n)
	for _, r := range batch {
		r.isNew = make([]bool, len(r.msgs))
		for i := range r.msgs {
			if r.msgs[i].MIDKey == nil {
				r.isNew[i] = true
			} else {
				keyed = append(keyed, insertSlot{r, i})
			}
		}
	}
	if err := s.placeKeys(ctx, sqlTx, keyed); err != nil {
		return fmt.Errorf("insert messages: %w", err)
	}
	// Ids go to the stored messages only, in the batch's order, so that
	// the last id handed out is the largest stored: the marks taken from
	// it never pass MAX(id) (loadNextID).
	rows := make([]insertSlot, 0, n)
	now := time.Now().UTC()
	for _, r := range batch {
		for i := range r.msgs {
			if !r.isNew[i] {
				continue
			}
			m := &r.msgs[i]
			m.ID = s.nextID
			s.nextID++
			m.CreatedAt = now
			rows = append(rows, insertSlot{r, i})
			if m.MIDKey != nil {
				s.mids.tx[*m.MIDKey] = m.ID
			}
		}
	}
	if err := s.insertRows(ctx, sqlTx, rows, sqliteTime(now)); err != nil {
		return fmt.Errorf("insert messages: %w", err)
	}
	return s.countNew(ctx, sqlTx, batch)
}

// placeKeys settles each of slots (messages with a mid, their probe-0
// key set): it marks the new ones new, each under a key nobody holds, and
// leaves the duplicates unmarked.
func (s *Store) placeKeys(ctx context.Context, sqlTx *sql.Tx, slots []insertSlot) error {
	taken := make(map[int64]string, len(slots)) // keys placed in this batch
	keys := make([]int64, 0, len(slots))
	for probe := 0; len(slots) > 0; probe++ {
		keys = keys[:0]
		for _, sl := range slots {
			keys = append(keys, *sl.msg().MIDKey)
		}
		held, err := s.heldMIDs(ctx, sqlTx, keys)
		if err != nil {
			return fmt.Errorf("look up mid keys: %w", err)
		}
		var again []insertSlot
		for _, sl := range slots {
			m := sl.msg()
			holder, ok := taken[*m.MIDKey]
			if !ok {
				holder, ok = held[*m.MIDKey]
			}
			switch {
			case !ok:
				taken[*m.MIDKey] = m.MID()
				sl.r.isNew[sl.i] = true
			case holder == m.MID():
				// A duplicate: stored before, or earlier in this batch.
			case probe+1 >= maxMIDProbes:
				return fmt.Errorf("message %q: all %d probe keys of its mid are taken", m.MID(), maxMIDProbes)
			default:
				k := midKeyProbe(m.MID(), probe+1)
				m.MIDKey = &k
				again = append(again, sl)
			}
		}
		slots = again
	}
	return nil
}

// insertRows inserts the messages of slots with created_at created
// (formatted).
func (s *Store) insertRows(ctx context.Context, sqlTx *sql.Tx, slots []insertSlot, created string) error {
	args := make([]any, 0, min(len(slots), rowsPerStmt)*colsPerRow)
	return eachSized(s.ins, slots, func(part []insertSlot, st *sql.Stmt) error {
		args = args[:0]
		for _, sl := range part {
			m := sl.msg()
			args = append(args, m.ID, m.InstagramMessageID, m.MIDKey, m.SenderID, m.RecipientID, string(m.Direction),
				m.MessageText, sl.r.tsText[sl.i], created, string(m.MirrorStatus), m.UserID, m.Attachments, m.ReplyToMID)
		}
		res, err := sqlTx.StmtContext(ctx, st).ExecContext(ctx, args...)
		if err != nil {
			return err
		}
		if stored, err := res.RowsAffected(); err != nil || stored != int64(len(part)) {
			return fmt.Errorf("stored %d of %d rows (%v)", stored, len(part), err)
		}
		return nil
	})
}

// Close stops the writer after it has committed what it was handed, then
// closes both connection pools.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	close(s.stop)
	<-s.done
	var errs []error
	errs = append(errs, s.ins.close(), s.keyIns.close(), s.held.close(), s.counts.Close())
	if s.ckpt != nil {
		errs = append(errs, s.ckpt.close())
	}
	for _, db := range []*gorm.DB{s.rdb, s.wdb} {
		if sqlDB, err := db.DB(); err == nil {
			errs = append(errs, sqlDB.Close())
		}
	}
	if s.unlock != nil {
		errs = append(errs, s.unlock())
	}
	return errors.Join(errs...)
}

// CheckWritable proves the database accepts writes, through the writer.
func (s *Store) CheckWritable(ctx context.Context) error {
	return s.exec(ctx, func(tx *gorm.DB) error {
		return tx.Exec("INSERT INTO health_checks (id, checked_at) VALUES (1, ?) ON CONFLICT(id) DO UPDATE SET checked_at = excluded.checked_at",
			time.Now().UTC()).Error
	})
}
