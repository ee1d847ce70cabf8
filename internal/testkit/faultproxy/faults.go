package faultproxy

import "time"

// SetLatency adds d of delay to every chunk forwarded in each direction, on
// existing and new connections alike; 0 removes the delay. Chunks are delayed
// in a pipeline, so latency does not cap throughput.
func (p *Proxy) SetLatency(d time.Duration) {
	p.latency.Store(int64(max(d, 0)))
}

// Latency returns the delay currently added to each forwarded chunk.
func (p *Proxy) Latency() time.Duration {
	return time.Duration(p.latency.Load())
}

// Blackhole with on set makes the proxy accept new connections without ever
// contacting the target or answering, and stops forwarding on existing
// connections: bytes are read and discarded in both directions. With on
// cleared, new connections are forwarded normally and every connection that
// was blackholed is reset, since its byte stream has lost data.
func (p *Proxy) Blackhole(on bool) {
	p.mu.Lock()
	p.blackhole = on
	var victims []*pair
	for pr := range p.conns {
		switch {
		case on:
			pr.blackholed.Store(true)
		case pr.blackholed.Load():
			victims = append(victims, pr)
		}
	}
	p.mu.Unlock()

	for _, pr := range victims {
		pr.close(true)
	}
}

// ResetAll abruptly closes every open connection pair, sending a TCP RST to
// both the client and the server. New connections are unaffected.
func (p *Proxy) ResetAll() {
	p.mu.Lock()
	victims := p.snapshot()
	p.mu.Unlock()

	for _, pr := range victims {
		pr.close(true)
	}
}

// SetRefuse with on set makes the proxy accept new connections and reset
// them immediately, as if the server were gone; off restores forwarding.
// Existing connections are unaffected.
func (p *Proxy) SetRefuse(on bool) {
	p.refuse.Store(on)
}

// CutAfterBytes arms a cut for every connection accepted from now on: once n
// bytes have been forwarded from client to server, both sides are reset.
// Existing connections keep the setting they were accepted with; 0 disables.
func (p *Proxy) CutAfterBytes(n int64) {
	p.cutAfter.Store(max(n, 0))
}
