package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
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
	size := func(name, retention string) (rssRun, int64, error) {
		path := filepath.Join(b.dir, name+".db")
		p, err := b.startService(ctx, name, map[string]string{"DELIVERY_RETENTION": retention})
		if err != nil {
			return rssRun{}, 0, err
		}
		defer p.stop()
		run, err := b.driveSampled(ctx, p, n, 1, func() (int64, error) { return dbFilesSize(path) }, 0)
		if err != nil {
			return run, 0, err
		}
		kept, err := journalRows(ctx, path)
		return run, kept, err
	}
	ours, kept, err := size("journal-size-on", journalRetention.String())
	if err != nil {
		return err
	}
	theirs, _, err := size("journal-size-off", "0")
	if err != nil {
		return err
	}
	// Both files hold the same n messages; what the journal adds is the
	// difference, sample by sample.
	var extra rssRun
	for i := range min(len(ours.samples), len(theirs.samples)) {
		extra.samples = append(extra.samples, rssSample{ours.samples[i].messages, ours.samples[i].rss - theirs.samples[i].rss})
	}
	growth := extra.secondHalfGrowth()
	last, base := ours.samples[len(ours.samples)-1], theirs.samples[len(theirs.samples)-1]
	b.add(row{
		figure: fmt.Sprintf("SQLite file + WAL after %s single-message deliveries at full speed, DELIVERY_RETENTION=%s", fmtNum(float64(n)), journalRetention),
		value: fmt.Sprintf("%s (%s); the journal's share (this − no journal) %s, %+.0f%% over the second half (%s); %s journal rows left at the end",
			fmtMiB(last.rss), ours.series(), fmtMiB(extra.samples[len(extra.samples)-1].rss), 100*growth, extra.series(), fmtNum(float64(kept))),
		baseline: fmt.Sprintf("journal off (DELIVERY_RETENTION=0): %s (%s)", fmtMiB(base.rss), theirs.series()),
		ratio:    fmtRatio(float64(last.rss) / float64(base.rss)),
		target:   "bounded: the journal's share does not grow over the second half (≤ +10%)",
		verdict:  verdict(growth <= 0.10),
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

// journalRows counts the delivery journal's records in the store at path,
// read-only beside the running service (WAL readers do not block it).
func journalRows(ctx context.Context, path string) (int64, error) {
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var n int64
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM deliveries").Scan(&n); err != nil {
		return 0, fmt.Errorf("count journal rows: %w", err)
	}
	return n, nil
}
