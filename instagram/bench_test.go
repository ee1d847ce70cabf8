package instagram_test

import (
	"testing"

	"igmirror/instagram"
)

func benchmarkParse(b *testing.B, body []byte, wantMessages int) {
	b.Helper()
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		d, err := instagram.Parse(body)
		if err != nil {
			b.Fatal(err)
		}
		if len(d.Messages) != wantMessages {
			b.Fatalf("messages: got %d, want %d", len(d.Messages), wantMessages)
		}
	}
}

func BenchmarkParseSingle(b *testing.B) {
	benchmarkParse(b, mustReadSample(b, "inbound_text.json"), 1)
}

func BenchmarkParseBatch100(b *testing.B) {
	benchmarkParse(b, batchBody(100), 100)
}

func BenchmarkParseBatch1000(b *testing.B) {
	benchmarkParse(b, batchBody(1000), 1000)
}

func BenchmarkVerifySignature(b *testing.B) {
	secret := []byte("app-secret")
	body := mustReadSample(b, "inbound_text.json")
	header := instagram.Sign(secret, body)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if err := instagram.VerifySignature(secret, body, header); err != nil {
			b.Fatal(err)
		}
	}
}
