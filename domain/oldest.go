package domain

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// unmirroredStates are the states of a message the CRM does not hold yet
// but will: disabled messages are left out, since no mirror is coming.
var unmirroredStates = [...]MirrorStatus{MirrorPending, MirrorDropped, MirrorFailed}

// OldestUnmirrored returns the created_at of the oldest message that is
// pending, dropped or failed, and false when there is none. The metrics'
// mirror lag is its age.
//
// It reads MIN(id) per state, which the mirror_status index answers from
// its first entry for that state (the index holds the rowid), so it costs
// a few page reads however many messages there are; ids grow with
// created_at, so the smallest id is the oldest message.
func (s *Store) OldestUnmirrored(ctx context.Context) (time.Time, bool, error) {
	oldest := int64(0)
	for _, st := range unmirroredStates {
		var id sql.NullInt64
		if err := s.rsql.QueryRowContext(ctx, "SELECT MIN(id) FROM messages WHERE mirror_status = ?", string(st)).Scan(&id); err != nil {
			return time.Time{}, false, fmt.Errorf("oldest %s message: %w", st, err)
		}
		if id.Valid && (oldest == 0 || id.Int64 < oldest) {
			oldest = id.Int64
		}
	}
	if oldest == 0 {
		return time.Time{}, false, nil
	}
	var created time.Time
	err := s.rsql.QueryRowContext(ctx, "SELECT created_at FROM messages WHERE id = ?", oldest).Scan(&created)
	if errors.Is(err, sql.ErrNoRows) {
		// Removed between the two reads (no code deletes rows today): the
		// next call will find the new oldest.
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("created_at of message %d: %w", oldest, err)
	}
	return created.UTC(), true, nil
}
