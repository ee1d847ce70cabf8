package pgtest_test

import (
	"context"
	"testing"

	"igmirror/internal/testkit/pgtest"
)

func TestNewGivesAnEmptyDatabaseOfItsOwn(t *testing.T) {
	a, b := pgtest.New(t), pgtest.New(t)
	if a.Name == b.Name {
		t.Fatalf("two databases named %s", a.Name)
	}
	var got string
	if err := a.SQL.QueryRowContext(context.Background(), "SELECT current_database()").Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got != a.Name {
		t.Errorf("current_database() = %s, want %s", got, a.Name)
	}
	var tables int
	if err := a.SQL.QueryRowContext(context.Background(), "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if tables != 0 {
		t.Errorf("%d tables in a new database, want 0", tables)
	}
}

func TestDatabaseIsDroppedAfterTheTest(t *testing.T) {
	var name string
	t.Run("inner", func(t *testing.T) { name = pgtest.New(t).Name })
	admin := pgtest.New(t).SQL
	var n int
	if err := admin.QueryRowContext(context.Background(), "SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("database %s still exists after its test", name)
	}
}
