package sqlite

import (
	"database/sql"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/mattn/go-sqlite3"
)

// The writer's commits are the store's one serial path, so the work a
// commit need not do is moved off it. Measured on a 2-core VM (go run
// ./bench), SQLite's automatic checkpoint, run inside every thousandth
// page's commit, cost the writer a third of its time: copying pages into
// the database file and two fsyncs, while requests queued behind it.
const (
	// writerDriver is the SQLite driver of the writer connection: the
	// usual one, with walPragmas run on every connection it opens.
	writerDriver = "sqlite3_igmirror_writer"

	// writerAutoCheckpoint (pages) is when the writer checkpoints by
	// itself, which bounds the WAL (about 64 MiB). The checkpointer below
	// has normally copied all but the last frames by then; but under
	// constant writes the WAL only starts over after a checkpoint by the
	// writer itself, between two of its transactions.
	writerAutoCheckpoint = 16000

	// writerCacheKiB is the writer's page cache. The UNIQUE mid index and
	// the customer index take inserts at random places; 8 MiB holds their
	// inner pages and the tails of the table and of the sequential
	// indexes. A larger cache bought no throughput (8 and 128 MiB measured
	// alike, docs/benchmarks.md) and costs resident memory.
	writerCacheKiB = 8 << 10

	// checkpointEvery is how often the checkpointer copies committed WAL
	// frames into the database file.
	checkpointEvery = 100 * time.Millisecond
)

// writerPragmas are run on the writer connection when it opens.
var writerPragmas = []string{
	"wal_autocheckpoint = " + strconv.Itoa(writerAutoCheckpoint),
	"cache_size = " + strconv.Itoa(-writerCacheKiB),
	// A multi-row INSERT ... ON CONFLICT keeps a statement journal (a copy
	// of every page it touches, to undo the statement alone), and RETURNING
	// buffers its rows: both went to temporary files, a write syscall per
	// page. In memory they cost a copy (+35% rows/s measured).
	"temp_store = MEMORY",
}

var registerWriter sync.Once

// writerDriverName registers writerDriver once and returns its name.
func writerDriverName() string {
	registerWriter.Do(func() {
		sql.Register(writerDriver, &sqlite3.SQLiteDriver{
			ConnectHook: func(c *sqlite3.SQLiteConn) error {
				for _, p := range writerPragmas {
					if _, err := c.Exec("PRAGMA "+p, nil); err != nil {
						return fmt.Errorf("sqlite pragma %s: %w", p, err)
					}
				}
				return nil
			},
		})
	})
	return writerDriver
}

// checkpointer copies committed WAL frames into the database file from a
// connection of its own (a PASSIVE checkpoint: it never waits for, nor
// blocks, the writer or the readers). The writer then only appends to
// the WAL, and starts it over once everything has been copied.
type checkpointer struct {
	db   *sql.DB
	log  *slog.Logger
	stop chan struct{}
	done chan struct{}
}

// startCheckpointer opens its connection to path; synchronous must be the
// writer's setting, since a checkpoint's fsyncs follow it.
func startCheckpointer(path, synchronous string, log *slog.Logger) (*checkpointer, error) {
	q := url.Values{}
	q.Set("_busy_timeout", "5000")
	q.Set("_synchronous", synchronous)
	db, err := sql.Open("sqlite3", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	c := &checkpointer{db: db, log: log, stop: make(chan struct{}), done: make(chan struct{})}
	go c.run()
	return c, nil
}

func (c *checkpointer) run() {
	defer close(c.done)
	t := time.NewTicker(checkpointEvery)
	defer t.Stop()
	var lastWarn time.Time
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		var busy, frames, copied int
		err := c.db.QueryRow("PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &frames, &copied)
		// A failed checkpoint costs nothing but speed: the writer's own
		// automatic checkpoint still bounds the WAL.
		if err != nil && time.Since(lastWarn) > time.Minute {
			lastWarn = time.Now()
			c.log.Warn("sqlite background checkpoint failed; the writer checkpoints by itself", "err", err)
		}
	}
}

// close stops the checkpointer and closes its connection.
func (c *checkpointer) close() error {
	close(c.stop)
	<-c.done
	return c.db.Close()
}
