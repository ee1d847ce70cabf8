package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"testing/iotest"
)

// TestReceiptMatchesEchoJSON pins the hand-written 200 body to what
// c.JSON made of the map before: encoding/json's bytes and a newline.
func TestReceiptMatchesEchoJSON(t *testing.T) {
	for _, tc := range []struct{ stored, duplicates, unsent int }{
		{1, 0, 0}, {0, 1, 0}, {0, 0, 3}, {1000, 7, 12}, {0, 0, 0}, {123456789, 2, 1},
	} {
		var want bytes.Buffer
		if err := json.NewEncoder(&want).Encode(map[string]int{"stored": tc.stored, "duplicates": tc.duplicates, "unsent": tc.unsent}); err != nil {
			t.Fatal(err)
		}
		if got := receipt(tc.stored, tc.duplicates, tc.unsent); !bytes.Equal(got, want.Bytes()) {
			t.Errorf("receipt(%d, %d, %d): got %q, want %q", tc.stored, tc.duplicates, tc.unsent, got, want.Bytes())
		}
	}
}

func TestReadAllWhateverTheDeclaredSize(t *testing.T) {
	body := strings.Repeat("0123456789", 300) // 3000 bytes
	for _, tc := range []struct {
		name string
		size int64
	}{
		{"exact", 3000}, {"unknown", -1}, {"declared smaller", 10}, {"declared larger", 5000},
		{"declared huge", 1 << 40}, {"zero", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// One byte a read, the worst a client can do to the loop.
			got, err := readAll(iotest.OneByteReader(strings.NewReader(body)), tc.size)
			if err != nil {
				t.Fatalf("readAll: %v", err)
			}
			if string(got) != body {
				t.Errorf("readAll: got %d bytes, want %d", len(got), len(body))
			}
		})
	}
	t.Run("error", func(t *testing.T) {
		_, err := readAll(iotest.ErrReader(iotest.ErrTimeout), 10)
		if err != iotest.ErrTimeout {
			t.Errorf("readAll: got %v, want %v", err, iotest.ErrTimeout)
		}
	})
}

// TestReadAllCapsUpFrontAllocation: the declared length is the client's
// word, so a client that declares a large body and sends a few bytes must
// not get a large buffer allocated for it; a body that is really large
// still arrives whole, the buffer growing as it is read.
func TestReadAllCapsUpFrontAllocation(t *testing.T) {
	const maxCap = 64<<10 + 1
	for _, size := range []int64{64<<10 + 1, 200 << 10, 1 << 20} {
		got, err := readAll(strings.NewReader("{}"), size)
		if err != nil {
			t.Fatalf("readAll declaring %d: %v", size, err)
		}
		if string(got) != "{}" {
			t.Errorf("readAll declaring %d: got %q, want %q", size, got, "{}")
		}
		if cap(got) > maxCap {
			t.Errorf("readAll declaring %d, sending 2 bytes: got cap %d, want at most %d", size, cap(got), maxCap)
		}
	}
	body := strings.Repeat("0123456789abcdef", 200<<10/16) // 200 KiB
	for _, size := range []int64{int64(len(body)), -1} {
		got, err := readAll(strings.NewReader(body), size)
		if err != nil {
			t.Fatalf("readAll of 200 KiB declaring %d: %v", size, err)
		}
		if string(got) != body {
			t.Errorf("readAll of 200 KiB declaring %d: got %d bytes, want %d", size, len(got), len(body))
		}
	}
}
