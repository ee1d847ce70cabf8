package mirror

import (
	"context"
	"crypto/x509"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

func TestClassifyMySQLErrors(t *testing.T) {
	for _, tc := range []struct {
		name        string
		number      uint16
		wantClass   Class
		wantUnknown bool
	}{
		{"access denied", 1045, Permanent, false},
		{"access denied, unknown user (MariaDB)", 1698, Permanent, false},
		{"host not allowed", 1130, Permanent, false},
		{"password expired", 1862, Permanent, false},
		{"db access denied", 1044, Permanent, false},
		{"unknown database", 1049, Permanent, false},
		{"unknown table", 1146, Permanent, false},
		{"insert denied", 1142, Permanent, false},
		{"unknown column", 1054, Permanent, false},
		{"lock wait timeout", 1205, Transient, false},
		{"deadlock", 1213, Transient, false},
		{"too many connections", 1040, Transient, false},
		{"server shutdown", 1053, Transient, false},
		{"read only", 1290, Transient, false},
		{"server gone away", 2006, Transient, true},
		{"lost connection during query", 2013, Transient, true},
		{"incorrect string value", 1366, RowData, false},
		{"data too long", 1406, RowData, false},
		{"incorrect datetime", 1292, RowData, false},
		{"packet too large", 1153, RowData, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Wrapped the way the pool sees it: through GORM and fmt.
			err := fmt.Errorf("insert rows: %w", &mysql.MySQLError{Number: tc.number, Message: tc.name})
			class, unknown := Classify(err)
			if class != tc.wantClass || unknown != tc.wantUnknown {
				t.Errorf("Classify(%d): got (%v, %v), want (%v, %v)", tc.number, class, unknown, tc.wantClass, tc.wantUnknown)
			}
		})
	}
}

// netErrors makes real network errors on loopback: a refused connection,
// a reset one and a read timeout.
func netErrors(t *testing.T) (refused, reset, timeout error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()

	// Reset: the server aborts with SO_LINGER 0.
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	srv, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	_ = srv.(*net.TCPConn).SetLinger(0)
	_ = srv.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, reset = c.Read(make([]byte, 1))

	// Timeout: a deadline already passed on a live connection.
	c2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	_ = c2.SetReadDeadline(time.Now().Add(-time.Second))
	_, timeout = c2.Read(make([]byte, 1))

	// Refused: nobody listens any more.
	_ = ln.Close()
	_, refused = net.DialTimeout("tcp", addr, 5*time.Second)
	return refused, reset, timeout
}

func TestClassifyNetworkErrors(t *testing.T) {
	refused, reset, timeout := netErrors(t)
	if !errors.Is(refused, syscall.ECONNREFUSED) {
		t.Fatalf("refused: got %v, want ECONNREFUSED", refused)
	}
	if !errors.Is(reset, syscall.ECONNRESET) {
		t.Fatalf("reset: got %v, want ECONNRESET", reset)
	}
	if !errors.Is(timeout, os.ErrDeadlineExceeded) {
		t.Fatalf("timeout: got %v, want a deadline error", timeout)
	}
	for _, tc := range []struct {
		name        string
		err         error
		wantClass   Class
		wantUnknown bool
	}{
		// Nothing was sent: retry, no need to check the CRM first.
		{"connection refused", refused, Transient, false},
		// The statement may have been applied: retry, but check first.
		{"connection reset", reset, Transient, true},
		{"read timeout", timeout, Transient, true},
		{"statement deadline", context.DeadlineExceeded, Transient, true},
		{"invalid connection", mysql.ErrInvalidConn, Transient, true},
		{"bad connection", driver.ErrBadConn, Transient, true},
		{"unexpected eof", io.ErrUnexpectedEOF, Transient, true},
		{"unknown error", errors.New("something else"), Transient, true},
		// The driver refused before sending: rows go one by one.
		{"packet too large", mysql.ErrPktTooLarge, RowData, false},
		// TLS that cannot work until an operator fixes it.
		{"server without tls", mysql.ErrNoTLS, Permanent, false},
		{"unknown ca", x509.UnknownAuthorityError{}, Permanent, false},
		{"wrong host", x509.HostnameError{Host: "crm.example"}, Permanent, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			class, unknown := Classify(fmt.Errorf("crm: %w", tc.err))
			if class != tc.wantClass || unknown != tc.wantUnknown {
				t.Errorf("Classify(%v): got (%v, %v), want (%v, %v)", tc.err, class, unknown, tc.wantClass, tc.wantUnknown)
			}
		})
	}
}

func TestStateFor(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want State
	}{
		{&mysql.MySQLError{Number: 1045}, StateMisconfigure},
		{&mysql.MySQLError{Number: 1146}, StateMisconfigure},
		{&mysql.MySQLError{Number: 1213}, StateUnreachable},
		{syscall.ECONNREFUSED, StateUnreachable},
		{context.DeadlineExceeded, StateUnreachable},
	} {
		if got := stateFor(tc.err); got != tc.want {
			t.Errorf("stateFor(%v): got %s, want %s", tc.err, got, tc.want)
		}
	}
}
