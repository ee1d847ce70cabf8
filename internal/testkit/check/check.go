// Package check holds the small test helpers every package's tests need:
// polling for a condition, and a goroutine-safe log buffer to assert on.
package check

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// Eventually polls cond every 10 ms until it holds, and fails the test
// (naming what it waited for) when within has passed.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s", within, what)
}

// LogBuffer is a goroutine-safe io.Writer that keeps everything written to
// it, for tests that assert on log lines.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Lines returns the non-empty lines written so far.
func (l *LogBuffer) Lines() []string {
	var out []string
	for _, line := range strings.Split(l.String(), "\n") {
		if line != "" {
			out = append(out, line)
		}
	}
	return out
}

// Count returns how many lines contain s.
func (l *LogBuffer) Count(s string) int {
	n := 0
	for _, line := range l.Lines() {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}

// Logger returns a debug-level JSON slog logger writing into l.
func (l *LogBuffer) Logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
