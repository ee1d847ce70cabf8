package check

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestLogBufferLinesAndCount(t *testing.T) {
	var l LogBuffer
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fmt.Fprintf(&l, "line %d %s\n", i, map[bool]string{true: "even", false: "odd"}[i%2 == 0])
		}()
	}
	wg.Wait()
	if got, want := len(l.Lines()), 20; got != want {
		t.Errorf("lines: got %d, want %d", got, want)
	}
	if got, want := l.Count("even"), 10; got != want {
		t.Errorf("count even: got %d, want %d", got, want)
	}
	var empty LogBuffer
	if got := len(empty.Lines()); got != 0 {
		t.Errorf("lines of an empty buffer: got %d, want 0", got)
	}
	l.Logger().Info("hello", "k", "v")
	if got, want := l.Count(`"msg":"hello"`), 1; got != want {
		t.Errorf("logger line: got %d, want %d", got, want)
	}
}

func TestEventuallyReturnsOnceTrue(t *testing.T) {
	calls := 0
	Eventually(t, 5*time.Second, "the third call", func() bool { calls++; return calls == 3 })
	if calls != 3 {
		t.Errorf("calls: got %d, want 3", calls)
	}
}
