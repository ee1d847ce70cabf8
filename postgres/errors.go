package postgres

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"regexp"
	"strings"
	"syscall"

	"igmirror/domain"

	"github.com/jackc/pgx/v5/pgconn"
)

// wrap adds context to a driver error, marks a failure to reach the
// database with domain.ErrUnavailable, and scrubs the password.
func (s *Store) wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	if s.w.Closed() {
		// The pool is closed under the call: say so in the port's terms.
		return fmt.Errorf("%s: %w", what, domain.ErrClosed)
	}
	switch {
	case errors.Is(err, domain.ErrClosed), errors.Is(err, domain.ErrNotFound), errors.Is(err, domain.ErrBadCursor):
		return fmt.Errorf("%s: %w", what, err)
	case isUnavailable(err):
		return scrub(fmt.Errorf("%s: %w: %w", what, domain.ErrUnavailable, err), s.secret)
	}
	return scrub(fmt.Errorf("%s: %w", what, err), s.secret)
}

// scrubbed is err with the password masked, for a log line.
func (s *Store) scrubbed(err error) error { return scrub(err, s.secret) }

// isUnavailable reports whether err says the database could not be
// reached or did not answer in time, as opposed to refusing a statement.
func isUnavailable(err error) bool {
	if err == nil {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "08"), // connection exception
			pgErr.Code == "57P01", pgErr.Code == "57P02", pgErr.Code == "57P03", // shutting down, crash, cannot connect now
			pgErr.Code == "53300", // too many connections
			pgErr.Code == "57014": // statement timeout: the server is stuck
			return true
		}
		return false
	}
	var connErr *pgconn.ConnectError
	var netErr net.Error
	return errors.Is(err, context.DeadlineExceeded) ||
		errors.As(err, &connErr) ||
		errors.As(err, &netErr) ||
		pgconn.Timeout(err) ||
		errors.Is(err, driver.ErrBadConn) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		strings.Contains(err.Error(), "conn closed")
}

// scrubbedError is an error whose text has a secret masked; it still
// unwraps to the original, so errors.Is and errors.As see through it.
type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }

// scrub masks secret in err's text.
func scrub(err error, secret string) error {
	if err == nil || secret == "" || !strings.Contains(err.Error(), secret) {
		return err
	}
	return &scrubbedError{msg: strings.ReplaceAll(err.Error(), secret, "xxxxx"), err: err}
}

var kvPassword = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)

// Redacted returns a database URL (or key=value connection string) with
// its password masked, for config dumps and log lines.
func Redacted(raw string) string {
	if u, err := url.Parse(raw); err == nil && u.Scheme != "" {
		if q := u.Query(); q.Has("password") {
			q.Set("password", "xxxxx")
			u.RawQuery = q.Encode()
		}
		return u.Redacted()
	}
	return kvPassword.ReplaceAllString(raw, "${1}xxxxx")
}

// urlPassword is the password a URL carries, "" when none.
func urlPassword(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		if m := kvPassword.FindStringSubmatch(raw); m != nil {
			return strings.Trim(m[2], "'")
		}
		return ""
	}
	if p, ok := u.User.Password(); ok {
		return p
	}
	return u.Query().Get("password")
}
