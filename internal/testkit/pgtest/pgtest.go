// Package pgtest gives a test its own throwaway PostgreSQL database and
// drops it when the test ends.
//
// The server is named by IGMIRROR_TEST_POSTGRES, a postgres:// URL whose
// database is one the user may connect to (default
// postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable). Its user
// must be allowed to create and drop databases. When the server cannot be
// reached the test is skipped with a message saying how to run it, unless
// IGMIRROR_REQUIRE_POSTGRES=1, in which case the test fails: CI sets it so
// that it never passes by skipping.
//
//	func TestStore(t *testing.T) {
//		db := pgtest.New(t)
//		s, err := postgres.Open(postgres.Options{URL: db.URL})
//		// ...
//	}
package pgtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
)

// Environment variables read by this package.
const (
	// EnvURL names the server: a postgres:// URL of a database the user may connect to.
	EnvURL = "IGMIRROR_TEST_POSTGRES"
	// EnvRequire, set to "1", turns "server unreachable" from a skip into a failure.
	EnvRequire = "IGMIRROR_REQUIRE_POSTGRES"
	// DefaultURL is used when EnvURL is unset or empty.
	DefaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
)

// DBPrefix starts the name of every database this package creates.
const DBPrefix = "igmirror_t_"

// opTimeout bounds each administrative statement and the reachability check.
const opTimeout = 30 * time.Second

// DB is a throwaway PostgreSQL database for one test.
type DB struct {
	// URL connects to the database (the server's URL with its name).
	URL string
	// Name is the database's name, igmirror_t_<random hex>.
	Name string
	// Host and Port are the server's TCP address (for a fault proxy).
	Host string
	Port int
	// SQL is connected to the database, for a test's own checks.
	SQL *sql.DB
}

// ServerURL returns the server URL of IGMIRROR_TEST_POSTGRES (or the default).
func ServerURL() string {
	if u := os.Getenv(EnvURL); u != "" {
		return u
	}
	return DefaultURL
}

// unreachable remembers servers that failed the reachability check, so
// that a package with many tests waits for a dead server only once.
var unreachable sync.Map // URL -> error

// New creates a fresh database on the server of IGMIRROR_TEST_POSTGRES,
// registers t.Cleanup to drop it, and returns it. It skips the test when
// the server is unreachable, or fails it when IGMIRROR_REQUIRE_POSTGRES=1.
func New(t testing.TB) *DB {
	t.Helper()
	server := ServerURL()
	u, err := url.Parse(server)
	if err != nil || u.Scheme == "" {
		t.Fatalf("pgtest: %s is not a postgres:// URL", EnvURL)
	}
	if prev, ok := unreachable.Load(server); ok {
		skipOrFail(t, prev.(error))
	}
	admin, err := sql.Open("pgx", server)
	if err != nil {
		t.Fatalf("pgtest: open server: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	err = admin.PingContext(ctx)
	cancel()
	if err != nil {
		_ = admin.Close()
		unreachable.Store(server, err)
		skipOrFail(t, err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := DBPrefix + hex.EncodeToString(b[:])
	ctx, cancel = context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	// A database name cannot be a parameter; it is made of [a-z0-9_] here.
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		_ = admin.Close()
		t.Fatalf("pgtest: create database: %v", err)
	}
	db := &DB{Name: name}
	t.Cleanup(func() {
		if db.SQL != nil {
			_ = db.SQL.Close()
		}
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
		_ = admin.Close()
	})
	du := *u
	du.Path = "/" + name
	db.URL = du.String()
	db.Host = u.Hostname()
	if db.Host == "" {
		db.Host = "127.0.0.1"
	}
	db.Port = 5432
	if p := u.Port(); p != "" {
		db.Port, _ = strconv.Atoi(p)
	}
	if db.SQL, err = sql.Open("pgx", db.URL); err != nil {
		t.Fatalf("pgtest: open %s: %v", name, err)
	}
	return db
}

// Addr is the server's host:port.
func (db *DB) Addr() string { return net.JoinHostPort(db.Host, strconv.Itoa(db.Port)) }

// URLVia returns the database's URL with its host and port replaced by
// addr (host:port), such as a fault proxy's.
func (db *DB) URLVia(addr string) string {
	u, err := url.Parse(db.URL)
	if err != nil {
		panic(fmt.Sprintf("pgtest: own URL does not parse: %v", err))
	}
	u.Host = addr
	return u.String()
}

func skipOrFail(t testing.TB, err error) {
	t.Helper()
	msg := fmt.Sprintf("pgtest: PostgreSQL at %s unreachable (%v); set %s to a postgres:// URL of a server whose user may create databases", redact(ServerURL()), err, EnvURL)
	if os.Getenv(EnvRequire) == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// redact masks a URL's password.
func redact(s string) string {
	if u, err := url.Parse(s); err == nil {
		return u.Redacted()
	}
	return "(unparsable URL)"
}
