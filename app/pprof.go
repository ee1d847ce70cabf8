//go:build pprof

package main

import (
	"net/http"
	"net/http/pprof"
	"os"
)

// Built only with -tags pprof (the benchmark's -pprof flag): when
// IGMIRROR_PPROF_ADDR is set, net/http/pprof answers on that address, a
// listener of its own. Production builds carry none of this.
func init() {
	addr := os.Getenv("IGMIRROR_PPROF_ADDR")
	if addr == "" {
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	go func() { _ = http.ListenAndServe(addr, mux) }()
}
