package domain_test

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"igmirror/domain"
)

// benchMessages returns n valid pending messages with mids unique to this
// benchmark run, spread over many users as real traffic is.
func benchMessages(tb testing.TB, seq *atomic.Int64, n int) []domain.Message {
	tb.Helper()
	msgs := make([]domain.Message, n)
	for i := range msgs {
		k := seq.Add(1)
		mid := fmt.Sprintf("aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQx%016x%08d", uint64(k)*0x9e3779b97f4a7c15, k)
		msgs[i] = domain.Message{
			InstagramMessageID: &mid,
			SenderID:           fmt.Sprintf("55822019374%05d", k%1000),
			RecipientID:        business,
			Direction:          domain.Inbound,
			MessageText:        "Hi! Do you ship to Kyiv?",
			Timestamp:          t0.Add(time.Duration(k) * time.Millisecond),
			MirrorStatus:       domain.MirrorPending,
		}
		if err := msgs[i].Validate(); err != nil {
			tb.Fatal(err)
		}
	}
	return msgs
}

func benchmarkSave(b *testing.B, perSave, callers int) {
	benchmarkSaveSync(b, perSave, callers, "NORMAL")
}

func benchmarkSaveSync(b *testing.B, perSave, callers int, synchronous string) {
	s, err := domain.OpenStore(domain.StoreOptions{Path: filepath.Join(b.TempDir(), "store.db"), Synchronous: synchronous})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	ctx := context.Background()
	var seq atomic.Int64
	b.ReportAllocs()
	start := time.Now()
	if callers == 1 {
		for b.Loop() {
			msgs := benchMessages(b, &seq, perSave)
			res, err := s.Save(ctx, msgs, nil)
			if err != nil {
				b.Fatal(err)
			}
			if len(res.New) != perSave {
				b.Fatalf("stored: got %d, want %d", len(res.New), perSave)
			}
		}
	} else {
		b.SetParallelism(max(callers/runtime.GOMAXPROCS(0), 1))
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				msgs := benchMessages(b, &seq, perSave)
				res, err := s.Save(ctx, msgs, nil)
				if err != nil {
					b.Error(err)
					return
				}
				if len(res.New) != perSave {
					b.Errorf("stored: got %d, want %d", len(res.New), perSave)
					return
				}
			}
		})
	}
	b.ReportMetric(float64(seq.Load())/time.Since(start).Seconds(), "msgs/s")
	ws := s.WriterStats()
	b.ReportMetric(float64(ws.Requests)/float64(max(ws.Commits, 1)), "saves/commit")
}

// BenchmarkSaveOne is one message per Save from one caller: a commit each.
func BenchmarkSaveOne(b *testing.B) { benchmarkSave(b, 1, 1) }

// BenchmarkSaveOneConcurrent32 is one message per Save from 32 callers:
// what group commit is for.
func BenchmarkSaveOneConcurrent32(b *testing.B) { benchmarkSave(b, 1, 32) }

// BenchmarkSaveOneConcurrent32Full is the same under SYNCHRONOUS=FULL,
// every Save answered only once the WAL is on disk.
func BenchmarkSaveOneConcurrent32Full(b *testing.B) { benchmarkSaveSync(b, 1, 32, "FULL") }

// BenchmarkSave100 is 100-message Saves from one caller.
func BenchmarkSave100(b *testing.B) { benchmarkSave(b, 100, 1) }

// BenchmarkSave100Concurrent8 is 100-message Saves from 8 callers.
func BenchmarkSave100Concurrent8(b *testing.B) { benchmarkSave(b, 100, 8) }
