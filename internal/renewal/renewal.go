// Package renewal holds the loop that keeps a store instance's mirror
// lease alive: renewed three times per timeout, with one log line when
// renewing starts to fail and one when it works again, rather than one
// per attempt.
package renewal

import (
	"log/slog"
	"time"
)

// Run calls renew every period until stop is closed. renew's error is
// logged as it is, so it must carry no secret. owner names the lease in
// the log lines.
func Run(stop <-chan struct{}, period time.Duration, log *slog.Logger, owner string, renew func() error) {
	t := time.NewTicker(period)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		err := renew()
		switch {
		case err != nil && !failing:
			failing = true
			log.Warn("mirror lease not renewed; once it lapses this instance mirrors nothing and others take its messages over", "owner", owner, "err", err)
		case err == nil && failing:
			failing = false
			log.Info("mirror lease renewed again", "owner", owner)
		}
	}
}
