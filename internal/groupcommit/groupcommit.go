// Package groupcommit holds the writer both store adapters use: one
// goroutine that folds the requests of concurrent callers into one
// transaction (group commit), so that a commit's cost (an fsync, a round
// trip) is shared by everyone waiting on it. The adapter supplies the
// transaction; the writer decides what goes into it, answers each caller,
// and retries the requests of a failed transaction one by one so that one
// request's failure is never another's.
package groupcommit

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"igmirror/domain"
)

// maxYields is how many times the writer lets other goroutines run
// before it commits what it gathered: while each yield brings more
// writes, the group grows. Handlers that are a few microseconds from
// submitting (parsing, validating) then join this commit instead of
// waiting for the next. With nothing else runnable a yield returns at
// once, so an idle store commits without delay.
const maxYields = 3

// Req is the writer's part of a request: the caller's context and the
// channel its outcome is sent on. An adapter's request type embeds it.
type Req struct {
	ctx  context.Context
	done chan error
}

// Context is the context of the caller that submitted the request.
func (r *Req) Context() context.Context { return r.ctx }

func (r *Req) req() *Req { return r }

// Request is an adapter's request type: a pointer to a struct that
// embeds Req.
type Request interface {
	// Messages is how many messages the request writes, counted against
	// Config.MaxBatch.
	Messages() int
	req() *Req
}

// Config is what an adapter tells the writer about its engine.
type Config[R Request] struct {
	// MaxBatch bounds how many messages one transaction may hold.
	MaxBatch int
	// Queue is how many requests may wait for the writer.
	Queue int
	// Tx runs batch and marks (see Writer.Mark) in one transaction and
	// returns once it is committed or rolled back.
	Tx func(batch []R, marks []int64) error
	// Check, when set, runs before each commit; its error fails every
	// request of the commit at once and leaves the marks queued.
	Check func() error
	// SkipAbandoned leaves out of a commit the requests whose caller's
	// context has ended, answering them with its error.
	SkipAbandoned bool
	// RetryAlone reports whether the requests of a shared transaction
	// that failed with err are worth retrying one by one; nil means
	// always. When it says no, they all fail with err.
	RetryAlone func(err error) bool
	// RetryMarks retries at once, in a transaction of their own, the
	// marks of a failed transaction; without it, or when that fails too,
	// they wait for the next commit.
	RetryMarks bool
	// MarksDeferred, when set, is told that n marks wait for the next
	// commit because their transaction failed with err.
	MarksDeferred func(n int, err error)
}

// Writer is a group-commit writer. Its methods may be called from any
// goroutine.
type Writer[R Request] struct {
	cfg    Config[R]
	reqs   chan R
	kick   chan struct{}
	stop   chan struct{}
	done   chan struct{}
	closed atomic.Bool

	marksMu sync.Mutex
	marks   []int64 // handed over by Mark, written with the next commit

	commits, failed, requests, nanos atomic.Int64
}

// New returns a writer that Start sets going.
func New[R Request](cfg Config[R]) *Writer[R] {
	return &Writer[R]{
		cfg:  cfg,
		reqs: make(chan R, cfg.Queue),
		kick: make(chan struct{}, 1),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
}

// Start starts the writer's goroutine.
func (w *Writer[R]) Start() { go w.run() }

// Submit hands r to the writer and waits for its commit. A caller whose
// context ends stops waiting, but the write may still commit.
func (w *Writer[R]) Submit(ctx context.Context, r R) error {
	if w.closed.Load() {
		return domain.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		// Otherwise the select below could still hand the write over.
		return err
	}
	q := r.req()
	q.ctx = ctx
	q.done = make(chan error, 1)
	select {
	case w.reqs <- r:
	case <-w.stop:
		return domain.ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-q.done:
		return err
	case <-w.done:
		// The writer may have answered just before it stopped.
		select {
		case err := <-q.done:
			return err
		default:
			return domain.ErrClosed
		}
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Mark hands ids to the writer to be passed to Tx with its next commit,
// without waiting for it: it never blocks. Marks of a closed writer are
// ignored.
func (w *Writer[R]) Mark(ids ...int64) {
	if len(ids) == 0 || w.closed.Load() {
		return
	}
	w.marksMu.Lock()
	w.marks = append(w.marks, ids...)
	w.marksMu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// Close refuses requests and marks from now on. It returns false when the
// writer was closed before. Wait then stops it.
func (w *Writer[R]) Close() bool { return !w.closed.Swap(true) }

// Closed reports whether Close has been called.
func (w *Writer[R]) Closed() bool { return w.closed.Load() }

// Wait stops the started writer once it has committed what it was handed
// before Close, and returns when it has.
func (w *Writer[R]) Wait() {
	close(w.stop)
	<-w.done
}

// Stats returns what the writer has done since it was made.
func (w *Writer[R]) Stats() domain.WriterStats {
	return domain.WriterStats{
		Commits: w.commits.Load(), Failed: w.failed.Load(), Requests: w.requests.Load(),
		Busy: time.Duration(w.nanos.Load()),
	}
}

func (w *Writer[R]) run() {
	defer close(w.done)
	batch := make([]R, 0, 64)
	for {
		batch = batch[:0]
		select {
		case r := <-w.reqs:
			batch = append(batch, r)
		case <-w.kick:
		case <-w.stop:
			// Finish what was handed over before Close, then stop.
			for {
				select {
				case r := <-w.reqs:
					w.commit([]R{r})
					continue
				default:
				}
				break
			}
			w.commit(nil)
			return
		}
		n := 0
		for _, r := range batch {
			n += r.Messages()
		}
		for yields := 0; ; yields++ {
			before := len(batch)
		gather:
			for n < w.cfg.MaxBatch {
				select {
				case r := <-w.reqs:
					batch = append(batch, r)
					n += r.Messages()
				default:
					break gather
				}
			}
			if yields >= maxYields || n >= w.cfg.MaxBatch || (yields > 0 && len(batch) == before) {
				break
			}
			runtime.Gosched()
		}
		w.commit(batch)
	}
}

// commit writes batch and the pending marks in one transaction. When it
// fails, each request is retried alone (as RetryAlone allows), then the
// marks are seen to, so that the callers get their answers first.
func (w *Writer[R]) commit(batch []R) {
	if w.cfg.Check != nil {
		if err := w.cfg.Check(); err != nil {
			for _, r := range batch {
				r.req().done <- err
			}
			return
		}
	}
	if w.cfg.SkipAbandoned {
		kept := batch[:0]
		for _, r := range batch {
			if err := r.req().ctx.Err(); err != nil {
				r.req().done <- err
				continue
			}
			kept = append(kept, r)
		}
		batch = kept
	}
	w.marksMu.Lock()
	marks := w.marks
	w.marks = nil
	w.marksMu.Unlock()
	if len(batch) == 0 && len(marks) == 0 {
		return
	}
	err := w.tx(batch, marks)
	if err == nil {
		for _, r := range batch {
			r.req().done <- nil
		}
		return
	}
	if len(marks) > 0 {
		defer w.retryMarks(marks, err)
	}
	if len(batch) == 1 || (w.cfg.RetryAlone != nil && !w.cfg.RetryAlone(err)) {
		for _, r := range batch {
			r.req().done <- err
		}
		return
	}
	for _, r := range batch {
		r.req().done <- w.tx([]R{r}, nil)
	}
}

// retryMarks sees to marks whose transaction failed with err: retried
// alone when the adapter asks for it, else (or when that fails too) put
// back in front of the queue for the next commit. Never lost.
func (w *Writer[R]) retryMarks(marks []int64, err error) {
	if w.cfg.RetryMarks {
		if err = w.tx(nil, marks); err == nil {
			return
		}
	}
	if w.cfg.MarksDeferred != nil {
		w.cfg.MarksDeferred(len(marks), err)
	}
	w.marksMu.Lock()
	w.marks = append(marks, w.marks...)
	w.marksMu.Unlock()
}

// tx runs Tx and counts it.
func (w *Writer[R]) tx(batch []R, marks []int64) error {
	start := time.Now()
	err := w.cfg.Tx(batch, marks)
	w.nanos.Add(int64(time.Since(start)))
	if err != nil {
		w.failed.Add(1)
		return err
	}
	w.commits.Add(1)
	w.requests.Add(int64(len(batch)))
	return nil
}
