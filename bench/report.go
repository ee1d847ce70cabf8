package main

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// row is one line of the results table.
type row struct {
	figure   string
	value    string // igmirror
	baseline string // what it is compared with, measured in the same run
	ratio    string
	target   string
	verdict  string // "met", "NOT met", or "" for a figure without target
}

func (b *bench) add(r row) {
	b.rows = append(b.rows, r)
	b.logf("%s: %s | %s | %s | %s", r.figure, r.value, r.baseline, r.ratio, r.verdict)
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**NOT met**"
}

func (b *bench) printReport(w io.Writer, took time.Duration) {
	fmt.Fprintf(w, "\nigmirror benchmark: %s\n", b.machine())
	fmt.Fprintf(w, "command: go run ./bench %s (took %s)\n\n", strings.Join(b.commandFlags(), " "), took.Round(time.Second))
	fmt.Fprintln(w, "| figure | igmirror | baseline, same run | ratio | target | |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	for _, r := range b.rows {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", r.figure, r.value, r.baseline, r.ratio, r.target, r.verdict)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "- load average (1 min) at the start %s, at the end %s; every ratio compares figures measured in turn, round after round, in this run.\n", b.load0, loadAvg())
	for _, n := range b.notes {
		fmt.Fprintln(w, "- "+n)
	}
}

func (b *bench) commandFlags() []string {
	o := b.opt
	var out []string
	if o.quick {
		out = append(out, "-quick")
	}
	var only []string
	for _, s := range scenarios {
		if o.only[s] {
			only = append(only, s)
		}
	}
	if len(only) != len(scenarios) {
		out = append(out, "-only "+strings.Join(only, ","))
	}
	out = append(out, "-duration "+o.duration.String(), "-rounds "+strconv.Itoa(o.rounds), "-clients "+strconv.Itoa(o.clients))
	if o.only["growth"] {
		out = append(out, "-rows "+strconv.FormatInt(o.rows, 10))
	}
	if o.only["memory"] {
		out = append(out, "-messages "+strconv.FormatInt(o.messages, 10))
	}
	if o.only["mirror"] {
		out = append(out, "-mirror-rows "+strconv.Itoa(o.mirrorRows))
	}
	if o.only["journal"] {
		out = append(out, "-journal-deliveries "+strconv.FormatInt(o.journalDeliveries, 10))
	}
	if o.only["drops"] {
		out = append(out, "-rate "+strconv.FormatFloat(o.rate, 'f', -1, 64), "-drops-batch "+strconv.Itoa(o.dropsBatch))
	}
	return out
}

// fmtDur prints a latency with three significant digits.
func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return strconv.FormatFloat(d.Seconds(), 'f', 2, 64) + " s"
	case d >= 10*time.Millisecond:
		return strconv.FormatFloat(float64(d)/1e6, 'f', 0, 64) + " ms"
	case d >= time.Millisecond:
		return strconv.FormatFloat(float64(d)/1e6, 'f', 1, 64) + " ms"
	default:
		return strconv.FormatFloat(float64(d)/1e6, 'f', 2, 64) + " ms"
	}
}

// fmtNum prints n rounded, with thousands separators.
func fmtNum(n float64) string {
	s := strconv.FormatInt(int64(math.Round(n)), 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

func fmtRatio(x float64) string {
	if math.IsInf(x, 0) || math.IsNaN(x) {
		return "–"
	}
	return strconv.FormatFloat(x, 'f', 2, 64) + "×"
}

func fmtMiB(b int64) string {
	return strconv.FormatFloat(float64(b)/(1<<20), 'f', 0, 64) + " MiB"
}

// rateLat is "N/s, p50 X, p99 Y" for a load result.
func rateLat(r loadResult, messages bool) string {
	n := r.requests
	if messages {
		n = r.messages
	}
	return fmt.Sprintf("%s/s, p50 %s, p99 %s", fmtNum(r.perSec(n)), fmtDur(r.pct(0.50)), fmtDur(r.pct(0.99)))
}
