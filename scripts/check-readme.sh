#!/usr/bin/env bash
# scripts/check-readme.sh — runs the README's commands as written.
#
# Every fenced block of README.md preceded by the line
# `<!-- readme-check: run -->` is run with bash (-euo pipefail), in order, in
# a throwaway copy of the repository (so that the files the commands write,
# such as the SQLite store, land there), and must exit 0. The other blocks
# are checked elsewhere: `./scripts/test.sh` is CI's test step, the compose
# files are validated with `docker-compose config`, and the import command
# of "Running several instances" is run below against the local PostgreSQL
# (serving on a remote PostgreSQL is what the app's tests do locally).
#
# Needs: go, curl, openssl; psql and a PostgreSQL at 127.0.0.1:5432 (user
# postgres, trust auth) for the several-instances commands. .ci/run calls it.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
say() { printf 'check-readme: %s\n' "$*"; }
fail() { printf 'check-readme: FAILED: %s\n' "$*" >&2; exit 1; }

work="$(mktemp -d "${TMPDIR:-/tmp}/igmirror-readme.XXXXXX")"
pgdb="igmirror_readme_$$"
groups=() # each block runs in a process group of its own
cleanup() {
	# A block that failed half-way may have left its service running.
	local g
	for g in "${groups[@]}"; do kill -- "-$g" 2>/dev/null || true; done
	psql -w -h 127.0.0.1 -U postgres -d postgres -qc "DROP DATABASE IF EXISTS $pgdb WITH (FORCE)" >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

cd "$root"
git ls-files -z | xargs -0 cp --parents -t "$work" 2>/dev/null || cp -r . "$work"
cd "$work"

# The marked blocks, each into a file of its own.
awk -v dir="$work" '
	/^<!-- readme-check: run -->$/ { want = 1; next }
	want && /^```sh$/ { n++; file = sprintf("%s/block-%02d.sh", dir, n); inblock = 1; want = 0; next }
	inblock && /^```$/ { inblock = 0; close(file); next }
	inblock { print > file }
	!/^[[:space:]]*$/ && !inblock { want = 0 }
' README.md
blocks=("$work"/block-*.sh)
[[ -e "${blocks[0]}" ]] || fail "README.md has no block marked <!-- readme-check: run -->"
for b in "${blocks[@]}"; do
	say "running $(basename "$b"):"
	sed 's/^/    /' "$b"
	# In a process group of its own, so that whatever it started can be
	# stopped; and bounded, since a block whose service cannot start would
	# wait for it forever.
	setsid bash -euo pipefail "$b" >"$b.out" 2>&1 &
	pid=$!
	groups+=("$pid")
	(sleep 300 && kill -- "-$pid" 2>/dev/null) &
	watchdog=$!
	rc=0
	wait "$pid" || rc=$?
	kill "$watchdog" 2>/dev/null || true
	out="$(cat "$b.out")"
	((rc == 0)) || fail "$(basename "$b") exited $rc (143: stopped after 300 s):
$out"
	printf '%s\n' "$out" | sed 's/^/  | /'
	# The demo's first POST stores the sample's message.
	grep -q '"stored":1' <<<"$out" || fail "$(basename "$b"): no {\"stored\":1} answer"
done

# "Running several instances": the import into a PostgreSQL, run twice.
if command -v psql >/dev/null 2>&1 && psql -w -h 127.0.0.1 -U postgres -d postgres -qc "CREATE DATABASE $pgdb" >/dev/null 2>&1; then
	[[ -f instagram_automation.db ]] || fail "the demo left no instagram_automation.db to import"
	export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$pgdb?sslmode=disable" INSTANCE_ID=igmirror-a
	for run in 1 2; do
		out="$(go run ./app import-sqlite instagram_automation.db 2>&1)" || fail "import-sqlite run $run: $out"
		printf '%s\n' "$out" | tail -n 2 | sed 's/^/  | /'
	done
	grep -q '"messages_already_there":1' <<<"$out" || fail "the second import-sqlite did not find the message already there"
	say "import-sqlite: copied once, nothing twice"
elif [[ "${CI:-}" == "true" ]]; then
	fail "no PostgreSQL at 127.0.0.1:5432 for the several-instances commands"
else
	say "no PostgreSQL at 127.0.0.1:5432: the several-instances commands were not run"
fi
say "README commands ran as written"
