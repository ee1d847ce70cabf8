// Package mysqltest gives a test its own throwaway MySQL (or MariaDB)
// database holding the CRM's table, created from the repository's
// deploy/crm_messages.sql, and drops it when the test ends.
//
// The server is named by IGMIRROR_TEST_MYSQL, a go-sql-driver DSN without a
// database (default "root@tcp(127.0.0.1:3306)/"). Its user must be allowed to
// create and drop databases and users. When the server cannot be reached the
// test is skipped with a message saying how to run it, unless
// IGMIRROR_REQUIRE_MYSQL=1, in which case the test fails: CI sets it so that
// it never passes by skipping. ./scripts/test.sh starts a throwaway MariaDB
// when none is running.
//
//	func TestMirror(t *testing.T) {
//		crm := mysqltest.New(t)
//		// point the mirror at crm.Host, crm.Port, crm.User, crm.Password, crm.Name, crm.Table
//		// ...
//		rows := crm.Rows(t)
//	}
package mysqltest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Environment variables read by this package.
const (
	// EnvDSN names the server: a go-sql-driver DSN without a database.
	EnvDSN = "IGMIRROR_TEST_MYSQL"
	// EnvRequire, set to "1", turns "server unreachable" from a skip into a failure.
	EnvRequire = "IGMIRROR_REQUIRE_MYSQL"
	// DefaultDSN is used when EnvDSN is unset or empty.
	DefaultDSN = "root@tcp(127.0.0.1:3306)/"
)

// DBPrefix starts the name of every database this package creates.
const DBPrefix = "igmirror_t_"

// schemaFile is the CRM table's definition, relative to the module root.
const schemaFile = "deploy/crm_messages.sql"

// opTimeout bounds each administrative statement and the reachability check.
const opTimeout = 30 * time.Second

// DB is a throwaway MySQL database holding the CRM table, for one test.
type DB struct {
	Host     string // server host (for a unix-socket DSN: the socket path)
	Port     int    // server TCP port (0 for a unix-socket DSN)
	User     string // a user allowed everything on the database (the DSN's user)
	Password string // User's password
	Name     string // database name, igmirror_t_<random hex>
	Table    string // the CRM table, "messages"
	// SQL is connected to the database as User, with parseTime=true, loc=UTC
	// and session time_zone '+00:00', so TIMESTAMP columns read back in UTC.
	SQL *sql.DB

	admin *sql.DB       // connection without a database, for CREATE/DROP
	cfg   *mysql.Config // the server's config, DBName empty
	mu    sync.Mutex    // guards users
	users []account     // accounts made by CreateUser
}

// account is a MySQL account, user@host.
type account struct{ user, host string }

// Row is one row of the CRM table. A NULL column reads as "" (or the zero time).
type Row struct {
	ID        int64
	UserID    string
	Username  string
	Direction string // "in" or "out"
	Message   string
	CreatedAt time.Time // UTC
}

// New creates a fresh database on the server of IGMIRROR_TEST_MYSQL, creates
// the CRM table in it from deploy/crm_messages.sql, registers t.Cleanup to drop
// it, and returns it. It skips the test when the server is unreachable, or
// fails it when IGMIRROR_REQUIRE_MYSQL=1.
func New(t testing.TB) *DB {
	t.Helper()
	return newDB(t, "")
}

// NewWithCharset is New, but the CRM table is created with the given table
// character set (such as "utf8mb3" or "latin1"): DEFAULT CHARSET=charset is
// appended to the CREATE TABLE statement of deploy/crm_messages.sql. It is
// meant for tests of how the mirror copes with a CRM that cannot store every
// character.
func NewWithCharset(t testing.TB, charset string) *DB {
	t.Helper()
	if !isIdent(charset) {
		t.Fatalf("mysqltest: charset %q is not a plain identifier", charset)
	}
	return newDB(t, charset)
}

var identRE = regexp.MustCompile(`^[A-Za-z0-9_]+$`)

func isIdent(s string) bool { return identRE.MatchString(s) }

// unreachable remembers servers that failed the reachability check, so that a
// package with many tests waits for a dead server only once.
var unreachable sync.Map // DSN -> error

func newDB(t testing.TB, charset string) *DB {
	t.Helper()

	dsn := os.Getenv(EnvDSN)
	if dsn == "" {
		dsn = DefaultDSN
	}
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatalf("mysqltest: %s is not a valid go-sql-driver DSN: %v", EnvDSN, err)
	}
	if cfg.DBName != "" {
		t.Fatalf("mysqltest: %s must name no database (end it with \")/\"), got database %q", EnvDSN, cfg.DBName)
	}
	setSession(cfg)

	stmts, table, err := loadSchema(charset)
	if err != nil {
		t.Fatalf("mysqltest: %v", err)
	}

	if cached, ok := unreachable.Load(dsn); ok {
		skipOrFail(t, cfg, cached.(error))
	}
	// The admin connection interpolates parameters on the client (safely
	// escaped) so that statements the server cannot prepare, such as
	// CREATE USER, still take parameters.
	adminCfg := cfg.Clone()
	adminCfg.InterpolateParams = true
	admin, err := openConfig(adminCfg)
	if err != nil {
		t.Fatalf("mysqltest: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		_ = admin.Close()
		unreachable.Store(dsn, err)
		skipOrFail(t, cfg, err)
	}

	name, err := randomName()
	if err != nil {
		_ = admin.Close()
		t.Fatalf("mysqltest: %v", err)
	}
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+quoteIdent(name)+" CHARACTER SET utf8mb4"); err != nil {
		_ = admin.Close()
		t.Fatalf("mysqltest: create database %s: %v", name, err)
	}

	d := &DB{
		User:     cfg.User,
		Password: cfg.Passwd,
		Name:     name,
		Table:    table,
		admin:    admin,
		cfg:      cfg,
	}
	d.Host, d.Port = splitAddr(cfg)
	t.Cleanup(d.cleanup(t))

	dbCfg := cfg.Clone()
	dbCfg.DBName = name
	d.SQL, err = openConfig(dbCfg)
	if err != nil {
		t.Fatalf("mysqltest: %v", err)
	}
	for _, stmt := range stmts {
		if _, err := d.SQL.ExecContext(ctx, stmt); err != nil {
			t.Fatalf("mysqltest: %s: executing %q: %v", schemaFile, stmt, err)
		}
	}
	return d
}

// setSession fixes what every connection of this package needs.
func setSession(cfg *mysql.Config) {
	cfg.ParseTime = true
	cfg.Loc = time.UTC
	if cfg.Params == nil {
		cfg.Params = map[string]string{}
	}
	cfg.Params["time_zone"] = "'+00:00'"
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
}

func openConfig(cfg *mysql.Config) (*sql.DB, error) {
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", cfg.Addr, err)
	}
	return sql.OpenDB(conn), nil
}

func skipOrFail(t testing.TB, cfg *mysql.Config, err error) {
	t.Helper()
	msg := fmt.Sprintf("MySQL is unreachable at %s (%v). To run the MySQL tests, set %s to a go-sql-driver DSN "+
		"without database (default %q), or run ./scripts/test.sh, which starts a throwaway MariaDB when none is running.",
		cfg.Addr, err, EnvDSN, DefaultDSN)
	if os.Getenv(EnvRequire) == "1" {
		t.Fatalf("%s (%s=1, so this is a failure, not a skip)", msg, EnvRequire)
	}
	t.Skip(msg)
}

func splitAddr(cfg *mysql.Config) (string, int) {
	if cfg.Net != "tcp" && cfg.Net != "tcp4" && cfg.Net != "tcp6" {
		return cfg.Addr, 0
	}
	host, port, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return cfg.Addr, 3306
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return host, 3306
	}
	return host, p
}

func randomName() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random database name: %w", err)
	}
	return DBPrefix + hex.EncodeToString(b), nil
}

// quoteIdent quotes a MySQL identifier. Only used for names this package
// generated or checked.
func quoteIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

func (d *DB) cleanup(t testing.TB) func() {
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		if d.SQL != nil {
			_ = d.SQL.Close()
		}
		d.mu.Lock()
		users := d.users
		d.users = nil
		d.mu.Unlock()
		for _, u := range users {
			if _, err := d.admin.ExecContext(ctx, "DROP USER IF EXISTS ?@?", u.user, u.host); err != nil {
				t.Errorf("mysqltest: drop user %q@%q: %v", u.user, u.host, err)
			}
		}
		if _, err := d.admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+quoteIdent(d.Name)); err != nil {
			t.Errorf("mysqltest: drop database %s: %v", d.Name, err)
		}
		_ = d.admin.Close()
	}
}

// Rows returns every row of the CRM table, ordered by id.
func (d *DB) Rows(t testing.TB) []Row {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	rows, err := d.SQL.QueryContext(ctx,
		"SELECT id, user_id, username, direction, message, created_at FROM "+quoteIdent(d.Table)+" ORDER BY id")
	if err != nil {
		t.Fatalf("mysqltest: select rows: %v", err)
	}
	defer rows.Close()
	var out []Row
	for rows.Next() {
		var (
			r                                    Row
			userID, username, direction, message sql.NullString
			createdAt                            sql.NullTime
		)
		if err := rows.Scan(&r.ID, &userID, &username, &direction, &message, &createdAt); err != nil {
			t.Fatalf("mysqltest: scan row: %v", err)
		}
		r.UserID, r.Username, r.Direction, r.Message = userID.String, username.String, direction.String, message.String
		if createdAt.Valid {
			r.CreatedAt = createdAt.Time.UTC()
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("mysqltest: read rows: %v", err)
	}
	return out
}

// Count returns the number of rows in the CRM table.
func (d *DB) Count(t testing.TB) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	var n int
	if err := d.SQL.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+quoteIdent(d.Table)).Scan(&n); err != nil {
		t.Fatalf("mysqltest: count rows: %v", err)
	}
	return n
}

// CreateUser creates a MySQL account with INSERT and SELECT on this database
// only, for tests of a wrong password or of too few privileges; CreateUserWith
// grants other privileges. The account
// is made for the hosts '%' and 'localhost' (so that an anonymous account,
// one with an empty user name, at 'localhost' cannot shadow it) and is
// dropped when the test ends.
//
// Accounts are server-wide and packages' tests run at the same time, so the
// name must be unique: UniqueUser makes one. MySQL allows 32 characters.
func (d *DB) CreateUser(t testing.TB, user, password string) {
	t.Helper()
	d.CreateUserWith(t, user, password, "SELECT, INSERT")
}

// privilegesRE is what CreateUserWith takes as privileges: names such as
// SELECT or INSERT, comma-separated (they cannot be statement parameters).
var privilegesRE = regexp.MustCompile(`^[A-Z]+( [A-Z]+)*(, ?[A-Z]+( [A-Z]+)*)*$`)

// CreateUserWith is CreateUser granting privileges (such as "SELECT") on
// this database instead of SELECT and INSERT.
func (d *DB) CreateUserWith(t testing.TB, user, password, privileges string) {
	t.Helper()
	if user == "" {
		t.Fatalf("mysqltest: CreateUser needs a user name")
	}
	if !privilegesRE.MatchString(privileges) {
		t.Fatalf("mysqltest: privileges %q: want names such as SELECT, INSERT", privileges)
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	for _, host := range []string{"%", "localhost"} {
		// Parameters are interpolated by the driver with proper escaping
		// (the admin connection has interpolateParams=true).
		if _, err := d.admin.ExecContext(ctx, "CREATE USER ?@? IDENTIFIED BY ?", user, host, password); err != nil {
			t.Fatalf("mysqltest: create user %q@%q: %v", user, host, err)
		}
		d.mu.Lock()
		d.users = append(d.users, account{user, host})
		d.mu.Unlock()
		if _, err := d.admin.ExecContext(ctx, "GRANT "+privileges+" ON "+quoteIdent(d.Name)+".* TO ?@?", user, host); err != nil {
			t.Fatalf("mysqltest: grant to %q@%q: %v", user, host, err)
		}
	}
}

// Scope is the level at which Grant grants privileges. MySQL and MariaDB
// apply each level to a session already open at a different moment: a
// table grant from its next statement, a database grant from its next
// USE, a global grant only to sessions opened afterwards.
type Scope int

// The grant levels.
const (
	OnDatabase Scope = iota // ON db.*, the usual form
	OnTable                 // ON db.table, the CRM table
	OnServer                // ON *.*
)

// on is the ON clause's object for scope s in d.
func (d *DB) on(s Scope) (string, error) {
	switch s {
	case OnDatabase:
		return quoteIdent(d.Name) + ".*", nil
	case OnTable:
		return quoteIdent(d.Name) + "." + quoteIdent(d.Table), nil
	case OnServer:
		return "*.*", nil
	}
	return "", fmt.Errorf("unknown scope %d", int(s))
}

// Grant grants privileges (such as "INSERT") at scope to an account made by
// CreateUser or CreateUserWith, at every host it was made for, as the DSN's
// user, the way a DBA lifts a refusal while the account is connected.
func (d *DB) Grant(t testing.TB, user, privileges string, scope Scope) {
	t.Helper()
	if !privilegesRE.MatchString(privileges) {
		t.Fatalf("mysqltest: privileges %q: want names such as SELECT, INSERT", privileges)
	}
	on, err := d.on(scope)
	if err != nil {
		t.Fatalf("mysqltest: grant: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	d.mu.Lock()
	var hosts []string
	for _, a := range d.users {
		if a.user == user {
			hosts = append(hosts, a.host)
		}
	}
	d.mu.Unlock()
	if len(hosts) == 0 {
		t.Fatalf("mysqltest: grant to %q: no such account made by CreateUser", user)
	}
	for _, host := range hosts {
		if _, err := d.admin.ExecContext(ctx, "GRANT "+privileges+" ON "+on+" TO ?@?", user, host); err != nil {
			t.Fatalf("mysqltest: grant %s on %s to %q@%q: %v", privileges, on, user, host, err)
		}
	}
}

// UniqueUser returns prefix + "_" + 8 hex digits of this database's random
// name: an account name no other test uses, for CreateUser.
func (d *DB) UniqueUser(prefix string) string {
	suffix := strings.TrimPrefix(d.Name, DBPrefix)
	if len(suffix) > 8 {
		suffix = suffix[:8]
	}
	return prefix + "_" + suffix
}

// DSN returns a go-sql-driver DSN for this database as the given user, with
// parseTime=true, loc=UTC and session time_zone '+00:00'.
func (d *DB) DSN(user, password string) string {
	cfg := d.cfg.Clone()
	cfg.User, cfg.Passwd, cfg.DBName = user, password, d.Name
	return cfg.FormatDSN()
}

var createTableRE = regexp.MustCompile("(?is)^\\s*CREATE\\s+TABLE\\s+(?:IF\\s+NOT\\s+EXISTS\\s+)?`?([A-Za-z0-9_]+)`?")

// loadSchema reads deploy/crm_messages.sql and returns its statements, the
// CREATE TABLE one with DEFAULT CHARSET=charset appended when charset is set,
// and the name of the table it creates. Full-line "--" and "#" comments are
// dropped and statements are split on ";", which the file's plain DDL allows.
func loadSchema(charset string) (stmts []string, table string, err error) {
	root, err := moduleRoot()
	if err != nil {
		return nil, "", err
	}
	path := filepath.Join(root, filepath.FromSlash(schemaFile))
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("read CRM schema: %w", err)
	}
	var b strings.Builder
	for _, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "--") || strings.HasPrefix(trimmed, "#") {
			continue
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	for _, stmt := range strings.Split(b.String(), ";") {
		stmt = strings.TrimSpace(stmt)
		if stmt == "" {
			continue
		}
		if m := createTableRE.FindStringSubmatch(stmt); m != nil {
			if table != "" {
				return nil, "", fmt.Errorf("%s creates more than one table (%s, %s)", path, table, m[1])
			}
			table = m[1]
			if charset != "" {
				stmt += " DEFAULT CHARSET=" + charset
			}
		}
		stmts = append(stmts, stmt)
	}
	if table == "" {
		return nil, "", fmt.Errorf("%s has no CREATE TABLE statement", path)
	}
	return stmts, table, nil
}

// moduleRoot walks up from the working directory to the directory holding go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find module root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("find module root: %w", err)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("find module root: no go.mod above the working directory")
		}
		dir = parent
	}
}
