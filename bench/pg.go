package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"sync"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
)

// defaultPostgres is the server the PostgreSQL figures use when neither
// -postgres nor $IGMIRROR_TEST_POSTGRES names one.
const defaultPostgres = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// pgDB is a throwaway PostgreSQL database for one scenario, dropped at its
// end (or at the end of an interrupted run).
type pgDB struct {
	name  string
	url   string // DATABASE_URL of the database
	admin *sql.DB
}

// pgDBs remembers the databases created, so an interrupted run drops them.
var pgDBs struct {
	sync.Mutex
	live []*pgDB
}

// pgServer checks that the server at serverURL answers and returns its
// version.
func pgServer(ctx context.Context, serverURL string) (string, error) {
	db, err := sql.Open("pgx", serverURL)
	if err != nil {
		return "", err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var v string
	if err := db.QueryRowContext(ctx, "SHOW server_version").Scan(&v); err != nil {
		return "", fmt.Errorf("postgres at %s: %w", redactedHost(serverURL), err)
	}
	return v, nil
}

// redactedHost is the host:port of a URL, for messages (never its
// password).
func redactedHost(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparsable URL)"
	}
	return p.Host
}

// newPGDB creates igmirror_bench_<rand> on the server serverURL names. The
// service creates its schema (its migration) on start.
func newPGDB(ctx context.Context, serverURL string) (*pgDB, error) {
	u, err := url.Parse(serverURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return nil, fmt.Errorf("-postgres: want a postgres:// URL")
	}
	admin, err := sql.Open("pgx", serverURL)
	if err != nil {
		return nil, err
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	d := &pgDB{name: "igmirror_bench_" + hex.EncodeToString(b[:]), admin: admin}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// A database name cannot be a parameter; this one is [a-z0-9_] only.
	if _, err := admin.ExecContext(cctx, "CREATE DATABASE "+d.name); err != nil {
		_ = admin.Close()
		return nil, fmt.Errorf("create database: %w", err)
	}
	pgDBs.Lock()
	pgDBs.live = append(pgDBs.live, d)
	pgDBs.Unlock()
	du := *u
	du.Path = "/" + d.name
	d.url = du.String()
	return d, nil
}

// drop removes the database, closing any connection still open to it.
func (d *pgDB) drop() error {
	pgDBs.Lock()
	for i, x := range pgDBs.live {
		if x == d {
			pgDBs.live = append(pgDBs.live[:i], pgDBs.live[i+1:]...)
			break
		}
	}
	pgDBs.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := d.admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+d.name+" WITH (FORCE)")
	_ = d.admin.Close()
	return err
}

// dropAllPG drops every PostgreSQL database this run still holds.
func dropAllPG() {
	pgDBs.Lock()
	all := append([]*pgDB(nil), pgDBs.live...)
	pgDBs.Unlock()
	for _, d := range all {
		if err := d.drop(); err != nil {
			fmt.Fprintf(os.Stderr, "bench: drop database %s: %v\n", d.name, err)
		}
	}
}

// pgEnv is an instance's environment for a store on d.
func (d *pgDB) env(instance string) map[string]string {
	return map[string]string{"DATABASE_URL": d.url, "INSTANCE_ID": instance}
}
