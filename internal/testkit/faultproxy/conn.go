package faultproxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// chunkSize is the largest read forwarded as one chunk.
	chunkSize = 32 << 10
	// queueLen bounds how many chunks may be in flight per direction, which
	// is what lets latency pipeline without unbounded buffering.
	queueLen = 64
)

// chunk is one read from a source socket, due for delivery at due. A non-nil
// err is the read error that ended the stream, delivered after data.
type chunk struct {
	data []byte
	due  time.Time
	err  error
}

// pair is one proxied client connection and, unless it was blackholed on
// arrival, its server connection.
type pair struct {
	proxy  *Proxy
	client *net.TCPConn
	server *net.TCPConn // nil for a connection blackholed on arrival

	blackholed atomic.Bool
	halfDone   atomic.Int32
	done       chan struct{}
	once       sync.Once
}

// close tears the pair down once; reset sends RST rather than FIN.
func (pr *pair) close(reset bool) {
	pr.once.Do(func() {
		close(pr.done)
		if reset {
			resetConn(pr.client)
			resetConn(pr.server)
		} else {
			_ = pr.client.Close()
			if pr.server != nil {
				_ = pr.server.Close()
			}
		}
		pr.proxy.forget(pr)
	})
}

// sink reads and discards everything the client sends until it goes away.
func (pr *pair) sink() {
	buf := make([]byte, chunkSize)
	for {
		if _, err := pr.client.Read(buf); err != nil {
			pr.close(!errors.Is(err, io.EOF))
			return
		}
	}
}

// pipe starts forwarding src to dst. A positive cut resets the pair once
// that many bytes have been written to dst.
func (pr *pair) pipe(src, dst *net.TCPConn, cut int64) {
	ch := make(chan chunk, queueLen)
	pr.proxy.wg.Go(func() { pr.read(src, ch) })
	pr.proxy.wg.Go(func() { pr.write(dst, ch, cut) })
}

// read stamps each chunk with its delivery time as soon as it arrives so the
// configured latency is added once per chunk rather than accumulated.
func (pr *pair) read(src *net.TCPConn, out chan<- chunk) {
	buf := make([]byte, chunkSize)
	for {
		n, err := src.Read(buf)
		if n == 0 && err == nil {
			continue
		}
		c := chunk{due: pr.proxy.clock.Now().Add(pr.proxy.Latency()), err: err}
		if n > 0 {
			c.data = bytes.Clone(buf[:n])
		}
		select {
		case out <- c:
		case <-pr.done:
			return
		}
		if err != nil {
			return
		}
	}
}

// write delivers chunks to dst in order once each is due.
func (pr *pair) write(dst *net.TCPConn, in <-chan chunk, cut int64) {
	var sent int64
	for {
		var c chunk
		select {
		case c = <-in:
		case <-pr.done:
			return
		}
		if !pr.wait(c.due) {
			return
		}
		if len(c.data) > 0 && !pr.blackholed.Load() {
			data := c.data
			cutNow := cut > 0 && sent+int64(len(data)) >= cut
			if cutNow {
				data = data[:cut-sent]
			}
			if _, err := dst.Write(data); err != nil {
				pr.close(true)
				return
			}
			sent += int64(len(data))
			if cutNow {
				pr.close(true)
				return
			}
		}
		if c.err != nil {
			pr.finish(dst, c.err)
			return
		}
	}
}

// finish ends one direction after its source stopped with err.
func (pr *pair) finish(dst *net.TCPConn, err error) {
	if !errors.Is(err, io.EOF) {
		// Propagate an abort as an abort so neither peer mistakes it for
		// an orderly shutdown.
		pr.close(true)
		return
	}
	if !pr.blackholed.Load() {
		// Half-close so the peer can still answer a client that has
		// finished sending.
		_ = dst.CloseWrite()
	}
	if pr.halfDone.Add(1) == 2 {
		pr.close(false)
	}
}

// wait sleeps until due and reports false if the pair closed meanwhile.
func (pr *pair) wait(due time.Time) bool {
	d := due.Sub(pr.proxy.clock.Now())
	if d <= 0 {
		return true
	}
	select {
	case <-pr.proxy.clock.After(d):
		return true
	case <-pr.done:
		return false
	}
}
