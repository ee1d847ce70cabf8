package faultproxy_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"igmirror/internal/testkit/faultproxy"
)

const (
	// settle bounds every wait for something that must eventually happen.
	settle = 5 * time.Second
	// quiet is how long a blackholed connection must stay silent.
	quiet = 200 * time.Millisecond
)

// echoServer echoes every byte back and reports, per connection, how many
// bytes it received once that connection ends.
type echoServer struct {
	addr     string
	accepted atomic.Int64
	received chan int64
	bytesIn  atomic.Int64 // bytes read on every connection so far

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func startEcho(t *testing.T) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	es := &echoServer{
		addr:     ln.Addr().String(),
		received: make(chan int64, 128),
		conns:    make(map[net.Conn]struct{}),
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			es.accepted.Add(1)
			es.mu.Lock()
			es.conns[c] = struct{}{}
			es.mu.Unlock()
			wg.Go(func() { es.serve(c) })
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		es.mu.Lock()
		for c := range es.conns {
			_ = c.Close()
		}
		es.mu.Unlock()
		wg.Wait()
	})
	return es
}

func (es *echoServer) serve(c net.Conn) {
	defer func() {
		es.mu.Lock()
		delete(es.conns, c)
		es.mu.Unlock()
		_ = c.Close()
	}()
	buf := make([]byte, 32<<10)
	var total int64
	canWrite := true
	for {
		n, err := c.Read(buf)
		total += int64(n)
		es.bytesIn.Add(int64(n))
		if n > 0 && canWrite {
			// Keep reading after a failed echo so the byte count stays
			// exact when the proxy cuts the connection.
			if _, werr := c.Write(buf[:n]); werr != nil {
				canWrite = false
			}
		}
		if err != nil {
			break
		}
	}
	select {
	case es.received <- total:
	default:
	}
}

// nextReceived returns the byte count of the next server connection to end.
func (es *echoServer) nextReceived(t *testing.T) int64 {
	t.Helper()
	select {
	case n := <-es.received:
		return n
	case <-time.After(settle):
		t.Fatalf("no server connection ended within %v", settle)
		return 0
	}
}

func newProxy(t *testing.T, target string, opts ...faultproxy.Option) *faultproxy.Proxy {
	t.Helper()
	p, err := faultproxy.New(target, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return p
}

func dial(t *testing.T, p *faultproxy.Proxy) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", p.Addr(), settle)
	if err != nil {
		t.Fatalf("dial proxy: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// roundTrip sends msg and requires the identical bytes back.
func roundTrip(t *testing.T, c net.Conn, msg []byte) {
	t.Helper()
	if err := c.SetDeadline(time.Now().Add(settle)); err != nil {
		t.Fatalf("set deadline: %v", err)
	}
	defer func() { _ = c.SetDeadline(time.Time{}) }()
	// Writing concurrently keeps large payloads from deadlocking on full
	// socket buffers while nobody reads the echo.
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(msg)
		werr <- err
	}()
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read echo: %v", err)
	}
	if err := <-werr; err != nil {
		t.Fatalf("write: %v", err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("echo mismatch: got %d bytes, want %d identical bytes", len(got), len(msg))
	}
}

// expectSilence requires that nothing arrives on c for quiet.
func expectSilence(t *testing.T, c net.Conn) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(quiet)); err != nil {
		t.Fatalf("set deadline: %v", err)
	}
	defer func() { _ = c.SetReadDeadline(time.Time{}) }()
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	var ne net.Error
	if n != 0 || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read = %d bytes, %v; want 0 bytes and a timeout", n, err)
	}
}

// expectDropped requires c to end with a reset or EOF, not a timeout; any
// bytes still in flight before the drop are skipped.
func expectDropped(t *testing.T, c net.Conn) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(settle)); err != nil {
		t.Fatalf("set deadline: %v", err)
	}
	_, err := io.Copy(io.Discard, c)
	if err == nil {
		return // io.Copy reports EOF as nil
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %v", settle)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(settle)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", settle, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitConns(t *testing.T, p *faultproxy.Proxy, want int) {
	t.Helper()
	waitFor(t, "ActiveConns == "+strconv.Itoa(want), func() bool { return p.ActiveConns() == want })
}

func TestAddr(t *testing.T) {
	p := newProxy(t, startEcho(t).addr)
	if p.Host() != "127.0.0.1" {
		t.Errorf("Host = %q, want 127.0.0.1", p.Host())
	}
	if p.Port() <= 0 {
		t.Errorf("Port = %d, want > 0", p.Port())
	}
	if want := net.JoinHostPort(p.Host(), strconv.Itoa(p.Port())); p.Addr() != want {
		t.Errorf("Addr = %q, want %q", p.Addr(), want)
	}
}

func TestForwarding(t *testing.T) {
	cases := []struct {
		name string
		size int
	}{
		{"one byte", 1},
		{"small", 100},
		{"larger than one chunk", 300 << 10},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newProxy(t, startEcho(t).addr)
			c := dial(t, p)
			msg := bytes.Repeat([]byte("abcdefg"), tc.size/7+1)[:tc.size]
			roundTrip(t, c, msg)
			roundTrip(t, c, msg)
			waitConns(t, p, 1)
		})
	}
}

func TestHalfClose(t *testing.T) {
	es := startEcho(t)
	p := newProxy(t, es.addr)
	c := dial(t, p)
	msg := []byte("last words")
	if _, err := c.Write(msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatalf("close write: %v", err)
	}
	if err := c.SetReadDeadline(time.Now().Add(settle)); err != nil {
		t.Fatalf("set deadline: %v", err)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read after half-close: %v", err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("got %q, want %q", got, msg)
	}
	waitConns(t, p, 0)
}

// manualClock is a faultproxy.Clock that moves only when the test
// advances it, and reports every wait the proxy starts on it.
type manualClock struct {
	mu      sync.Mutex
	now     time.Time
	pending []manualTimer
	waits   chan time.Duration
}

type manualTimer struct {
	due time.Time
	ch  chan time.Time
}

func newManualClock() *manualClock {
	return &manualClock{now: time.Date(2025, 11, 22, 0, 0, 0, 0, time.UTC), waits: make(chan time.Duration, 64)}
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *manualClock) After(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	c.mu.Lock()
	if d <= 0 {
		ch <- c.now
	} else {
		c.pending = append(c.pending, manualTimer{due: c.now.Add(d), ch: ch})
	}
	c.mu.Unlock()
	c.waits <- d
	return ch
}

// Advance moves the clock on by d and fires every wait now due.
func (c *manualClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	keep := c.pending[:0]
	for _, tm := range c.pending {
		if c.now.Before(tm.due) {
			keep = append(keep, tm)
			continue
		}
		tm.ch <- c.now
	}
	c.pending = keep
}

// nextWait returns the length of the next wait the proxy starts.
func (c *manualClock) nextWait(t *testing.T, what string) time.Duration {
	t.Helper()
	select {
	case d := <-c.waits:
		return d
	case <-time.After(settle):
		t.Fatalf("%s: the proxy started no wait within %v", what, settle)
		return 0
	}
}

// delayedRoundTrip sends msg through a proxy whose latency is d on clk,
// and requires each leg to be held until clk has moved on by d: the proxy
// waits exactly d, the bytes stay undelivered meanwhile, and they arrive
// once the clock says so.
func delayedRoundTrip(t *testing.T, es *echoServer, c net.Conn, clk *manualClock, msg []byte, d time.Duration) {
	t.Helper()
	before := es.bytesIn.Load()
	if _, err := c.Write(msg); err != nil {
		t.Fatalf("write: %v", err)
	}

	if got := clk.nextWait(t, "client to server"); got != d {
		t.Fatalf("client to server: proxy waits %v, want the latency %v", got, d)
	}
	expectSilence(t, c) // a quiet spell in which early bytes would reach the server
	if got := es.bytesIn.Load(); got != before {
		t.Fatalf("server received %d bytes before the delay passed, want 0", got-before)
	}
	clk.Advance(d)
	waitFor(t, "the server to receive the delayed bytes", func() bool {
		return es.bytesIn.Load() == before+int64(len(msg))
	})

	if got := clk.nextWait(t, "server to client"); got != d {
		t.Fatalf("server to client: proxy waits %v, want the latency %v", got, d)
	}
	expectSilence(t, c) // the echo is held too
	clk.Advance(d)
	if err := c.SetReadDeadline(time.Now().Add(settle)); err != nil {
		t.Fatalf("set deadline: %v", err)
	}
	defer func() { _ = c.SetReadDeadline(time.Time{}) }()
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read echo after the delay: %v", err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("echo: got %q, want %q", got, msg)
	}
}

// TestLatency proves the delay on the proxy's clock, not the wall clock:
// every chunk waits the latency in force when it arrived, each way, and
// no byte is delivered before that wait ends.
func TestLatency(t *testing.T) {
	const d = 50 * time.Millisecond
	cases := []struct {
		name     string
		setFirst bool
	}{
		{"set before connecting", true},
		{"set on existing connection", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			es := startEcho(t)
			clk := newManualClock()
			p := newProxy(t, es.addr, faultproxy.WithClock(clk))
			if tc.setFirst {
				p.SetLatency(d)
			}
			c := dial(t, p)
			if tc.setFirst {
				delayedRoundTrip(t, es, c, clk, []byte("warm"), d)
			} else {
				roundTrip(t, c, []byte("warm"))
				select {
				case w := <-clk.waits:
					t.Fatalf("without latency the proxy waited %v, want no wait", w)
				default:
				}
			}
			p.SetLatency(d)
			delayedRoundTrip(t, es, c, clk, []byte("ping"), d)
			if got := p.Latency(); got != d {
				t.Errorf("Latency: got %v, want %v", got, d)
			}
		})
	}
}

func TestBlackhole(t *testing.T) {
	t.Run("new connection", func(t *testing.T) {
		es := startEcho(t)
		p := newProxy(t, es.addr)
		p.Blackhole(true)
		c := dial(t, p)
		if _, err := c.Write([]byte("hello?")); err != nil {
			t.Fatalf("write: %v", err)
		}
		expectSilence(t, c)
		waitConns(t, p, 1)
		if n := es.accepted.Load(); n != 0 {
			t.Fatalf("server saw %d connections, want 0", n)
		}
	})
	t.Run("existing connection", func(t *testing.T) {
		es := startEcho(t)
		p := newProxy(t, es.addr)
		c := dial(t, p)
		before := []byte("before")
		roundTrip(t, c, before)
		p.Blackhole(true)
		if _, err := c.Write([]byte("during")); err != nil {
			t.Fatalf("write: %v", err)
		}
		expectSilence(t, c)
		p.Blackhole(false)
		expectDropped(t, c)
		if got := es.nextReceived(t); got != int64(len(before)) {
			t.Fatalf("server received %d bytes, want %d (nothing while blackholed)", got, len(before))
		}
	})
	t.Run("lifted", func(t *testing.T) {
		p := newProxy(t, startEcho(t).addr)
		p.Blackhole(true)
		held := dial(t, p)
		waitConns(t, p, 1)
		p.Blackhole(false)
		expectDropped(t, held)
		roundTrip(t, dial(t, p), []byte("back"))
	})
}

func TestResetAll(t *testing.T) {
	es := startEcho(t)
	p := newProxy(t, es.addr)
	const n = 3
	conns := make([]net.Conn, n)
	for i := range conns {
		conns[i] = dial(t, p)
		roundTrip(t, conns[i], []byte("x"))
	}
	waitConns(t, p, n)

	p.ResetAll()

	for i, c := range conns {
		if err := c.SetReadDeadline(time.Now().Add(settle)); err != nil {
			t.Fatalf("set deadline: %v", err)
		}
		_, err := c.Read(make([]byte, 1))
		var ne net.Error
		if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
			t.Fatalf("conn %d: read error = %v, want reset or EOF", i, err)
		}
	}
	for range n {
		es.nextReceived(t)
	}
	waitConns(t, p, 0)
	roundTrip(t, dial(t, p), []byte("still serving"))
}

func TestSetRefuse(t *testing.T) {
	es := startEcho(t)
	p := newProxy(t, es.addr)
	p.SetRefuse(true)
	// The reset can beat the client's connect completion, so a failed dial
	// counts as refused too.
	c, err := net.DialTimeout("tcp", p.Addr(), settle)
	if err == nil {
		t.Cleanup(func() { _ = c.Close() })
		expectDropped(t, c)
	} else if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("dial = %v, want success or connection reset", err)
	}
	if n := es.accepted.Load(); n != 0 {
		t.Fatalf("server saw %d connections while refusing, want 0", n)
	}
	p.SetRefuse(false)
	roundTrip(t, dial(t, p), []byte("ok"))
}

func TestCutAfterBytes(t *testing.T) {
	cases := []struct {
		name    string
		cut     int64
		send    int
		wantCut bool
	}{
		{"mid stream", 10, 100, true},
		{"exact boundary", 100, 100, true},
		{"below threshold", 1000, 100, false},
		{"disabled", 0, 100, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			es := startEcho(t)
			p := newProxy(t, es.addr)
			existing := dial(t, p)
			roundTrip(t, existing, []byte("warm"))
			p.CutAfterBytes(tc.cut)

			for i := range 2 {
				c := dial(t, p)
				msg := bytes.Repeat([]byte{'q'}, tc.send)
				if !tc.wantCut {
					roundTrip(t, c, msg)
					continue
				}
				if _, err := c.Write(msg); err != nil {
					t.Fatalf("conn %d: write: %v", i, err)
				}
				expectDropped(t, c)
				if got := es.nextReceived(t); got != tc.cut {
					t.Fatalf("conn %d: server received %d bytes, want %d", i, got, tc.cut)
				}
			}
			roundTrip(t, existing, bytes.Repeat([]byte{'e'}, tc.send))
		})
	}
}

// proxyStacks returns the stacks of goroutines running faultproxy code.
func proxyStacks() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "igmirror/internal/testkit/faultproxy.") {
			out = append(out, g)
		}
	}
	return out
}

func TestCloseLeaksNoGoroutines(t *testing.T) {
	es := startEcho(t)
	baseline := runtime.NumGoroutine()

	p, err := faultproxy.New(es.addr)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	plain := dial(t, p)
	roundTrip(t, plain, []byte("plain"))

	p.CutAfterBytes(1 << 20)
	roundTrip(t, dial(t, p), []byte("armed"))
	p.CutAfterBytes(0)

	slow := dial(t, p)
	roundTrip(t, slow, []byte("slow"))
	p.SetLatency(time.Hour)
	if _, err := slow.Write([]byte("stuck in the delay queue")); err != nil {
		t.Fatalf("write: %v", err)
	}

	p.Blackhole(true)
	dial(t, p)
	waitConns(t, p, 4)

	closed := make(chan error, 1)
	go func() { closed <- p.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(settle):
		t.Fatalf("Close did not return within %v", settle)
	}
	if left := proxyStacks(); len(left) > 0 {
		t.Fatalf("%d proxy goroutines still running after Close:\n%s", len(left), strings.Join(left, "\n\n"))
	}
	waitFor(t, "goroutine count back to baseline "+strconv.Itoa(baseline), func() bool {
		return runtime.NumGoroutine() <= baseline
	})
	if n := p.ActiveConns(); n != 0 {
		t.Fatalf("ActiveConns after Close = %d, want 0", n)
	}
}
