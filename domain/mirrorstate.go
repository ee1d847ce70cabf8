package domain

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"
)

// maxErrorLen bounds the error text kept on a message.
const maxErrorLen = 500

// inChunks calls fn with items in slices small enough for one IN list.
func inChunks[T any](items []T, fn func(part []T) error) error {
	for len(items) > 0 {
		n := min(len(items), 500)
		if err := fn(items[:n]); err != nil {
			return err
		}
		items = items[n:]
	}
	return nil
}

// MarkAttempting records that the mirror is about to write these messages
// to the CRM. It commits before the CRM write, so that after a crash the
// next attempt knows the outcome of this one is unknown and checks the CRM
// before inserting again.
func (s *Store) MarkAttempting(ctx context.Context, ids []int64) error {
	now := time.Now().UTC()
	return s.exec(ctx, func(tx *gorm.DB) error {
		return inChunks(ids, func(part []int64) error {
			err := tx.Exec("UPDATE messages SET mirror_attempts = mirror_attempts + 1, mirror_last_attempt_at = ? WHERE id IN ?", now, part).Error
			if err != nil {
				return fmt.Errorf("mark mirror attempt: %w", err)
			}
			return nil
		})
	})
}

// MarkMirrored records that the CRM holds these messages; degraded lists
// the ids whose CRM copy lost characters or was cut to fit.
func (s *Store) MarkMirrored(ctx context.Context, ids []int64, degraded map[int64]bool) error {
	now := time.Now().UTC()
	var clean, lossy []int64
	for _, id := range ids {
		if degraded[id] {
			lossy = append(lossy, id)
		} else {
			clean = append(clean, id)
		}
	}
	return s.exec(ctx, func(tx *gorm.DB) error {
		for _, set := range []struct {
			ids      []int64
			degraded bool
		}{{clean, false}, {lossy, true}} {
			err := inChunks(set.ids, func(part []int64) error {
				return tx.Exec("UPDATE messages SET mirror_status = ?, mirrored_at = ?, mirror_last_error = '', mirror_degraded = ? WHERE id IN ?",
					MirrorMirrored, now, set.degraded, part).Error
			})
			if err != nil {
				return fmt.Errorf("mark mirrored: %w", err)
			}
		}
		return nil
	})
}

// MarkFailed records that the CRM refused these messages, keeping reason.
func (s *Store) MarkFailed(ctx context.Context, ids []int64, reason string) error {
	if len(reason) > maxErrorLen {
		reason = TruncateUTF8(reason, maxErrorLen)
	}
	return s.exec(ctx, func(tx *gorm.DB) error {
		return inChunks(ids, func(part []int64) error {
			err := tx.Exec("UPDATE messages SET mirror_status = ?, mirror_last_error = ? WHERE id IN ?", MirrorFailed, reason, part).Error
			if err != nil {
				return fmt.Errorf("mark failed: %w", err)
			}
			return nil
		})
	})
}
