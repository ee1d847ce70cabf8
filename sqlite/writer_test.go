package sqlite_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"igmirror/domain"
	"igmirror/internal/testkit/storetest"
)

// TestGroupCommitFailureIsNotShared submits a message the schema refuses
// (direction outside its CHECK constraint; Validate would have caught it,
// the database must too) together with good ones. When the writer folds
// them into one transaction, that transaction fails; the good requests
// must then be committed without the bad one, and only the bad one fail.
func TestGroupCommitFailureIsNotShared(t *testing.T) {
	s := mustOpenAt(t, filepath.Join(t.TempDir(), "store.db"), storetest.Options{})
	const good = 15
	grouped := false
	for round := 0; round < 100 && !grouped; round++ {
		before := s.WriterStats()
		var wg sync.WaitGroup
		errs := make([]error, good+1)
		results := make([]domain.SaveResult, good+1)
		start := make(chan struct{})
		for i := range good + 1 {
			m := newMsg(t, fmt.Sprintf("r%d-%d", round, i))
			if i == good/2 {
				m.Direction = "sideways"
			}
			wg.Go(func() {
				<-start
				results[i], errs[i] = s.Save(ctx, domain.Batch{Messages: []domain.Message{m}})
			})
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			switch {
			case i == good/2 && err == nil:
				t.Fatalf("round %d: Save of a message with direction sideways: got no error, want the CHECK constraint's", round)
			case i != good/2 && (err != nil || len(results[i].New) != 1):
				t.Fatalf("round %d: good Save %d: got %+v, %v, want it stored (another request's failure is not its own)", round, i, results[i], err)
			}
		}
		if _, err := s.GetByMID(ctx, fmt.Sprintf("r%d-%d", round, good/2)); err != domain.ErrNotFound {
			t.Fatalf("round %d: the refused message: got %v, want not stored", round, err)
		}
		// A failed group is retried request by request: two failed
		// transactions (the group's, then the bad request's alone) show
		// that this round grouped the bad request with others.
		grouped = s.WriterStats().Failed-before.Failed >= 2
	}
	if !grouped {
		t.Fatal("the bad request never shared a group commit in 100 rounds; the test proved nothing")
	}
}

// TestSaveLeavesCallerMessagesAlone: the writer works on its own copy of
// a batch. A caller whose context ends stops waiting while the write may
// still commit; had the writer filled in the caller's slice and delivery,
// it would write memory the caller already reuses (a data race).
func TestSaveLeavesCallerMessagesAlone(t *testing.T) {
	s := mustOpenAt(t, filepath.Join(t.TempDir(), "store.db"), storetest.Options{})
	msgs := []domain.Message{newMsg(t, "a"), newMsg(t, "a"), newMsg(t, "")}
	d := &domain.Delivery{Body: []byte(`{}`), Items: map[string]int{"message": 3}}
	res, err := s.Save(ctx, domain.Batch{Messages: msgs, Delivery: d})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.New) != 2 || res.New[0].ID == 0 || res.New[1].ID == 0 || d.ID == 0 || d.Stored != 2 || d.Duplicates != 1 {
		t.Fatalf("result: got %+v, delivery %+v, want two new with ids and the delivery's yield filled in", res, d)
	}
	for i, m := range msgs {
		if m.ID != 0 || !m.CreatedAt.IsZero() || m.MirrorOwner != "" {
			t.Errorf("caller's message %d: got id %d created %v owner %q, want it untouched", i, m.ID, m.CreatedAt, m.MirrorOwner)
		}
	}

	// Callers that give up at once, then reuse their batch's memory.
	for i := range 50 {
		msgs := []domain.Message{newMsg(t, fmt.Sprintf("gave-up-%d", i))}
		d := &domain.Delivery{Body: []byte(`{}`)}
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, _ = s.Save(cctx, domain.Batch{Messages: msgs, Delivery: d})
		}()
		cancel()
		<-done
		msgs[0] = domain.Message{}
		d.Body, d.ID, d.Stored = nil, 0, 0
	}
	if err := s.CheckWritable(ctx); err != nil {
		t.Fatal(err)
	}
}
