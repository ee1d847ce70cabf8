// Package gormlog holds the GORM logger both store adapters use: GORM's
// errors and slow statements go to slog at warn level, with the SQL's
// placeholders but never its bound values (customers' private words).
package gormlog

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// slowQuery is how long a statement may take before it is logged.
const slowQuery = 200 * time.Millisecond

// gormLogger sends GORM's errors and slow queries to slog at warn level.
// It renders SQL with placeholders only: bound values are customers'
// private words and never reach a log line.
type gormLogger struct {
	log    *slog.Logger
	maxSQL int
}

// New returns a GORM logger writing to l under component=gorm; a logged
// statement's text is cut after maxSQL bytes.
func New(l *slog.Logger, maxSQL int) logger.Interface {
	return gormLogger{log: l.With("component", "gorm"), maxSQL: maxSQL}
}

func (g gormLogger) LogMode(logger.LogLevel) logger.Interface { return g }

func (g gormLogger) Info(ctx context.Context, msg string, _ ...any) { g.log.DebugContext(ctx, msg) }

func (g gormLogger) Warn(ctx context.Context, msg string, _ ...any) { g.log.WarnContext(ctx, msg) }

func (g gormLogger) Error(ctx context.Context, msg string, _ ...any) { g.log.ErrorContext(ctx, msg) }

// Trace renders the statement only when it will be logged: building SQL
// text for every statement would cost the hot path for nothing.
func (g gormLogger) Trace(ctx context.Context, begin time.Time, fc func() (string, int64), err error) {
	elapsed := time.Since(begin)
	switch {
	case err != nil && !errors.Is(err, gorm.ErrRecordNotFound):
		sql, rows := fc()
		g.log.WarnContext(ctx, "sql failed", "sql", g.truncate(sql), "rows", rows, "duration_ms", elapsed.Milliseconds(), "err", err)
	case elapsed > slowQuery:
		sql, rows := fc()
		g.log.WarnContext(ctx, "slow sql", "sql", g.truncate(sql), "rows", rows, "duration_ms", elapsed.Milliseconds())
	}
}

// ParamsFilter drops bound values so that Trace's SQL keeps placeholders.
func (g gormLogger) ParamsFilter(_ context.Context, sql string, _ ...any) (string, []any) {
	return sql, nil
}

func (g gormLogger) truncate(s string) string {
	if len(s) > g.maxSQL {
		return s[:g.maxSQL] + "…"
	}
	return s
}
