package mirror

import (
	"context"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"syscall"

	"github.com/go-sql-driver/mysql"
)

// Class sorts CRM errors by what the mirror should do about them.
type Class int

// The error classes.
const (
	// Transient errors pass: retry the same rows after a backoff.
	Transient Class = iota
	// Permanent errors are the configuration's (password, database,
	// table): retrying cannot help until an operator acts.
	Permanent
	// RowData errors are one row's: its value does not fit a column.
	RowData
)

// Classify says what kind of error err is, and whether the statement's
// outcome is unknown (it may have been applied before the connection
// failed), so that the next attempt must check before inserting again.
func Classify(err error) (class Class, unknownOutcome bool) {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case 1045, 1044, 1049, 1146, 1142, 1143, 1054, 1064, 1227, 1251:
			// access denied, unknown database or table, no privilege, bad column
			return Permanent, false
		case 1366, 1406, 1292, 1265, 1264, 1300, 3988:
			// incorrect string value, data too long, bad datetime, truncation
			return RowData, false
		default:
			// lock wait 1205, deadlock 1213, too many connections 1040,
			// shutdown 1053, read-only 1290 and the rest: the server answered,
			// so the statement did not apply.
			return Transient, false
		}
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, mysql.ErrInvalidConn),
		errors.Is(err, driver.ErrBadConn), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return Transient, true
	case errors.Is(err, syscall.ECONNREFUSED):
		return Transient, false
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return Transient, true
	}
	return Transient, true
}

// isAuthOrSchema reports whether err means the CRM is misconfigured rather
// than away: wrong password, missing database or table.
func isAuthOrSchema(err error) bool {
	c, _ := Classify(err)
	return c == Permanent
}
