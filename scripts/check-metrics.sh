#!/usr/bin/env bash
# scripts/check-metrics.sh — checks the service's /metrics with promtool.
#
# Builds ./app, starts it on kernel-picked loopback ports with a throwaway SQLite file
# and the CRM mirror off, waits for GET /healthz, POSTs one signed webhook
# delivery (testdata/webhooks/inbound_text.json), scrapes GET /metrics and runs
# `promtool check metrics` on it: any error or lint warning fails. Finally it
# stops the service with SIGTERM and expects exit status 0 (CONTRACT.md).
#
# Needs: go, curl, openssl, promtool (Debian: apt-get install prometheus).
# .ci/run calls it; it can be run by hand too.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

secret=ci-secret
fixture=testdata/webhooks/inbound_text.json

say() { printf 'check-metrics: %s\n' "$*"; }
fail() {
	printf 'check-metrics: FAILED: %s\n' "$*" >&2
	if [[ -s "${tmp:-}/app.log" ]]; then
		printf -- '--- service log (last 40 lines) ---\n' >&2
		tail -n 40 "$tmp/app.log" >&2
	fi
	exit 1
}

for c in go curl openssl promtool; do
	command -v "$c" >/dev/null 2>&1 || fail "$c is not installed"
done
[[ -f "$fixture" ]] || fail "$fixture is missing"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/igmirror-metrics.XXXXXX")"
pid=""
stop_service() {
	[[ -n "$pid" ]] || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 1 150); do # up to 30 s
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.2
	done
	if kill -0 "$pid" 2>/dev/null; then
		kill -KILL "$pid" 2>/dev/null || true
	fi
}
cleanup() {
	stop_service
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "building ./app"
go build -o "$tmp/igmirror" ./app || fail "go build ./app failed"

# Both listeners bind port 0: the kernel picks free ports, so no other program
# can take them between a check and the bind. The service logs what it got in
# its "listening" line, which is read back here.
say "starting the service on 127.0.0.1, ports picked by the kernel"
env HTTP_ADDR="127.0.0.1:0" \
	ADMIN_ADDR="127.0.0.1:0" \
	SQLITE_PATH="$tmp/igmirror.db" \
	INSTAGRAM_APP_SECRET="$secret" \
	CRM_MYSQL_ENABLED=false \
	"$tmp/igmirror" >"$tmp/app.log" 2>&1 </dev/null &
pid=$!

base=""
ready=""
for _ in $(seq 1 150); do # up to 30 s
	kill -0 "$pid" 2>/dev/null || { wait "$pid" && rc=0 || rc=$?; pid=""; fail "the service exited (status $rc) before answering /healthz"; }
	if [[ -z "$base" ]]; then
		addr="$(sed -n 's/.*"msg":"listening".*"http_addr":"\([0-9.]*:[0-9]*\)".*/\1/p' "$tmp/app.log" | head -n 1)"
		if [[ -n "$addr" ]]; then
			base="http://$addr"
			say "listening on $addr"
		fi
	fi
	if [[ -n "$base" ]] && curl -fsS -m 2 -o /dev/null "$base/healthz" 2>/dev/null; then
		ready=yes
		break
	fi
	sleep 0.2
done
[[ -n "$base" ]] || fail "no \"listening\" line with http_addr in the service log within 30 s"
[[ -n "$ready" ]] || fail "GET /healthz did not answer 200 within 30 s"
say "GET /healthz: 200"

sig="$(openssl dgst -sha256 -hmac "$secret" -r <"$fixture" | cut -d' ' -f1)"
[[ "$sig" =~ ^[0-9a-f]{64}$ ]] || fail "could not compute the HMAC signature (got '$sig')"
code="$(curl -sS -m 10 -o "$tmp/post.body" -w '%{http_code}' \
	-H 'Content-Type: application/json' \
	-H "X-Hub-Signature-256: sha256=$sig" \
	--data-binary "@$fixture" \
	"$base/webhooks/instagram")" || fail "POST /webhooks/instagram did not complete"
[[ "$code" == 200 ]] || fail "POST /webhooks/instagram answered $code: $(head -c 300 "$tmp/post.body")"
say "POST /webhooks/instagram (signed $fixture): 200"

curl -fsS -m 10 -o "$tmp/metrics.txt" "$base/metrics" || fail "GET /metrics failed"
[[ -s "$tmp/metrics.txt" ]] || fail "GET /metrics returned an empty body"
say "GET /metrics: $(grep -c -v '^#' "$tmp/metrics.txt") samples, $(grep -c '^# TYPE' "$tmp/metrics.txt") metric families"

say "promtool check metrics"
if promtool check metrics <"$tmp/metrics.txt" >"$tmp/promtool.out" 2>&1; then
	promtool_rc=0
else
	promtool_rc=$?
fi
if [[ "$promtool_rc" != 0 || -s "$tmp/promtool.out" ]]; then
	sed 's/^/    /' "$tmp/promtool.out"
	fail "promtool check metrics reported problems (exit $promtool_rc); lint warnings count as failures"
fi
say "promtool: no problems"

say "stopping the service (SIGTERM)"
kill -TERM "$pid"
stopped=""
for _ in $(seq 1 150); do # up to 30 s
	if ! kill -0 "$pid" 2>/dev/null; then stopped=yes; break; fi
	sleep 0.2
done
[[ -n "$stopped" ]] || fail "the service did not exit within 30 s of SIGTERM"
if wait "$pid"; then rc=0; else rc=$?; fi
pid=""
[[ "$rc" == 0 ]] || fail "the service exited with status $rc after SIGTERM (the contract says 0)"
say "OK"
