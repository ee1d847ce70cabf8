package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"igmirror/domain"
	"igmirror/instagram"
	"igmirror/mirror"
	"igmirror/sqlite"

	"github.com/go-sql-driver/mysql"
	"github.com/labstack/echo/v4"
)

// The baselines are this program run again in a role (BENCH_ROLE), so that
// they are separate processes like the service, driven by the same client.
// They live here only: the service never contains them.
const (
	roleHello     = "hello"     // Echo answering every POST with a small JSON body
	roleGoroutine = "goroutine" // store, then one goroutine per message writing the CRM, no bound
	roleDualWrite = "dualwrite" // store, then write the CRM before answering
)

// Environment of a baseline process.
const (
	envRole   = "BENCH_ROLE"
	envCRMDSN = "BENCH_CRM_DSN"
)

// runRole runs a baseline server until SIGTERM. It returns the exit code.
func runRole(role string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	var cleanup func()
	switch role {
	case roleHello:
		e.POST("/webhooks/instagram", func(c echo.Context) error {
			if _, err := io.Copy(io.Discard, c.Request().Body); err != nil {
				return err
			}
			return c.JSONBlob(http.StatusOK, []byte(`{"stored":1,"duplicates":0,"unsent":0}`))
		})
	case roleGoroutine, roleDualWrite:
		n, err := newNaive(role)
		if err != nil {
			fmt.Println(err)
			return 1
		}
		cleanup = n.close
		e.POST("/webhooks/instagram", n.receive)
	default:
		fmt.Printf("unknown %s %q\n", envRole, role)
		return 2
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return 1
	}
	srv := &http.Server{Handler: e, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 120 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	line, _ := json.Marshal(map[string]string{"msg": "listening", "http_addr": ln.Addr().String(), "admin_addr": ""})
	fmt.Println(string(line))
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	if cleanup != nil {
		cleanup()
	}
	return 0
}

// naive is the design the issue warns against, in its two forms: the same
// signature check, parser and SQLite store as the service, but the CRM
// written either synchronously in the request or by a goroutine per
// message with nothing bounding how many wait.
type naive struct {
	role   string
	secret []byte
	store  *sqlite.Store
	crm    *sql.DB
}

func newNaive(role string) (*naive, error) {
	store, err := sqlite.Open(sqlite.Options{Path: os.Getenv("SQLITE_PATH"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	cfg, err := mysql.ParseDSN(os.Getenv(envCRMDSN))
	if err != nil {
		return nil, err
	}
	cfg.InterpolateParams = true
	cfg.ParseTime = true
	cfg.Loc = time.UTC
	crm, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		return nil, err
	}
	// A pool, as any database/sql program has; unbounded, the goroutines
	// would each open a connection and run out of file descriptors first.
	crm.SetMaxOpenConns(16)
	crm.SetMaxIdleConns(16)
	return &naive{role: role, secret: []byte(os.Getenv("INSTAGRAM_APP_SECRET")), store: store, crm: crm}, nil
}

func (n *naive) close() {
	_ = n.store.Close()
	_ = n.crm.Close()
}

const naiveInsert = "INSERT INTO messages (user_id, username, direction, message, created_at) VALUES (?,?,?,?,?)"

func (n *naive) receive(c echo.Context) error {
	body, err := io.ReadAll(c.Request().Body)
	if err != nil {
		return err
	}
	if err := instagram.VerifySignature(n.secret, body, c.Request().Header.Get("X-Hub-Signature-256")); err != nil {
		return echo.NewHTTPError(http.StatusForbidden, "bad signature")
	}
	d, err := instagram.Parse(body)
	if err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, "malformed")
	}
	for i := range d.Messages {
		d.Messages[i].MirrorStatus = domain.MirrorPending
	}
	res, err := n.store.Save(c.Request().Context(), domain.Batch{Messages: d.Messages, Unsends: d.Unsends})
	if err != nil {
		return err
	}
	for i := range res.New {
		row := mirror.MapRow(&res.New[i])
		args := []any{row.UserID, row.UserID, row.Direction, row.Message, row.CreatedAt}
		if n.role == roleGoroutine {
			go func() { _, _ = n.crm.ExecContext(context.Background(), naiveInsert, args...) }()
			continue
		}
		// Synchronous: the request waits for the CRM, bounded by the same
		// 5 s the service gives one CRM statement. A CRM error is answered
		// 200 all the same, so that only the wait shows in the latency.
		ctx, cancel := context.WithTimeout(c.Request().Context(), 5*time.Second)
		_, err := n.crm.ExecContext(ctx, naiveInsert, args...)
		cancel()
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			c.Logger().Debug(err)
		}
	}
	return c.JSON(http.StatusOK, map[string]int{"stored": len(res.New), "duplicates": res.Duplicates})
}
