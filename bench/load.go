package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// loadSpec describes one run of the load generator.
type loadSpec struct {
	url string // the webhook URL
	// urls, when set, are several instances' webhook URLs: client i posts
	// to urls[i % len(urls)] (round-robin over the clients), and url is
	// not used.
	urls        []string
	secret      []byte // INSTAGRAM_APP_SECRET
	clients     int    // concurrent keep-alive connections
	perDelivery int    // messages per delivery
	warmup      time.Duration
	duration    time.Duration // measured window after the warm-up; 0 = until maxMessages
	// rate, when set, is deliveries per second sent on a fixed schedule
	// (open loop) whatever the answers' speed; 0 is a closed loop where
	// each client sends its next delivery as soon as the last is answered.
	rate float64
	// maxMessages stops the run once this many messages were answered 200.
	maxMessages int64
	// answered, when set, counts messages answered 200, for observers.
	answered *atomic.Int64
}

// loadResult is what the measured window saw.
type loadResult struct {
	requests int64 // answered 200
	messages int64 // in deliveries answered 200
	failures int64 // transport errors and non-200 answers
	firstErr string
	elapsed  time.Duration
	lat      []time.Duration // sorted; for an open loop, from the scheduled send time
	behind   bool            // open loop: the generator could not keep the schedule

	// Filled by measureCPU: how busy the machine was (0..1 of all CPUs)
	// and the server's CPU time, over cpuWall.
	machineBusy float64
	procTicks   int64
	cpuWall     time.Duration

	// Also by measureCPU, from the service's /metrics: its SQLite writer's
	// group commits, the write requests folded into them, and the time
	// the writer spent in transactions (all zero for a baseline server).
	writer writerCounters
}

// procCores is how many CPUs the server process kept busy on average.
func (r loadResult) procCores() float64 {
	if r.cpuWall <= 0 {
		return 0
	}
	return float64(r.procTicks) / 100 / r.cpuWall.Seconds()
}

func (r loadResult) perSec(n int64) float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(n) / r.elapsed.Seconds()
}

// pct returns the q-quantile (0..1) of the latencies.
func (r loadResult) pct(q float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	i := int(q*float64(len(r.lat))+0.5) - 1
	return r.lat[min(max(i, 0), len(r.lat)-1)]
}

func (r loadResult) String() string {
	s := fmt.Sprintf("%.0f req/s, %.0f msg/s, p50 %s, p99 %s, %d failures", r.perSec(r.requests), r.perSec(r.messages),
		fmtDur(r.pct(0.50)), fmtDur(r.pct(0.99)), r.failures)
	if r.cpuWall > 0 {
		s += fmt.Sprintf("; machine %.0f%% busy, server %.2f cores", 100*r.machineBusy, r.procCores())
	}
	if w := r.writer; w.commits > 0 && r.cpuWall > 0 {
		s += fmt.Sprintf("; SQLite writer %.0f%% busy, %.1f requests/commit", 100*w.busySecs/r.cpuWall.Seconds(), w.requests/w.commits)
	}
	if r.firstErr != "" {
		s += " (first: " + r.firstErr + ")"
	}
	return s
}

// newClient is the load generator's HTTP client: keep-alive, one
// connection per concurrent client, no compression.
func newClient(conns int) *http.Client {
	return &http.Client{
		Timeout: 60 * time.Second,
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			MaxConnsPerHost:     conns,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
	}
}

// workerStats is one load goroutine's share, merged at the end.
type workerStats struct {
	requests, messages, failures int64
	firstErr                     string
	lat                          []time.Duration
}

// runLoad drives the target as spec says and returns what the measured
// window saw. It stops early, with what it has, when ctx ends.
func runLoad(ctx context.Context, spec loadSpec) loadResult {
	client := newClient(spec.clients)
	defer client.CloseIdleConnections()
	spec.perDelivery = max(spec.perDelivery, 1)

	var (
		recording atomic.Bool
		// For an open loop, a request belongs to the window when it was
		// scheduled inside it, however late its answer.
		winFrom, winTo atomic.Int64
		stop           atomic.Bool
		answered       atomic.Int64
		wg             sync.WaitGroup
	)
	stats := make([]workerStats, spec.clients)
	var sched chan time.Time
	if spec.rate > 0 {
		sched = make(chan time.Time, 1<<16)
	}
	do := func(url string, p *payloads, w *workerStats, scheduled time.Time) {
		body, sig := p.delivery(spec.perDelivery)
		if scheduled.IsZero() {
			scheduled = time.Now()
		}
		status, err := post(ctx, client, url, body, sig)
		d := time.Since(scheduled)
		if ctx.Err() != nil {
			return
		}
		ok := err == nil && status == http.StatusOK
		if ok {
			n := answered.Add(int64(spec.perDelivery))
			if spec.answered != nil {
				spec.answered.Add(int64(spec.perDelivery))
			}
			if spec.maxMessages > 0 && n >= spec.maxMessages {
				stop.Store(true)
			}
		}
		in := recording.Load()
		if sched != nil {
			ns := scheduled.UnixNano()
			in = winFrom.Load() != 0 && ns >= winFrom.Load() && ns < winTo.Load()
		}
		if !in {
			return
		}
		if !ok {
			w.failures++
			if w.firstErr == "" {
				if err != nil {
					w.firstErr = err.Error()
				} else {
					w.firstErr = fmt.Sprintf("status %d", status)
				}
			}
			return
		}
		w.requests++
		w.messages += int64(spec.perDelivery)
		w.lat = append(w.lat, d)
	}

	for i := range spec.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := newPayloads(spec.secret, uint64(i)+1)
			w := &stats[i]
			url := spec.clientURL(i)
			if sched == nil {
				for !stop.Load() && ctx.Err() == nil {
					do(url, p, w, time.Time{})
				}
				return
			}
			for t := range sched {
				do(url, p, w, t)
			}
		}()
	}

	var behind atomic.Bool
	schedDone := make(chan struct{})
	if sched != nil {
		go func() {
			defer close(schedDone)
			if schedule(ctx, sched, spec, time.Now(), &stop) {
				behind.Store(true)
			}
		}()
	} else {
		close(schedDone)
	}
	if spec.warmup > 0 {
		wait(ctx, spec.warmup, &stop)
	}
	winStart := time.Now()
	winTo.Store(math.MaxInt64)
	winFrom.Store(winStart.UnixNano())
	recording.Store(true)
	if spec.duration > 0 {
		wait(ctx, spec.duration, &stop)
	} else {
		for !stop.Load() && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
	}
	recording.Store(false)
	elapsed := time.Since(winStart)
	winTo.Store(winStart.Add(elapsed).UnixNano())
	stop.Store(true)
	<-schedDone
	if sched != nil {
		close(sched)
	}
	wg.Wait()

	res := loadResult{elapsed: elapsed, behind: behind.Load()}
	for i := range stats {
		s := &stats[i]
		res.requests += s.requests
		res.messages += s.messages
		res.failures += s.failures
		if res.firstErr == "" {
			res.firstErr = s.firstErr
		}
		res.lat = append(res.lat, s.lat...)
	}
	slices.Sort(res.lat)
	return res
}

// clientURL is the URL client i posts to: round-robin over urls when
// there are several instances, url otherwise.
func (s loadSpec) clientURL(i int) string {
	if len(s.urls) > 0 {
		return s.urls[i%len(s.urls)]
	}
	return s.url
}

// wait sleeps for d, or less when ctx ends or stop is set.
func wait(ctx context.Context, d time.Duration, stop *atomic.Bool) {
	end := time.Now().Add(d)
	for time.Now().Before(end) && ctx.Err() == nil && !stop.Load() {
		time.Sleep(min(10*time.Millisecond, time.Until(end)))
	}
}

// schedule feeds sched with the send times of a fixed-rate run covering
// the warm-up (already elapsed since start) and the window. It reports
// whether it fell behind: sends waited for a free client.
func schedule(ctx context.Context, sched chan<- time.Time, spec loadSpec, start time.Time, stop *atomic.Bool) bool {
	interval := time.Duration(float64(time.Second) / spec.rate)
	end := start.Add(spec.warmup + spec.duration)
	behind := false
	next := start
	for ctx.Err() == nil && !stop.Load() {
		now := time.Now()
		if !now.Before(end) {
			break
		}
		for ; !next.After(now) && next.Before(end); next = next.Add(interval) {
			select {
			case sched <- next:
			default:
				behind = true
				select {
				case sched <- next:
				case <-ctx.Done():
					return behind
				}
			}
		}
		if len(sched) > spec.clients {
			behind = true
		}
		time.Sleep(200 * time.Microsecond)
	}
	return behind
}

// post sends one signed delivery and reads the whole answer, so that the
// connection is reused.
func post(ctx context.Context, client *http.Client, url string, body []byte, sig string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Hub-Signature-256", sig)
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode, err
}
