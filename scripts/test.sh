#!/usr/bin/env bash
# scripts/test.sh — the project's test command. Run it from anywhere:
#
#   ./scripts/test.sh                 # go test -race -count=1 ./...
#   ./scripts/test.sh -run Mirror     # extra arguments go to go test
#   TEST_PKGS=./mirror/... ./scripts/test.sh
#
# The MySQL tests (internal/testkit/mysqltest) need a MySQL/MariaDB server
# whose user may create databases and users. They use IGMIRROR_TEST_MYSQL, a
# go-sql-driver DSN without database, default root@tcp(127.0.0.1:3306)/.
# When IGMIRROR_TEST_MYSQL is not set and nobody answers at that default, and
# this machine has MariaDB's server programs (Debian: apt-get install
# mariadb-server), this script starts a throwaway MariaDB in a temporary
# directory on a free loopback port, points the tests at it, and removes it
# when it exits. With no MySQL at all the tests still run; the MySQL ones skip,
# and the end of the output lists every skipped test and why.
# IGMIRROR_TEST_THROWAWAY=1 always uses a throwaway MariaDB (needs its programs).
# (IGMIRROR_REQUIRE_MYSQL=1 turns those skips into failures; CI sets it.)
#
# The PostgreSQL tests (internal/testkit/pgtest: the postgres/ store adapter)
# need a PostgreSQL server whose user may create databases. They use
# IGMIRROR_TEST_POSTGRES, a postgres:// URL, default
# postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable; each test makes
# its own igmirror_t_* database and drops it. With no PostgreSQL they skip
# (listed at the end like the MySQL ones); IGMIRROR_REQUIRE_POSTGRES=1 turns
# those skips into failures (CI sets it; .ci/run installs, starts and opens
# PostgreSQL to user postgres on 127.0.0.1 when needed).
#
# The output is go test's own: failures as they happen, then the package lines
# ("ok  igmirror/..." / "FAIL ..."), then "tests: N passed, N failed, N skipped".
# The exit status is go test's.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root" || exit 2

default_dsn='root@tcp(127.0.0.1:3306)/'
user_set_dsn=${IGMIRROR_TEST_MYSQL:+yes}
export IGMIRROR_TEST_MYSQL="${IGMIRROR_TEST_MYSQL:-$default_dsn}"

work="$(mktemp -d "${TMPDIR:-/tmp}/igmirror-test.XXXXXX")" || exit 2
mariadb_pid=""

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	if [[ -n "$mariadb_pid" ]] && kill -0 "$mariadb_pid" 2>/dev/null; then
		kill -TERM "$mariadb_pid" 2>/dev/null
		for _ in $(seq 1 100); do # up to 20 s for a clean shutdown
			kill -0 "$mariadb_pid" 2>/dev/null || break
			sleep 0.2
		done
		kill -KILL "$mariadb_pid" 2>/dev/null
		wait "$mariadb_pid" 2>/dev/null
	fi
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say() { printf 'test.sh: %s\n' "$*" >&2; }

first_cmd() { # first of the named programs found in PATH or /usr/sbin, /usr/bin
	local c
	for c in "$@"; do
		if command -v "$c" >/dev/null 2>&1; then command -v "$c"; return 0; fi
		for d in /usr/sbin /usr/bin /usr/local/sbin /usr/local/bin; do
			if [[ -x "$d/$c" ]]; then echo "$d/$c"; return 0; fi
		done
	done
	return 1
}

client="$(first_cmd mariadb mysql || true)"

# can_login HOST PORT: root with an empty password gets in over TCP.
# Without a client program, an open port is taken as good enough.
can_login() {
	if [[ -n "$client" ]]; then
		"$client" --no-defaults --protocol=TCP -h"$1" -P"$2" -uroot --connect-timeout=3 \
			-e 'SELECT 1' >/dev/null 2>&1
	else
		(exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
	fi
}

# free_port: prints a loopback TCP port that nobody listens on. It draws from
# below the kernel's ephemeral range (net.ipv4.ip_local_port_range,
# 32768–60999 by default): a port inside that
# range can be the local end of some outgoing connection, which makes a later
# bind fail with "address already in use" although nothing listens there.
# Nothing stops another program from taking the port between this check and
# the bind, so start_mariadb still retries with a new port.
free_port() {
	local low=32768 p _
	if [[ -r /proc/sys/net/ipv4/ip_local_port_range ]]; then
		read -r low _ </proc/sys/net/ipv4/ip_local_port_range || low=32768
	fi
	((low > 11000)) || low=32768 # an unusual range: fall back to the default
	for _ in $(seq 1 200); do
		p=$((10000 + RANDOM % (low - 10000)))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	return 1
}

# start_mariadb: a throwaway server in $work, root without password over TCP.
start_mariadb() {
	local server install data port sock log tries
	server="$(first_cmd mariadbd mysqld)" || return 1
	install="$(first_cmd mariadb-install-db mysql_install_db)" || return 1
	data="$work/mariadb/data"
	sock="$work/mariadb/mysqld.sock"
	log="$work/mariadb/error.log"
	mkdir -p "$data" "$work/mariadb/tmp"
	local -a as_user=()
	[[ "$(id -u)" == 0 ]] && as_user=(--user=root)

	say "starting a throwaway MariaDB in $work/mariadb"
	if ! "$install" --no-defaults --datadir="$data" "${as_user[@]}" \
		--auth-root-authentication-method=normal --skip-test-db --skip-name-resolve \
		>"$work/mariadb/install.log" 2>&1; then
		say "mariadb-install-db failed:"; sed 's/^/    /' "$work/mariadb/install.log" >&2
		return 1
	fi

	for tries in 1 2 3; do
		port="$(free_port)" || { say "found no free loopback port"; return 1; }

		"$server" --no-defaults "${as_user[@]}" --datadir="$data" --socket="$sock" \
			--port="$port" --bind-address=127.0.0.1 --skip-name-resolve \
			--pid-file="$work/mariadb/mysqld.pid" --log-error="$log" --tmpdir="$work/mariadb/tmp" \
			--character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci \
			--innodb-buffer-pool-size=64M --innodb-flush-log-at-trx-commit=2 \
			--skip-log-bin --max-connections=500 >"$work/mariadb/stdout.log" 2>&1 &
		mariadb_pid=$!

		for _ in $(seq 1 300); do # up to 60 s
			if ! kill -0 "$mariadb_pid" 2>/dev/null; then break; fi
			if can_login 127.0.0.1 "$port"; then
				export IGMIRROR_TEST_MYSQL="root@tcp(127.0.0.1:$port)/"
				say "throwaway MariaDB ready: IGMIRROR_TEST_MYSQL=$IGMIRROR_TEST_MYSQL"
				return 0
			fi
			sleep 0.2
		done
		say "throwaway MariaDB did not come up on port $port (try $tries of 3); its log:"
		[[ -f "$log" ]] && tail -n 20 "$log" | sed 's/^/    /' >&2
		kill -KILL "$mariadb_pid" 2>/dev/null; wait "$mariadb_pid" 2>/dev/null
		mariadb_pid=""
	done
	return 1
}

if [[ "${IGMIRROR_TEST_THROWAWAY:-}" == 1 ]] || { [[ -z "$user_set_dsn" ]] && ! can_login 127.0.0.1 3306; }; then
	if first_cmd mariadbd mysqld >/dev/null && first_cmd mariadb-install-db mysql_install_db >/dev/null; then
		start_mariadb || say "could not start a throwaway MariaDB; MySQL tests will skip unless IGMIRROR_REQUIRE_MYSQL=1"
	else
		say "no MySQL at 127.0.0.1:3306 and no MariaDB server programs here (apt-get install mariadb-server);" \
			"MySQL tests will skip unless IGMIRROR_REQUIRE_MYSQL=1"
	fi
fi

# Let the arguments decide verbosity and raw JSON.
verbose=""
raw_json=""
for a in "$@"; do
	case "$a" in
	-v | -v=true | -test.v | -test.v=true | --v | --v=true) verbose="-v" ;;
	-json | -json=true | --json | --json=true) raw_json=yes ;;
	esac
done
read -r -a pkgs <<<"${TEST_PKGS:-./...}"

if [[ -z "$raw_json" ]] && go build -o "$work/gotestsummary" ./scripts/gotestsummary; then
	go test -race -count=1 -json "$@" "${pkgs[@]}" | "$work/gotestsummary" $verbose
	status=("${PIPESTATUS[@]}")
	rc=${status[0]}
	if [[ ${status[1]} != 0 ]]; then
		say "the output renderer failed (exit ${status[1]})"
		[[ $rc == 0 ]] && rc=1
	fi
else
	[[ -z "$raw_json" ]] && say "could not build scripts/gotestsummary; plain go test output follows"
	go test -race -count=1 "$@" "${pkgs[@]}"
	rc=$?
fi
exit "$rc"
