package groupcommit

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"sync"
	"testing"

	"igmirror/domain"
)

type testReq struct {
	Req
	n    int
	fail bool // its transaction fails while it is in it
}

func (r *testReq) Messages() int { return r.n }

var errBad = errors.New("bad request")

// recorder is a Tx that fails any transaction holding a failing request
// and remembers what it committed.
type recorder struct {
	mu        sync.Mutex
	committed [][]int64 // the marks of each committed transaction
	failMarks int       // how many transactions with marks fail from now
}

func (rc *recorder) tx(batch []*testReq, marks []int64) error {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, r := range batch {
		if r.fail {
			return errBad
		}
	}
	if len(marks) > 0 && rc.failMarks > 0 {
		rc.failMarks--
		return errBad
	}
	rc.committed = append(rc.committed, marks)
	return nil
}

func TestWriter(t *testing.T) {
	tests := []struct {
		name       string
		retryAlone func(error) bool
		wantGood   error // what a good request sharing a transaction with a bad one gets
	}{
		{name: "retried alone", wantGood: nil},
		{name: "not retried", retryAlone: func(error) bool { return false }, wantGood: errBad},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := &recorder{}
			w := New(Config[*testReq]{MaxBatch: 10, Queue: 8, Tx: rc.tx, RetryAlone: tt.retryAlone})
			bad, good := &testReq{n: 1, fail: true}, &testReq{n: 1}
			badErr, goodErr := make(chan error, 1), make(chan error, 1)
			go func() { badErr <- w.Submit(context.Background(), bad) }()
			go func() { goodErr <- w.Submit(context.Background(), good) }()
			// Both are queued before the writer starts: they share a transaction.
			for len(w.reqs) < 2 {
				runtime.Gosched()
			}
			w.Start()
			if got := <-badErr; !errors.Is(got, errBad) {
				t.Errorf("bad request: got %v, want %v", got, errBad)
			}
			if got := <-goodErr; got != tt.wantGood {
				t.Errorf("good request: got %v, want %v", got, tt.wantGood)
			}
			w.Close()
			w.Wait()
			if err := w.Submit(context.Background(), &testReq{}); !errors.Is(err, domain.ErrClosed) {
				t.Errorf("submit after close: got %v, want %v", err, domain.ErrClosed)
			}
		})
	}
}

func TestMarksNeverLost(t *testing.T) {
	for _, retry := range []bool{false, true} {
		rc := &recorder{failMarks: 1}
		deferred := 0
		w := New(Config[*testReq]{MaxBatch: 10, Queue: 8, Tx: rc.tx, RetryMarks: retry,
			MarksDeferred: func(n int, err error) { deferred += n }})
		w.Start()
		w.Mark(1, 2)
		for w.Stats().Failed == 0 {
			runtime.Gosched()
		}
		// The marks' transaction failed: retried at once they are written
		// by now, else with the next request.
		if err := w.Submit(context.Background(), &testReq{n: 1}); err != nil {
			t.Fatalf("retry %v: submit: %v", retry, err)
		}
		w.Close()
		w.Wait()
		var got []int64
		for _, m := range rc.committed {
			got = append(got, m...)
		}
		if !slices.Equal(got, []int64{1, 2}) {
			t.Errorf("retry %v: committed marks: got %v, want [1 2]", retry, got)
		}
		if wantDeferred := map[bool]int{false: 2, true: 0}[retry]; deferred != wantDeferred {
			t.Errorf("retry %v: deferred: got %d, want %d", retry, deferred, wantDeferred)
		}
	}
}
