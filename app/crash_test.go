package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"igmirror/domain"
	"igmirror/internal/testkit/mysqltest"
)

// crashBuild builds the service's binary, with -race when this test binary
// has it, so that the build reuses what `go test` already compiled.
func crashBuild(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go"
	}
	bin := filepath.Join(t.TempDir(), "igmirror")
	args := []string{"build", "-o", bin}
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "-race" && s.Value == "true" {
				args = append(args, "-race")
			}
		}
	}
	cmd := exec.Command(goBin, append(args, ".")...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// crashProc is the service running as a child process.
type crashProc struct {
	cmd         *exec.Cmd
	base, admin string
	logs        *syncBuffer
	exited      chan error
}

// crashStart starts bin with env and waits until both listeners are bound.
func crashStart(t *testing.T, bin string, env []string) *crashProc {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = env
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &crashProc{cmd: cmd, logs: &syncBuffer{}, exited: make(chan error, 1)}
	cmd.Stderr = p.logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start: %v", err)
	}
	addrs := make(chan [2]string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			_, _ = p.logs.Write(append(sc.Bytes(), '\n'))
			var line struct {
				Msg       string `json:"msg"`
				HTTPAddr  string `json:"http_addr"`
				AdminAddr string `json:"admin_addr"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "listening" {
				addrs <- [2]string{line.HTTPAddr, line.AdminAddr}
			}
		}
		_, _ = io.Copy(io.Discard, out)
		p.exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.exited
	})
	select {
	case a := <-addrs:
		p.base, p.admin = "http://"+a[0], "http://"+a[1]
	case err := <-p.exited:
		p.exited <- err
		t.Fatalf("service exited at start-up: %v\n%s", err, p.logs)
	case <-time.After(15 * time.Second):
		t.Fatalf("service did not start listening\n%s", p.logs)
	}
	return p
}

// crashDelivery is a one-message delivery, numbered n.
func crashDelivery(n int) []byte {
	return []byte(fmt.Sprintf(`{"object":"instagram","entry":[{"id":"17841400000000001","messaging":[{"sender":{"id":"cust%d"},"recipient":{"id":"17841400000000001"},"timestamp":%d,"message":{"mid":"mid.crash.%d","text":"crash test message %d"}}]}]}`,
		n%5, 1763770000000+int64(n)*1000, n, n))
}

// crashStored lists every stored message through the admin API.
func crashStored(t *testing.T, p *crashProc) []domain.Message {
	t.Helper()
	var all []domain.Message
	cursor := ""
	client := &http.Client{Timeout: 10 * time.Second}
	for {
		req, _ := http.NewRequest(http.MethodGet, p.admin+"/admin/messages?limit=500&cursor="+url.QueryEscape(cursor), nil)
		req.Header.Set("Authorization", "Bearer "+testAdminToken)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		var page struct {
			Messages   []domain.Message `json:"messages"`
			NextCursor string           `json:"next_cursor"`
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK || err != nil {
			t.Fatalf("list: got %d, %v", resp.StatusCode, err)
		}
		all = append(all, page.Messages...)
		if page.NextCursor == "" {
			return all
		}
		cursor = page.NextCursor
	}
}

// TestCrashUnderLoad kills the service with SIGKILL while concurrent
// deliveries arrive and the mirror writes to a slowed CRM, then starts it
// again on the same SQLite file: every delivery that was answered 200 is
// stored, and every stored message reaches the CRM exactly once.
func TestCrashUnderLoad(t *testing.T) {
	crm := mysqltest.New(t)
	proxy := crm.Proxy(t)
	bin := crashBuild(t)
	dbPath := filepath.Join(t.TempDir(), "crash.db")
	env := func(crmPort int) []string {
		return []string{
			"HTTP_ADDR=127.0.0.1:0", "ADMIN_ADDR=127.0.0.1:0", "ADMIN_TOKEN=" + testAdminToken,
			"SQLITE_PATH=" + dbPath, "INSTAGRAM_APP_SECRET=" + testAppSecret,
			"CRM_MYSQL_ENABLED=true", "CRM_MYSQL_HOST=" + proxy.Host(), "CRM_MYSQL_PORT=" + strconv.Itoa(crmPort),
			"CRM_MYSQL_USER=" + crm.User, "CRM_MYSQL_PASSWORD=" + crm.Password,
			"CRM_MYSQL_DATABASE=" + crm.Name, "CRM_MYSQL_TABLE=" + crm.Table, "CRM_MYSQL_TLS=false",
			"MIRROR_RECONCILE_INTERVAL=200ms", "MIRROR_BATCH_SIZE=5", "MIRROR_QUEUE_SIZE=64", "MIRROR_LEASE_TIMEOUT=3s",
			"LOG_FORMAT=json", "LOG_LEVEL=info", "PATH=" + os.Getenv("PATH"),
		}
	}
	// Slow CRM round trips keep INSERTs in flight when the kill comes.
	proxy.SetLatency(20 * time.Millisecond)
	first := crashStart(t, bin, env(proxy.Port()))

	client := &http.Client{Timeout: 5 * time.Second}
	load := startLoad(6, func(_, n int) bool {
		// An error is the kill: not answered, so Meta would deliver again.
		return postDelivery(client, first.base, crashDelivery(n)) == http.StatusOK
	})
	eventually(t, 10*time.Second, "300 deliveries answered", func() bool { return load.answered() >= 300 })
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := <-first.exited
	first.exited <- err
	acked, next := load.halt()
	if ws, ok := first.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("first run: got %v, want killed by SIGKILL", err)
	}

	atKill := crm.Count(t)
	proxy.SetLatency(0)
	second := crashStart(t, bin, env(proxy.Port()))
	stored := crashStored(t, second)
	byMID := map[string]bool{}
	unmirrored, tried := 0, 0
	for _, m := range stored {
		byMID[m.MID()] = true
		if m.MirrorStatus != domain.MirrorMirrored {
			unmirrored++
			if m.MirrorAttempts > 0 {
				tried++
			}
		}
	}
	// The kill must have left work for the restart, or this test proves
	// nothing about it.
	if unmirrored == 0 {
		t.Fatalf("the first run had mirrored everything before the kill; the restart had nothing to recover")
	}
	t.Logf("at restart: %d CRM rows; %d of %d stored messages not mirrored, %d of them with an attempt of unknown outcome",
		atKill, unmirrored, len(stored), tried)
	for n := range acked {
		if !byMID[fmt.Sprintf("mid.crash.%d", n)] {
			t.Errorf("delivery %d was answered 200 but is not stored", n)
		}
	}
	if len(stored) < len(acked) || len(stored) > next {
		t.Errorf("stored: got %d, want between %d (answered) and %d (sent)", len(stored), len(acked), next)
	}

	want := faultWantRows(stored)
	eventually(t, 15*time.Second, "the CRM to hold every stored message once", func() bool {
		return mysqltest.DiffCounts(crm.RowCounts(t), want) == ""
	})
	eventually(t, 10*time.Second, "every message marked mirrored", func() bool {
		for _, m := range crashStored(t, second) {
			if m.MirrorStatus != domain.MirrorMirrored {
				return false
			}
		}
		return true
	})
	if diff := mysqltest.DiffCounts(crm.RowCounts(t), want); diff != "" {
		t.Fatalf("crm: %s", diff)
	}
	t.Logf("answered %d of %d sent; stored %d", len(acked), next, len(stored))

	if err := second.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-second.exited:
		second.exited <- err
		if err != nil {
			t.Errorf("second run after SIGTERM: got %v, want exit 0\n%s", err, second.logs)
		}
	case <-time.After(20 * time.Second):
		t.Errorf("second run did not stop after SIGTERM")
	}
}

// deliveryLoad sends numbered one-message deliveries from several
// goroutines until halted, and records which were answered 200.
type deliveryLoad struct {
	mu    sync.Mutex
	acked map[int]bool
	next  int
	stop  chan struct{}
	wg    sync.WaitGroup
}

// startLoad starts workers goroutines, each sending delivery after
// delivery with send(worker, n), which reports whether delivery n was
// answered 200.
func startLoad(workers int, send func(worker, n int) bool) *deliveryLoad {
	l := &deliveryLoad{acked: map[int]bool{}, stop: make(chan struct{})}
	for w := range workers {
		l.wg.Go(func() {
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				l.mu.Lock()
				n := l.next
				l.next++
				l.mu.Unlock()
				if send(w, n) {
					l.mu.Lock()
					l.acked[n] = true
					l.mu.Unlock()
				}
			}
		})
	}
	return l
}

// answered counts the deliveries answered 200 so far.
func (l *deliveryLoad) answered() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

// halt stops the workers and returns the deliveries answered 200 and how
// many were sent.
func (l *deliveryLoad) halt() (acked map[int]bool, sent int) {
	close(l.stop)
	l.wg.Wait()
	return l.acked, l.next
}
