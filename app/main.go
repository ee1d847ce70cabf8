// Command igmirror receives Instagram direct-message webhooks, stores every
// message in its store (SQLite, or a PostgreSQL shared by several
// instances: the source of truth) and mirrors each one into a CRM's
// MySQL table through a bounded in-process queue.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"igmirror/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(command(ctx, os.Args[1:], os.Environ(), os.Stdout))
}

// run starts the service and blocks until ctx ends, then shuts it down. It
// returns the process exit code.
func run(ctx context.Context, environ []string, stdout io.Writer) int {
	cfg, err := config.Load(environ)
	if err != nil {
		fmt.Fprintln(stdout, err)
		return 2
	}
	log := newLogger(cfg, stdout)
	a, err := New(cfg, log)
	if err != nil {
		log.Error("start-up failed", "err", err)
		return 1
	}
	if err := a.Start(); err != nil {
		log.Error("start-up failed", "err", err)
		_ = a.Shutdown(context.Background())
		return 1
	}
	code := 0
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err := <-a.Errors():
		// A listener gone by itself is a failure for the supervisor to see.
		log.Error("listener failed", "err", err)
		code = 1
	}
	if err := a.Shutdown(context.Background()); err != nil {
		log.Error("shutdown", "err", err)
		return 1
	}
	log.Info("stopped")
	return code
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	level, _ := config.ParseLevel(cfg.LogLevel)
	opts := &slog.HandlerOptions{Level: level}
	// Every line names the instance: several may write to one log sink.
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts)).With("instance_id", cfg.InstanceID)
	}
	return slog.New(slog.NewJSONHandler(w, opts)).With("instance_id", cfg.InstanceID)
}
