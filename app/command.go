package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"igmirror/config"
	"igmirror/postgres"
)

const usage = `usage:
  igmirror                      serve (settings from the environment; see .env.example)
  igmirror import-sqlite PATH   copy the SQLite store at PATH into the PostgreSQL store at DATABASE_URL
`

// command dispatches on the arguments: none serves; import-sqlite copies
// a single node's SQLite store into the shared PostgreSQL. It returns the
// process exit code.
func command(ctx context.Context, args, environ []string, stdout io.Writer) int {
	if len(args) == 0 {
		return run(ctx, environ, stdout)
	}
	switch args[0] {
	case "import-sqlite":
		if len(args) != 2 {
			fmt.Fprint(stdout, "import-sqlite takes one argument, the SQLite file\n"+usage)
			return 2
		}
		return importSQLite(ctx, args[1], environ, stdout)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stdout, "unknown command %q\n%s", args[0], usage)
	return 2
}

// importSQLite is `igmirror import-sqlite PATH`: it copies the SQLite
// store at path into the shared PostgreSQL store, keeping each message's
// mirror state; running it again copies nothing twice, and an interrupted
// run is finished by running it again. It prints what it copied.
func importSQLite(ctx context.Context, path string, environ []string, stdout io.Writer) int {
	cfg, err := config.Load(environ)
	if err != nil {
		fmt.Fprintln(stdout, err)
		return 2
	}
	if !cfg.UsesPostgres() {
		fmt.Fprintln(stdout, "import-sqlite: DATABASE_URL is not set: point it at the PostgreSQL store to copy into (postgres://user:password@host:5432/db)")
		return 2
	}
	log := newLogger(cfg, stdout)
	pg, err := postgres.Open(postgres.Options{URL: cfg.DatabaseURL, InstanceID: cfg.InstanceID, LeaseTimeout: cfg.MirrorLeaseTimeout, Logger: log})
	if err != nil {
		fmt.Fprintf(stdout, "import-sqlite: open %s: %v\n", postgres.Redacted(cfg.DatabaseURL), err)
		return 1
	}
	defer func() {
		if err := pg.Close(); err != nil {
			log.Warn("close the PostgreSQL store", "err", err)
		}
	}()
	start := time.Now()
	res, err := postgres.ImportSQLite(ctx, pg, path, stdout)
	if err != nil {
		fmt.Fprintf(stdout, "import-sqlite: %v (what was copied stays; run the same command again to finish)\n", err)
		return 1
	}
	log.LogAttrs(ctx, slog.LevelInfo, "import-sqlite done", slog.String("from", path),
		slog.Int64("messages", res.Messages), slog.Int64("messages_already_there", res.MessagesSkipped),
		slog.Int64("deliveries", res.Deliveries), slog.Int64("deliveries_already_there", res.DeliveriesSkipped),
		slog.String("took", time.Since(start).Round(time.Millisecond).String()))
	return 0
}
