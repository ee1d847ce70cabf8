package instagram

import (
	"os"
	"testing"
)

// BenchmarkUnknownNames measures the key scan Parse adds to every
// delivery, on the single-message sample.
func BenchmarkUnknownNames(b *testing.B) {
	body, err := os.ReadFile("../testdata/webhooks/inbound_text.json")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		p := parser{d: &Delivery{}}
		p.unknownNames(body)
		if len(p.d.Unknown) != 0 {
			b.Fatalf("unknown: %q", p.d.Unknown)
		}
	}
}
