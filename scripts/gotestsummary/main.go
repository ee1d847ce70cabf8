// Command gotestsummary renders `go test -json` output (on stdin) the way
// plain `go test` prints it, and adds a list of the tests that were skipped.
//
// scripts/test.sh pipes the test run through it. What it prints:
//   - build errors and the output of every failing test, as they happen
//     (the "=== RUN"-style progress lines are left out unless -v is given);
//   - at the end, the tests that skipped, grouped by their reason;
//   - then go test's usual package lines ("ok  \tpkg\t0.1s", "FAIL\tpkg",
//     "?   \tpkg\t[no test files]");
//   - and last a plain count line: "tests: N passed, N failed, N skipped".
//
// Lines on stdin that are not JSON are copied through unchanged. The exit
// status is 0 unless stdin cannot be read; the caller uses go test's status.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json) output.
type event struct {
	Action     string
	Package    string
	ImportPath string // build-output / build-fail events
	Test       string
	Output     string
}

// skip is one skipped test and why.
type skip struct {
	pkg, test, reason string
}

type renderer struct {
	out     io.Writer
	verbose bool

	buf      map[string][]string // output of tests still running, by pkg+"\x00"+test
	order    []string            // keys of buf in first-seen order, for the final flush
	pkgLines []string            // "ok"/"FAIL"/"?" package lines, printed at the end
	skips    []skip

	passed, failed, skipped int
}

func newRenderer(out io.Writer, verbose bool) *renderer {
	return &renderer{out: out, verbose: verbose, buf: map[string][]string{}}
}

func main() {
	verbose := flag.Bool("v", false, "print every output line, as go test -v does")
	flag.Parse()

	w := bufio.NewWriter(os.Stdout)
	r := newRenderer(w, *verbose)
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	for sc.Scan() {
		r.line(sc.Bytes())
		// Failures and build errors should show while the run goes on.
		_ = w.Flush()
	}
	err := sc.Err()
	r.finish()
	_ = w.Flush()
	if err != nil {
		fmt.Fprintf(os.Stderr, "gotestsummary: reading go test output: %v\n", err)
		os.Exit(1)
	}
}

// line handles one line of input.
func (r *renderer) line(b []byte) {
	var e event
	if len(b) == 0 || b[0] != '{' || json.Unmarshal(b, &e) != nil || e.Action == "" {
		fmt.Fprintf(r.out, "%s\n", b)
		return
	}
	switch e.Action {
	case "build-output":
		io.WriteString(r.out, e.Output)
		return
	case "build-fail":
		return // go test also reports it as the package's FAIL line
	}
	if e.Test == "" {
		r.packageEvent(e)
		return
	}
	key := e.Package + "\x00" + e.Test
	switch e.Action {
	case "output":
		if r.verbose {
			io.WriteString(r.out, e.Output)
		}
		if _, ok := r.buf[key]; !ok {
			r.order = append(r.order, key)
		}
		r.buf[key] = append(r.buf[key], e.Output)
	case "pass":
		r.passed++
		delete(r.buf, key)
	case "fail":
		r.failed++
		if !r.verbose {
			r.printFiltered(r.buf[key])
		}
		delete(r.buf, key)
	case "skip":
		r.skipped++
		r.skips = append(r.skips, skip{pkg: e.Package, test: e.Test, reason: skipReason(r.buf[key])})
		delete(r.buf, key)
	}
}

// packageEvent handles an event that belongs to a package, not a test.
func (r *renderer) packageEvent(e event) {
	if e.Action != "output" {
		return
	}
	out := e.Output
	switch {
	case strings.HasPrefix(out, "ok  \t"), strings.HasPrefix(out, "?   \t"), strings.HasPrefix(out, "FAIL\t"):
		r.pkgLines = append(r.pkgLines, out)
	case out == "PASS\n" && !r.verbose:
		// plain go test prints no PASS line for a package that passed
	default:
		io.WriteString(r.out, out)
	}
}

// printFiltered prints a test's output without the progress lines.
func (r *renderer) printFiltered(lines []string) {
	for _, l := range lines {
		if isProgress(l) {
			continue
		}
		io.WriteString(r.out, l)
	}
}

func isProgress(l string) bool {
	for _, p := range []string{"=== RUN", "=== PAUSE", "=== CONT", "=== NAME"} {
		if strings.HasPrefix(l, p) {
			return true
		}
	}
	return false
}

// skipReason picks the message a skipped test logged: its output without the
// progress and "--- SKIP" lines, with the "file_test.go:12: " prefix removed.
func skipReason(lines []string) string {
	var parts []string
	for _, l := range lines {
		if isProgress(l) {
			continue
		}
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "--- SKIP") {
			continue
		}
		if i := strings.Index(t, ".go:"); i > 0 && !strings.ContainsAny(t[:i], " \t") {
			if j := strings.Index(t[i+4:], ": "); j >= 0 {
				t = t[i+4+j+2:]
			}
		}
		parts = append(parts, t)
	}
	if len(parts) == 0 {
		return "(no reason given)"
	}
	return strings.Join(parts, " ")
}

// finish prints what is left: output of tests that never ended (a crash or a
// timeout), the skipped tests, the package lines and the count line.
func (r *renderer) finish() {
	for _, key := range r.order {
		if lines, ok := r.buf[key]; ok && !r.verbose {
			r.printFiltered(lines)
		}
	}

	if len(r.skips) > 0 {
		fmt.Fprintf(r.out, "\nSKIPPED: %d test(s) did not run:\n", len(r.skips))
		byReason := map[string][]skip{}
		var reasons []string
		for _, s := range r.skips {
			if _, ok := byReason[s.reason]; !ok {
				reasons = append(reasons, s.reason)
			}
			byReason[s.reason] = append(byReason[s.reason], s)
		}
		sort.SliceStable(reasons, func(i, j int) bool { return len(byReason[reasons[i]]) > len(byReason[reasons[j]]) })
		for _, reason := range reasons {
			fmt.Fprintf(r.out, "  reason: %s\n", reason)
			for _, s := range byReason[reason] {
				fmt.Fprintf(r.out, "    --- SKIP: %s (%s)\n", s.test, s.pkg)
			}
		}
		fmt.Fprintln(r.out)
	}

	for _, l := range r.pkgLines {
		io.WriteString(r.out, l)
	}
	if r.passed+r.failed+r.skipped > 0 {
		fmt.Fprintf(r.out, "tests: %d passed, %d failed, %d skipped\n", r.passed, r.failed, r.skipped)
	}
}
