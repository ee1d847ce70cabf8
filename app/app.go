package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"igmirror/config"
	"igmirror/domain"
	"igmirror/events"
	"igmirror/instagram"
	"igmirror/mirror"

	"github.com/labstack/echo/v4"
)

// App is the whole service: both listeners, the store, the bus and the
// mirror. New builds it, Start binds the listeners, Shutdown stops it in
// the reverse order.
type App struct {
	cfg     config.Config
	log     *slog.Logger
	metrics *metrics

	store    domain.Store
	bus      *events.Bus
	sink     *mirror.MySQLSink // nil when the mirror is off
	pool     *mirror.Pool      // nil when the mirror is off
	rec      *mirror.Reconciler
	ingester *ingester
	subs     *instagram.SubscriptionWatcher // never nil; idle without a token
	ready    *cachedRead[bool]              // the store took a write at the last check
	rejected *rejections                    // the last refused webhook POSTs

	public, admin       *echo.Echo
	publicLn, adminLn   net.Listener
	publicSrv, adminSrv *http.Server
	// The metrics listener, when METRICS_ADDR is set; nil otherwise.
	metricsMux *echo.Echo
	metricsLn  net.Listener
	metricsSrv *http.Server
	errs       chan error

	started   time.Time
	recCancel context.CancelFunc
	recDone   chan struct{}
	bgCancel  context.CancelFunc // the journal's purger
	bgDone    chan struct{}
	subCancel context.CancelFunc
	subDone   chan struct{}
	stopOnce  sync.Once

	// readHeaderTimeout bounds how long a client may take to send its
	// request headers (slowloris); a field so that a test can shorten it.
	readHeaderTimeout time.Duration
}

// New builds the service from cfg. It opens the store, SQLite or
// PostgreSQL (and fails if it cannot), but never needs the CRM: a CRM that is down or refuses the
// password is reported, and retried, while the service runs.
func New(cfg config.Config, log *slog.Logger) (*App, error) {
	a := &App{cfg: cfg, log: log, metrics: newMetrics(), errs: make(chan error, 3), started: time.Now().UTC(),
		rejected: newRejections(rejectionCapacity), readHeaderTimeout: 5 * time.Second}
	log.Info("starting igmirror", "config", cfg)
	if cfg.InstagramAppSecret == "" {
		if cfg.InstagramAllowUnsigned {
			log.Warn("INSTAGRAM_ALLOW_UNSIGNED=true and no INSTAGRAM_APP_SECRET: UNSIGNED WEBHOOK DELIVERIES ARE ACCEPTED. Development only; anyone who can reach the listener can store messages.")
		} else {
			log.Warn("no INSTAGRAM_APP_SECRET: webhook POSTs are refused with 503 until it is set")
		}
	}
	if cfg.AdminToken == "" {
		log.Warn("no ADMIN_TOKEN: the admin API refuses every call")
	}

	store, err := openStore(cfg, log)
	if err != nil {
		return nil, err
	}
	a.store = store
	a.metrics.registerStore(store)
	a.bus = events.New(cfg.MirrorQueueSize, log.With("component", "bus"))
	a.metrics.registerBus(a.bus)

	if cfg.CRMEnabled {
		if err := a.buildMirror(); err != nil {
			_ = store.Close()
			return nil, err
		}
	} else {
		log.Info("crm mirror disabled (CRM_MYSQL_ENABLED=false): messages are stored locally with mirror_status=disabled")
	}
	a.metrics.registerMirror(a.pool, a.rec, a.mirrorStatus)
	a.metrics.registerInstance(cfg.InstanceID)
	a.ready = newCachedRead("store_ready", log, func(ctx context.Context) (bool, error) {
		return a.store.CheckWritable(ctx) == nil, nil
	})
	// A write through the group commit may wait behind a large batch; the
	// scrape should not call that a failure any sooner than /readyz does.
	a.ready.timeout = readyzTimeout
	// The check is a write: a scrape makes one only when no /readyz probe
	// has for a while, so that scrapes do not add to the writer's work
	// (nor to its commit counters) every few seconds.
	a.ready.ttl = storeReadyTTL
	a.metrics.registerStoreReads(a.store, a.store, a.ready, log)
	a.subs = instagram.NewSubscriptionWatcher(instagram.SubscriptionConfig{
		BaseURL: cfg.InstagramGraphURL, AccessToken: cfg.InstagramAccessToken,
		Logger: log.With("component", "subscription"),
	})
	a.metrics.registerSubscription(a.subs)
	a.ingester = &ingester{store: store, bus: a.bus, mirrorOn: cfg.CRMEnabled, metrics: a.metrics}
	a.public = a.newPublic()
	a.admin = a.newAdmin()
	if cfg.MetricsAddr != "" {
		a.metricsMux = a.newMetricsListener()
	}
	return a, nil
}

func (a *App) buildMirror() error {
	cfg := a.cfg
	mc := mirror.MySQLConfig{
		Host: cfg.CRMHost, Port: cfg.CRMPort, User: cfg.CRMUser, Password: cfg.CRMPassword,
		Database: cfg.CRMDatabase, Table: cfg.CRMTable, TLS: cfg.CRMTLS, Workers: cfg.MirrorWorkers,
		Timeout: cfg.MirrorInsertTimeout, Logger: a.log,
	}
	sink, err := mirror.OpenMySQL(mc)
	if err != nil {
		return err
	}
	a.sink = sink
	profile := instagram.NewProfileClient(instagram.ProfileConfig{
		BaseURL: cfg.InstagramGraphURL, AccessToken: cfg.InstagramAccessToken, TTL: cfg.UsernameCacheTTL, Logger: a.log,
	})
	resolver := mirror.ResolverFunc(func(ctx context.Context, userID string) string {
		name, outcome := profile.Username(ctx, userID)
		a.metrics.lookups.WithLabelValues(string(outcome)).Inc()
		return name
	})
	a.pool = mirror.NewPool(mirror.PoolConfig{
		Workers: cfg.MirrorWorkers, BatchSize: cfg.MirrorBatchSize, InsertTimeout: cfg.MirrorInsertTimeout,
		Target: mc.Redacted(), Latency: a.metrics.insertSecs, Logger: a.log,
	}, a.bus, sink, a.store, resolver)
	a.rec = mirror.NewReconciler(mirror.ReconcilerConfig{
		Interval: cfg.MirrorReconcileInterval, MaxAttempts: cfg.MirrorMaxAttempts, Logger: a.log,
		Connected: func() bool { return a.pool.Status().Connected },
	}, a.store, a.bus)
	a.log.Info("crm mirror enabled", "crm", mc.Redacted(), "workers", cfg.MirrorWorkers, "queue", cfg.MirrorQueueSize)
	return nil
}

// mirrorStatus is the CRM state, "disabled" when the mirror is off.
func (a *App) mirrorStatus() mirror.Status {
	if a.pool == nil {
		return mirror.Status{State: mirror.StateDisabled, Since: a.started}
	}
	return a.pool.Status()
}

// Start binds the listeners (public, admin, and metrics when
// METRICS_ADDR is set), starts the mirror and the subscription watch.
func (a *App) Start() error {
	var err error
	if a.publicLn, err = net.Listen("tcp", a.cfg.HTTPAddr); err != nil {
		return fmt.Errorf("listen HTTP_ADDR %s: %w", a.cfg.HTTPAddr, err)
	}
	if a.adminLn, err = net.Listen("tcp", a.cfg.AdminAddr); err != nil {
		_ = a.publicLn.Close()
		return fmt.Errorf("listen ADMIN_ADDR %s: %w", a.cfg.AdminAddr, err)
	}
	if a.metricsMux != nil {
		if a.metricsLn, err = net.Listen("tcp", a.cfg.MetricsAddr); err != nil {
			_ = a.publicLn.Close()
			_ = a.adminLn.Close()
			return fmt.Errorf("listen METRICS_ADDR %s: %w", a.cfg.MetricsAddr, err)
		}
	}
	if a.pool != nil {
		a.pool.Start()
		ctx, cancel := context.WithCancel(context.Background())
		a.recCancel, a.recDone = cancel, make(chan struct{})
		go func() { defer close(a.recDone); a.rec.Run(ctx) }()
	}
	bg, cancel := context.WithCancel(context.Background())
	a.bgCancel, a.bgDone = cancel, make(chan struct{})
	go func() { defer close(a.bgDone); a.purgeJournal(bg) }()
	// A first readiness check now, so that the first scrape finds
	// igmirror_store_ready known and does not write to the store itself.
	a.ready.get()
	if a.cfg.SubscriptionCheckInterval > 0 && a.subs.Enabled() {
		ctx, cancel := context.WithCancel(context.Background())
		a.subCancel, a.subDone = cancel, make(chan struct{})
		go func() { defer close(a.subDone); a.subs.Run(ctx, a.cfg.SubscriptionCheckInterval) }()
	}
	a.publicSrv = a.server(a.public)
	a.adminSrv = a.server(a.admin)
	serve := []struct {
		srv *http.Server
		ln  net.Listener
	}{{a.publicSrv, a.publicLn}, {a.adminSrv, a.adminLn}}
	attrs := []any{"http_addr", a.publicLn.Addr().String(), "admin_addr", a.adminLn.Addr().String()}
	if a.metricsLn != nil {
		a.metricsSrv = a.server(a.metricsMux)
		serve = append(serve, struct {
			srv *http.Server
			ln  net.Listener
		}{a.metricsSrv, a.metricsLn})
		attrs = append(attrs, "metrics_addr", a.metricsLn.Addr().String())
	}
	for _, s := range serve {
		go func() {
			if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				a.errs <- err
			}
		}()
	}
	a.log.Info("listening", attrs...)
	return nil
}

// server wraps h in an http.Server with timeouts that a slow or malicious
// client cannot hold open (slowloris).
func (a *App) server(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: a.readHeaderTimeout,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
}

// Errors reports a listener that stopped on its own.
func (a *App) Errors() <-chan error { return a.errs }

// PublicAddr is the bound public address (useful with port 0).
func (a *App) PublicAddr() string { return a.publicLn.Addr().String() }

// AdminAddr is the bound admin address.
func (a *App) AdminAddr() string { return a.adminLn.Addr().String() }

// MetricsAddr is the bound metrics address, "" when /metrics is served on
// the public listener.
func (a *App) MetricsAddr() string {
	if a.metricsLn == nil {
		return ""
	}
	return a.metricsLn.Addr().String()
}

// Shutdown stops in the reverse order of start-up: the listeners (letting
// in-flight requests finish), the subscription watch, the reconciler, the
// mirror (draining the queue for at most MIRROR_DRAIN_TIMEOUT), then the
// databases.
func (a *App) Shutdown(ctx context.Context) error {
	var errs []error
	a.stopOnce.Do(func() {
		hctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		for _, s := range []*http.Server{a.publicSrv, a.adminSrv, a.metricsSrv} {
			if s != nil {
				errs = append(errs, s.Shutdown(hctx))
			}
		}
		if a.subCancel != nil {
			a.subCancel()
			<-a.subDone
		}
		if a.recCancel != nil {
			a.recCancel()
			<-a.recDone
		}
		if a.bgCancel != nil {
			a.bgCancel()
			<-a.bgDone
		}
		if a.pool != nil {
			if a.pool.Stop(a.cfg.MirrorDrainTimeout) {
				a.log.Info("mirror queue drained")
			}
		} else {
			a.bus.Close()
		}
		if a.sink != nil {
			errs = append(errs, a.sink.Close())
		}
		errs = append(errs, a.store.Close())
	})
	return errors.Join(errs...)
}
