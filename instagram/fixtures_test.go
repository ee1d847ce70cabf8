package instagram_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// webhookDir holds the sample Meta deliveries shared with the spec.
const webhookDir = "../testdata/webhooks"

func mustReadSample(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(webhookDir, name))
	if err != nil {
		tb.Fatalf("read sample: %v", err)
	}
	return b
}

func mustSampleFiles(tb testing.TB) []string {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join(webhookDir, "*.json"))
	if err != nil {
		tb.Fatalf("list samples: %v", err)
	}
	if len(files) == 0 {
		tb.Fatalf("no sample deliveries in %s", webhookDir)
	}
	return files
}

// deliveryOf wraps messaging items into one delivery with one entry.
func deliveryOf(items ...string) []byte {
	return []byte(`{"object":"instagram","entry":[{"id":"17841400000000001","time":1763770000500,"messaging":[` +
		strings.Join(items, ",") + `]}]}`)
}

// messageItem is an inbound messaging item with the given mid and text.
func messageItem(mid, text string) string {
	return fmt.Sprintf(`{"sender":{"id":"5582201937461123"},"recipient":{"id":"17841400000000001"},"timestamp":1763770000123,"message":{"mid":%q,"text":%q}}`, mid, text)
}

// batchBody is a delivery of n distinct inbound messages, shaped like the
// ones Meta sends.
func batchBody(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"object":"instagram","entry":[{"id":"17841400000000001","time":1763770000500,"messaging":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"sender":{"id":"5582201937461123"},"recipient":{"id":"17841400000000001"},"timestamp":%d,"message":{"mid":"aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDAwMDAwMDAwMDAxOjM0MDI4MjM2Njg0MTcxMDMwMDk0OTEyODEz%08dZDZD","text":"Hi! Do you ship to Kyiv? \u041f\u0440\u0438\u0432\u0456\u0442 %d"}}`, 1763770000123+i, i, i)
	}
	b.WriteString(`]}]}`)
	return []byte(b.String())
}
