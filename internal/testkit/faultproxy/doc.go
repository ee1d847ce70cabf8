// Package faultproxy is a TCP fault-injection proxy for tests and benchmarks.
//
// A Proxy listens on a loopback port and forwards every accepted connection
// to a fixed target (typically a MariaDB server on 127.0.0.1:3306). While it
// runs, the caller can degrade the network between client and server:
// add latency, blackhole traffic, reset every open connection, refuse new
// connections, or cut a connection after a number of client bytes.
//
// Every connection pair is pumped by its own goroutines, so a fault applied
// to one connection never slows down another. Close stops the listener,
// resets all connections and waits for every goroutine the proxy started.
package faultproxy
