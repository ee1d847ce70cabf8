//go:build linux

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"unsafe"
)

// Linux's inode flag ioctls (linux/fs.h) and the immutable flag. An
// immutable file refuses writes even to root, which a chmod does not:
// root has CAP_DAC_OVERRIDE.
const (
	storeFailGetFlags  = 0x80086601 // FS_IOC_GETFLAGS
	storeFailSetFlags  = 0x40086602 // FS_IOC_SETFLAGS
	storeFailImmutable = 0x00000010 // FS_IMMUTABLE_FL
)

// storeFailImmutableFlag sets or clears the immutable flag of path.
func storeFailImmutableFlag(path string, on bool) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var flags int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), storeFailGetFlags, uintptr(unsafe.Pointer(&flags))); e != 0 {
		return fmt.Errorf("get flags of %s: %w", path, e)
	}
	if on {
		flags |= storeFailImmutable
	} else {
		flags &^= storeFailImmutable
	}
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), storeFailSetFlags, uintptr(unsafe.Pointer(&flags))); e != 0 {
		return fmt.Errorf("set flags of %s: %w", path, e)
	}
	return nil
}

// storeFailDelivery is a one-message delivery numbered n.
func storeFailDelivery(n int) []byte {
	return []byte(fmt.Sprintf(`{"object":"instagram","entry":[{"id":"17841400000000001","messaging":[{"sender":{"id":"cust1"},"recipient":{"id":"17841400000000001"},"timestamp":%d,"message":{"mid":"mid.storefail.%d","text":"store failure test %d"}}]}]}`,
		1763770000000+int64(n)*1000, n, n))
}

// storeFailExpect posts delivery n and checks the answer's status class,
// and checks readiness.
func storeFailExpect(t *testing.T, ta *testApp, n int, wantOK bool) {
	t.Helper()
	code, body := ta.post(storeFailDelivery(n))
	ready, readyBody := ta.get(ta.base + "/readyz")
	if wantOK {
		if code != http.StatusOK {
			t.Fatalf("delivery %d: got %d %s, want 200", n, code, body)
		}
		if ready != http.StatusOK {
			t.Fatalf("readyz: got %d %s, want 200", ready, readyBody)
		}
		if ok, _ := ta.ready.get(); !ok {
			t.Errorf("igmirror_store_ready after a good readiness check: got 0, want 1")
		}
		return
	}
	if code < 500 {
		t.Fatalf("delivery %d: got %d %s, want 5xx so that Meta delivers again", n, code, body)
	}
	var e struct{ Error string }
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error == "" {
		t.Errorf("error body: got %q, want {\"error\": ...}", body)
	}
	if ready != http.StatusServiceUnavailable || !strings.Contains(readyBody, `"sqlite":"not writable"`) {
		t.Fatalf("readyz: got %d %s, want 503 with sqlite not writable", ready, readyBody)
	}
	if code, _ := ta.get(ta.base + "/healthz"); code != http.StatusOK {
		t.Errorf("healthz: got %d, want 200 (the process is alive)", code)
	}
	// The gauge's cached value, not a scrape: a scrape also reads the
	// store, and a read connection opened now would create a stray file
	// in the replacement directory of TestStoreDirectoryGone.
	if ok, _ := ta.ready.get(); ok {
		t.Errorf("igmirror_store_ready after a failed readiness check: got 1, want 0")
	}
}

// storeFailMIDs lists the stored mids.
func storeFailMIDs(ta *testApp) []string {
	var out []string
	for _, m := range ta.messages() {
		out = append(out, m.MID())
	}
	return out
}

// TestStoreReadOnlyFile makes the SQLite file and its WAL immutable (the
// read-only that holds even for root): deliveries get 5xx, readiness
// fails, nothing panics; once the files are writable again the
// redelivered message is stored, once.
func TestStoreReadOnlyFile(t *testing.T) {
	cfg := testConfig(t)
	ta := startApp(t, cfg)
	storeFailExpect(t, ta, 1, true)

	// Not the -shm file: SQLite maps it into memory, and a write fault
	// there is a SIGBUS, not an error.
	files := []string{cfg.SQLitePath, cfg.SQLitePath + "-wal"}
	for _, f := range files {
		t.Cleanup(func() { _ = storeFailImmutableFlag(f, false) })
		if err := storeFailImmutableFlag(f, true); err != nil {
			if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.ENOTTY) || errors.Is(err, syscall.EOPNOTSUPP) {
				t.Skipf("cannot make %s immutable here (needs CAP_LINUX_IMMUTABLE and a filesystem with inode flags): %v", f, err)
			}
			t.Fatal(err)
		}
	}
	storeFailExpect(t, ta, 2, false)
	storeFailExpect(t, ta, 2, false)

	for _, f := range files {
		if err := storeFailImmutableFlag(f, false); err != nil {
			t.Fatal(err)
		}
	}
	storeFailExpect(t, ta, 2, true)
	storeFailExpect(t, ta, 3, true)
	if got, want := strings.Join(storeFailMIDs(ta), ","), "mid.storefail.1,mid.storefail.2,mid.storefail.3"; got != want {
		t.Errorf("stored: got %s, want %s", got, want)
	}
}

// TestStoreDirectoryGone moves the SQLite file's directory away while the
// service runs. SQLite would go on writing into the open file, and the
// service would answer 200 for messages that are not at SQLITE_PATH; it
// must answer 5xx instead, and recover when the directory is back.
func TestStoreDirectoryGone(t *testing.T) {
	cfg := testConfig(t)
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg.SQLitePath = filepath.Join(dir, "igmirror.db")
	ta := startApp(t, cfg)
	storeFailExpect(t, ta, 1, true)

	away := dir + ".away"
	if err := os.Rename(dir, away); err != nil {
		t.Fatal(err)
	}
	storeFailExpect(t, ta, 2, false)

	// A directory of the same name, but not the file that was open: still
	// refused (only a restart may start a new database there).
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	storeFailExpect(t, ta, 2, false)
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}

	if err := os.Rename(away, dir); err != nil {
		t.Fatal(err)
	}
	storeFailExpect(t, ta, 2, true)
	if got, want := strings.Join(storeFailMIDs(ta), ","), "mid.storefail.1,mid.storefail.2"; got != want {
		t.Errorf("stored: got %s, want %s", got, want)
	}
	if !strings.Contains(ta.logs.String(), "sqlite file removed, moved or replaced while open") {
		t.Errorf("logs: want the store failure logged with its cause")
	}
}
