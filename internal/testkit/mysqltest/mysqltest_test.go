package mysqltest_test

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"igmirror/internal/testkit/mysqltest"
)

func TestNewCreatesTableAndDropsDatabase(t *testing.T) {
	var name string
	var admin *sql.DB
	t.Run("use", func(t *testing.T) {
		d := mysqltest.New(t)
		name = d.Name
		if !strings.HasPrefix(d.Name, mysqltest.DBPrefix) {
			t.Errorf("Name = %q, want prefix %q", d.Name, mysqltest.DBPrefix)
		}
		if d.Table != "messages" {
			t.Errorf("Table = %q, want messages", d.Table)
		}
		if d.Host == "" || d.User == "" {
			t.Errorf("Host %q / User %q empty", d.Host, d.User)
		}
		if n := d.Count(t); n != 0 {
			t.Fatalf("Count on a fresh table = %d, want 0", n)
		}

		// A time that is not UTC is stored as its instant and read back in UTC.
		kyiv := time.FixedZone("UTC+2", 2*60*60)
		at := time.Date(2025, 11, 22, 3, 4, 5, 0, kyiv)
		for _, r := range []struct{ user, name, dir, msg string }{
			{"5582201937461123", "shop.customer", "in", "Hi! Do you ship to Kyiv? 🚚"},
			{"5582201937461123", "shop.customer", "out", "Yes"},
		} {
			if _, err := d.SQL.Exec("INSERT INTO messages (user_id, username, direction, message, created_at) VALUES (?, ?, ?, ?, ?)",
				r.user, r.name, r.dir, r.msg, at); err != nil {
				t.Fatalf("insert: %v", err)
			}
		}
		if _, err := d.SQL.Exec("INSERT INTO messages (user_id) VALUES (?)", "nulls"); err != nil {
			t.Fatalf("insert NULLs: %v", err)
		}

		if n := d.Count(t); n != 3 {
			t.Fatalf("Count = %d, want 3", n)
		}
		rows := d.Rows(t)
		if len(rows) != 3 {
			t.Fatalf("Rows returned %d rows, want 3", len(rows))
		}
		got := rows[0]
		if got.UserID != "5582201937461123" || got.Username != "shop.customer" || got.Direction != "in" ||
			got.Message != "Hi! Do you ship to Kyiv? 🚚" {
			t.Errorf("row 0 = %+v", got)
		}
		if !got.CreatedAt.Equal(at) || got.CreatedAt.Location() != time.UTC {
			t.Errorf("CreatedAt = %v, want %v in UTC", got.CreatedAt, at.UTC())
		}
		if rows[1].Direction != "out" || rows[1].ID <= rows[0].ID {
			t.Errorf("rows not ordered by id: %+v", rows)
		}
		if rows[2].Username != "" || rows[2].Message != "" {
			t.Errorf("NULL columns should read as empty: %+v", rows[2])
		}

		// The session time zone is UTC on the server too.
		var utc string
		if err := d.SQL.QueryRow("SELECT DATE_FORMAT(created_at, '%Y-%m-%d %H:%i:%s') FROM messages WHERE id = ?", got.ID).Scan(&utc); err != nil {
			t.Fatalf("format created_at: %v", err)
		}
		if utc != "2025-11-22 01:04:05" {
			t.Errorf("created_at on the server = %s, want 2025-11-22 01:04:05", utc)
		}

		cfg, err := mysql.ParseDSN(d.DSN(d.User, d.Password))
		if err != nil {
			t.Fatalf("DSN does not parse: %v", err)
		}
		cfg.DBName = ""
		if admin, err = sql.Open("mysql", cfg.FormatDSN()); err != nil {
			t.Fatal(err)
		}
	})
	if admin == nil {
		return // skipped or failed
	}
	defer admin.Close()
	var n int
	if err := admin.QueryRow("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", name).Scan(&n); err != nil {
		t.Fatalf("look for the database: %v", err)
	}
	if n != 0 {
		t.Errorf("database %s still exists after the test", name)
	}
}

func TestNewWithCharset(t *testing.T) {
	for _, cs := range []string{"latin1", "utf8mb3"} {
		t.Run(cs, func(t *testing.T) {
			d := mysqltest.NewWithCharset(t, cs)
			var got string
			err := d.SQL.QueryRow(`SELECT CCSA.CHARACTER_SET_NAME
				FROM information_schema.TABLES T
				JOIN information_schema.COLLATION_CHARACTER_SET_APPLICABILITY CCSA ON CCSA.COLLATION_NAME = T.TABLE_COLLATION
				WHERE T.TABLE_SCHEMA = ? AND T.TABLE_NAME = ?`, d.Name, d.Table).Scan(&got)
			if err != nil {
				t.Fatalf("read table charset: %v", err)
			}
			want := cs
			if got == "utf8" && cs == "utf8mb3" { // older servers' name for it
				want = "utf8"
			}
			if got != want {
				t.Fatalf("table charset = %q, want %q", got, want)
			}
			// A 4-byte character does not fit (strict mode) or is degraded.
			_, err = d.SQL.Exec("INSERT INTO messages (user_id, message) VALUES (?, ?)", "u", "ship 🚚")
			if err == nil {
				if rows := d.Rows(t); len(rows) != 1 || rows[0].Message == "ship 🚚" {
					t.Fatalf("a %s table kept an emoji intact: %+v", cs, rows)
				}
			}
		})
	}
}

func TestCreateUser(t *testing.T) {
	d := mysqltest.New(t)
	user := d.UniqueUser("igm_t")
	if len(user) > 32 || user == d.UniqueUser("other") {
		t.Fatalf("UniqueUser = %q", user)
	}
	d.CreateUser(t, user, "right-pass'\\")

	ok, err := sql.Open("mysql", d.DSN(user, "right-pass'\\"))
	if err != nil {
		t.Fatal(err)
	}
	defer ok.Close()
	if _, err := ok.Exec("INSERT INTO messages (user_id, direction, message) VALUES (?, 'in', ?)", "1", "hello"); err != nil {
		t.Fatalf("insert as the new user: %v", err)
	}
	if n := d.Count(t); n != 1 {
		t.Fatalf("Count = %d, want 1", n)
	}
	if _, err := ok.Exec("DELETE FROM messages"); err == nil {
		t.Errorf("the new user could DELETE; it should have INSERT and SELECT only")
	}

	bad, err := sql.Open("mysql", d.DSN(user, "wrong"))
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = bad.PingContext(ctx)
	var myErr *mysql.MySQLError
	if !errors.As(err, &myErr) || myErr.Number != 1045 {
		t.Fatalf("ping with a wrong password: %v, want MySQL error 1045 (access denied)", err)
	}
}

// TestGrant checks that Grant lifts a refusal at each scope, for a
// session opened afterwards.
func TestGrant(t *testing.T) {
	for _, tc := range []struct {
		name  string
		scope mysqltest.Scope
	}{
		{"database", mysqltest.OnDatabase},
		{"table", mysqltest.OnTable},
		{"server", mysqltest.OnServer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := mysqltest.New(t)
			user := d.UniqueUser("igm_g")
			d.CreateUserWith(t, user, "pw", "SELECT")
			insert := func() error {
				db, err := sql.Open("mysql", d.DSN(user, "pw"))
				if err != nil {
					t.Fatal(err)
				}
				defer db.Close()
				_, err = db.Exec("INSERT INTO messages (user_id, direction, message) VALUES ('1', 'in', 'hi')")
				return err
			}
			var myErr *mysql.MySQLError
			if err := insert(); !errors.As(err, &myErr) || myErr.Number != 1142 {
				t.Fatalf("insert before the grant: %v, want MySQL error 1142", err)
			}
			d.Grant(t, user, "INSERT", tc.scope)
			if err := insert(); err != nil {
				t.Fatalf("insert after the grant: %v", err)
			}
			if n := d.Count(t); n != 1 {
				t.Errorf("Count = %d, want 1", n)
			}
		})
	}
}

func TestDiffCounts(t *testing.T) {
	at := time.Date(2025, 11, 22, 0, 0, 0, 0, time.UTC)
	a := mysqltest.RowKey{"u1", "in", "hi", at}
	b := mysqltest.RowKey{"u2", "out", "yo", at}
	for _, c := range []struct {
		name      string
		got, want map[mysqltest.RowKey]int
		wantEmpty bool
	}{
		{"equal", map[mysqltest.RowKey]int{a: 1, b: 1}, map[mysqltest.RowKey]int{a: 1, b: 1}, true},
		{"doubled", map[mysqltest.RowKey]int{a: 2}, map[mysqltest.RowKey]int{a: 1}, false},
		{"missing", map[mysqltest.RowKey]int{}, map[mysqltest.RowKey]int{a: 1}, false},
		{"unexpected", map[mysqltest.RowKey]int{a: 1, b: 1}, map[mysqltest.RowKey]int{a: 1}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := mysqltest.DiffCounts(c.got, c.want); (got == "") != c.wantEmpty {
				t.Errorf("DiffCounts: got %q, want empty=%v", got, c.wantEmpty)
			}
		})
	}
}
