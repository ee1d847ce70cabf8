# igmirror: the usual entry points. Everything is plain go underneath.
#
#   make test                  # ./scripts/test.sh (go test -race -count=1 ./...)
#   make bench                 # the benchmark table (a few minutes; needs MariaDB at 127.0.0.1:3306)
#   make bench BENCHFLAGS=-quick
#   make bench BENCHFLAGS='-only growth -rows 10000000'
#   make gobench               # go test -bench for the hot functions, with -benchmem

BENCHFLAGS ?=
GOBENCHFLAGS ?= -benchtime=1s

.PHONY: test bench bench-quick gobench

test:
	./scripts/test.sh

bench:
	go run ./bench $(BENCHFLAGS)

bench-quick:
	go run ./bench -quick $(BENCHFLAGS)

gobench:
	go test -run '^$$' -bench . -benchmem $(GOBENCHFLAGS) ./instagram/ ./domain/ ./mirror/
