package faultproxy

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// dialTimeout bounds how long a client waits for the target before the
	// proxy gives up and resets it.
	dialTimeout = 5 * time.Second
	// acceptBackoff paces the accept loop after a transient accept error.
	acceptBackoff = 10 * time.Millisecond
)

// Proxy is a TCP proxy from a loopback listener to a single target address
// whose forwarding behaviour can be changed at run time. All methods are safe
// for concurrent use.
type Proxy struct {
	target string
	ln     *net.TCPListener
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	clock    Clock // set at New, never changed
	latency  atomic.Int64
	refuse   atomic.Bool
	cutAfter atomic.Int64

	mu        sync.Mutex
	conns     map[*pair]struct{}
	blackhole bool
	closed    bool

	closeOnce sync.Once
	closeErr  error
}

// New starts a proxy listening on 127.0.0.1:0 that forwards every accepted
// connection to target (e.g. "127.0.0.1:3306").
func New(target string, opts ...Option) (*Proxy, error) {
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		target: target,
		ln:     ln,
		ctx:    ctx,
		cancel: cancel,
		clock:  systemClock{},
		conns:  make(map[*pair]struct{}),
	}
	for _, o := range opts {
		o(p)
	}
	p.wg.Go(p.serve)
	return p, nil
}

// Addr returns the listening address as "127.0.0.1:port".
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Host returns the listening host, always "127.0.0.1".
func (p *Proxy) Host() string { return p.ln.Addr().(*net.TCPAddr).IP.String() }

// Port returns the listening TCP port.
func (p *Proxy) Port() int { return p.ln.Addr().(*net.TCPAddr).Port }

// ActiveConns returns the number of client connections currently held open
// by the proxy, including blackholed ones.
func (p *Proxy) ActiveConns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Close stops listening, resets every open connection and waits until every
// goroutine the proxy started has returned. It is safe to call more than once.
func (p *Proxy) Close() error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		victims := p.snapshot()
		p.mu.Unlock()

		// Cancelling unblocks handlers still dialling the target.
		p.cancel()
		p.closeErr = p.ln.Close()
		for _, pr := range victims {
			pr.close(true)
		}
		p.wg.Wait()
	})
	return p.closeErr
}

// serve accepts client connections until the listener is closed.
func (p *Proxy) serve() {
	for {
		client, err := p.ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Errors such as EMFILE are transient; backing off keeps the loop
			// from spinning while still reacting promptly to Close.
			select {
			case <-time.After(acceptBackoff):
				continue
			case <-p.ctx.Done():
				return
			}
		}
		p.wg.Go(func() { p.handle(client) })
	}
}

// handle applies the fault settings in force at accept time to one client.
func (p *Proxy) handle(client *net.TCPConn) {
	if p.refuse.Load() {
		resetConn(client)
		return
	}
	// Captured before dialling so the cut applies to the connection that
	// was accepted while it was armed.
	cut := p.cutAfter.Load()

	var server *net.TCPConn
	if !p.blackholed() {
		d := net.Dialer{Timeout: dialTimeout}
		c, err := d.DialContext(p.ctx, "tcp", p.target)
		if err != nil {
			resetConn(client)
			return
		}
		server = c.(*net.TCPConn)
	}

	pr := p.register(client, server)
	if pr == nil {
		return
	}
	if pr.server == nil {
		pr.sink()
		return
	}
	pr.pipe(pr.client, pr.server, cut)
	pr.pipe(pr.server, pr.client, 0)
}

// register records a new connection pair, or returns nil after resetting
// both sides if the proxy state changed so the pair must not exist. A nil
// server means the pair is a blackhole sink.
func (p *Proxy) register(client, server *net.TCPConn) *pair {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed:
		resetConn(client)
		resetConn(server)
		return nil
	case server == nil && !p.blackhole:
		// The blackhole was lifted while this client was being admitted;
		// lifting closes blackholed connections, so this one goes too.
		resetConn(client)
		return nil
	case server != nil && p.blackhole:
		// The blackhole started while dialling: the server must not see a
		// session it would never receive bytes for.
		resetConn(server)
		server = nil
	}
	pr := &pair{proxy: p, client: client, server: server, done: make(chan struct{})}
	pr.blackholed.Store(p.blackhole)
	p.conns[pr] = struct{}{}
	return pr
}

// forget drops a closed pair from the registry.
func (p *Proxy) forget(pr *pair) {
	p.mu.Lock()
	delete(p.conns, pr)
	p.mu.Unlock()
}

// snapshot lists the registered pairs; p.mu must be held.
func (p *Proxy) snapshot() []*pair {
	out := make([]*pair, 0, len(p.conns))
	for pr := range p.conns {
		out = append(out, pr)
	}
	return out
}

// blackholed reports whether new connections are currently blackholed.
func (p *Proxy) blackholed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.blackhole
}

// resetConn closes c with an RST instead of a FIN; c may be nil.
func resetConn(c *net.TCPConn) {
	if c == nil {
		return
	}
	// Errors are ignored: the socket is being torn down either way.
	_ = c.SetLinger(0)
	_ = c.Close()
}
