package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// journalRetention is the shortest delivery-journal retention the size
// figure uses: config.Validate takes any non-negative DELIVERY_RETENTION,
// and the service purges every tenth of it, but at most once a second.
const journalRetention = 2 * time.Second

// journal: single-message deliveries with the delivery journal on (the
// default) against the same with it off, and the database's size with a
// short retention against its size with no journal, for the same number
// of deliveries.
func (b *bench) journal(ctx context.Context) error {
	on, err := b.startService(ctx, "journal-on", nil)
	if err != nil {
		return err
	}
	defer on.stop()
	off, err := b.startService(ctx, "journal-off", map[string]string{"DELIVERY_RETENTION": "0"})
	if err != nil {
		return err
	}
	defer off.stop()
	res, err := b.interleave(ctx, []*proc{on, off}, b.spec(1))
	if err != nil {
		return err
	}
	r, o := res[0], res[1]
	ratio := r.perSec(r.requests) / o.perSec(o.requests)
	b.add(row{
		figure:   fmt.Sprintf("single-message deliveries, %d clients, delivery journal on (DELIVERY_RETENTION=168h, the default)", b.opt.clients),
		value:    rateLat(r, false) + failNote(r),
		baseline: "journal off (DELIVERY_RETENTION=0): " + rateLat(o, false),
		ratio:    fmtRatio(ratio),
		target:   "≥ 0.85×",
		verdict:  verdict(ratio >= 0.85 && r.failures == 0),
	})
	_ = on.stop()
	_ = off.stop()

	n := b.opt.journalDeliveries
	type sized struct {
		run  rssRun
		rows []int64 // journal records at each sample
	}
	size := func(name, retention string) (sized, error) {
		var out sized
		path := filepath.Join(b.dir, name+".db")
		p, err := b.startService(ctx, name, map[string]string{"DELIVERY_RETENTION": retention})
		if err != nil {
			return out, err
		}
		defer p.stop()
		ro, err := sql.Open("sqlite3", "file:"+path+"?mode=ro&_busy_timeout=5000")
		if err != nil {
			return out, err
		}
		defer ro.Close()
		out.run, err = b.driveSampled(ctx, p, n, 1, func() (int64, error) {
			var k int64
			if err := ro.QueryRowContext(ctx, "SELECT COUNT(*) FROM deliveries").Scan(&k); err != nil {
				return 0, fmt.Errorf("count journal rows: %w", err)
			}
			out.rows = append(out.rows, k)
			return dbFilesSize(path)
		}, 0)
		return out, err
	}
	ours, err := size("journal-size-on", journalRetention.String())
	if err != nil {
		return err
	}
	theirs, err := size("journal-size-off", "0")
	if err != nil {
		return err
	}
	// Both files hold the same n messages, which grow them alike; what the
	// journal adds is the difference, sample by sample. Bounded, it adds
	// nothing to the growth once its retention is full: over the second
	// half the file grows as much as the one without a journal (±10%).
	var extra rssRun
	for i := range min(len(ours.run.samples), len(theirs.run.samples)) {
		extra.samples = append(extra.samples, rssSample{ours.run.samples[i].messages, ours.run.samples[i].rss - theirs.run.samples[i].rss})
	}
	half := func(r rssRun) int64 { return r.samples[len(r.samples)-1].rss - r.samples[len(r.samples)/2].rss }
	dOn, dOff := half(ours.run), half(theirs.run)
	grow := float64(dOn) / float64(dOff)
	last, base := ours.run.samples[len(ours.run.samples)-1], theirs.run.samples[len(theirs.run.samples)-1]
	var rows []string
	for _, k := range ours.rows {
		rows = append(rows, fmtNum(float64(k)))
	}
	b.add(row{
		figure: fmt.Sprintf("SQLite file + WAL over %s single-message deliveries at full speed, DELIVERY_RETENTION=%s", fmtNum(float64(n)), journalRetention),
		value: fmt.Sprintf("%s at the end (%s); grew %s over the second half; the journal's share (this − no journal) %s at the end, %+.0f%% over the second half (%s); journal rows every tenth: %s",
			fmtMiB(last.rss), ours.run.series(), fmtMiB(dOn), fmtMiB(extra.samples[len(extra.samples)-1].rss), 100*extra.secondHalfGrowth(), extra.series(),
			strings.Join(rows, " ")),
		baseline: fmt.Sprintf("journal off (DELIVERY_RETENTION=0): %s at the end (%s); grew %s over the second half", fmtMiB(base.rss), theirs.run.series(), fmtMiB(dOff)),
		ratio:    fmtRatio(grow),
		target:   "bounded: over the second half the file grows ≤ 1.10× as much as without the journal (the journal's share flat)",
		verdict:  verdict(grow <= 1.10),
	})
	return nil
}

// dbFilesSize is the size of a SQLite database with its WAL.
func dbFilesSize(path string) (int64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	total := fi.Size()
	if wal, err := os.Stat(path + "-wal"); err == nil {
		total += wal.Size()
	}
	return total, nil
}
