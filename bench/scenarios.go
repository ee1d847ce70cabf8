package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"igmirror/config"
	"igmirror/internal/testkit/faultproxy"
)

// serviceEnv is the service's environment for one instance: loopback
// listeners on kernel-picked ports, its own SQLite file, the default settings
// otherwise (access log at info, JSON), plus extra.
func (b *bench) serviceEnv(name string, extra map[string]string) map[string]string {
	env := map[string]string{
		// Port 0: the kernel picks free ports (startProc reads them from the
		// "listening" line), so nothing can take them before the bind.
		"HTTP_ADDR":              "127.0.0.1:0",
		"ADMIN_ADDR":             "127.0.0.1:0",
		"ADMIN_TOKEN":            adminToken,
		"SQLITE_PATH":            filepath.Join(b.dir, name+".db"),
		"INSTAGRAM_APP_SECRET":   appSecret,
		"INSTAGRAM_VERIFY_TOKEN": "bench-verify-token",
		"LOG_FORMAT":             "json",
		"LOG_LEVEL":              "info",
		// Shutdown between figures need not wait for a stalled CRM.
		"MIRROR_DRAIN_TIMEOUT": "1s",
	}
	maps.Copy(env, extra)
	return env
}

func (b *bench) startService(ctx context.Context, name string, extra map[string]string) (*proc, error) {
	env := b.serviceEnv(name, extra)
	pprofAddr := ""
	if b.opt.pprofDir != "" {
		pprofAddr = freeAddr()
		env["IGMIRROR_PPROF_ADDR"] = pprofAddr
	}
	p, err := startProc(ctx, name, b.bin, nil, env, b.dir)
	if err == nil {
		p.pprofAddr = pprofAddr
	}
	return p, err
}

// startRole starts this program again as a baseline server.
func (b *bench) startRole(ctx context.Context, role, name string, extra map[string]string) (*proc, error) {
	env := map[string]string{
		envRole:                role,
		"SQLITE_PATH":          filepath.Join(b.dir, name+".db"),
		"INSTAGRAM_APP_SECRET": appSecret,
	}
	maps.Copy(env, extra)
	return startProc(ctx, name, b.self, nil, env, b.dir)
}

// freeAddr is a loopback address that was free a moment ago, for the
// pprof listener (whose address the service does not log). Another
// program may take it before the bind; the profile is then lost, not the
// run.
func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "127.0.0.1:0"
	}
	defer ln.Close()
	return ln.Addr().String()
}

// spec is the load of one measured window: perDelivery messages per
// delivery from the configured clients.
func (b *bench) spec(perDelivery int) loadSpec {
	return loadSpec{
		secret:      []byte(appSecret),
		clients:     b.opt.clients,
		perDelivery: perDelivery,
		warmup:      500 * time.Millisecond,
		duration:    b.opt.duration / time.Duration(b.opt.rounds),
	}
}

// interleave measures each process in turn, round after round, so that
// drift (other load, the growing table, the page cache) touches all of
// them alike; each one's windows are merged.
func (b *bench) interleave(ctx context.Context, ps []*proc, spec loadSpec) ([]loadResult, error) {
	ts := make([]target, len(ps))
	for i, p := range ps {
		ts[i] = target{name: p.name, ps: []*proc{p}, spec: spec}
	}
	return b.interleaveTargets(ctx, ts)
}

// target is one configuration of a figure: one process, or several
// instances the load's clients are spread over round-robin, with the load
// it gets.
type target struct {
	name string
	ps   []*proc
	spec loadSpec
}

// interleaveTargets measures each target in turn, round after round, like
// interleave, each with its own load.
func (b *bench) interleaveTargets(ctx context.Context, ts []target) ([]loadResult, error) {
	res := make([]loadResult, len(ts))
	for r := range b.opt.rounds {
		for i, t := range ts {
			s := t.spec
			s.url, s.urls = "", nil
			for _, p := range t.ps {
				s.urls = append(s.urls, p.webhookURL())
			}
			got := measureCPU(ctx, t.ps, s)
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			b.logf("  %s, round %d: %s", t.name, r+1, got)
			if got.requests == 0 {
				return nil, fmt.Errorf("%s answered no delivery with 200 (%s); log:\n%s", t.name, got.firstErr, tail(t.ps[0].logPath, 10))
			}
			res[i] = merge(res[i], got)
		}
	}
	return res, nil
}

// measureCPU runs the load and notes how busy the machine and the server
// processes were meanwhile (their CPU time and writer counters summed).
func measureCPU(ctx context.Context, ps []*proc, s loadSpec) loadResult {
	var w0 writerCounters
	var p0 int64
	for _, p := range ps {
		w0 = w0.plus(p.writerCounters(ctx))
		p0 += p.cpuTicks()
	}
	busy0, total0 := machineTicks()
	t0 := time.Now()
	r := runLoad(ctx, s)
	busy1, total1 := machineTicks()
	r.cpuWall += time.Since(t0)
	var w1 writerCounters
	var p1 int64
	for _, p := range ps {
		w1 = w1.plus(p.writerCounters(ctx))
		p1 += p.cpuTicks()
	}
	r.procTicks += p1 - p0
	r.writer = w1.minus(w0)
	if total1 > total0 {
		r.machineBusy = float64(busy1-busy0) / float64(total1-total0)
	}
	return r
}

func merge(a, b loadResult) loadResult {
	if a.cpuWall+b.cpuWall > 0 {
		a.machineBusy = (a.machineBusy*a.cpuWall.Seconds() + b.machineBusy*b.cpuWall.Seconds()) / (a.cpuWall + b.cpuWall).Seconds()
	}
	a.cpuWall += b.cpuWall
	a.procTicks += b.procTicks
	a.writer = a.writer.plus(b.writer)
	a.requests += b.requests
	a.messages += b.messages
	a.failures += b.failures
	a.elapsed += b.elapsed
	a.behind = a.behind || b.behind
	if a.firstErr == "" {
		a.firstErr = b.firstErr
	}
	a.lat = append(a.lat, b.lat...)
	slices.Sort(a.lat)
	return a
}

func failNote(r loadResult) string {
	if r.failures == 0 {
		return ""
	}
	return fmt.Sprintf(" (%d failed: %s)", r.failures, r.firstErr)
}

// single: single-message deliveries against the Echo "hello" baseline,
// and SYNCHRONOUS=FULL against NORMAL.
func (b *bench) single(ctx context.Context) error {
	hello, err := b.startRole(ctx, roleHello, "hello", nil)
	if err != nil {
		return err
	}
	defer hello.stop()
	normal, err := b.startService(ctx, "normal", map[string]string{"SQLITE_SYNCHRONOUS": "NORMAL"})
	if err != nil {
		return err
	}
	defer normal.stop()
	ps := []*proc{hello, normal}
	if b.opt.only["full"] {
		full, err := b.startService(ctx, "full", map[string]string{"SQLITE_SYNCHRONOUS": "FULL"})
		if err != nil {
			return err
		}
		defer full.stop()
		ps = append(ps, full)
	}
	res, err := b.interleave(ctx, ps, b.spec(1))
	if err != nil {
		return err
	}
	h, n := res[0], res[1]
	nRate := n.perSec(n.requests)
	if b.opt.only["single"] {
		ratio := nRate / h.perSec(h.requests)
		b.add(row{
			figure:   fmt.Sprintf("single-message deliveries, %d keep-alive clients", b.opt.clients),
			value:    rateLat(n, false) + failNote(n),
			baseline: "Echo \"hello\" server: " + rateLat(h, false),
			ratio:    fmtRatio(ratio),
			target:   "≥ 0.40× Echo \"hello\", p99 ≤ 10 ms",
			verdict:  verdict(n.pct(0.99) <= 10*time.Millisecond && ratio >= 0.40),
		})
	}
	if b.opt.only["full"] {
		f := res[2]
		ratio := f.perSec(f.requests) / nRate
		b.add(row{
			figure:   "the same with SQLITE_SYNCHRONOUS=FULL",
			value:    rateLat(f, false) + failNote(f),
			baseline: "NORMAL: " + rateLat(n, false),
			ratio:    fmtRatio(ratio),
			target:   "≥ 0.70×",
			verdict:  verdict(ratio >= 0.70),
		})
	}
	if b.opt.pprofDir != "" {
		return b.profile(ctx, normal, "single", b.spec(1))
	}
	return nil
}

// batch: 100-message deliveries against the Echo "hello" server's
// single-message requests/s, measured in turn in this scenario, and
// SQLite's own speed at 100-row inserts.
func (b *bench) batch(ctx context.Context) error {
	hello, err := b.startRole(ctx, roleHello, "hello", nil)
	if err != nil {
		return err
	}
	defer hello.stop()
	svc, err := b.startService(ctx, "batch", nil)
	if err != nil {
		return err
	}
	defer svc.stop()
	res, err := b.interleaveTargets(ctx, []target{
		{name: hello.name, ps: []*proc{hello}, spec: b.spec(1)},
		{name: svc.name, ps: []*proc{svc}, spec: b.spec(100)},
	})
	if err != nil {
		return err
	}
	h, r := res[0], res[1]
	helloRate := h.perSec(h.requests)
	raw, err := rawBatchInserts(ctx, filepath.Join(b.dir, "raw.db"), min(b.opt.duration, 3*time.Second), 100)
	if err != nil {
		return fmt.Errorf("raw sqlite baseline: %w", err)
	}
	// The writer's group commits hold up to 2,000 messages (20 deliveries):
	// SQLite's own speed at that size bounds the service's.
	rawGroup, err := rawBatchInserts(ctx, filepath.Join(b.dir, "raw-group.db"), min(b.opt.duration, 3*time.Second), 2000)
	if err != nil {
		return fmt.Errorf("raw sqlite baseline: %w", err)
	}
	rate := r.perSec(r.messages)
	b.add(row{
		figure: fmt.Sprintf("100-message deliveries, %d clients: messages/s", b.opt.clients),
		value: fmt.Sprintf("%s msg/s (%s deliveries/s, p50 %s, p99 %s)%s", fmtNum(rate), fmtNum(r.perSec(r.requests)),
			fmtDur(r.pct(0.5)), fmtDur(r.pct(0.99)), failNote(r)),
		baseline: fmt.Sprintf("Echo \"hello\" server, single-message deliveries: %s req/s; (for reference) SQLite alone, 100-row INSERTs into the messages table: one per commit %s rows/s, 20 per commit (the group size here) %s rows/s",
			fmtNum(helloRate), fmtNum(raw), fmtNum(rawGroup)),
		ratio:   fmtRatio(rate / helloRate),
		target:  "msg/s ≥ 1.6× Echo \"hello\" req/s",
		verdict: verdict(rate >= 1.6*helloRate && r.failures == 0),
	})
	if b.opt.pprofDir != "" {
		return b.profile(ctx, svc, "batch", b.spec(100))
	}
	return nil
}

func (b *bench) needCRM() error {
	if b.crm == nil {
		return fmt.Errorf("needs MySQL (-mysql): %v", b.crmErr)
	}
	return nil
}

// waitConnected waits until the service's mirror reports the CRM reachable.
func waitConnected(ctx context.Context, p *proc) error {
	err := waitFor(ctx, 20*time.Second, func() (bool, error) {
		s, err := p.stats(ctx)
		return err == nil && s.CRMConnected, err
	})
	if err != nil {
		return fmt.Errorf("%s: CRM never connected: %w; log:\n%s", p.name, err, tail(p.logPath, 10))
	}
	return nil
}

// stall: request latency while the CRM is blackholed, or answers 500 ms
// late, against the same service with the mirror off.
func (b *bench) stall(ctx context.Context) error {
	if err := b.needCRM(); err != nil {
		return err
	}
	host, port := b.crm.hostPort()
	target := net.JoinHostPort(host, strconv.Itoa(port))
	hole, err := faultproxy.New(target)
	if err != nil {
		return err
	}
	defer hole.Close()
	slow, err := faultproxy.New(target)
	if err != nil {
		return err
	}
	defer slow.Close()

	off, err := b.startService(ctx, "stall-off", nil)
	if err != nil {
		return err
	}
	defer off.stop()
	bh, err := b.startService(ctx, "stall-blackhole", b.crm.env(hole.Host(), hole.Port()))
	if err != nil {
		return err
	}
	defer bh.stop()
	sl, err := b.startService(ctx, "stall-latency", b.crm.env(slow.Host(), slow.Port()))
	if err != nil {
		return err
	}
	defer sl.stop()
	for _, p := range []*proc{bh, sl} {
		if err := waitConnected(ctx, p); err != nil {
			return err
		}
	}
	// The CRM stalls while the service runs, as it would in production.
	hole.Blackhole(true)
	slow.SetLatency(500 * time.Millisecond)

	res, err := b.interleave(ctx, []*proc{off, bh, sl}, b.spec(1))
	if err != nil {
		return err
	}
	o := res[0]
	for i, what := range []string{"blackholed", "+500 ms latency"} {
		r := res[i+1]
		st, _ := []*proc{bh, sl}[i].stats(ctx)
		ratio := float64(r.pct(0.99)) / float64(o.pct(0.99))
		b.add(row{
			figure: "p99 with the CRM " + what + " ÷ p99 with the mirror off",
			value: fmt.Sprintf("p99 %s, p50 %s, %s/s; %s events dropped, %s mirrored%s", fmtDur(r.pct(0.99)), fmtDur(r.pct(0.5)),
				fmtNum(r.perSec(r.requests)), fmtNum(float64(st.Dropped)), fmtNum(float64(st.Mirrored)), failNote(r)),
			baseline: fmt.Sprintf("mirror off: p99 %s, p50 %s, %s/s", fmtDur(o.pct(0.99)), fmtDur(o.pct(0.5)), fmtNum(o.perSec(o.requests))),
			ratio:    fmtRatio(ratio),
			target:   "≤ 1.10",
			verdict:  verdict(ratio <= 1.10),
		})
	}

	// The design the queue replaces: the request waits for the CRM.
	for _, p := range []*proc{off, bh} {
		_ = p.stop()
	}
	dcfg := b.crm.cfg.Clone()
	dcfg.Addr, dcfg.DBName = slow.Addr(), b.crm.name
	dual, err := b.startRole(ctx, roleDualWrite, "dualwrite", map[string]string{envCRMDSN: dcfg.FormatDSN()})
	if err != nil {
		return err
	}
	defer dual.stop()
	spec := b.spec(1)
	spec.url = dual.webhookURL()
	spec.duration = max(b.opt.duration/time.Duration(b.opt.rounds), 3*time.Second)
	d := runLoad(ctx, spec)
	if err := ctx.Err(); err != nil {
		return err
	}
	b.logf("  dualwrite: %s", d)
	s := res[2]
	b.add(row{
		figure:   "(baseline) synchronous dual write, CRM +500 ms latency",
		value:    fmt.Sprintf("igmirror, CRM +500 ms: p99 %s, %s/s", fmtDur(s.pct(0.99)), fmtNum(s.perSec(s.requests))),
		baseline: fmt.Sprintf("store, then INSERT into the CRM before answering: p99 %s, %s/s", fmtDur(d.pct(0.99)), fmtNum(d.perSec(d.requests))),
		ratio:    fmtRatio(float64(s.pct(0.99)) / float64(d.pct(0.99))),
		target:   "–",
	})
	return nil
}

// memory: resident memory while a blackholed CRM holds every message back,
// against one goroutine per message.
func (b *bench) memory(ctx context.Context) error {
	if err := b.needCRM(); err != nil {
		return err
	}
	host, port := b.crm.hostPort()
	hole, err := faultproxy.New(net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return err
	}
	defer hole.Close()

	svc, err := b.startService(ctx, "memory", b.crm.env(hole.Host(), hole.Port()))
	if err != nil {
		return err
	}
	if err := waitConnected(ctx, svc); err != nil {
		_ = svc.stop()
		return err
	}
	hole.Blackhole(true)
	ours, err := b.driveAndSample(ctx, svc, 0)
	if err == nil && b.opt.pprofDir != "" && svc.pprofAddr != "" {
		path := filepath.Join(b.opt.pprofDir, "memory.heap.pprof")
		if err = fetch(ctx, "http://"+svc.pprofAddr+"/debug/pprof/heap?gc=1", path); err == nil {
			b.logf("  heap profile after the last message: %s", path)
		}
	}
	_ = svc.stop()
	if err != nil {
		return err
	}

	dcfg := b.crm.cfg.Clone()
	dcfg.Addr, dcfg.DBName = hole.Addr(), b.crm.name
	naive, err := b.startRole(ctx, roleGoroutine, "goroutine", map[string]string{envCRMDSN: dcfg.FormatDSN()})
	if err != nil {
		return err
	}
	defer naive.stop()
	const naiveCap = 2 << 30 // stop the baseline before it hurts the machine
	theirs, err := b.driveAndSample(ctx, naive, naiveCap)
	if err != nil {
		return err
	}

	last := ours.samples[len(ours.samples)-1]
	growth := ours.secondHalfGrowth()
	flat := growth <= 0.10
	base := fmt.Sprintf("goroutine per message: %s after %s messages", fmtMiB(theirs.samples[len(theirs.samples)-1].rss),
		fmtNum(float64(theirs.samples[len(theirs.samples)-1].messages)))
	if theirs.capped {
		base += " (stopped at the 2 GiB cap)"
	}
	b.add(row{
		figure:   fmt.Sprintf("resident memory after %s messages, CRM blackholed", fmtNum(float64(b.opt.messages))),
		value:    fmt.Sprintf("%s; %+.0f%% over the second half (%s)", fmtMiB(last.rss), 100*growth, ours.series()),
		baseline: base + " (" + theirs.series() + ")",
		ratio:    fmtRatio(float64(last.rss) / float64(theirs.samples[len(theirs.samples)-1].rss)),
		target:   "≤ 100 MiB, flat",
		verdict:  verdict(last.rss <= 100<<20 && flat),
	})
	return nil
}

// rssSample is one reading taken while a run is driven: the messages
// answered so far and the measured size in bytes (resident memory, or a
// database's files).
type rssSample struct {
	messages int64
	rss      int64
}

type rssRun struct {
	samples []rssSample
	capped  bool
}

// series is the samples in MiB, for the table.
func (r rssRun) series() string {
	var parts []string
	for _, s := range r.samples {
		parts = append(parts, strconv.FormatInt(s.rss>>20, 10))
	}
	return "MiB every tenth: " + strings.Join(parts, " ")
}

// secondHalfGrowth is how much the last sample exceeds the middle one,
// as a fraction of the middle one: the "flat" check.
func (r rssRun) secondHalfGrowth() float64 {
	last := r.samples[len(r.samples)-1]
	mid := r.samples[len(r.samples)/2]
	if mid.rss == 0 {
		return math.Inf(1)
	}
	return float64(last.rss-mid.rss) / float64(mid.rss)
}

// driveAndSample sends the memory figure's messages in 100-message
// deliveries, reading the process's VmRSS at every tenth of the way. With
// limit set, it stops once the process is that large.
func (b *bench) driveAndSample(ctx context.Context, p *proc, limit int64) (rssRun, error) {
	return b.driveSampled(ctx, p, b.opt.messages, 100, p.rssBytes, limit)
}

// driveSampled sends total messages in deliveries of perDelivery, at full
// speed from the configured clients, calling sample at the start and at
// every tenth of the way. With limit set, it stops once a sample is that
// large.
func (b *bench) driveSampled(ctx context.Context, p *proc, total int64, perDelivery int, sample func() (int64, error), limit int64) (rssRun, error) {
	var run rssRun
	v0, err := sample()
	if err != nil {
		return run, err
	}
	run.samples = append(run.samples, rssSample{0, v0})
	var answered atomic.Int64
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	spec := b.spec(perDelivery)
	spec.url = p.webhookURL()
	spec.warmup, spec.duration = 0, 0
	spec.maxMessages = total
	spec.answered = &answered
	step := max(total/10, 1)
	done := make(chan loadResult, 1)
	go func() { done <- runLoad(lctx, spec) }()
	next := step
	var res loadResult
	for finished := false; !finished; {
		select {
		case res = <-done:
			finished = true
		case <-time.After(5 * time.Millisecond):
		}
		if n := answered.Load(); n >= next || finished {
			v, err := sample()
			if err != nil {
				return run, fmt.Errorf("%s: %w", p.name, err)
			}
			run.samples = append(run.samples, rssSample{n, v})
			next = (n/step + 1) * step
			if limit > 0 && v >= limit && !finished {
				run.capped = true
				cancel()
			}
		}
	}
	if ctx.Err() != nil {
		return run, ctx.Err()
	}
	b.logf("  %s: %d messages in %s (%s); %s", p.name, answered.Load(), res.elapsed.Round(time.Millisecond), res, run.series())
	if answered.Load() < total && !run.capped {
		return run, fmt.Errorf("%s: only %d of %d messages answered 200 (%s)", p.name, answered.Load(), total, res.firstErr)
	}
	return run, nil
}

// mirrorThroughput: how fast a backlog of pending messages reaches
// MariaDB, against single-row INSERTs.
func (b *bench) mirrorThroughput(ctx context.Context) error {
	if err := b.needCRM(); err != nil {
		return err
	}
	n := b.opt.mirrorRows
	path := filepath.Join(b.dir, "mirror.db")
	b.logf("  preloading %d pending messages", n)
	if err := preloadPending(ctx, path, n); err != nil {
		return err
	}
	if err := b.crm.truncate(ctx); err != nil {
		return err
	}
	host, port := b.crm.hostPort()
	env := b.crm.env(host, port)
	env["SQLITE_PATH"] = path
	// Room for the whole backlog, so that the start-up pass hands it over
	// at once and the figure is the mirror's own speed.
	env["MIRROR_QUEUE_SIZE"] = strconv.Itoa(n)
	svc, err := b.startService(ctx, "mirror", env)
	if err != nil {
		return err
	}
	defer svc.stop()
	var profErr chan error
	if b.opt.pprofDir != "" && svc.pprofAddr != "" {
		// The drain's first seconds, while it is at full speed.
		profErr = make(chan error, 1)
		go func() {
			profErr <- fetch(ctx, "http://"+svc.pprofAddr+"/debug/pprof/profile?seconds=2", filepath.Join(b.opt.pprofDir, "mirror.cpu.pprof"))
		}()
	}
	start := time.Now()
	var took time.Duration
	err = waitFor(ctx, time.Duration(n/1000)*time.Second+60*time.Second, func() (bool, error) {
		s, err := svc.stats(ctx)
		if err != nil {
			return false, err
		}
		if s.Mirrored+s.Failed >= uint64(n) {
			took = time.Since(start)
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("mirror backlog: %w; log:\n%s", err, tail(svc.logPath, 10))
	}
	st, _ := svc.stats(ctx)
	got, err := b.crm.count(ctx)
	if err != nil {
		return err
	}
	rate := float64(n) / took.Seconds()
	b.logf("  mirrored %d in %s (%d rows in the CRM, %d failed)", n, took.Round(time.Millisecond), got, st.Failed)
	if profErr != nil {
		if err := <-profErr; err != nil {
			return fmt.Errorf("mirror profile: %w", err)
		}
		b.logf("  profiled the drain's first 2 s: %s/mirror.cpu.pprof", b.opt.pprofDir)
	}
	_ = svc.stop()

	if err := b.crm.truncate(ctx); err != nil {
		return err
	}
	naive, err := b.crm.singleRowInserts(ctx, 8, min(b.opt.duration, 3*time.Second))
	if err != nil {
		return fmt.Errorf("single-row baseline: %w", err)
	}
	check := ""
	if got != int64(n) {
		check = fmt.Sprintf(" — **CRM holds %d rows, want %d**", got, n)
	}
	defaults, err := config.Load(nil)
	if err != nil {
		return fmt.Errorf("default settings: %w", err)
	}
	b.add(row{
		figure: "mirror throughput into MariaDB, healthy CRM",
		value: fmt.Sprintf("%s rows/s (%s pending rows drained in %s; default %d workers, %d-row INSERTs)%s",
			fmtNum(rate), fmtNum(float64(n)), took.Round(time.Millisecond), defaults.MirrorWorkers, defaults.MirrorBatchSize, check),
		baseline: fmt.Sprintf("one INSERT per row, 8 connections: %s rows/s", fmtNum(naive)),
		ratio:    fmtRatio(rate / naive),
		target:   "≥ 30,000 rows/s",
		verdict:  verdict(rate >= 30000 && got == int64(n)),
	})
	return nil
}

// drops: a fixed 10,000 messages/s with a healthy CRM, against the same
// load on an unbatched mirror.
func (b *bench) drops(ctx context.Context) error {
	if err := b.needCRM(); err != nil {
		return err
	}
	host, port := b.crm.hostPort()
	type outcome struct {
		res               loadResult
		dropped, mirrored uint64
		sent              int64
	}
	measure := func(name string, extra map[string]string) (outcome, error) {
		var o outcome
		if err := b.crm.truncate(ctx); err != nil {
			return o, err
		}
		env := b.crm.env(host, port)
		maps.Copy(env, extra)
		svc, err := b.startService(ctx, name, env)
		if err != nil {
			return o, err
		}
		defer svc.stop()
		if err := waitConnected(ctx, svc); err != nil {
			return o, err
		}
		before, err := svc.stats(ctx)
		if err != nil {
			return o, err
		}
		var answered atomic.Int64
		spec := b.spec(b.opt.dropsBatch)
		spec.url = svc.webhookURL()
		spec.clients = 2 * b.opt.clients
		spec.rate = b.opt.rate / float64(max(b.opt.dropsBatch, 1))
		spec.warmup = time.Second
		spec.duration = b.opt.duration
		spec.answered = &answered
		o.res = runLoad(ctx, spec)
		if err := ctx.Err(); err != nil {
			return o, err
		}
		o.sent = answered.Load()
		// Let the mirror finish what it holds before reading the counts.
		_ = waitFor(ctx, 30*time.Second, func() (bool, error) {
			s, err := svc.stats(ctx)
			return err == nil && s.QueueDepth == 0 && s.Mirrored+s.Dropped+s.Failed-before.Mirrored-before.Dropped >= uint64(o.sent), err
		})
		after, err := svc.stats(ctx)
		if err != nil {
			return o, err
		}
		o.dropped = after.Dropped - before.Dropped
		o.mirrored = after.Mirrored - before.Mirrored
		b.logf("  %s: %s; sent %d, dropped %d, mirrored %d", name, o.res, o.sent, o.dropped, o.mirrored)
		return o, nil
	}
	ours, err := measure("drops", nil)
	if err != nil {
		return err
	}
	theirs, err := measure("drops-unbatched", map[string]string{"MIRROR_BATCH_SIZE": "1"})
	if err != nil {
		return err
	}
	// Kept up: every delivery went out on schedule and was answered
	// promptly; a service slower than the rate shows as seconds of delay.
	achieved := ours.res.perSec(ours.res.messages)
	kept := !ours.res.behind && ours.res.pct(0.99) < time.Second && achieved >= 0.97*b.opt.rate
	value := fmt.Sprintf("%s dropped of %s (%s msg/s, p50 %s, p99 %s; %s mirrored)", fmtNum(float64(ours.dropped)),
		fmtNum(float64(ours.sent)), fmtNum(achieved), fmtDur(ours.res.pct(0.5)), fmtDur(ours.res.pct(0.99)), fmtNum(float64(ours.mirrored)))
	if !kept {
		value += " — the service did not keep up with the rate"
	}
	b.add(row{
		figure: fmt.Sprintf("drops at a sustained %s msg/s (%d-message deliveries), healthy CRM", fmtNum(b.opt.rate), b.opt.dropsBatch),
		value:  value + failNote(ours.res),
		baseline: fmt.Sprintf("unbatched mirror (MIRROR_BATCH_SIZE=1): %s dropped of %s, p99 %s", fmtNum(float64(theirs.dropped)),
			fmtNum(float64(theirs.sent)), fmtDur(theirs.res.pct(0.99))),
		ratio:   "–",
		target:  "0",
		verdict: verdict(ours.dropped == 0 && kept && ours.res.failures == 0),
	})
	return nil
}

// growth: single-message throughput on a table of -rows rows against an
// empty one.
func (b *bench) growth(ctx context.Context) error {
	path := filepath.Join(b.dir, "growth.db")
	b.logf("  pre-filling %d rows", b.opt.rows)
	start := time.Now()
	last := time.Now()
	err := prefill(ctx, path, b.opt.rows, func(done int64) {
		if time.Since(last) > 10*time.Second {
			b.logf("    %d rows (%.0f rows/s)", done, float64(done)/time.Since(start).Seconds())
			last = time.Now()
		}
	})
	if err != nil {
		return err
	}
	fi, _ := os.Stat(path)
	b.logf("  pre-filled %d rows in %s (%s MiB)", b.opt.rows, time.Since(start).Round(time.Second), fmtNum(float64(fi.Size())/(1<<20)))
	empty, err := b.startService(ctx, "growth-empty", nil)
	if err != nil {
		return err
	}
	defer empty.stop()
	full, err := b.startService(ctx, "growth-filled", map[string]string{"SQLITE_PATH": path})
	if err != nil {
		return err
	}
	defer full.stop()
	res, err := b.interleave(ctx, []*proc{empty, full}, b.spec(1))
	if err != nil {
		return err
	}
	e, f := res[0], res[1]
	ratio := f.perSec(f.requests) / e.perSec(e.requests)
	target := "≥ 0.60× at 10,000,000 rows"
	v := verdict(ratio >= 0.60)
	if b.opt.rows < 10_000_000 {
		v = fmt.Sprintf("%s at %s rows; 10M not measured", v, fmtNum(float64(b.opt.rows)))
	}
	b.add(row{
		figure:   fmt.Sprintf("single-message deliveries on a table of %s rows (%s MiB)", fmtNum(float64(b.opt.rows)), fmtNum(float64(fi.Size())/(1<<20))),
		value:    rateLat(f, false) + failNote(f),
		baseline: "empty table: " + rateLat(e, false),
		ratio:    fmtRatio(ratio),
		target:   target,
		verdict:  v,
	})
	return nil
}

// profile records the service's CPU profile over one more window of load,
// and its allocations, into the -pprof directory.
func (b *bench) profile(ctx context.Context, p *proc, name string, spec loadSpec) error {
	if p.pprofAddr == "" {
		return errors.New("service has no pprof listener")
	}
	spec.url = p.webhookURL()
	secs := max(int(spec.duration.Seconds()), 1)
	spec.duration = time.Duration(secs) * time.Second
	spec.warmup = 0
	errc := make(chan error, 1)
	go func() {
		errc <- fetch(ctx, "http://"+p.pprofAddr+"/debug/pprof/profile?seconds="+strconv.Itoa(secs),
			filepath.Join(b.opt.pprofDir, name+".cpu.pprof"))
	}()
	r := runLoad(ctx, spec)
	if err := <-errc; err != nil {
		return err
	}
	if err := fetch(ctx, "http://"+p.pprofAddr+"/debug/pprof/allocs", filepath.Join(b.opt.pprofDir, name+".allocs.pprof")); err != nil {
		return err
	}
	b.logf("  profiled %s under %s: %s/%s.{cpu,allocs}.pprof", p.name, r, b.opt.pprofDir, name)
	return nil
}

func fetch(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
