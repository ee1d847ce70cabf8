package domain

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// messageCols are the messages columns, in Message's field order, for
// the reads that scan rows themselves: the mirror's backlog reads take up
// to thousands of rows at a time, and GORM's reflection-driven scan cost
// them more than SQLite did.
const messageCols = "id, instagram_message_id, mid_key, sender_id, recipient_id, direction, message_text, timestamp, created_at, " +
	"mirror_status, user_id, attachments, reply_to_mid, deleted, deleted_at, mirror_attempts, mirror_last_error, " +
	"mirror_last_attempt_at, mirrored_at, mirror_degraded"

// queryMessages runs a SELECT of messageCols (the query's own text
// follows "SELECT <cols> FROM messages ") on the read pool and scans
// every row.
func (s *Store) queryMessages(ctx context.Context, rest string, args ...any) ([]Message, error) {
	rows, err := s.rsql.QueryContext(ctx, "SELECT "+messageCols+" FROM messages "+rest, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Message
	for rows.Next() {
		var (
			m                                    Message
			mid                                  sql.NullString
			key                                  sql.NullInt64
			direction, status                    string
			deletedAt, lastAttemptAt, mirroredAt sql.NullTime
		)
		err := rows.Scan(&m.ID, &mid, &key, &m.SenderID, &m.RecipientID, &direction, &m.MessageText, &m.Timestamp, &m.CreatedAt,
			&status, &m.UserID, &m.Attachments, &m.ReplyToMID, &m.Deleted, &deletedAt, &m.MirrorAttempts, &m.MirrorLastError,
			&lastAttemptAt, &mirroredAt, &m.MirrorDegraded)
		if err != nil {
			return nil, fmt.Errorf("scan message: %w", err)
		}
		m.Direction, m.MirrorStatus = Direction(direction), MirrorStatus(status)
		if mid.Valid {
			m.InstagramMessageID = &mid.String
		}
		if key.Valid {
			m.MIDKey = &key.Int64
		}
		m.DeletedAt, m.MirrorLastAttemptAt, m.MirroredAt = timePtr(deletedAt), timePtr(lastAttemptAt), timePtr(mirroredAt)
		out = append(out, m)
	}
	return out, rows.Err()
}

func timePtr(t sql.NullTime) *time.Time {
	if !t.Valid {
		return nil
	}
	return &t.Time
}

// int64Args turns ids into query arguments.
func int64Args(ids []int64) []any {
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	return args
}

// placeholders returns "?,?,...,?" for n values.
func placeholders(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat("?,", n-1) + "?"
}
