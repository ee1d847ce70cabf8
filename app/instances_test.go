package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"igmirror/domain"
	"igmirror/instagram"
	"igmirror/internal/testkit/faultproxy"
	"igmirror/internal/testkit/mysqltest"
	"igmirror/internal/testkit/pgtest"
)

// postDelivery posts a signed delivery to base and returns the status, or
// 0 when the request failed (the instance is gone).
func postDelivery(client *http.Client, base string, body []byte) int {
	req, _ := http.NewRequest(http.MethodPost, base+"/webhooks/instagram", bytes.NewReader(body))
	req.Header.Set("X-Hub-Signature-256", instagram.Sign([]byte(testAppSecret), body))
	resp, err := client.Do(req)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode
}

// TestSeveralInstancesOneKilled runs three instances on one PostgreSQL
// store and one CRM, under load, with every tenth delivery sent to two
// instances at the same moment. One instance is killed with SIGKILL.
// Every delivery any instance answered 200 is in the store, once; and
// the CRM ends up holding every stored message exactly once, the killed
// instance's unmirrored ones brought over by the others once its lease
// lapses.
func TestSeveralInstancesOneKilled(t *testing.T) {
	pg := pgtest.New(t)
	crm := mysqltest.New(t)
	proxy := crm.Proxy(t)
	bin := crashBuild(t)
	env := func(id string) []string {
		return []string{
			"HTTP_ADDR=127.0.0.1:0", "ADMIN_ADDR=127.0.0.1:0", "ADMIN_TOKEN=" + testAdminToken,
			"DATABASE_URL=" + pg.URL, "INSTANCE_ID=" + id, "INSTAGRAM_APP_SECRET=" + testAppSecret,
			"CRM_MYSQL_ENABLED=true", "CRM_MYSQL_HOST=" + proxy.Host(), "CRM_MYSQL_PORT=" + strconv.Itoa(proxy.Port()),
			"CRM_MYSQL_USER=" + crm.User, "CRM_MYSQL_PASSWORD=" + crm.Password,
			"CRM_MYSQL_DATABASE=" + crm.Name, "CRM_MYSQL_TABLE=" + crm.Table, "CRM_MYSQL_TLS=false",
			"MIRROR_RECONCILE_INTERVAL=500ms", "MIRROR_BATCH_SIZE=5", "MIRROR_QUEUE_SIZE=64", "MIRROR_LEASE_TIMEOUT=3s",
			"SUBSCRIPTION_CHECK_INTERVAL=0", "LOG_FORMAT=json", "LOG_LEVEL=info", "PATH=" + os.Getenv("PATH"),
			"SQLITE_PATH=" + t.TempDir() + "/unused.db",
		}
	}
	// Slow CRM round trips keep INSERTs in flight when the kill comes.
	proxy.SetLatency(20 * time.Millisecond)
	insts := []*crashProc{crashStart(t, bin, env("inst-0")), crashStart(t, bin, env("inst-1")), crashStart(t, bin, env("inst-2"))}

	client := &http.Client{Timeout: 10 * time.Second}
	load := startLoad(6, func(w, n int) bool {
		body := crashDelivery(n)
		targets := []*crashProc{insts[(n+w)%3]}
		if n%10 == 0 {
			// The same mid at two instances at the same moment.
			targets = append(targets, insts[(n+w+1)%3])
		}
		var ok atomic.Bool
		var all sync.WaitGroup
		for _, p := range targets {
			all.Go(func() {
				if postDelivery(client, p.base, body) == http.StatusOK {
					ok.Store(true)
				}
			})
		}
		all.Wait()
		return ok.Load()
	})
	eventually(t, 30*time.Second, "300 deliveries answered", func() bool { return load.answered() >= 300 })
	killed := insts[0]
	if err := killed.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now()
	err := <-killed.exited
	killed.exited <- err
	// The survivors go on taking deliveries for a moment.
	time.Sleep(300 * time.Millisecond)
	acked, next := load.halt()

	survivor := insts[1]
	stored := crashStored(t, survivor) // the whole store, through any instance
	byMID := map[string]int{}
	orphans := 0
	for _, m := range stored {
		byMID[m.MID()]++
		if m.MirrorStatus != domain.MirrorMirrored && strings.HasPrefix(m.MirrorOwner, "inst-0/") {
			orphans++
		}
	}
	for n := range acked {
		if byMID[fmt.Sprintf("mid.crash.%d", n)] != 1 {
			t.Errorf("delivery %d was answered 200; stored %d times, want once", n, byMID[fmt.Sprintf("mid.crash.%d", n)])
		}
	}
	if orphans == 0 {
		t.Fatalf("the killed instance had mirrored everything it owned; nothing was left to take over")
	}
	want := faultWantRows(stored)
	proxy.SetLatency(0)
	eventually(t, 30*time.Second, "the CRM to hold every stored message once", func() bool {
		return mysqltest.DiffCounts(crm.RowCounts(t), want) == ""
	})
	t.Logf("answered %d of %d sent; stored %d; %d of the killed instance's messages unmirrored at the kill, all in the CRM %s after it (lease 3s + interval 0.5s)",
		len(acked), next, len(stored), orphans, time.Since(killedAt).Round(10*time.Millisecond))
	eventually(t, 15*time.Second, "every message marked mirrored", func() bool {
		for _, m := range crashStored(t, insts[2]) {
			if m.MirrorStatus != domain.MirrorMirrored {
				return false
			}
		}
		return true
	})
	if diff := mysqltest.DiffCounts(crm.RowCounts(t), want); diff != "" {
		t.Fatalf("crm: %s", diff)
	}
}

// TestPostgresUnreachable puts a fault proxy between the service and
// PostgreSQL. Blackholed, then with every connection refused, a delivery
// is answered 503 within the client's 10 s (never a hang) and /readyz
// fails; healed, both recover by themselves, and every delivery answered
// 200 is stored.
func TestPostgresUnreachable(t *testing.T) {
	pg := pgtest.New(t)
	proxy, err := faultproxy.New(pg.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	cfg := testConfig(t)
	cfg.DatabaseURL = pg.URLVia(proxy.Addr())
	ta := startApp(t, cfg)
	client := &http.Client{Timeout: 10 * time.Second} // the bound the contract promises
	acked := map[int]bool{}
	post := func(n int) int {
		code := postDelivery(client, ta.base, crashDelivery(n))
		if code == http.StatusOK {
			acked[n] = true
		}
		return code
	}
	ready := func() int {
		code, _ := ta.get(ta.base + "/readyz")
		return code
	}
	if code := post(1); code != http.StatusOK {
		t.Fatalf("before the fault: got %d, want 200", code)
	}

	for _, fault := range []struct {
		name          string
		on, off       func()
		wantUnhealthy bool
	}{
		{"blackholed", func() { proxy.Blackhole(true) }, func() { proxy.Blackhole(false) }, true},
		{"connections reset", func() { proxy.SetRefuse(true); proxy.ResetAll() }, func() { proxy.SetRefuse(false) }, true},
	} {
		t.Run(fault.name, func(t *testing.T) {
			fault.on()
			base := 100 * (len(acked) + 1)
			if code := post(base); code != http.StatusServiceUnavailable {
				t.Errorf("delivery with the store %s: got %d, want 503 within 10 s", fault.name, code)
			}
			if code := ready(); code != http.StatusServiceUnavailable {
				t.Errorf("/readyz with the store %s: got %d, want 503", fault.name, code)
			}
			fault.off()
			n := base + 1
			eventually(t, 30*time.Second, "deliveries accepted again", func() bool {
				n++
				return post(n) == http.StatusOK
			})
			eventually(t, 10*time.Second, "/readyz ready again", func() bool { return ready() == http.StatusOK })
		})
	}
	for n := range acked {
		mid := fmt.Sprintf("mid.crash.%d", n)
		if _, err := ta.store.GetByMID(context.Background(), mid); err != nil {
			t.Errorf("delivery %d was answered 200 but is not stored: %v", n, err)
		}
	}
}
