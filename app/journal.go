package main

import (
	"context"
	"time"
)

// purgeBatch is how many journal records one purge statement deletes: a
// short write, so that the store's writer is never held up for long.
const purgeBatch = 1000

// purgeJournal deletes journal records older than DELIVERY_RETENTION,
// every minute (or every tenth of the retention, if shorter), in small
// batches, until ctx ends.
func (a *App) purgeJournal(ctx context.Context) {
	keep := a.cfg.DeliveryRetention
	if keep <= 0 {
		return
	}
	every := min(time.Minute, max(keep/10, time.Second))
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		before := time.Now().Add(-keep)
		total := int64(0)
		for ctx.Err() == nil {
			n, err := a.store.PurgeDeliveries(ctx, before, purgeBatch)
			if err != nil {
				if ctx.Err() == nil {
					a.log.Warn("purge delivery journal", "err", err)
				}
				break
			}
			total += n
			if n < purgeBatch {
				break
			}
		}
		if total > 0 {
			a.log.Debug("delivery journal purged", "deleted", total, "retention", keep.String())
		}
	}
}
