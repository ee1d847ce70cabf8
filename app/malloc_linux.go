//go:build linux && cgo

package main

// SQLite's memory comes from glibc's malloc. By default glibc opens up to
// eight arenas per CPU as C calls arrive on new threads, and SQLite's page
// caches and statements, freed on one thread and allocated on another,
// spread over them. Measured over a million messages with the CRM
// blackholed: resident memory 71–105 MiB and climbing with the default,
// 62–64 MiB and flat with two arenas, for no throughput lost.
//
// The limit has to be set before any thread but the first has called
// malloc (glibc fixes it when it opens its second arena), so it is set by
// a C constructor, which runs when the program is loaded, before the Go
// runtime starts its threads. A MALLOC_ARENA_MAX in the environment wins.

/*
#include <malloc.h>
#include <stdlib.h>

__attribute__((constructor)) static void igmirror_limit_malloc_arenas(void) {
#ifdef M_ARENA_MAX
	if (getenv("MALLOC_ARENA_MAX") == NULL) {
		mallopt(M_ARENA_MAX, 2);
	}
#endif
}
*/
import "C"
