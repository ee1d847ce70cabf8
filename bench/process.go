package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a server the benchmark started: the igmirror binary or one of
// the baselines (this program run again in a role).
type proc struct {
	name      string
	cmd       *exec.Cmd
	logPath   string
	httpAddr  string
	adminAddr string
	pprofAddr string // -pprof only
	exited    chan struct{}
	waitErr   error
}

// procs remembers every started process, so that an interrupted run
// still stops them all.
var procs struct {
	sync.Mutex
	live map[*proc]struct{}
}

// startProc runs bin with exactly env (nothing inherited, so a developer's
// CRM_* settings never leak in), its output in a log file in dir, and
// waits until it answers HTTP at env's HTTP_ADDR (or, for a port of its
// choosing, at the address its "listening" log line names).
func startProc(ctx context.Context, name, bin string, args []string, env map[string]string, dir string) (*proc, error) {
	logPath := filepath.Join(dir, fmt.Sprintf("%s-%d.log", name, time.Now().UnixNano()))
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "TMPDIR=" + dir}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Its own process group: Ctrl-C reaches only the benchmark, which
		// then stops the children in order. If the benchmark dies anyway,
		// the kernel kills them.
		Setpgid:   true,
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, exited: make(chan struct{})}
	procs.Lock()
	if procs.live == nil {
		procs.live = map[*proc]struct{}{}
	}
	procs.live[p] = struct{}{}
	procs.Unlock()
	go func() { p.waitErr = cmd.Wait(); close(p.exited) }()

	p.httpAddr, p.adminAddr = env["HTTP_ADDR"], env["ADMIN_ADDR"]
	deadline := time.Now().Add(60 * time.Second)
	for {
		if p.httpAddr == "" || strings.HasSuffix(p.httpAddr, ":0") {
			// Listening on a port of its choosing: its log line names it.
			p.httpAddr, p.adminAddr = listeningAddrs(logPath)
		}
		if p.httpAddr != "" && !strings.HasSuffix(p.httpAddr, ":0") && healthy(ctx, p.httpAddr) {
			return p, nil
		}
		select {
		case <-p.exited:
			p.forget()
			return nil, fmt.Errorf("%s exited at start-up (%v); log:\n%s", name, p.waitErr, tail(logPath, 15))
		case <-ctx.Done():
			p.stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("%s did not answer within 60s; log:\n%s", name, tail(logPath, 15))
		}
	}
}

// healthy reports whether a server answers at addr: GET /healthz answered
// at all (the baselines answer 404 or 405, which is enough).
func healthy(ctx context.Context, addr string) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/healthz", nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return true
}

// listeningAddrs finds the service's "listening" line in its log.
func listeningAddrs(logPath string) (httpAddr, adminAddr string) {
	f, err := os.Open(logPath)
	if err != nil {
		return "", ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.Contains(line, []byte(`"listening"`)) {
			continue
		}
		var l struct {
			Msg       string `json:"msg"`
			HTTPAddr  string `json:"http_addr"`
			AdminAddr string `json:"admin_addr"`
		}
		if json.Unmarshal(line, &l) == nil && l.Msg == "listening" {
			return l.HTTPAddr, l.AdminAddr
		}
	}
	return "", ""
}

// tail returns the last n lines of a file, for error reports.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "    " + strings.Join(lines, "\n    ")
}

func (p *proc) forget() {
	procs.Lock()
	delete(procs.live, p)
	procs.Unlock()
}

// stop asks the process to shut down (SIGTERM), and kills it if it has
// not within 20 s.
func (p *proc) stop() error {
	defer p.forget()
	select {
	case <-p.exited:
		return p.waitErr
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return p.waitErr
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("%s did not stop within 20s; killed", p.name)
	}
}

// stopAll stops every process still running (interrupted runs).
func stopAll() {
	procs.Lock()
	var all []*proc
	for p := range procs.live {
		all = append(all, p)
	}
	procs.Unlock()
	for _, p := range all {
		_ = p.stop()
	}
}

// rssBytes reads the process's resident set (VmRSS) from /proc.
func (p *proc) rssBytes() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS in /proc status")
}

// webhookURL is the process's webhook endpoint.
func (p *proc) webhookURL() string { return "http://" + p.httpAddr + "/webhooks/instagram" }

// adminGet fetches an admin endpoint as JSON into out.
func (p *proc) adminGet(ctx context.Context, path string, out any) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.adminAddr+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", path, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// mirrorStats is the part of /admin/mirror/stats the benchmark reads.
type mirrorStats struct {
	Published    uint64           `json:"published"`
	Dropped      uint64           `json:"dropped"`
	Mirrored     uint64           `json:"mirrored"`
	Failed       uint64           `json:"failed"`
	Pending      int64            `json:"pending"`
	QueueDepth   int              `json:"queue_depth"`
	CRMConnected bool             `json:"crm_connected"`
	Messages     map[string]int64 `json:"messages"`
}

func (p *proc) stats(ctx context.Context) (mirrorStats, error) {
	var s mirrorStats
	err := p.adminGet(ctx, "/admin/mirror/stats", &s)
	return s, err
}

// waitFor polls cond every 20 ms until it holds, ctx ends or d passes.
func waitFor(ctx context.Context, d time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(d)
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("timed out after %s: %w", d, err)
			}
			return fmt.Errorf("timed out after %s", d)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// cpuTicks reads the process's user+system CPU time from /proc, in clock
// ticks (USER_HZ, 100 on Linux).
func (p *proc) cpuTicks() int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// The command name may hold spaces; fields count from after its ')'.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+1:]
	}
	f := strings.Fields(s)
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return ut + st
}

// machineTicks returns the busy and total CPU ticks of the whole machine.
func machineTicks() (busy, total int64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total
}

// writerCounters are the service's SQLite writer counters.
type writerCounters struct {
	commits, requests, busySecs float64
}

func (a writerCounters) minus(b writerCounters) writerCounters {
	return writerCounters{a.commits - b.commits, a.requests - b.requests, a.busySecs - b.busySecs}
}

func (a writerCounters) plus(b writerCounters) writerCounters {
	return writerCounters{a.commits + b.commits, a.requests + b.requests, a.busySecs + b.busySecs}
}

// writerCounters reads the SQLite writer's counters off the service's
// /metrics; zero for a process that has none (a baseline server).
func (p *proc) writerCounters(ctx context.Context) writerCounters {
	var w writerCounters
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.httpAddr+"/metrics", nil)
	if err != nil {
		return w
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return w
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return w
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			continue
		}
		switch name {
		case "igmirror_store_commits_total":
			w.commits = v
		case "igmirror_store_commit_requests_total":
			w.requests = v
		case "igmirror_store_writer_busy_seconds_total":
			w.busySecs = v
		}
	}
	return w
}
