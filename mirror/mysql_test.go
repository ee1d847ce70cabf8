package mirror

import (
	"context"
	"database/sql"
	"log/slog"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"igmirror/internal/testkit/mysqltest"
)

// TestSinkCharsets writes the same rows into CRM tables of the three
// charsets shared hosting has, under strict mode, and reads back what
// MariaDB stored: every row arrives, degraded where the charset or the
// column size demands, and never with a character cut in half.
func TestSinkCharsets(t *testing.T) {
	long := "a" + strings.Repeat("€", 30000) // 90001 bytes; a naive cut at 65535 splits a €
	longName := strings.Repeat("я", 150)
	type want struct {
		message, username string
		degraded          bool
	}
	rows := []Row{
		{UserID: "u1", Username: "anna", Direction: "in", Message: "hi 👋 how are you", CreatedAt: t0},
		{UserID: "u2", Username: "ivan", Direction: "out", Message: "Привет, как дела?", CreatedAt: t0.Add(time.Second)},
		{UserID: "u3", Username: "zoe", Direction: "in", Message: "“quoted” – 10 € …", CreatedAt: t0.Add(2 * time.Second)},
		{UserID: "u4", Username: longName, Direction: "in", Message: long, CreatedAt: t0.Add(3 * time.Second)},
	}
	for _, tc := range []struct {
		charset string
		want    []want
	}{
		{"utf8mb4", []want{
			{"hi 👋 how are you", "anna", false},
			{"Привет, как дела?", "ivan", false},
			{"“quoted” – 10 € …", "zoe", false},
			{"a" + strings.Repeat("€", 21844), strings.Repeat("я", 100), true},
		}},
		{"utf8mb3", []want{
			{"hi ? how are you", "anna", true},
			{"Привет, как дела?", "ivan", false},
			{"“quoted” – 10 € …", "zoe", false},
			{"a" + strings.Repeat("€", 21844), strings.Repeat("я", 100), true},
		}},
		{"latin1", []want{
			{"hi ? how are you", "anna", true},
			{"??????, ??? ?????", "ivan", true},
			{"“quoted” – 10 € …", "zoe", false},
			// latin1 holds € in one byte: all 30001 characters fit.
			{long, strings.Repeat("?", 100), true},
		}},
	} {
		t.Run(tc.charset, func(t *testing.T) {
			crm := mysqltest.NewWithCharset(t, tc.charset)
			sink := sinkTo(t, crm, crm.Host, crm.Port, 5*time.Second, nil)
			ctx := context.Background()
			if err := sink.Ping(ctx); err != nil {
				t.Fatalf("ping: %v", err)
			}
			if got := sink.columns()["message"].charset; got != tc.charset {
				t.Fatalf("message column charset: got %q, want %q", got, tc.charset)
			}
			in := append([]Row(nil), rows...)
			if err := sink.Insert(ctx, in); err != nil {
				t.Fatalf("insert: %v", err)
			}
			got := crm.Rows(t)
			if len(got) != len(tc.want) {
				t.Fatalf("rows: got %d, want %d", len(got), len(tc.want))
			}
			for i, w := range tc.want {
				g := got[i]
				if !utf8.ValidString(g.Message) || !utf8.ValidString(g.Username) {
					t.Errorf("row %d: MariaDB returned invalid UTF-8", i)
				}
				if g.Message != w.message {
					t.Errorf("row %d message: got %.40q… (%d bytes), want %.40q… (%d bytes)", i, g.Message, len(g.Message), w.message, len(w.message))
				}
				if g.Username != w.username {
					t.Errorf("row %d username: got %.20q… (%d chars), want %.20q… (%d chars)", i, g.Username, utf8.RuneCountInString(g.Username), w.username, utf8.RuneCountInString(w.username))
				}
				if in[i].Degraded != w.degraded {
					t.Errorf("row %d degraded: got %v, want %v", i, in[i].Degraded, w.degraded)
				}
				if g.UserID != rows[i].UserID || g.Direction != rows[i].Direction || !g.CreatedAt.Equal(rows[i].CreatedAt) {
					t.Errorf("row %d: got (%s, %s, %s), want (%s, %s, %s)", i, g.UserID, g.Direction, g.CreatedAt, rows[i].UserID, rows[i].Direction, rows[i].CreatedAt)
				}
			}

			// The dedup check recognises each row from the unfitted
			// original, as the pool asks after an unknown outcome.
			again := append([]Row(nil), rows...)
			again = append(again, Row{UserID: "u1", Username: "anna", Direction: "in", Message: "another text", CreatedAt: t0})
			found, err := sink.Existing(ctx, again)
			if err != nil {
				t.Fatalf("existing: %v", err)
			}
			wantFound := []bool{true, true, true, true, false}
			for i := range wantFound {
				if found[i] != wantFound[i] {
					t.Errorf("existing[%d]: got %v, want %v", i, found[i], wantFound[i])
				}
			}
		})
	}
}

// TestSinkExistingCountsCopies checks the dedup check's multiset rule:
// two identical messages with one copy in the CRM count as one present
// and one missing, so the second still gets written.
func TestSinkExistingCountsCopies(t *testing.T) {
	crm := mysqltest.New(t)
	sink := sinkTo(t, crm, crm.Host, crm.Port, 5*time.Second, nil)
	ctx := context.Background()
	row := Row{UserID: "u1", Username: "anna", Direction: "in", Message: "ok", CreatedAt: t0}
	if err := sink.Insert(ctx, []Row{row}); err != nil {
		t.Fatalf("insert: %v", err)
	}
	found, err := sink.Existing(ctx, []Row{row, row})
	if err != nil {
		t.Fatalf("existing: %v", err)
	}
	if !found[0] || found[1] {
		t.Errorf("existing: got %v, want [true false]", found)
	}
}

// TestSinkPermanentErrors checks that the server's refusals for a wrong
// password, database or table classify as permanent.
func TestSinkPermanentErrors(t *testing.T) {
	crm := mysqltest.New(t)
	crm.CreateUser(t, "igm_limited", "right-password")
	ctx := context.Background()
	for _, tc := range []struct {
		name, user, password, database, table string
		wantCode                              string
	}{
		{"wrong password", "igm_limited", "wrong-password", crm.Name, crm.Table, "1045"},
		{"unknown database", crm.User, crm.Password, crm.Name + "_missing", crm.Table, "1049"},
		{"unknown table", crm.User, crm.Password, crm.Name, "no_such_table", "1146"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink, err := OpenMySQL(MySQLConfig{
				Host: crm.Host, Port: crm.Port, User: tc.user, Password: tc.password,
				Database: tc.database, Table: tc.table, TLS: "false", Timeout: 5 * time.Second,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer sink.Close()
			err = sink.Insert(ctx, []Row{{UserID: "u", Username: "u", Direction: "in", Message: "x", CreatedAt: t0}})
			if err == nil {
				t.Fatal("insert: got no error")
			}
			if class, unknown := Classify(err); class != Permanent || unknown {
				t.Errorf("Classify(%v): got (%v, %v), want (permanent, false)", err, class, unknown)
			}
			if got := errText(err); !strings.HasPrefix(got, "mysql "+tc.wantCode) {
				t.Errorf("errText: got %q, want mysql %s", got, tc.wantCode)
			}
		})
	}
}

// TestSinkSeesAGrantAtOnce: an account that may only SELECT has its
// INSERT refused (1142). Once INSERT is granted, at the database (the
// usual GRANT … ON crm.*), at the table or globally, the very next INSERT
// passes, and so does every later one, though the pool still holds
// sessions opened before the grant: MariaDB refreshes a session's
// database privileges only at a USE, and its global ones never.
func TestSinkSeesAGrantAtOnce(t *testing.T) {
	for _, tc := range []struct {
		name  string
		scope mysqltest.Scope
	}{
		{"database", mysqltest.OnDatabase},
		{"table", mysqltest.OnTable},
		{"global", mysqltest.OnServer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			crm := mysqltest.New(t)
			user := crm.UniqueUser("igm_gr")
			crm.CreateUserWith(t, user, "grant-password", "SELECT")
			sink, err := OpenMySQL(MySQLConfig{
				Host: crm.Host, Port: crm.Port, User: user, Password: "grant-password",
				Database: crm.Name, Table: crm.Table, TLS: "false", Workers: 2,
				Timeout: 5 * time.Second, Logger: slog.New(slog.DiscardHandler),
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = sink.Close() })
			ctx := context.Background()
			row := func(user string) []Row {
				return []Row{{UserID: user, Username: user, Direction: "in", Message: "hi", CreatedAt: t0}}
			}
			refused := func(what string, err error) {
				t.Helper()
				if class, _ := Classify(err); class != Permanent || !strings.HasPrefix(errText(err), "mysql 1142") {
					t.Fatalf("%s: got %v (%v), want a permanent mysql 1142", what, err, class)
				}
			}

			refused("insert before the grant", sink.Insert(ctx, row("u0")))
			// The monitor's SELECT passes, and must not make the sink
			// forget that INSERT is refused.
			if err := sink.Ping(ctx); err != nil {
				t.Fatalf("ping: %v", err)
			}
			refused("insert after a ping", sink.Insert(ctx, row("u0")))

			// Sessions opened before the grant: one idle in the pool,
			// two on loan (a ping, another worker) until after the first
			// INSERT that passes.
			loaned := make([]*sql.Conn, 3)
			for i := range loaned {
				if loaned[i], err = sink.sqlDB.Conn(ctx); err != nil {
					t.Fatalf("connection %d: %v", i, err)
				}
			}
			_ = loaned[0].Close()

			crm.Grant(t, user, "INSERT", tc.scope)

			if err := sink.Insert(ctx, row("u1")); err != nil {
				t.Fatalf("first insert after the grant: %v", err)
			}
			for _, c := range loaned[1:] {
				_ = c.Close()
			}
			// The pool hands out the connection returned last: a session
			// from before the grant.
			if err := sink.Insert(ctx, row("u2")); err != nil {
				t.Fatalf("second insert after the grant: %v", err)
			}

			got := crm.Rows(t)
			if len(got) != 2 || got[0].UserID != "u1" || got[1].UserID != "u2" {
				t.Errorf("rows: got %+v, want u1 and u2", got)
			}
		})
	}
}
