package main

import (
	"strings"
	"testing"
)

const sample = `{"Action":"start","Package":"igmirror/a"}
{"Action":"run","Package":"igmirror/a","Test":"TestOK"}
{"Action":"output","Package":"igmirror/a","Test":"TestOK","Output":"=== RUN   TestOK\n"}
{"Action":"output","Package":"igmirror/a","Test":"TestOK","Output":"--- PASS: TestOK (0.00s)\n"}
{"Action":"pass","Package":"igmirror/a","Test":"TestOK"}
{"Action":"run","Package":"igmirror/a","Test":"TestDB"}
{"Action":"output","Package":"igmirror/a","Test":"TestDB","Output":"=== RUN   TestDB\n"}
{"Action":"output","Package":"igmirror/a","Test":"TestDB","Output":"    db_test.go:12: MySQL is unreachable at 127.0.0.1:3306\n"}
{"Action":"output","Package":"igmirror/a","Test":"TestDB","Output":"--- SKIP: TestDB (0.00s)\n"}
{"Action":"skip","Package":"igmirror/a","Test":"TestDB"}
{"Action":"run","Package":"igmirror/a","Test":"TestBad"}
{"Action":"output","Package":"igmirror/a","Test":"TestBad","Output":"=== RUN   TestBad\n"}
{"Action":"output","Package":"igmirror/a","Test":"TestBad","Output":"    bad_test.go:7: got 1, want 2\n"}
{"Action":"output","Package":"igmirror/a","Test":"TestBad","Output":"--- FAIL: TestBad (0.00s)\n"}
{"Action":"fail","Package":"igmirror/a","Test":"TestBad"}
{"Action":"output","Package":"igmirror/a","Output":"FAIL\n"}
{"Action":"output","Package":"igmirror/a","Output":"FAIL\tigmirror/a\t0.01s\n"}
{"Action":"fail","Package":"igmirror/a"}
{"Action":"output","Package":"igmirror/b","Output":"PASS\n"}
{"Action":"output","Package":"igmirror/b","Output":"ok  \tigmirror/b\t0.02s\n"}
{"Action":"pass","Package":"igmirror/b"}
{"Action":"output","Package":"igmirror/c","Output":"?   \tigmirror/c\t[no test files]\n"}
{"Action":"skip","Package":"igmirror/c"}
not json at all
`

func render(t *testing.T, input string, verbose bool) string {
	t.Helper()
	var b strings.Builder
	r := newRenderer(&b, verbose)
	for _, l := range strings.Split(strings.TrimSuffix(input, "\n"), "\n") {
		r.line([]byte(l))
	}
	r.finish()
	return b.String()
}

func TestRender(t *testing.T) {
	got := render(t, sample, false)
	want := `    bad_test.go:7: got 1, want 2
--- FAIL: TestBad (0.00s)
FAIL
not json at all

SKIPPED: 1 test(s) did not run:
  reason: MySQL is unreachable at 127.0.0.1:3306
    --- SKIP: TestDB (igmirror/a)

FAIL	igmirror/a	0.01s
ok  	igmirror/b	0.02s
?   	igmirror/c	[no test files]
tests: 1 passed, 1 failed, 1 skipped
`
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestRenderVerboseShowsEverything(t *testing.T) {
	got := render(t, sample, true)
	for _, s := range []string{"=== RUN   TestOK\n", "--- PASS: TestOK", "PASS\n", "--- SKIP: TestDB (0.00s)\n"} {
		if !strings.Contains(got, s) {
			t.Errorf("verbose output lacks %q:\n%s", s, got)
		}
	}
}

func TestUnfinishedTestOutputIsPrinted(t *testing.T) {
	got := render(t, `{"Action":"output","Package":"p","Test":"TestHang","Output":"=== RUN   TestHang\n"}
{"Action":"output","Package":"p","Test":"TestHang","Output":"started\n"}
`, false)
	if got != "started\n" {
		t.Errorf("got %q, want the unfinished test's output", got)
	}
}

func TestNoTestsNoCountLine(t *testing.T) {
	got := render(t, `{"Action":"output","Package":"p","Output":"?   \tp\t[no test files]\n"}
`, false)
	if strings.Contains(got, "passed") {
		t.Errorf("a run with no tests printed a count line: %q", got)
	}
}

func TestSkipReason(t *testing.T) {
	for in, want := range map[string]string{
		"    x_test.go:3: needs MySQL\n": "needs MySQL",
		"plain reason\n":                 "plain reason",
		"--- SKIP: T (0.00s)\n":          "(no reason given)",
	} {
		if got := skipReason([]string{"=== RUN   T\n", in}); got != want {
			t.Errorf("skipReason(%q) = %q, want %q", in, got, want)
		}
	}
}
