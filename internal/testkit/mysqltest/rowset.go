package mysqltest

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"igmirror/internal/testkit/faultproxy"
)

// RowKey is what a person reading the CRM sees of a row: every column but
// the auto-increment id and the username.
type RowKey struct {
	UserID, Direction, Message string
	CreatedAt                  time.Time // UTC
}

// RowCounts counts the CRM table's rows by key, so that a test can check
// the table holds each expected row exactly once.
func (d *DB) RowCounts(t testing.TB) map[RowKey]int {
	t.Helper()
	out := map[RowKey]int{}
	for _, r := range d.Rows(t) {
		out[RowKey{r.UserID, r.Direction, r.Message, r.CreatedAt.UTC()}]++
	}
	return out
}

// DiffCounts describes how got differs from want, at most five
// differences; it returns "" when they are equal.
func DiffCounts(got, want map[RowKey]int) string {
	var diffs []string
	for k, n := range want {
		if got[k] != n {
			diffs = append(diffs, fmt.Sprintf("%s/%s/%s %.40q: %d copies, want %d", k.UserID, k.Direction, k.CreatedAt.Format(time.RFC3339), k.Message, got[k], n))
		}
	}
	for k, n := range got {
		if want[k] == 0 {
			diffs = append(diffs, fmt.Sprintf("unexpected %s/%s/%s %.40q x%d", k.UserID, k.Direction, k.CreatedAt.Format(time.RFC3339), k.Message, n))
		}
	}
	if len(diffs) > 5 {
		diffs = append(diffs[:5], fmt.Sprintf("... %d more", len(diffs)-5))
	}
	return strings.Join(diffs, "; ")
}

// Proxy puts a TCP fault proxy in front of the server and closes it when
// the test ends. It skips a test whose server is on a unix socket.
func (d *DB) Proxy(t testing.TB) *faultproxy.Proxy {
	t.Helper()
	if d.Port == 0 {
		t.Skip("the CRM test server is on a unix socket; a TCP fault proxy cannot stand in front of it")
	}
	p, err := faultproxy.New(net.JoinHostPort(d.Host, strconv.Itoa(d.Port)))
	if err != nil {
		t.Fatalf("fault proxy: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}
