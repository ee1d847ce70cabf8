package main

import (
	"log/slog"
	"strconv"
	"sync"
	"time"

	"igmirror/domain"
	"igmirror/events"
	"igmirror/instagram"
	"igmirror/mirror"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// ns is the one prefix of every metric.
const ns = "igmirror"

// Delivery outcomes, as the deliveries counter labels them.
const (
	deliveryStored       = "stored"        // committed (also when every message was a duplicate)
	deliveryUnauthorized = "unauthorized"  // no signature
	deliveryForbidden    = "forbidden"     // wrong signature
	deliveryBadRequest   = "bad_request"   // not an Instagram delivery
	deliveryTooLarge     = "too_large"     // over the body limit
	deliveryStoreError   = "store_error"   // the local store failed; Meta delivers again
	deliveryUnsignedDeny = "unsigned_deny" // no app secret configured
)

var deliveryOutcomes = []string{deliveryStored, deliveryUnauthorized, deliveryForbidden, deliveryBadRequest,
	deliveryTooLarge, deliveryStoreError, deliveryUnsignedDeny}

// Item kinds of a delivery, as the items counter labels them: "standby"
// is a message from entry[].standby[] (either direction); "read" counts
// Meta's messaging_seen items; "invalid" an item that could not be used
// (its reason is logged once per process); "other" an item kind or entry
// key the parser does not know (its name is logged once per process).
// The order is countItems'.
var itemKinds = [...]string{"message", "echo", "standby", "unsend", "reaction", "read", "postback", "referral", "edit",
	"change", "invalid", "other"}

// metrics holds the collectors the handlers update directly; the rest are
// functions reading the bus and the mirror's own counters.
type metrics struct {
	reg          *prometheus.Registry
	deliveries   *prometheus.CounterVec
	items        *prometheus.CounterVec
	messages     *prometheus.CounterVec
	httpDuration *prometheus.HistogramVec
	insertSecs   prometheus.Histogram
	lookups      *prometheus.CounterVec
	// lastDelivery is the dead man's switch: Meta stops delivering,
	// without any error here, to an app it has unsubscribed.
	lastDelivery prometheus.Gauge

	httpSeries sync.Map // httpSeries → prometheus.Observer

	// Resolved once: the children a stored delivery updates.
	delivered  prometheus.Counter
	itemCounts [len(itemKinds)]prometheus.Counter
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "webhook_deliveries_total",
			Help: "Webhook POSTs by outcome.",
		}, []string{"outcome"}),
		items: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "webhook_items_total",
			Help: "Items of accepted deliveries by kind (messages, echoes, standby, unsends, reactions, reads, changes, invalid, other...).",
		}, []string{"kind"}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "messages_total",
			Help: "Messages offered to the local store by source and outcome (stored or duplicate).",
		}, []string{"source", "outcome"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Name: "http_request_duration_seconds",
			Help:    "HTTP request latency by listener, route and status code.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"listener", "route", "code"}),
		insertSecs: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Name: "mirror_insert_duration_seconds",
			Help:    "Latency of one CRM INSERT statement.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "username_lookups_total",
			Help: "Username look-ups by outcome: hit (cache), miss (fetched), fallback (user id used).",
		}, []string{"outcome"}),
		lastDelivery: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "last_delivery_timestamp_seconds",
			Help: "Unix time of the last accepted (stored) webhook delivery; 0 = none since the process started.",
		}),
	}
	for _, o := range deliveryOutcomes {
		m.deliveries.WithLabelValues(o)
	}
	for i, k := range itemKinds {
		m.itemCounts[i] = m.items.WithLabelValues(k)
	}
	m.delivered = m.deliveries.WithLabelValues(deliveryStored)
	for _, src := range []string{"webhook", "admin"} {
		for _, o := range []string{"stored", "duplicate"} {
			m.messages.WithLabelValues(src, o)
		}
	}
	for _, o := range []instagram.LookupOutcome{instagram.LookupHit, instagram.LookupMiss, instagram.LookupFallback} {
		m.lookups.WithLabelValues(string(o))
	}
	m.reg.MustRegister(m.deliveries, m.items, m.messages, m.httpDuration, m.insertSecs, m.lookups, m.lastDelivery,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// httpSeries names one child of the latency histogram.
type httpSeries struct {
	listener, route string
	status          int
}

// observeHTTP records a request's latency. The histogram's children are
// kept in a map of their own: few (routes × status codes), and found
// without formatting the code and hashing three labels per request.
func (m *metrics) observeHTTP(listener, route string, status int, d time.Duration) {
	k := httpSeries{listener, route, status}
	o, ok := m.httpSeries.Load(k)
	if !ok {
		o, _ = m.httpSeries.LoadOrStore(k, m.httpDuration.WithLabelValues(listener, route, strconv.Itoa(status)))
	}
	o.(prometheus.Observer).Observe(d.Seconds())
}

// itemsByKind is a delivery's item counts by kind, as the journal keeps
// them: only the kinds it holds.
func itemsByKind(c instagram.Counts) map[string]int {
	out := make(map[string]int, 2)
	for i, n := range itemCounts(c) {
		if n > 0 {
			out[itemKinds[i]] = n
		}
	}
	return out
}

// itemCounts lists c's counts in itemKinds' order. Every element is
// named, so that a kind added to one list and not the other fails to
// compile instead of shifting the counts.
func itemCounts(c instagram.Counts) [len(itemKinds)]int {
	return [len(itemKinds)]int{0: c.Messages, 1: c.Echoes, 2: c.Standby, 3: c.Unsends, 4: c.Reactions, 5: c.Reads,
		6: c.Postbacks, 7: c.Referrals, 8: c.Edits, 9: c.Changes, 10: c.Invalid, len(itemKinds) - 1: c.Other}
}

// countItems adds one delivery's items to the items counter.
func (m *metrics) countItems(c instagram.Counts) {
	for i, n := range itemCounts(c) {
		if n > 0 {
			m.itemCounts[i].Add(float64(n))
		}
	}
}

// registerStore exposes the store's group-commit writer, when it has one:
// requests per commit is the mean group size, and the rate of the busy
// seconds how close the writer is to saturation (1 = always in a
// transaction). The counts are this instance's own.
func (m *metrics) registerStore(store domain.Store) {
	st, ok := store.(domain.WriterStatser)
	if !ok {
		return
	}
	m.reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: ns, Name: "store_commits_total", Help: "Group commits of this instance's store writer.",
		}, func() float64 { return float64(st.WriterStats().Commits) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: ns, Name: "store_rollbacks_total", Help: "Store writer transactions that failed and rolled back.",
		}, func() float64 { return float64(st.WriterStats().Failed) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: ns, Name: "store_commit_requests_total", Help: "Writes (deliveries, status updates) folded into the group commits.",
		}, func() float64 { return float64(st.WriterStats().Requests) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: ns, Name: "store_writer_busy_seconds_total", Help: "Time the store writer spent in transactions.",
		}, func() float64 { return st.WriterStats().Busy.Seconds() }),
	)
}

// registerBus exposes the event bus's counters and queue gauges.
func (m *metrics) registerBus(bus *events.Bus) {
	m.reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: ns, Name: "events_published_total", Help: "MessageSaved events put on the mirror queue.",
		}, func() float64 { return float64(bus.Published()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: ns, Name: "mirror_queue_depth", Help: "Events waiting on the mirror queue.",
		}, func() float64 { return float64(bus.Len()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: ns, Name: "mirror_queue_capacity", Help: "Capacity of the mirror queue (MIRROR_QUEUE_SIZE).",
		}, func() float64 { return float64(bus.Cap()) }),
	)
	for _, reason := range []string{events.ReasonQueueFull, events.ReasonClosed} {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: ns, Name: "events_dropped_total", Help: "MessageSaved events turned away, by reason.",
			ConstLabels: prometheus.Labels{"reason": reason},
		}, func() float64 { return float64(bus.Dropped(reason)) }))
	}
}

// registerMirror exposes the mirror's counters and the CRM state; status
// is nil-safe so that a disabled mirror still shows its state.
func (m *metrics) registerMirror(pool *mirror.Pool, rec *mirror.Reconciler, status func() mirror.Status) {
	for _, o := range mirror.Outcomes {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: ns, Name: "mirror_inserts_total",
			Help:        "CRM row inserts by outcome: ok, already_present (found by a check, not inserted again), transient_error (retried), permanent_error and row_failed (marked failed).",
			ConstLabels: prometheus.Labels{"outcome": o},
		}, func() float64 {
			if pool == nil {
				return 0
			}
			return float64(pool.Count(o))
		}))
	}
	m.reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: ns, Name: "mirror_retries_total", Help: "CRM statements retried after a transient error.",
		}, func() float64 {
			if pool == nil {
				return 0
			}
			return float64(pool.Retried())
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: ns, Name: "mirror_claims_skipped_total",
			Help: "Queued events whose message the store did not let this instance claim (failed meanwhile, or another instance's now): nothing was sent for them.",
		}, func() float64 {
			if pool == nil {
				return 0
			}
			return float64(pool.ClaimSkipped())
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: ns, Name: "reconciler_offered_total", Help: "Messages the reconciler and resyncs offered to the mirror again.",
		}, func() float64 {
			if rec == nil {
				return 0
			}
			return float64(rec.Offered())
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: ns, Name: "mirror_last_success_timestamp_seconds", Help: "Unix time a row last reached the CRM (0 = never).",
		}, func() float64 {
			if pool == nil || pool.LastSuccess().IsZero() {
				return 0
			}
			return float64(pool.LastSuccess().UnixNano()) / 1e9
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: ns, Name: "crm_connected", Help: "1 when the last CRM statement succeeded, else 0.",
		}, func() float64 {
			if status().Connected {
				return 1
			}
			return 0
		}),
	)
	for _, st := range []mirror.State{mirror.StateDisabled, mirror.StateConnecting, mirror.StateConnected, mirror.StateUnreachable, mirror.StateMisconfigure} {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: ns, Name: "crm_state", Help: "1 for the CRM connection's current state, 0 for the others.",
			ConstLabels: prometheus.Labels{"state": string(st)},
		}, func() float64 {
			if status().State == st {
				return 1
			}
			return 0
		}))
	}
}

// registerInstance exposes igmirror_instance_info{instance_id}: always 1,
// so that a query can name instances by INSTANCE_ID rather than by the
// scrape address, which changes when a container moves.
func (m *metrics) registerInstance(id string) {
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: ns, Name: "instance_info", Help: "Always 1; instance_id is this instance's INSTANCE_ID.",
	}, []string{"instance_id"})
	info.WithLabelValues(id).Set(1)
	m.reg.MustRegister(info)
}

// registerStoreReads exposes the gauges read from the store at scrape
// time: the mirror lag, the messages in each mirror state, and whether
// the store takes a write. Each read is cached (cachedRead), so a scrape
// storm costs the store one query per gauge every few seconds.
func (m *metrics) registerStoreReads(lag lagSource, counts statusCounter, ready *cachedRead[bool], log *slog.Logger) {
	_, lagSeconds := newLagGauge(lag, log)
	byStatus := newCachedRead("messages_by_mirror_status", log, counts.CountByStatus)
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: ns, Name: "mirror_lag_seconds",
			Help: "Age of the oldest message not yet in the CRM (pending, dropped or failed); 0 when there is none.",
		}, lagSeconds),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: ns, Name: "store_ready",
			Help: "1 when the local store took a write at the last check (by /readyz or a scrape), else 0.",
		}, func() float64 {
			if ok, _ := ready.get(); ok {
				return 1
			}
			return 0
		}),
	)
	for _, st := range []domain.MirrorStatus{domain.MirrorPending, domain.MirrorMirrored, domain.MirrorDropped, domain.MirrorFailed, domain.MirrorDisabled} {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: ns, Name: "messages_by_mirror_status",
			Help:        "Messages in the local store by mirror_status (failed ones wait for an operator's resync once out of attempts).",
			ConstLabels: prometheus.Labels{"mirror_status": string(st)},
		}, func() float64 {
			c, _ := byStatus.get()
			return float64(c[st])
		}))
	}
}

// registerSubscription exposes the webhook subscription's state, one
// series per state (1 for the current one), and when it was last checked.
func (m *metrics) registerSubscription(w *instagram.SubscriptionWatcher) {
	for _, st := range instagram.SubscriptionStates {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: ns, Name: "subscription_state",
			Help:        "1 for the state the last check of the app's webhook subscription found (unknown without INSTAGRAM_ACCESS_TOKEN), 0 for the others.",
			ConstLabels: prometheus.Labels{"state": string(st)},
		}, func() float64 {
			if w.Status().State == st {
				return 1
			}
			return 0
		}))
	}
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: ns, Name: "subscription_last_check_timestamp_seconds",
		Help: "Unix time the webhook subscription was last checked (0 = never).",
	}, func() float64 {
		t := w.Status().LastCheck
		if t.IsZero() {
			return 0
		}
		return float64(t.UnixNano()) / 1e9
	}))
}
