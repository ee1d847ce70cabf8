// Command bench measures igmirror as it runs: it builds the service, starts
// it on loopback against the real MariaDB, drives it with its own load
// generator (keep-alive clients posting signed deliveries with unique
// mids), and prints one table in which every figure stands beside a
// baseline measured in the same run, with the ratio and the target.
//
//	go run ./bench                  # everything, a few minutes
//	go run ./bench -quick           # everything, smaller, under a minute
//	go run ./bench -only single,batch -duration 10s
//	go run ./bench -only growth -rows 10000000
//	go run ./bench -only pg,instances,takeover   # PostgreSQL (-postgres)
//
// Progress goes to stderr, the table (Markdown) to stdout. Interrupted, it
// still stops every process it started and drops its databases.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Secrets of the benchmark's own service instances; never real ones.
const (
	appSecret  = "bench-app-secret"
	adminToken = "bench-admin-token"
)

// scenarios, in the order they run.
var scenarios = []string{"single", "full", "batch", "stall", "memory", "mirror", "drops", "growth", "journal", "pg", "instances", "takeover"}

// pgScenarios need a PostgreSQL server (-postgres).
var pgScenarios = []string{"pg", "instances", "takeover"}

// options are the command-line flags.
type options struct {
	only       map[string]bool
	duration   time.Duration
	rounds     int
	clients    int
	rows       int64
	messages   int64
	mirrorRows int
	rate       float64
	dropsBatch int
	quick      bool
	mysqlDSN   string
	// postgresURL is the PostgreSQL server of the pg, instances and
	// takeover figures (a database the user may connect to; each scenario
	// creates and drops its own).
	postgresURL string
	// journalDeliveries is how many deliveries the journal's size figure
	// sends.
	journalDeliveries int64
	pprofDir          string
	keep              bool
}

func main() {
	if role := os.Getenv(envRole); role != "" {
		os.Exit(runRole(role))
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	only := fs.String("only", "", "comma-separated scenarios to run: "+strings.Join(scenarios, ","))
	fs.DurationVar(&o.duration, "duration", 6*time.Second, "measured time per configuration, split across the rounds")
	fs.IntVar(&o.rounds, "rounds", 2, "rounds that alternate the configurations compared in one figure")
	fs.IntVar(&o.clients, "clients", 32, "concurrent keep-alive clients")
	fs.Int64Var(&o.rows, "rows", 1_000_000, "rows pre-filled into the local table for the growth figure (the target is 10000000)")
	fs.Int64Var(&o.messages, "messages", 1_000_000, "messages sent for the memory figure")
	fs.IntVar(&o.mirrorRows, "mirror-rows", 100_000, "pending messages preloaded for the mirror throughput figure")
	fs.Float64Var(&o.rate, "rate", 10_000, "messages per second for the drops figure")
	fs.IntVar(&o.dropsBatch, "drops-batch", 10, "messages per delivery for the drops figure")
	fs.Int64Var(&o.journalDeliveries, "journal-deliveries", 1_000_000, "single-message deliveries sent for the journal's size figure")
	fs.BoolVar(&o.quick, "quick", false, "smaller runs of every figure, under a minute in all")
	dsn := os.Getenv("IGMIRROR_TEST_MYSQL")
	if dsn == "" {
		dsn = "root@tcp(127.0.0.1:3306)/"
	}
	fs.StringVar(&o.mysqlDSN, "mysql", dsn, "MySQL/MariaDB server (go-sql-driver DSN without database; default $IGMIRROR_TEST_MYSQL)")
	pgURL := os.Getenv("IGMIRROR_TEST_POSTGRES")
	if pgURL == "" {
		pgURL = defaultPostgres
	}
	fs.StringVar(&o.postgresURL, "postgres", pgURL, "PostgreSQL server for the pg, instances and takeover figures (postgres:// URL of a database the user may connect to; default $IGMIRROR_TEST_POSTGRES)")
	fs.StringVar(&o.pprofDir, "pprof", "", "write CPU and allocation profiles of the service under load into this directory (builds it with -tags pprof)")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (service logs, databases)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.quick {
		// Explicit flags win over the quick defaults.
		for name, v := range map[string]func(){
			"duration":           func() { o.duration = 2 * time.Second },
			"rounds":             func() { o.rounds = 1 },
			"rows":               func() { o.rows = 100_000 },
			"messages":           func() { o.messages = 100_000 },
			"mirror-rows":        func() { o.mirrorRows = 20_000 },
			"journal-deliveries": func() { o.journalDeliveries = 100_000 },
		} {
			if !set[name] {
				v()
			}
		}
	}
	o.only = map[string]bool{}
	for s := range strings.SplitSeq(*only, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !slices.Contains(scenarios, s) {
			return o, fmt.Errorf("-only: unknown scenario %q (have %s)", s, strings.Join(scenarios, ","))
		}
		o.only[s] = true
	}
	if len(o.only) == 0 {
		for _, s := range scenarios {
			o.only[s] = true
		}
	}
	o.journalDeliveries = max(o.journalDeliveries, 10)
	o.rounds = max(o.rounds, 1)
	o.clients = max(o.clients, 1)
	return o, nil
}

// bench is one run: its options, work directory, binaries and results.
type bench struct {
	opt    options
	root   string // module root
	dir    string // work directory
	bin    string // the service binary
	self   string // this program, run again for the baselines
	stderr io.Writer
	rows   []row
	notes  []string
	crm    *crmDB // nil when no MySQL
	crmErr error
	pgVer  string // PostgreSQL server version; "" when not used or not reachable
	pgErr  error
	load0  string // /proc/loadavg when the run started
}

func run(args []string, stdout, stderr io.Writer) int {
	opt, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "bench:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		// A second Ctrl-C kills at once; the children die with us.
		stop()
	}()

	b := &bench{opt: opt, stderr: stderr, load0: loadAvg()}
	defer b.cleanup()
	if err := b.setup(ctx); err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	start := time.Now()
	steps := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"single", b.single}, {"batch", b.batch}, {"stall", b.stall}, {"memory", b.memory},
		{"mirror", b.mirrorThroughput}, {"drops", b.drops}, {"growth", b.growth}, {"journal", b.journal},
		{"pg", b.pg}, {"instances", b.instances}, {"takeover", b.takeover},
	}
	failed := false
	for _, s := range steps {
		if s.name == "single" && !opt.only["single"] && !opt.only["full"] {
			continue
		}
		if s.name != "single" && !opt.only[s.name] {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		b.logf("== %s", s.name)
		fn := s.fn
		if slices.Contains(pgScenarios, s.name) && b.pgErr != nil {
			fn = func(context.Context) error { return fmt.Errorf("needs PostgreSQL (-postgres): %v", b.pgErr) }
		}
		if err := fn(ctx); err != nil {
			if ctx.Err() != nil {
				break
			}
			failed = true
			b.logf("%s: %v", s.name, err)
			b.notes = append(b.notes, fmt.Sprintf("%s: not measured: %v", s.name, firstLine(err.Error())))
		}
		stopAll()
	}
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "bench: interrupted; cleaning up")
		return 130
	}
	b.printReport(stdout, time.Since(start))
	if failed {
		return 1
	}
	return 0
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.stderr, "[%s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// setup finds the module, makes the work directory, builds the service
// and creates the CRM database.
func (b *bench) setup(ctx context.Context) error {
	var err error
	if b.root, err = moduleRoot(); err != nil {
		return err
	}
	if b.self, err = os.Executable(); err != nil {
		return err
	}
	if b.dir, err = os.MkdirTemp("", "igmirror-bench-"); err != nil {
		return err
	}
	b.bin = filepath.Join(b.dir, "igmirror")
	buildArgs := []string{"build", "-o", b.bin}
	if b.opt.pprofDir != "" {
		buildArgs = append(buildArgs, "-tags", "pprof")
		if err := os.MkdirAll(b.opt.pprofDir, 0o755); err != nil {
			return err
		}
	}
	buildArgs = append(buildArgs, "./app")
	b.logf("building the service: go %s", strings.Join(buildArgs, " "))
	cmd := exec.CommandContext(ctx, "go", buildArgs...)
	cmd.Dir = b.root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./app: %w\n%s", err, out)
	}
	needCRM := b.opt.only["stall"] || b.opt.only["memory"] || b.opt.only["mirror"] || b.opt.only["drops"] || b.opt.only["takeover"]
	if needCRM {
		b.crm, b.crmErr = newCRMDB(ctx, b.opt.mysqlDSN, b.root)
		if b.crmErr != nil {
			b.logf("no CRM database: %v (the figures that need MySQL are skipped)", b.crmErr)
		} else {
			b.logf("CRM database %s on %s", b.crm.name, b.crm.cfg.Addr)
		}
	}
	if slices.ContainsFunc(pgScenarios, func(s string) bool { return b.opt.only[s] }) {
		b.pgVer, b.pgErr = pgServer(ctx, b.opt.postgresURL)
		if b.pgErr != nil {
			b.logf("no PostgreSQL: %v (the figures that need it are skipped)", b.pgErr)
		} else {
			b.logf("PostgreSQL %s on %s", b.pgVer, redactedHost(b.opt.postgresURL))
		}
	}
	return nil
}

// cleanup stops every process, drops the databases and removes the work
// directory (unless -keep).
func (b *bench) cleanup() {
	stopAll()
	dropAllCRM()
	dropAllPG()
	if b.dir == "" {
		return
	}
	if b.opt.keep {
		fmt.Fprintf(b.stderr, "bench: work directory kept: %s\n", b.dir)
		return
	}
	_ = os.RemoveAll(b.dir)
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if f, err := os.Open(filepath.Join(dir, "go.mod")); err == nil {
			sc := bufio.NewScanner(f)
			isOurs := sc.Scan() && strings.TrimSpace(sc.Text()) == "module igmirror"
			_ = f.Close()
			if isOurs {
				return dir, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run from inside the igmirror module (go run ./bench)")
		}
		dir = parent
	}
}

// machine describes where the run happened.
func (b *bench) machine() string {
	cpu := "unknown CPU"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	mem := ""
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		line, _, _ := strings.Cut(string(data), "\n")
		var kb int64
		if _, err := fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(line, "MemTotal:")), "%d", &kb); err == nil {
			mem = fmt.Sprintf(", %.0f GiB RAM", float64(kb)/(1<<20))
		}
	}
	kernel := ""
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = ", Linux " + strings.TrimSpace(string(data))
	}
	db := ""
	if b.crm != nil {
		var v string
		if err := b.crm.db.QueryRow("SELECT VERSION()").Scan(&v); err == nil {
			db = ", MariaDB/MySQL " + v
		}
	}
	if b.pgVer != "" {
		db += ", PostgreSQL " + b.pgVer
	}
	return fmt.Sprintf("%d CPUs (%s)%s%s, %s%s", runtime.NumCPU(), cpu, mem, kernel, runtime.Version(), db)
}

// loadAvg is the 1-minute load average: other work on the machine shows
// in every figure, the baselines too.
func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}
