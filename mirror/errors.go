package mirror

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
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

// String names the class, for logs and test failures.
func (c Class) String() string {
	switch c {
	case Transient:
		return "transient"
	case Permanent:
		return "permanent"
	case RowData:
		return "row data"
	}
	return fmt.Sprintf("class(%d)", int(c))
}

// Classify says what kind of error err is, and whether the statement's
// outcome is unknown (it may have been applied before the connection
// failed), so that the next attempt must check before inserting again.
//
// An error the server answered with means the statement did not apply
// (an autocommit INSERT is atomic), except the client-side "server gone"
// codes, which may be reported after the statement was sent. A broken or
// timed-out connection leaves the outcome unknown; a refused one does not,
// since nothing was sent.
func Classify(err error) (class Class, unknownOutcome bool) {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case 1045, 1698, 1044, 1130, 1129, 1862, 1820, 3118, 4151,
			1049, 1146, 1142, 1143, 1054, 1064, 1227, 1251:
			// access denied (1698: MariaDB's form of it for an unknown
			// user), host not allowed or blocked, password expired, account
			// locked; unknown database or table, no privilege, bad column,
			// auth protocol the server refuses
			return Permanent, false
		case 1366, 1406, 1292, 1265, 1264, 1300, 3988, 1153:
			// incorrect string value, data too long, bad datetime,
			// truncation; 1153: the statement is over max_allowed_packet,
			// so its rows must go one by one
			return RowData, false
		case 2006, 2013:
			// server gone away, lost connection during the query: as a
			// client error, possibly after the statement was applied
			return Transient, true
		default:
			// lock wait 1205, deadlock 1213, too many connections 1040,
			// shutdown 1053, read-only 1290 and the rest: the server answered,
			// so the statement did not apply.
			return Transient, false
		}
	}
	if errors.Is(err, mysql.ErrPktTooLarge) {
		// Refused by the driver before sending: smaller statements will do.
		return RowData, false
	}
	if errors.Is(err, mysql.ErrNoTLS) || isCertificateError(err) {
		// CRM_MYSQL_TLS asks for what the server cannot give: nothing was
		// sent, and only an operator can fix it.
		return Permanent, false
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return Transient, false
	}
	// Timeouts, resets, EOF, a bad connection and anything unknown: the
	// statement may have reached the server.
	return Transient, true
}

// isCertificateError reports whether err is a failed TLS certificate check.
func isCertificateError(err error) bool {
	var (
		verify   *tls.CertificateVerificationError
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
	)
	return errors.As(err, &verify) || errors.As(err, &unknown) || errors.As(err, &hostname) || errors.As(err, &invalid)
}

// isAuthOrSchema reports whether err means the CRM is misconfigured rather
// than away: wrong password, missing database or table.
func isAuthOrSchema(err error) bool {
	c, _ := Classify(err)
	return c == Permanent
}
