package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"igmirror/internal/testkit/pgtest"
)

// copyFile copies the committed file at src into dir and returns the copy.
func copyFile(t *testing.T, src, dir string) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, filepath.Base(src))
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dst
}

// TestImportSQLiteCommand moves a single node's store (the committed
// file an older version wrote) into PostgreSQL with `igmirror
// import-sqlite PATH`: it prints what it copied and exits 0; run again,
// it copies nothing.
func TestImportSQLiteCommand(t *testing.T) {
	pg := pgtest.New(t)
	path := copyFile(t, filepath.Join("..", "testdata", "legacy", "store-before-migrations.db"), t.TempDir())
	env := []string{"DATABASE_URL=" + pg.URL, "LOG_FORMAT=text"}
	var out bytes.Buffer
	if code := command(context.Background(), []string{"import-sqlite", path}, env, &out); code != 0 {
		t.Fatalf("import-sqlite: exit %d\n%s", code, out.String())
	}
	if !strings.Contains(out.String(), "messages=41") {
		t.Errorf("first import's output: got\n%s\nwant it to say 41 messages were copied", out.String())
	}
	var n int
	if err := pg.SQL.QueryRow("SELECT COUNT(*) FROM messages").Scan(&n); err != nil || n != 41 {
		t.Fatalf("messages in PostgreSQL: got %d, %v; want 41", n, err)
	}
	var mirrored int
	if err := pg.SQL.QueryRow("SELECT COUNT(*) FROM messages WHERE mirror_status = 'mirrored'").Scan(&mirrored); err != nil || mirrored != 15 {
		t.Errorf("mirrored in PostgreSQL: got %d, %v; want the 15 mirrored before", mirrored, err)
	}
	out.Reset()
	if code := command(context.Background(), []string{"import-sqlite", path}, env, &out); code != 0 {
		t.Fatalf("second import-sqlite: exit %d\n%s", code, out.String())
	}
	if !strings.Contains(out.String(), "messages=0") || !strings.Contains(out.String(), "messages_already_there=41") {
		t.Errorf("second import's output: got\n%s\nwant nothing copied, 41 already there", out.String())
	}
	if err := pg.SQL.QueryRow("SELECT COUNT(*) FROM messages").Scan(&n); err != nil || n != 41 {
		t.Fatalf("messages after the second run: got %d, %v; want 41", n, err)
	}
}

func TestCommandErrors(t *testing.T) {
	for _, tc := range []struct {
		name     string
		args     []string
		env      []string
		wantCode int
		wantOut  string
	}{
		{"no DATABASE_URL", []string{"import-sqlite", "x.db"}, nil, 2, "DATABASE_URL is not set"},
		{"no path", []string{"import-sqlite"}, []string{"DATABASE_URL=postgres://h/db"}, 2, "takes one argument"},
		{"unknown", []string{"serve-twice"}, nil, 2, `unknown command "serve-twice"`},
		{"help", []string{"help"}, nil, 0, "import-sqlite PATH"},
		{"missing file", []string{"import-sqlite", "/nonexistent/x.db"}, []string{"DATABASE_URL=" + pgtest.ServerURL(), "LOG_FORMAT=text"}, 1, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			code := command(context.Background(), tc.args, tc.env, &out)
			if code != tc.wantCode || !strings.Contains(out.String(), tc.wantOut) {
				t.Errorf("igmirror %v: got exit %d, %q; want %d and %q", tc.args, code, out.String(), tc.wantCode, tc.wantOut)
			}
		})
	}
}
