// Package config reads igmirror's settings from the environment once, checks
// them, and renders them for the start-up log with every secret masked.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/caarlos0/env/v11"
)

// Config is every setting of CONTRACT.md, plus a few of igmirror's own.
// Fields tagged `secret:"true"` are masked wherever the config is shown;
// fields tagged `redact:"url"` are shown without userinfo, query and
// fragment (see redactURL).
type Config struct {
	HTTPAddr        string `env:"HTTP_ADDR" envDefault:":8080"`
	AdminAddr       string `env:"ADMIN_ADDR" envDefault:"127.0.0.1:8081"`
	AdminToken      string `env:"ADMIN_TOKEN" secret:"true"`
	HTTPMaxBodySize int64  `env:"HTTP_MAX_BODY_BYTES" envDefault:"8388608"`
	// MetricsAddr, when set, moves /metrics off the public listener onto
	// a listener of its own, so that scrapes need not reach the port Meta
	// posts to.
	MetricsAddr string `env:"METRICS_ADDR"`

	SQLitePath        string `env:"SQLITE_PATH" envDefault:"instagram_automation.db"`
	SQLiteSynchronous string `env:"SQLITE_SYNCHRONOUS" envDefault:"NORMAL"`
	// DatabaseURL empty means SQLite at SQLitePath; a postgres:// URL means
	// a PostgreSQL store shared by any number of instances.
	DatabaseURL string `env:"DATABASE_URL" redact:"url"`
	// InstanceID names this instance in leases, logs and metrics; empty
	// means the host name (filled by Load).
	InstanceID         string        `env:"INSTANCE_ID"`
	MirrorLeaseTimeout time.Duration `env:"MIRROR_LEASE_TIMEOUT" envDefault:"30s"`
	// DeliveryRetention is how long the delivery journal keeps each
	// accepted delivery; 0 turns the journal off.
	DeliveryRetention time.Duration `env:"DELIVERY_RETENTION" envDefault:"168h"`

	InstagramAppSecret     string        `env:"INSTAGRAM_APP_SECRET" secret:"true"`
	InstagramVerifyToken   string        `env:"INSTAGRAM_VERIFY_TOKEN" secret:"true"`
	InstagramAccessToken   string        `env:"INSTAGRAM_ACCESS_TOKEN" secret:"true"`
	InstagramGraphURL      string        `env:"INSTAGRAM_GRAPH_URL" envDefault:"https://graph.instagram.com/v21.0" redact:"url"`
	InstagramAllowUnsigned bool          `env:"INSTAGRAM_ALLOW_UNSIGNED" envDefault:"false"`
	UsernameCacheTTL       time.Duration `env:"INSTAGRAM_USERNAME_CACHE_TTL" envDefault:"24h"`
	// SubscriptionCheckInterval is how often the app's webhook
	// subscription is checked with the Graph API (needs
	// INSTAGRAM_ACCESS_TOKEN); 0 turns the check off.
	SubscriptionCheckInterval time.Duration `env:"SUBSCRIPTION_CHECK_INTERVAL" envDefault:"5m"`

	CRMEnabled  bool   `env:"CRM_MYSQL_ENABLED" envDefault:"false"`
	CRMHost     string `env:"CRM_MYSQL_HOST" envDefault:"127.0.0.1"`
	CRMPort     int    `env:"CRM_MYSQL_PORT" envDefault:"3306"`
	CRMUser     string `env:"CRM_MYSQL_USER"`
	CRMPassword string `env:"CRM_MYSQL_PASSWORD" secret:"true"`
	CRMDatabase string `env:"CRM_MYSQL_DATABASE"`
	CRMTable    string `env:"CRM_MYSQL_TABLE" envDefault:"messages"`
	CRMTLS      string `env:"CRM_MYSQL_TLS" envDefault:"preferred"`

	MirrorQueueSize         int           `env:"MIRROR_QUEUE_SIZE" envDefault:"4096"`
	MirrorWorkers           int           `env:"MIRROR_WORKERS" envDefault:"4"`
	MirrorBatchSize         int           `env:"MIRROR_BATCH_SIZE" envDefault:"500"`
	MirrorDrainTimeout      time.Duration `env:"MIRROR_DRAIN_TIMEOUT" envDefault:"10s"`
	MirrorReconcileInterval time.Duration `env:"MIRROR_RECONCILE_INTERVAL" envDefault:"30s"`
	MirrorMaxAttempts       int           `env:"MIRROR_MAX_ATTEMPTS" envDefault:"10"`
	MirrorInsertTimeout     time.Duration `env:"MIRROR_INSERT_TIMEOUT" envDefault:"5s"`

	LogLevel  string `env:"LOG_LEVEL" envDefault:"info"`
	LogFormat string `env:"LOG_FORMAT" envDefault:"json"`
}

// identifier is what CRM_MYSQL_TABLE may hold: a plain MySQL identifier.
var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)

// Load parses the settings from environ (KEY=VALUE pairs, as os.Environ
// gives them) and validates them. Its error is one line that names the
// variable at fault.
func Load(environ []string) (Config, error) {
	cfg, err := env.ParseAsWithOptions[Config](env.Options{Environment: env.ToMap(environ)})
	if err != nil {
		return Config{}, describe(err)
	}
	if cfg.InstanceID == "" {
		if cfg.InstanceID, err = os.Hostname(); err != nil || cfg.InstanceID == "" {
			return Config{}, fmt.Errorf("config: INSTANCE_ID: not set and the host name is unknown (%v); set it", err)
		}
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// UsesPostgres reports whether DATABASE_URL names a PostgreSQL store.
func (c Config) UsesPostgres() bool { return c.DatabaseURL != "" }

// minSubscriptionCheck keeps a mistyped SUBSCRIPTION_CHECK_INTERVAL (say
// "5s" for "5m") from spending the Graph API's rate limit, which the
// username look-ups share.
const minSubscriptionCheck = 30 * time.Second

// describe turns env's aggregate error into one line per bad variable,
// naming the variable rather than the Go field.
func describe(err error) error {
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return fmt.Errorf("config: %w", err)
	}
	lines := make([]string, 0, len(agg.Errors))
	for _, e := range agg.Errors {
		var pe env.ParseError
		if errors.As(e, &pe) {
			lines = append(lines, fmt.Sprintf("%s: cannot parse as %s: %v", envName(pe.Name), pe.Type, unwrapNum(pe.Err)))
			continue
		}
		lines = append(lines, e.Error())
	}
	return fmt.Errorf("config: %s", strings.Join(lines, "; "))
}

// unwrapNum strips strconv's quoting noise so the line stays short.
func unwrapNum(err error) error {
	if u := errors.Unwrap(err); u != nil {
		return u
	}
	return err
}

// envName maps a Config field name to its environment variable.
func envName(field string) string {
	f, ok := reflect.TypeOf(Config{}).FieldByName(field)
	if !ok {
		return field
	}
	return f.Tag.Get("env")
}

// Validate checks the values that parse but make no sense.
func (c Config) Validate() error {
	bad := func(name, why string) error { return fmt.Errorf("config: %s: %s", name, why) }
	if err := checkAddr(c.HTTPAddr); err != nil {
		return bad("HTTP_ADDR", err.Error())
	}
	if err := checkAddr(c.AdminAddr); err != nil {
		return bad("ADMIN_ADDR", err.Error())
	}
	if c.MetricsAddr != "" {
		if err := checkAddr(c.MetricsAddr); err != nil {
			return bad("METRICS_ADDR", err.Error()+"; leave it empty to serve /metrics on HTTP_ADDR")
		}
	}
	if c.InstanceID == "" || len(c.InstanceID) > 100 || !utf8.ValidString(c.InstanceID) || strings.ContainsAny(c.InstanceID, "/ \t\n\r") {
		return bad("INSTANCE_ID", "must be 1 to 100 bytes of UTF-8, without '/' or white space (empty = the host name)")
	}
	if c.AdminToken == "" && !isLoopback(c.AdminAddr) {
		return bad("ADMIN_ADDR", "a non-loopback admin listener needs ADMIN_TOKEN")
	}
	if c.HTTPMaxBodySize < 1024 {
		return bad("HTTP_MAX_BODY_BYTES", "must be at least 1024")
	}
	if strings.TrimSpace(c.SQLitePath) == "" {
		return bad("SQLITE_PATH", "must not be empty")
	}
	switch c.SQLiteSynchronous {
	case "NORMAL", "FULL":
	default:
		return bad("SQLITE_SYNCHRONOUS", "must be NORMAL or FULL")
	}
	if c.DatabaseURL != "" {
		u, err := url.Parse(c.DatabaseURL)
		if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
			return bad("DATABASE_URL", "must be empty (SQLite at SQLITE_PATH) or a postgres://user:password@host:port/database URL")
		}
	}
	if c.MirrorLeaseTimeout < 3*time.Second {
		return bad("MIRROR_LEASE_TIMEOUT", "must be at least 3s")
	}
	if c.DeliveryRetention < 0 {
		return bad("DELIVERY_RETENTION", "must not be negative (0 turns the journal off)")
	}
	if !strings.HasPrefix(c.InstagramGraphURL, "http://") && !strings.HasPrefix(c.InstagramGraphURL, "https://") {
		return bad("INSTAGRAM_GRAPH_URL", "must be an http(s) URL")
	}
	if c.UsernameCacheTTL <= 0 {
		return bad("INSTAGRAM_USERNAME_CACHE_TTL", "must be positive")
	}
	if c.SubscriptionCheckInterval < 0 || (c.SubscriptionCheckInterval > 0 && c.SubscriptionCheckInterval < minSubscriptionCheck) {
		return bad("SUBSCRIPTION_CHECK_INTERVAL", "must be 0 (off) or at least "+minSubscriptionCheck.String())
	}
	if c.CRMEnabled {
		switch {
		case strings.TrimSpace(c.CRMHost) == "":
			return bad("CRM_MYSQL_HOST", "required when CRM_MYSQL_ENABLED=true")
		case strings.TrimSpace(c.CRMUser) == "":
			return bad("CRM_MYSQL_USER", "required when CRM_MYSQL_ENABLED=true")
		case strings.TrimSpace(c.CRMDatabase) == "":
			return bad("CRM_MYSQL_DATABASE", "required when CRM_MYSQL_ENABLED=true")
		}
	}
	if c.CRMPort < 1 || c.CRMPort > 65535 {
		return bad("CRM_MYSQL_PORT", "must be between 1 and 65535")
	}
	if !identifier.MatchString(c.CRMTable) {
		return bad("CRM_MYSQL_TABLE", "must be a plain identifier (letters, digits, underscore)")
	}
	switch c.CRMTLS {
	case "preferred", "true", "skip-verify", "false":
	default:
		return bad("CRM_MYSQL_TLS", "must be preferred, true, skip-verify or false")
	}
	if c.MirrorQueueSize < 1 {
		return bad("MIRROR_QUEUE_SIZE", "must be at least 1")
	}
	if c.MirrorWorkers < 1 {
		return bad("MIRROR_WORKERS", "must be at least 1")
	}
	if c.MirrorBatchSize < 1 || c.MirrorBatchSize > 1000 {
		return bad("MIRROR_BATCH_SIZE", "must be between 1 and 1000")
	}
	if c.MirrorDrainTimeout < 0 {
		return bad("MIRROR_DRAIN_TIMEOUT", "must not be negative")
	}
	if c.MirrorReconcileInterval < 0 {
		return bad("MIRROR_RECONCILE_INTERVAL", "must not be negative (0 turns it off)")
	}
	if c.MirrorMaxAttempts < 1 {
		return bad("MIRROR_MAX_ATTEMPTS", "must be at least 1")
	}
	if c.MirrorInsertTimeout <= 0 {
		return bad("MIRROR_INSERT_TIMEOUT", "must be positive")
	}
	if _, err := ParseLevel(c.LogLevel); err != nil {
		return bad("LOG_LEVEL", err.Error())
	}
	switch c.LogFormat {
	case "json", "text":
	default:
		return bad("LOG_FORMAT", "must be json or text")
	}
	return nil
}

// ParseLevel maps LOG_LEVEL to a slog level.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, errors.New("must be debug, info, warn or error")
}

func checkAddr(addr string) error {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("must be host:port (%v)", err)
	}
	return nil
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// AdminOnLoopback reports whether the admin listener binds a loopback address.
func (c Config) AdminOnLoopback() bool { return isLoopback(c.AdminAddr) }

// LogValue renders the config for slog with every secret masked: a set
// secret shows as "***", an unset one as "". A URL tagged redact:"url"
// shows its scheme, host and path only.
func (c Config) LogValue() slog.Value {
	v := reflect.ValueOf(c)
	t := v.Type()
	attrs := make([]slog.Attr, 0, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		name := f.Tag.Get("env")
		val := v.Field(i).Interface()
		if f.Tag.Get("secret") == "true" {
			if v.Field(i).String() != "" {
				val = "***"
			}
		}
		if f.Tag.Get("redact") == "url" {
			val = redactURL(v.Field(i).String())
		}
		if d, ok := val.(time.Duration); ok {
			val = d.String()
		}
		attrs = append(attrs, slog.Any(name, val))
	}
	return slog.GroupValue(attrs...)
}

// redactURL shows where a URL points without what could authenticate to
// it: a URL is configuration, not a secret, but its userinfo or query (an
// access_token=…) can carry one. Each part present is replaced by "***",
// so the log still says it was there. A URL that does not parse is masked
// whole, since there is no telling which part is the secret.
func redactURL(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil || u.Opaque != "" {
		return "***"
	}
	var b strings.Builder
	if u.Scheme != "" {
		b.WriteString(u.Scheme + ":")
	}
	if u.Host != "" || u.User != nil {
		b.WriteString("//")
		if u.User != nil {
			b.WriteString("***@")
		}
		b.WriteString(u.Host)
	}
	b.WriteString(u.EscapedPath())
	if u.RawQuery != "" || u.ForceQuery {
		b.WriteString("?***")
	}
	if u.Fragment != "" {
		b.WriteString("#***")
	}
	return b.String()
}

// Secrets returns the non-empty secret values, for tests that check no log
// line leaks one.
func (c Config) Secrets() []string {
	v := reflect.ValueOf(c)
	t := v.Type()
	var out []string
	for i := range t.NumField() {
		if t.Field(i).Tag.Get("secret") == "true" && v.Field(i).String() != "" {
			out = append(out, v.Field(i).String())
		}
		if t.Field(i).Tag.Get("redact") == "url" {
			if u, err := url.Parse(v.Field(i).String()); err == nil && u.User != nil {
				if pw, ok := u.User.Password(); ok && pw != "" {
					out = append(out, pw)
				}
			}
		}
	}
	return out
}
