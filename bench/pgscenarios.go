package main

import (
	"context"
	"database/sql"
	"fmt"
	"maps"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"igmirror/internal/testkit/faultproxy"
)

// The takeover figure's settings: short, so that the figure is seconds,
// and named in its row.
const (
	takeoverLease     = 5 * time.Second
	takeoverReconcile = 2 * time.Second
)

// pg: single-message and 100-message deliveries on a PostgreSQL store
// against the same on SQLite, measured in turn.
func (b *bench) pg(ctx context.Context) error {
	d, err := newPGDB(ctx, b.opt.postgresURL)
	if err != nil {
		return err
	}
	defer d.drop()
	sq, err := b.startService(ctx, "pg-sqlite", nil)
	if err != nil {
		return err
	}
	defer sq.stop()
	pgp, err := b.startService(ctx, "pg-postgres", d.env("pg-1"))
	if err != nil {
		return err
	}
	defer pgp.stop()

	res, err := b.interleave(ctx, []*proc{sq, pgp}, b.spec(1))
	if err != nil {
		return err
	}
	s, p := res[0], res[1]
	ratio := p.perSec(p.requests) / s.perSec(s.requests)
	b.add(row{
		figure:   fmt.Sprintf("single-message deliveries on PostgreSQL, %d clients", b.opt.clients),
		value:    rateLat(p, false) + failNote(p),
		baseline: "SQLite: " + rateLat(s, false),
		ratio:    fmtRatio(ratio),
		target:   "≥ 0.5×, p99 ≤ 15 ms",
		verdict:  verdict(ratio >= 0.5 && p.pct(0.99) <= 15*time.Millisecond && p.failures == 0),
	})

	res, err = b.interleave(ctx, []*proc{sq, pgp}, b.spec(100))
	if err != nil {
		return err
	}
	s, p = res[0], res[1]
	ratio = p.perSec(p.messages) / s.perSec(s.messages)
	b.add(row{
		figure: fmt.Sprintf("100-message deliveries on PostgreSQL, %d clients: messages/s", b.opt.clients),
		value: fmt.Sprintf("%s msg/s (p50 %s, p99 %s)%s", fmtNum(p.perSec(p.messages)), fmtDur(p.pct(0.5)), fmtDur(p.pct(0.99)),
			failNote(p)),
		baseline: fmt.Sprintf("SQLite: %s msg/s (p50 %s, p99 %s)", fmtNum(s.perSec(s.messages)), fmtDur(s.pct(0.5)), fmtDur(s.pct(0.99))),
		ratio:    fmtRatio(ratio),
		target:   "≥ 0.5×",
		verdict:  verdict(ratio >= 0.5 && p.failures == 0),
	})
	return nil
}

// instances: three instances on one PostgreSQL against one instance on
// it, and three independent SQLite instances against one, under the same
// load spread over the instances, all measured in turn.
func (b *bench) instances(ctx context.Context) error {
	one, err := newPGDB(ctx, b.opt.postgresURL)
	if err != nil {
		return err
	}
	defer one.drop()
	three, err := newPGDB(ctx, b.opt.postgresURL)
	if err != nil {
		return err
	}
	defer three.drop()
	start := func(n int, name string, env func(i int) map[string]string) ([]*proc, error) {
		var ps []*proc
		for i := range n {
			p, err := b.startService(ctx, fmt.Sprintf("%s-%d", name, i+1), env(i))
			if err != nil {
				for _, q := range ps {
					_ = q.stop()
				}
				return nil, err
			}
			ps = append(ps, p)
		}
		return ps, nil
	}
	var all []*proc
	defer func() {
		for _, p := range all {
			_ = p.stop()
		}
	}()
	groups := make([][]*proc, 4)
	for i, g := range []struct {
		n    int
		name string
		env  func(int) map[string]string
	}{
		{1, "inst-pg1", func(i int) map[string]string { return one.env("pg1-" + strconv.Itoa(i+1)) }},
		{3, "inst-pg3", func(i int) map[string]string { return three.env("pg3-" + strconv.Itoa(i+1)) }},
		{1, "inst-sq1", func(int) map[string]string { return nil }},
		{3, "inst-sq3", func(int) map[string]string { return nil }}, // each its own file, named after it
	} {
		ps, err := start(g.n, g.name, g.env)
		if err != nil {
			return err
		}
		all = append(all, ps...)
		groups[i] = ps
	}
	spec := b.spec(1)
	res, err := b.interleaveTargets(ctx, []target{
		{name: "1 instance on PostgreSQL", ps: groups[0], spec: spec},
		{name: "3 instances on one PostgreSQL", ps: groups[1], spec: spec},
		{name: "1 SQLite instance", ps: groups[2], spec: spec},
		{name: "3 SQLite instances", ps: groups[3], spec: spec},
	})
	if err != nil {
		return err
	}
	rate := func(r loadResult) float64 { return r.perSec(r.requests) }
	pg := rate(res[1]) / rate(res[0])
	sq := rate(res[3]) / rate(res[2])
	b.add(row{
		figure: fmt.Sprintf("three instances on one PostgreSQL ÷ one (single-message deliveries, %d clients round-robin over the instances; instances, PostgreSQL and load share %d CPUs)",
			b.opt.clients, runtime.NumCPU()),
		value: fmt.Sprintf("PG3/PG1 = %s: three %s; one %s%s", fmtRatio(pg), rateLat(res[1], false), rateLat(res[0], false),
			failNote(res[1])),
		baseline: fmt.Sprintf("three SQLite instances, each its own file ÷ one: SQ3/SQ1 = %s: three %s; one %s", fmtRatio(sq),
			rateLat(res[3], false), rateLat(res[2], false)),
		ratio:   fmtRatio(pg / sq),
		target:  "(PG3/PG1) ≥ 0.9 × (SQ3/SQ1)",
		verdict: verdict(pg >= 0.9*sq && res[1].failures == 0),
	})
	return nil
}

// takeover: three instances on one PostgreSQL mirror into the CRM; one of
// them, whose path to the CRM is blackholed, holds pending messages and
// is SIGKILLed. The figure is the time from the kill until the last of
// its messages is in the CRM, brought there by the other two.
func (b *bench) takeover(ctx context.Context) error {
	if err := b.needCRM(); err != nil {
		return err
	}
	d, err := newPGDB(ctx, b.opt.postgresURL)
	if err != nil {
		return err
	}
	defer d.drop()
	if err := b.crm.truncate(ctx); err != nil {
		return err
	}
	host, port := b.crm.hostPort()
	hole, err := faultproxy.New(net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return err
	}
	defer hole.Close()
	env := func(id, crmHost string, crmPort int) map[string]string {
		e := d.env(id)
		maps.Copy(e, b.crm.env(crmHost, crmPort))
		e["MIRROR_LEASE_TIMEOUT"] = takeoverLease.String()
		e["MIRROR_RECONCILE_INTERVAL"] = takeoverReconcile.String()
		return e
	}
	victim, err := b.startService(ctx, "takeover-1", env("takeover-1", hole.Host(), hole.Port()))
	if err != nil {
		return err
	}
	defer victim.stop()
	ps := []*proc{victim}
	for i := 2; i <= 3; i++ {
		p, err := b.startService(ctx, "takeover-"+strconv.Itoa(i), env("takeover-"+strconv.Itoa(i), host, port))
		if err != nil {
			return err
		}
		defer p.stop()
		ps = append(ps, p)
	}
	for _, p := range ps {
		if err := waitConnected(ctx, p); err != nil {
			return err
		}
	}
	hole.Blackhole(true)

	// The victim alone takes the deliveries: every message is its own.
	const n = 10_000
	spec := b.spec(100)
	spec.url = victim.webhookURL()
	spec.warmup, spec.duration = 0, 0
	spec.maxMessages = n
	var answered atomic.Int64
	spec.answered = &answered
	r := runLoad(ctx, spec)
	if err := ctx.Err(); err != nil {
		return err
	}
	// Every message answered 200, those answered after the window closed
	// included: all of them are stored, and all must reach the CRM.
	sent := answered.Load()
	if r.failures > 0 {
		return fmt.Errorf("%s answered %d deliveries with an error (%s): the CRM's count would not be comparable", victim.name, r.failures, r.firstErr)
	}
	b.logf("  sent %d messages to %s: %s", sent, victim.name, r)
	db, err := sql.Open("pgx", d.url)
	if err != nil {
		return err
	}
	defer db.Close()
	var held int64
	// Unmirrored: pending, or dropped from its full queue (left to the
	// reconciler); either way the victim's to send.
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM messages WHERE mirror_status IN ($1, $2) AND mirror_owner LIKE $3",
		"pending", "dropped", victim.name+"/%").Scan(&held); err != nil {
		return fmt.Errorf("count the victim's unmirrored messages: %w", err)
	}
	before, err := b.crm.count(ctx)
	if err != nil {
		return err
	}
	b.logf("  %s holds %d unmirrored messages; the CRM holds %d; the store: %s", victim.name, held, before, storeStates(ctx, db))
	if held == 0 {
		return fmt.Errorf("%s holds no unmirrored message at the kill", victim.name)
	}

	if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	killed := time.Now()
	<-victim.exited
	victim.forget()
	var took time.Duration
	var got int64
	limit := takeoverLease + takeoverReconcile + 5*time.Second
	err = waitFor(ctx, limit+60*time.Second, func() (bool, error) {
		c, err := b.crm.count(ctx)
		if err != nil {
			return false, err
		}
		got = c
		if c >= sent {
			took = time.Since(killed)
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("the killed instance's messages never all reached the CRM (%d of %d): %w", got, sent, err)
	}
	b.logf("  all %d messages in the CRM %s after the kill; the store: %s", got, took.Round(time.Millisecond), storeStates(ctx, db))
	check := ""
	if got != sent {
		check = fmt.Sprintf(" — **CRM holds %d rows, want %d**", got, sent)
	}
	b.add(row{
		figure: fmt.Sprintf("takeover: one of three instances on one PostgreSQL SIGKILLed holding pending messages (its CRM path blackholed, all the load sent to it); MIRROR_LEASE_TIMEOUT=%s, MIRROR_RECONCILE_INTERVAL=%s",
			takeoverLease, takeoverReconcile),
		value: fmt.Sprintf("last of its %s unmirrored messages (pending, or dropped from its full queue) in the CRM %s after the kill (CRM held %s at the kill, %s after)%s",
			fmtNum(float64(held)), fmtDur(took), fmtNum(float64(before)), fmtNum(float64(got)), check),
		baseline: fmt.Sprintf("bound: lease %s + interval %s + 5 s", takeoverLease, takeoverReconcile),
		ratio:    "–",
		target:   "≤ " + fmtDur(limit),
		verdict:  verdict(took <= limit && got == sent),
	})
	return nil
}

// storeStates is the store's messages by mirror state and owning
// instance, for the log.
func storeStates(ctx context.Context, db *sql.DB) string {
	rows, err := db.QueryContext(ctx, "SELECT mirror_status, split_part(mirror_owner, '/', 1), COUNT(*) FROM messages GROUP BY 1, 2 ORDER BY 1, 2")
	if err != nil {
		return err.Error()
	}
	defer rows.Close()
	var parts []string
	for rows.Next() {
		var st, owner string
		var k int64
		if err := rows.Scan(&st, &owner, &k); err != nil {
			return err.Error()
		}
		parts = append(parts, fmt.Sprintf("%s/%s %d", st, owner, k))
	}
	if err := rows.Err(); err != nil {
		return err.Error()
	}
	return strings.Join(parts, ", ")
}
