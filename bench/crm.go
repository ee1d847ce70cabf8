package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"
)

// crmDB is a throwaway MariaDB database holding the CRM table, dropped at
// the end of the run.
type crmDB struct {
	cfg   *mysql.Config // the server, DBName empty
	name  string
	admin *sql.DB
	db    *sql.DB // connected to name
}

// crmDBs remembers the databases created, so an interrupted run drops them.
var crmDBs struct {
	sync.Mutex
	live []*crmDB
}

// newCRMDB creates igmirror_bench_<rand> on the server dsn names, with the
// table of deploy/crm_messages.sql.
func newCRMDB(ctx context.Context, dsn, root string) (*crmDB, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("mysql dsn: %w", err)
	}
	cfg.DBName = ""
	cfg.ParseTime = true
	cfg.Loc = time.UTC
	cfg.InterpolateParams = true
	cfg.Timeout = 5 * time.Second
	admin, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := admin.PingContext(pctx); err != nil {
		_ = admin.Close()
		return nil, fmt.Errorf("mysql at %s: %w", cfg.Addr, err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	c := &crmDB{cfg: cfg, name: "igmirror_bench_" + hex.EncodeToString(b[:]), admin: admin}
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE `"+c.name+"` CHARACTER SET utf8mb4"); err != nil {
		_ = admin.Close()
		return nil, fmt.Errorf("create database: %w", err)
	}
	crmDBs.Lock()
	crmDBs.live = append(crmDBs.live, c)
	crmDBs.Unlock()
	dcfg := cfg.Clone()
	dcfg.DBName = c.name
	if c.db, err = sql.Open("mysql", dcfg.FormatDSN()); err != nil {
		return nil, err
	}
	schema, err := os.ReadFile(filepath.Join(root, "deploy", "crm_messages.sql"))
	if err != nil {
		return nil, err
	}
	if _, err := c.db.ExecContext(ctx, stripSQLComments(string(schema))); err != nil {
		return nil, fmt.Errorf("create crm table: %w", err)
	}
	return c, nil
}

func stripSQLComments(s string) string {
	var out []string
	for line := range strings.SplitSeq(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "--") {
			out = append(out, line)
		}
	}
	return strings.TrimSuffix(strings.TrimSpace(strings.Join(out, "\n")), ";")
}

// host and port of the server, for the service's CRM_MYSQL_* settings.
func (c *crmDB) hostPort() (string, int) {
	h, p, _ := net.SplitHostPort(c.cfg.Addr)
	n, _ := strconv.Atoi(p)
	return h, n
}

// env points the service at the CRM through addr (the server itself or a
// fault proxy in front of it).
func (c *crmDB) env(host string, port int) map[string]string {
	return map[string]string{
		"CRM_MYSQL_ENABLED":  "true",
		"CRM_MYSQL_HOST":     host,
		"CRM_MYSQL_PORT":     strconv.Itoa(port),
		"CRM_MYSQL_USER":     c.cfg.User,
		"CRM_MYSQL_PASSWORD": c.cfg.Passwd,
		"CRM_MYSQL_DATABASE": c.name,
		"CRM_MYSQL_TLS":      "false",
	}
}

func (c *crmDB) truncate(ctx context.Context) error {
	_, err := c.db.ExecContext(ctx, "TRUNCATE TABLE messages")
	return err
}

func (c *crmDB) count(ctx context.Context) (int64, error) {
	var n int64
	err := c.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM messages").Scan(&n)
	return n, err
}

// drop removes the database.
func (c *crmDB) drop() error {
	if c.db != nil {
		_ = c.db.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := c.admin.ExecContext(ctx, "DROP DATABASE IF EXISTS `"+c.name+"`")
	_ = c.admin.Close()
	return err
}

// dropAllCRM drops every database this run created.
func dropAllCRM() {
	crmDBs.Lock()
	all := crmDBs.live
	crmDBs.live = nil
	crmDBs.Unlock()
	for _, c := range all {
		if err := c.drop(); err != nil {
			fmt.Fprintf(os.Stderr, "bench: drop database %s: %v\n", c.name, err)
		}
	}
}

// singleRowInserts is the naive mirror's write path: one INSERT per row on
// conns connections, for d. It returns rows per second.
func (c *crmDB) singleRowInserts(ctx context.Context, conns int, d time.Duration) (float64, error) {
	dcfg := c.cfg.Clone()
	dcfg.DBName = c.name
	db, err := sql.Open("mysql", dcfg.FormatDSN())
	if err != nil {
		return 0, err
	}
	defer db.Close()
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	var n atomic.Int64
	var firstErr atomic.Value
	end := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for w := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(end) && ctx.Err() == nil; i++ {
				_, err := db.ExecContext(ctx, "INSERT INTO messages (user_id, username, direction, message, created_at) VALUES (?,?,?,?,?)",
					"5582201937461123", "customer_"+strconv.Itoa(w), "in", "Hi! Do you ship to Kyiv? #"+strconv.Itoa(i), time.Now().UTC().Truncate(time.Second))
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return 0, err
	}
	return float64(n.Load()) / time.Since(start).Seconds(), nil
}
