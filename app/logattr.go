package main

import "log/slog"

// levelFor logs server errors louder than the rest.
func levelFor(status int) slog.Level {
	if status >= 500 {
		return slog.LevelError
	}
	return slog.LevelInfo
}
