package domain_test

import (
	"context"
	"slices"
	"testing"

	"igmirror/domain"
)

// TestSaveAcrossStatementSizes saves batches that the writer cuts into
// several prepared statements (400, 256, ..., 32 rows, then an exact
// remainder), with mids already stored at the edges of those statements.
// Which messages are new must come out by id, never by position.
func TestSaveAcrossStatementSizes(t *testing.T) {
	tests := []struct {
		name string
		n    int
		dups []int // positions whose mid is already stored
	}{
		{name: "one duplicate alone", n: 1, dups: []int{0}},
		{name: "exact size, last two duplicates", n: 16, dups: []int{14, 15}},
		{name: "16 plus 1, duplicates either side of the cut", n: 17, dups: []int{15, 16}},
		{name: "400 32 4 1, duplicates at every cut", n: 437, dups: []int{0, 399, 400, 431, 432, 436}},
		{name: "two full statements, no duplicates", n: 800},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustOpenStore(t)
			var old []domain.Message
			for k := range tt.dups {
				old = append(old, newMsg(t, mid("old", k)))
			}
			var before domain.SaveResult
			if len(old) > 0 {
				before = mustSave(t, s, old...)
			}

			msgs := make([]domain.Message, tt.n)
			var wantMIDs []string
			for i := range msgs {
				if k := slices.Index(tt.dups, i); k >= 0 {
					msgs[i] = newMsg(t, mid("old", k))
					continue
				}
				msgs[i] = newMsg(t, mid("new", i))
				wantMIDs = append(wantMIDs, mid("new", i))
			}
			res := mustSave(t, s, msgs...)

			if got, want := res.Duplicates, len(tt.dups); got != want {
				t.Errorf("duplicates: got %d, want %d", got, want)
			}
			var gotMIDs []string
			for _, m := range res.New {
				gotMIDs = append(gotMIDs, m.MID())
			}
			if !slices.Equal(gotMIDs, wantMIDs) {
				t.Fatalf("new mids: got %d %v..., want %d %v...", len(gotMIDs), head(gotMIDs), len(wantMIDs), head(wantMIDs))
			}
			for _, m := range res.New {
				stored, err := s.GetByMID(context.Background(), m.MID())
				if err != nil {
					t.Fatalf("GetByMID(%s): %v", m.MID(), err)
				}
				if stored.ID != m.ID {
					t.Fatalf("id of %s: Save said %d, the table holds %d", m.MID(), m.ID, stored.ID)
				}
			}
			for k, m := range before.New {
				stored, err := s.GetByMID(context.Background(), m.MID())
				if err != nil || stored.ID != m.ID {
					t.Errorf("already stored %d (%s): got id %d, %v, want %d", k, m.MID(), stored.ID, err, m.ID)
				}
			}
			if got, want := len(allIDs(t, s)), len(tt.dups)+len(wantMIDs); got != want {
				t.Errorf("rows: got %d, want %d", got, want)
			}
		})
	}
}

func head(s []string) []string { return s[:min(len(s), 3)] }
