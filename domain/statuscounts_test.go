package domain

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"testing"

	"gorm.io/gorm"
)

// countedByGroup counts the messages by state the slow way.
func countedByGroup(t *testing.T, s *Store) map[MirrorStatus]int64 {
	t.Helper()
	var rows []struct {
		MirrorStatus MirrorStatus
		N            int64
	}
	if err := s.rdb.Raw("SELECT mirror_status, COUNT(*) AS n FROM messages GROUP BY mirror_status").Scan(&rows).Error; err != nil {
		t.Fatal(err)
	}
	out := map[MirrorStatus]int64{MirrorPending: 0, MirrorMirrored: 0, MirrorDropped: 0, MirrorFailed: 0, MirrorDisabled: 0}
	for _, r := range rows {
		out[r.MirrorStatus] = r.N
	}
	return out
}

func checkCounts(t *testing.T, s *Store, step string) {
	t.Helper()
	got, err := s.CountByStatus(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := countedByGroup(t, s); !maps.Equal(got, want) {
		t.Fatalf("after %s: status_counts %v, messages %v", step, got, want)
	}
}

// TestStatusCountsFollowEveryChange runs every kind of write the store
// does and checks the kept counts against a count of the messages after
// each one.
func TestStatusCountsFollowEveryChange(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "s.db")
	s := openTestStore(t, path)
	var msgs []Message
	for i := range 12 {
		m := testMsg(t, fmt.Sprintf("m-%d", i), "t")
		if i%4 == 3 {
			m.MirrorStatus = MirrorDisabled
		}
		msgs = append(msgs, m)
	}
	res, err := s.Save(ctx, append(msgs, testMsg(t, "m-0", "dup"), testMsg(t, "", "no mid")), []string{"m-1"})
	if err != nil || len(res.New) != 13 {
		t.Fatalf("Save: %v, %d new", err, len(res.New))
	}
	checkCounts(t, s, "a save with a duplicate and an unsend")
	id := func(i int) int64 { return res.New[i].ID }

	if err := s.MarkAttempting(ctx, []int64{id(0), id(1), id(2)}); err != nil {
		t.Fatal(err)
	}
	checkCounts(t, s, "attempting (no state change)")
	if err := s.MarkMirrored(ctx, []int64{id(0), id(1)}, map[int64]bool{id(1): true}); err != nil {
		t.Fatal(err)
	}
	checkCounts(t, s, "mirrored")
	if err := s.MarkMirrored(ctx, []int64{id(0)}, nil); err != nil {
		t.Fatal(err)
	}
	checkCounts(t, s, "mirrored again (same state)")
	if err := s.MarkFailed(ctx, []int64{id(2), id(4)}, "no"); err != nil {
		t.Fatal(err)
	}
	checkCounts(t, s, "failed")
	s.MarkDropped(id(5), id(6), id(0))           // id(0) is mirrored: only pending ones move
	if err := s.CheckWritable(ctx); err != nil { // a commit that carries the drop marks
		t.Fatal(err)
	}
	checkCounts(t, s, "dropped")
	if got, _ := s.CountByStatus(ctx); got[MirrorDropped] != 2 || got[MirrorMirrored] != 2 || got[MirrorFailed] != 2 {
		t.Fatalf("counts after the marks: %v; want 2 dropped, 2 mirrored, 2 failed", got)
	}
	if _, err := s.DeferCandidates(ctx, CandidateQuery{Statuses: []MirrorStatus{MirrorFailed}}, 0); err != nil {
		t.Fatal(err)
	}
	checkCounts(t, s, "deferred")

	// A transaction that stores, moves and then fails leaves no trace.
	before, _ := s.CountByStatus(ctx)
	err = s.submit(ctx, &writeReq{msgs: []Message{testMsg(t, "m-rolled", "r")}, tsText: []string{sqliteTime(testT0)},
		apply: func(tx *gorm.DB) error {
			if err := tx.Exec("UPDATE messages SET mirror_status = ? WHERE id = ?", MirrorMirrored, id(8)).Error; err != nil {
				return err
			}
			return fmt.Errorf("boom")
		}})
	if err == nil {
		t.Fatal("failing transaction: no error")
	}
	after, _ := s.CountByStatus(ctx)
	if !maps.Equal(before, after) {
		t.Fatalf("a rolled-back transaction moved the counts: %v → %v", before, after)
	}
	checkCounts(t, s, "a rollback")
	closeStore(t, s)

	// A store without the table (an earlier version) counts at open.
	db := rawDB(t, path)
	execAll(t, db, "DROP TRIGGER messages_status_moved", "DROP TABLE status_counts")
	_ = db.Close()
	s = openTestStore(t, path)
	defer closeStore(t, s)
	checkCounts(t, s, "the migration")
	if err := s.MarkMirrored(ctx, []int64{id(9)}, nil); err != nil {
		t.Fatal(err)
	}
	checkCounts(t, s, "a change after the migration")
}
