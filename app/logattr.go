package main

import (
	"log/slog"
	"net/http"
)

// accessLevel is the level of a request's access line. Server errors are
// logged loudest. An accepted webhook delivery is routine traffic, up to
// thousands a second, whose outcome the metrics already count: its line
// is at debug, so that a busy receiver does not spend its time writing
// logs. Every other request (rejected deliveries, admin calls, probes) is
// logged at info.
func accessLevel(listener, method, route string, status int) slog.Level {
	switch {
	case status >= 500:
		return slog.LevelError
	case listener == listenerPublic && method == http.MethodPost && route == webhookRoute && status < 300:
		return slog.LevelDebug
	}
	return slog.LevelInfo
}
