package renewal

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestRunLogsChanges: failures in a row log one warning, the first
// success after them one line, and successes nothing.
func TestRunLogsChanges(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	results := []error{nil, errors.New("down"), errors.New("down"), nil, nil}
	var mu sync.Mutex
	calls := 0
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(stop, time.Millisecond, log, func() string { return "i/1" }, func() error {
			mu.Lock()
			defer mu.Unlock()
			calls++
			if calls == len(results) {
				close(stop)
			}
			if calls > len(results) {
				return nil
			}
			return results[calls-1]
		})
	}()
	<-done
	got := buf.String()
	if n := strings.Count(got, "mirror lease not renewed"); n != 1 {
		t.Errorf("warnings: got %d, want 1 in %q", n, got)
	}
	if n := strings.Count(got, "mirror lease renewed again"); n != 1 {
		t.Errorf("recoveries: got %d, want 1 in %q", n, got)
	}
}
