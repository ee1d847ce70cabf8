package sqlite_test

import (
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
