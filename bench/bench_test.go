package main

import (
	"io"
	"testing"
	"time"

	"igmirror/instagram"
)

// TestPayloadsAreValidSignedDeliveries: the load generator's deliveries
// pass the service's own signature check and parser, with as many
// messages as asked and no mid twice.
func TestPayloadsAreValidSignedDeliveries(t *testing.T) {
	secret := []byte(appSecret)
	p := newPayloads(secret, 1)
	seen := map[string]bool{}
	for _, n := range []int{1, 1, 100, 7} {
		body, sig := p.delivery(n)
		if err := instagram.VerifySignature(secret, body, sig); err != nil {
			t.Fatalf("delivery of %d: signature: %v", n, err)
		}
		d, err := instagram.Parse(body)
		if err != nil {
			t.Fatalf("delivery of %d: parse: %v", n, err)
		}
		if got, want := len(d.Messages), n; got != want {
			t.Fatalf("messages: got %d, want %d", got, want)
		}
		for _, m := range d.Messages {
			if seen[m.MID()] {
				t.Fatalf("mid %s sent twice", m.MID())
			}
			seen[m.MID()] = true
		}
	}
}

func TestPercentile(t *testing.T) {
	var r loadResult
	for i := 1; i <= 100; i++ {
		r.lat = append(r.lat, time.Duration(i)*time.Millisecond)
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.50, 50 * time.Millisecond}, {0.99, 99 * time.Millisecond}, {1, 100 * time.Millisecond}, {0, time.Millisecond}} {
		if got := r.pct(tc.q); got != tc.want {
			t.Errorf("pct(%v): got %s, want %s", tc.q, got, tc.want)
		}
	}
	if got := (loadResult{}).pct(0.99); got != 0 {
		t.Errorf("pct of nothing: got %s, want 0", got)
	}
}

func TestFmtNum(t *testing.T) {
	for _, tc := range []struct {
		in   float64
		want string
	}{{0, "0"}, {999, "999"}, {1000, "1,000"}, {15234.6, "15,235"}, {10_000_000, "10,000,000"}, {-1234, "-1,234"}} {
		if got := fmtNum(tc.in); got != tc.want {
			t.Errorf("fmtNum(%v): got %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestParseFlags(t *testing.T) {
	t.Run("defaults run everything", func(t *testing.T) {
		o, err := parseFlags(nil, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := len(o.only), len(scenarios); got != want {
			t.Errorf("scenarios: got %d, want %d", got, want)
		}
		if got, want := o.duration, 6*time.Second; got != want {
			t.Errorf("duration: got %s, want %s", got, want)
		}
	})
	t.Run("quick, an explicit flag wins", func(t *testing.T) {
		o, err := parseFlags([]string{"-quick", "-rows", "5000", "-only", "growth,single"}, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := o.rows, int64(5000); got != want {
			t.Errorf("rows: got %d, want %d", got, want)
		}
		if got, want := o.duration, 2*time.Second; got != want {
			t.Errorf("duration: got %s, want %s", got, want)
		}
		if !o.only["growth"] || !o.only["single"] || o.only["batch"] {
			t.Errorf("only: got %v, want growth and single", o.only)
		}
	})
	t.Run("unknown scenario", func(t *testing.T) {
		if _, err := parseFlags([]string{"-only", "nope"}, io.Discard); err == nil {
			t.Error("parseFlags(-only nope): got no error")
		}
	})
}
