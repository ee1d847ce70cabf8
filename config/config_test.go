package config_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"igmirror/config"
)

// TestDefaults checks that an empty environment gives CONTRACT.md's
// defaults: the service runs with no configuration at all.
func TestDefaults(t *testing.T) {
	got, err := config.Load(nil)
	if err != nil {
		t.Fatalf("Load with no environment: %v", err)
	}
	want := config.Config{
		HTTPAddr:        ":8080",
		AdminAddr:       "127.0.0.1:8081",
		HTTPMaxBodySize: 8 << 20,

		SQLitePath:         "instagram_automation.db",
		SQLiteSynchronous:  "NORMAL",
		InstanceID:         hostname(t),
		MirrorLeaseTimeout: 30 * time.Second,
		DeliveryRetention:  168 * time.Hour,

		InstagramGraphURL:         "https://graph.instagram.com/v21.0",
		UsernameCacheTTL:          24 * time.Hour,
		SubscriptionCheckInterval: 5 * time.Minute,

		CRMEnabled: false,
		CRMHost:    "127.0.0.1",
		CRMPort:    3306,
		CRMTable:   "messages",
		CRMTLS:     "preferred",

		MirrorQueueSize:         4096,
		MirrorWorkers:           4,
		MirrorBatchSize:         500,
		MirrorDrainTimeout:      10 * time.Second,
		MirrorReconcileInterval: 30 * time.Second,
		MirrorMaxAttempts:       10,
		MirrorInsertTimeout:     5 * time.Second,

		LogLevel:  "info",
		LogFormat: "json",
	}
	// CONTRACT.md: INSTANCE_ID defaults to the host name.
	host, err := os.Hostname()
	if err != nil {
		t.Fatalf("os.Hostname: %v", err)
	}
	want.InstanceID = host
	if !reflect.DeepEqual(got, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", got, want)
	}
	// Every credential is empty by default: none has a real-looking value.
	if s := got.Secrets(); len(s) != 0 {
		t.Errorf("default secrets: got %d set, want none", len(s))
	}
	if !got.AdminOnLoopback() {
		t.Error("default admin listener: not on loopback")
	}
}

func TestLoadReadsEverySetting(t *testing.T) {
	cfg, err := config.Load([]string{
		"HTTP_ADDR=0.0.0.0:9000",
		"ADMIN_ADDR=0.0.0.0:9001",
		"ADMIN_TOKEN=tok",
		"SQLITE_PATH=/data/x.db",
		"SQLITE_SYNCHRONOUS=FULL",
		"INSTAGRAM_ALLOW_UNSIGNED=true",
		"INSTAGRAM_GRAPH_URL=http://127.0.0.1:1234/v1",
		"CRM_MYSQL_ENABLED=true",
		"CRM_MYSQL_HOST=crm.internal",
		"CRM_MYSQL_PORT=3307",
		"CRM_MYSQL_USER=crm",
		"CRM_MYSQL_DATABASE=crmdb",
		"CRM_MYSQL_TABLE=dm_log",
		"CRM_MYSQL_TLS=skip-verify",
		"MIRROR_QUEUE_SIZE=8",
		"MIRROR_WORKERS=2",
		"MIRROR_DRAIN_TIMEOUT=300ms",
		"MIRROR_RECONCILE_INTERVAL=0",
		"MIRROR_MAX_ATTEMPTS=3",
		"LOG_LEVEL=debug",
		"LOG_FORMAT=text",
		"METRICS_ADDR=127.0.0.1:9100",
		"INSTANCE_ID=igmirror-a",
		"SUBSCRIPTION_CHECK_INTERVAL=1m",
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"HTTP_ADDR", cfg.HTTPAddr, "0.0.0.0:9000"},
		{"ADMIN_ADDR", cfg.AdminAddr, "0.0.0.0:9001"},
		{"SQLITE_PATH", cfg.SQLitePath, "/data/x.db"},
		{"SQLITE_SYNCHRONOUS", cfg.SQLiteSynchronous, "FULL"},
		{"INSTAGRAM_ALLOW_UNSIGNED", cfg.InstagramAllowUnsigned, true},
		{"INSTAGRAM_GRAPH_URL", cfg.InstagramGraphURL, "http://127.0.0.1:1234/v1"},
		{"CRM_MYSQL_ENABLED", cfg.CRMEnabled, true},
		{"CRM_MYSQL_HOST", cfg.CRMHost, "crm.internal"},
		{"CRM_MYSQL_PORT", cfg.CRMPort, 3307},
		{"CRM_MYSQL_TABLE", cfg.CRMTable, "dm_log"},
		{"CRM_MYSQL_TLS", cfg.CRMTLS, "skip-verify"},
		{"MIRROR_QUEUE_SIZE", cfg.MirrorQueueSize, 8},
		{"MIRROR_WORKERS", cfg.MirrorWorkers, 2},
		{"MIRROR_DRAIN_TIMEOUT", cfg.MirrorDrainTimeout, 300 * time.Millisecond},
		{"MIRROR_RECONCILE_INTERVAL", cfg.MirrorReconcileInterval, time.Duration(0)},
		{"MIRROR_MAX_ATTEMPTS", cfg.MirrorMaxAttempts, 3},
		{"LOG_LEVEL", cfg.LogLevel, "debug"},
		{"LOG_FORMAT", cfg.LogFormat, "text"},
		{"METRICS_ADDR", cfg.MetricsAddr, "127.0.0.1:9100"},
		{"INSTANCE_ID", cfg.InstanceID, "igmirror-a"},
		{"SUBSCRIPTION_CHECK_INTERVAL", cfg.SubscriptionCheckInterval, time.Minute},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
	if cfg.AdminOnLoopback() {
		t.Error("AdminOnLoopback for 0.0.0.0: got true")
	}
}

func TestBadValueNamesTheVariable(t *testing.T) {
	crmOn := []string{"CRM_MYSQL_ENABLED=true", "CRM_MYSQL_HOST=h", "CRM_MYSQL_USER=u", "CRM_MYSQL_DATABASE=d"}
	without := func(name string) []string {
		var out []string
		for _, kv := range crmOn {
			if !strings.HasPrefix(kv, name+"=") {
				out = append(out, kv)
			}
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		env     []string
		varName string
	}{
		{"crm on without host", append(without("CRM_MYSQL_HOST"), "CRM_MYSQL_HOST= "), "CRM_MYSQL_HOST"},
		{"crm on without user", without("CRM_MYSQL_USER"), "CRM_MYSQL_USER"},
		{"crm on without database", without("CRM_MYSQL_DATABASE"), "CRM_MYSQL_DATABASE"},
		{"crm enabled not a bool", []string{"CRM_MYSQL_ENABLED=yes please"}, "CRM_MYSQL_ENABLED"},
		{"crm port not a number", []string{"CRM_MYSQL_PORT=mysql"}, "CRM_MYSQL_PORT"},
		{"crm port out of range", []string{"CRM_MYSQL_PORT=70000"}, "CRM_MYSQL_PORT"},
		{"queue size zero", []string{"MIRROR_QUEUE_SIZE=0"}, "MIRROR_QUEUE_SIZE"},
		{"queue size not a number", []string{"MIRROR_QUEUE_SIZE=lots"}, "MIRROR_QUEUE_SIZE"},
		{"workers zero", []string{"MIRROR_WORKERS=0"}, "MIRROR_WORKERS"},
		{"workers negative", []string{"MIRROR_WORKERS=-2"}, "MIRROR_WORKERS"},
		{"batch size zero", []string{"MIRROR_BATCH_SIZE=0"}, "MIRROR_BATCH_SIZE"},
		{"drain timeout not a duration", []string{"MIRROR_DRAIN_TIMEOUT=abc"}, "MIRROR_DRAIN_TIMEOUT"},
		{"drain timeout without unit", []string{"MIRROR_DRAIN_TIMEOUT=10"}, "MIRROR_DRAIN_TIMEOUT"},
		{"drain timeout negative", []string{"MIRROR_DRAIN_TIMEOUT=-1s"}, "MIRROR_DRAIN_TIMEOUT"},
		{"reconcile interval negative", []string{"MIRROR_RECONCILE_INTERVAL=-5s"}, "MIRROR_RECONCILE_INTERVAL"},
		{"max attempts zero", []string{"MIRROR_MAX_ATTEMPTS=0"}, "MIRROR_MAX_ATTEMPTS"},
		{"insert timeout zero", []string{"MIRROR_INSERT_TIMEOUT=0s"}, "MIRROR_INSERT_TIMEOUT"},
		{"table with sql in it", []string{"CRM_MYSQL_TABLE=x; drop"}, "CRM_MYSQL_TABLE"},
		{"table with a backtick", []string{"CRM_MYSQL_TABLE=messages`"}, "CRM_MYSQL_TABLE"},
		{"tls maybe", []string{"CRM_MYSQL_TLS=maybe"}, "CRM_MYSQL_TLS"},
		{"synchronous off", []string{"SQLITE_SYNCHRONOUS=OFF"}, "SQLITE_SYNCHRONOUS"},
		{"sqlite path blank", []string{"SQLITE_PATH= "}, "SQLITE_PATH"},
		{"log level loud", []string{"LOG_LEVEL=loud"}, "LOG_LEVEL"},
		{"log format xml", []string{"LOG_FORMAT=xml"}, "LOG_FORMAT"},
		{"allow unsigned not a bool", []string{"INSTAGRAM_ALLOW_UNSIGNED=sure"}, "INSTAGRAM_ALLOW_UNSIGNED"},
		{"graph url not http", []string{"INSTAGRAM_GRAPH_URL=graph.instagram.com"}, "INSTAGRAM_GRAPH_URL"},
		{"http addr without port", []string{"HTTP_ADDR=localhost"}, "HTTP_ADDR"},
		{"body limit tiny", []string{"HTTP_MAX_BODY_BYTES=10"}, "HTTP_MAX_BODY_BYTES"},
		{"public admin without token", []string{"ADMIN_ADDR=0.0.0.0:8081"}, "ADMIN_ADDR"},
		{"all-interfaces admin without token", []string{"ADMIN_ADDR=:8081"}, "ADMIN_ADDR"},
		{"metrics addr without port", []string{"METRICS_ADDR=localhost"}, "METRICS_ADDR"},
		{"metrics addr a url", []string{"METRICS_ADDR=http://0.0.0.0:9100/metrics"}, "METRICS_ADDR"},
		{"instance id blank", []string{"INSTANCE_ID= "}, "INSTANCE_ID"},
		{"subscription check negative", []string{"SUBSCRIPTION_CHECK_INTERVAL=-1m"}, "SUBSCRIPTION_CHECK_INTERVAL"},
		{"subscription check too often", []string{"SUBSCRIPTION_CHECK_INTERVAL=5s"}, "SUBSCRIPTION_CHECK_INTERVAL"},
		{"subscription check without unit", []string{"SUBSCRIPTION_CHECK_INTERVAL=5"}, "SUBSCRIPTION_CHECK_INTERVAL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Load(tc.env)
			if err == nil {
				t.Fatalf("Load(%q): got nil error, want one naming %s", tc.env, tc.varName)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.varName) {
				t.Errorf("error %q does not name %s", msg, tc.varName)
			}
			if strings.ContainsAny(msg, "\r\n") {
				t.Errorf("error %q is more than one line", msg)
			}
		})
	}
}

func TestGoodEdgeValues(t *testing.T) {
	for _, env := range [][]string{
		{"ADMIN_ADDR=0.0.0.0:8081", "ADMIN_TOKEN=t"},
		{"ADMIN_ADDR=localhost:8081"},
		{"ADMIN_ADDR=[::1]:8081"},
		{"MIRROR_QUEUE_SIZE=1", "MIRROR_WORKERS=1"},
		{"MIRROR_DRAIN_TIMEOUT=0s", "MIRROR_RECONCILE_INTERVAL=0"},
		{"CRM_MYSQL_TABLE=crm_Messages_2"},
		{"CRM_MYSQL_TLS=true"}, {"CRM_MYSQL_TLS=false"},
		{"LOG_LEVEL=WARN"},
		{"METRICS_ADDR=:9100"}, {"METRICS_ADDR=127.0.0.1:0"},
		{"SUBSCRIPTION_CHECK_INTERVAL=0"}, {"SUBSCRIPTION_CHECK_INTERVAL=30s"},
		// The mirror off: CRM credentials are not needed.
		{"CRM_MYSQL_ENABLED=false", "CRM_MYSQL_HOST="},
	} {
		if _, err := config.Load(env); err != nil {
			t.Errorf("Load(%q): %v", env, err)
		}
	}
}

func TestSeveralBadValuesEachNamed(t *testing.T) {
	_, err := config.Load([]string{"CRM_MYSQL_PORT=x", "MIRROR_WORKERS=y"})
	if err == nil {
		t.Fatal("got nil error")
	}
	msg := err.Error()
	if !strings.Contains(msg, "CRM_MYSQL_PORT") || !strings.Contains(msg, "MIRROR_WORKERS") || strings.Contains(msg, "\n") {
		t.Errorf("got %q, want one line naming CRM_MYSQL_PORT and MIRROR_WORKERS", msg)
	}
}

// secretEnv sets every secret to a distinct value a log must never show.
var secretEnv = map[string]string{
	"ADMIN_TOKEN":            "admin-tok-3b9f1e",
	"INSTAGRAM_APP_SECRET":   "app-secret-c0ffee",
	"INSTAGRAM_VERIFY_TOKEN": "verify-tok-77aa12",
	"INSTAGRAM_ACCESS_TOKEN": "IGQWR-access-9d8e7f",
	"CRM_MYSQL_PASSWORD":     "crm-pass-s3cr3t",
}

func TestLogValueMasksEverySecret(t *testing.T) {
	env := []string{"CRM_MYSQL_ENABLED=true", "CRM_MYSQL_USER=crm_writer", "CRM_MYSQL_DATABASE=crm"}
	for k, v := range secretEnv {
		env = append(env, k+"="+v)
	}
	cfg, err := config.Load(env)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("starting igmirror", "config", cfg)
	out := buf.String()
	for k, v := range secretEnv {
		if strings.Contains(out, v) {
			t.Errorf("log line shows %s's value", k)
		}
	}
	var line struct {
		Config map[string]any `json:"config"`
	}
	if err := json.Unmarshal([]byte(out), &line); err != nil {
		t.Fatalf("log line %q: %v", out, err)
	}
	for k := range secretEnv {
		if got := line.Config[k]; got != "***" {
			t.Errorf("%s: got %v, want \"***\"", k, got)
		}
	}
	if got := strings.Count(out, `"***"`); got != len(secretEnv) {
		t.Errorf(`"***" appears %d times, want %d`, got, len(secretEnv))
	}
	// The rest is shown as it is, under the variable's name.
	for k, want := range map[string]any{
		"CRM_MYSQL_USER": "crm_writer", "CRM_MYSQL_ENABLED": true, "MIRROR_QUEUE_SIZE": 4096.0,
		"MIRROR_DRAIN_TIMEOUT": "10s", "HTTP_ADDR": ":8080",
	} {
		if got := line.Config[k]; got != want {
			t.Errorf("%s: got %v, want %v", k, got, want)
		}
	}
	typ := reflect.TypeFor[config.Config]()
	if got, want := len(line.Config), typ.NumField(); got != want {
		t.Errorf("logged %d settings, want all %d", got, want)
	}

	got := cfg.Secrets()
	var want []string
	for _, v := range secretEnv {
		want = append(want, v)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("Secrets: got %d values, want the %d set", len(got), len(want))
	}
}

func TestLogValueUnsetSecretIsEmpty(t *testing.T) {
	cfg, err := config.Load(nil)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "config", cfg)
	if strings.Contains(buf.String(), "***") {
		t.Errorf("unset secrets shown as set: %s", buf.String())
	}
	if !strings.Contains(buf.String(), `"CRM_MYSQL_PASSWORD":""`) {
		t.Errorf("unset password: want it shown empty, got %s", buf.String())
	}
}

// TestLogValueHidesGraphURLCredentials: INSTAGRAM_GRAPH_URL is not a
// secret, but a query or userinfo in it could carry one, so the start-up
// line shows the URL without them.
func TestLogValueHidesGraphURLCredentials(t *testing.T) {
	for _, tc := range []struct {
		name, url, want string
		hidden          []string
	}{
		{"plain", "https://graph.instagram.com/v21.0", "https://graph.instagram.com/v21.0", nil},
		{"query", "https://graph.example/v21.0?access_token=sekrit", "https://graph.example/v21.0?***", []string{"sekrit", "access_token"}},
		{"userinfo and query", "http://user:pw@127.0.0.1:8099/v1/?access_token=sekrit&x=1#frag",
			"http://***@127.0.0.1:8099/v1/?***#***", []string{"sekrit", "user:", ":pw", "pw@", "frag"}},
		{"user alone", "https://tok3n@graph.example/v1", "https://***@graph.example/v1", []string{"tok3n"}},
		{"unparseable", "http://user:pw@%zz/v1?access_token=sekrit", "***", []string{"sekrit", "pw@", "%zz"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.Load([]string{"INSTAGRAM_GRAPH_URL=" + tc.url})
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			slog.New(slog.NewJSONHandler(&buf, nil)).Info("starting igmirror", "config", cfg)
			out := buf.String()
			for _, h := range tc.hidden {
				if strings.Contains(out, h) {
					t.Errorf("log line shows %q of the Graph URL: %s", h, out)
				}
			}
			var line struct {
				Config map[string]any `json:"config"`
			}
			if err := json.Unmarshal([]byte(out), &line); err != nil {
				t.Fatalf("log line %q: %v", out, err)
			}
			if got := line.Config["INSTAGRAM_GRAPH_URL"]; got != tc.want {
				t.Errorf("INSTAGRAM_GRAPH_URL: got %v, want %v", got, tc.want)
			}
			if cfg.InstagramGraphURL != tc.url {
				t.Errorf("config value: got %q, want %q unchanged (only the log hides parts)", cfg.InstagramGraphURL, tc.url)
			}
		})
	}
}

// TestEveryCredentialIsSecret guards new settings: a variable named like
// a credential must be tagged secret, or LogValue would print it.
func TestEveryCredentialIsSecret(t *testing.T) {
	typ := reflect.TypeFor[config.Config]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		name := f.Tag.Get("env")
		credential := strings.Contains(name, "SECRET") || strings.Contains(name, "TOKEN") || strings.Contains(name, "PASSWORD")
		if credential && f.Tag.Get("secret") != "true" {
			t.Errorf("%s looks like a credential but is not tagged secret", name)
		}
		if _, listed := secretEnv[name]; credential && !listed {
			t.Errorf("%s is a credential this test does not set; add it to secretEnv", name)
		}
	}
}

func TestParseLevel(t *testing.T) {
	for in, want := range map[string]slog.Level{
		"debug": slog.LevelDebug, "INFO": slog.LevelInfo, "warn": slog.LevelWarn, "warning": slog.LevelWarn, "error": slog.LevelError,
	} {
		if got, err := config.ParseLevel(in); err != nil || got != want {
			t.Errorf("ParseLevel(%q): got %v, %v, want %v", in, got, err, want)
		}
	}
	if _, err := config.ParseLevel("trace"); err == nil {
		t.Error(`ParseLevel("trace"): got nil error`)
	}
}

func hostname(t *testing.T) string {
	t.Helper()
	h, err := os.Hostname()
	if err != nil {
		t.Fatalf("os.Hostname: %v", err)
	}
	return h
}

func TestStoreSettings(t *testing.T) {
	for _, tc := range []struct {
		name, env, wantErr string
	}{
		{"postgres url", "DATABASE_URL=postgres://u:pw@db:5432/igm?sslmode=disable", ""},
		{"postgresql url", "DATABASE_URL=postgresql://db/igm", ""},
		{"mysql url refused", "DATABASE_URL=mysql://db/igm", "DATABASE_URL"},
		{"no host refused", "DATABASE_URL=postgres:///igm", "DATABASE_URL"},
		{"instance id with slash", "INSTANCE_ID=a/b", "INSTANCE_ID"},
		{"lease too short", "MIRROR_LEASE_TIMEOUT=1s", "MIRROR_LEASE_TIMEOUT"},
		{"negative retention", "DELIVERY_RETENTION=-1h", "DELIVERY_RETENTION"},
		{"journal off", "DELIVERY_RETENTION=0", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Load([]string{tc.env})
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Load(%s): %v, want no error", tc.env, err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Load(%s): got %v, want an error naming %s", tc.env, err, tc.wantErr)
			}
		})
	}
}

func TestDatabaseURLPasswordNeverShown(t *testing.T) {
	cfg, err := config.Load([]string{"DATABASE_URL=postgres://igm:s3cr3t-pw@db:5432/igm?password=other"})
	if err != nil {
		t.Fatal(err)
	}
	var buf strings.Builder
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", "config", cfg)
	if strings.Contains(buf.String(), "s3cr3t-pw") || strings.Contains(buf.String(), "other") {
		t.Errorf("config dump shows the database password: %s", buf.String())
	}
	if !strings.Contains(buf.String(), "postgres://***@db:5432/igm?***") {
		t.Errorf("config dump: got %s, want DATABASE_URL as postgres://***@db:5432/igm?***", buf.String())
	}
	if !slices.Contains(cfg.Secrets(), "s3cr3t-pw") {
		t.Errorf("Secrets(): got %v, want the database password among them", cfg.Secrets())
	}
}
