package mirror

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestFitText(t *testing.T) {
	euros := "ab" + strings.Repeat("€", 30000) // 90002 bytes; 65535 falls inside a €
	for _, tc := range []struct {
		name      string
		in        string
		col       column
		want      string
		wantLossy bool
	}{
		{"utf8mb4 keeps emoji", "hi 👋 там", column{charset: "utf8mb4", maxBytes: 65535}, "hi 👋 там", false},
		{"utf8mb3 replaces emoji only", "hi 👋 там", column{charset: "utf8mb3", maxBytes: 65535}, "hi ? там", true},
		{"utf8 is utf8mb3", "ok 🎉", column{charset: "utf8", maxBytes: 65535}, "ok ?", true},
		{"latin1 replaces cyrillic and emoji", "Привет, café 👋", column{charset: "latin1", maxBytes: 65535}, "??????, café ?", true},
		{"latin1 keeps cp1252 punctuation", "“quoted” – 10 € …", column{charset: "latin1", maxBytes: 65535}, "“quoted” – 10 € …", false},
		{"latin1 refuses an unmapped C1 control", "a\u0085b", column{charset: "latin1", maxBytes: 65535}, "a?b", true},
		{"unknown charset is ascii", "naïve", column{charset: "koi8r", maxBytes: 65535}, "na?ve", true},
		{"invalid utf-8 becomes ?", "a\xffb\xc3", column{charset: "utf8mb4", maxBytes: 65535}, "a?b?", true},
		{"a spelled-out U+FFFD is kept", "a\uFFFDb", column{charset: "utf8mb4", maxBytes: 65535}, "a\uFFFDb", false},
		{"cut at a character boundary", euros, column{charset: "utf8mb4", maxBytes: 65535}, "ab" + strings.Repeat("€", 21844), true},
		{"latin1 counts one byte a character", strings.Repeat("é", 70000), column{charset: "latin1", maxBytes: 65535}, strings.Repeat("é", 65535), true},
		{"varchar counts characters", strings.Repeat("я", 150), column{charset: "utf8mb4", maxChars: 100}, strings.Repeat("я", 100), true},
		{"exactly at the bound", strings.Repeat("я", 100), column{charset: "utf8mb4", maxChars: 100}, strings.Repeat("я", 100), false},
		{"replacement counted after replacing", "👋👋👋", column{charset: "utf8mb3", maxBytes: 2}, "??", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, lossy := fitText(tc.in, tc.col)
			if got != tc.want || lossy != tc.wantLossy {
				t.Errorf("fitText: got (%.40q… %d bytes, %v), want (%.40q… %d bytes, %v)",
					got, len(got), lossy, tc.want, len(tc.want), tc.wantLossy)
			}
			if !utf8.ValidString(got) {
				t.Errorf("fitText returned invalid UTF-8")
			}
		})
	}
}

func TestFitRow(t *testing.T) {
	for _, tc := range []struct {
		name         string
		row          Row
		wantAt       time.Time
		wantDegraded bool
	}{
		{"in range", Row{Message: "x", CreatedAt: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}, time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), false},
		{"before 1970", Row{Message: "x", CreatedAt: time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC)}, minTimestamp, true},
		{"after 2038", Row{Message: "x", CreatedAt: time.Date(2040, 1, 1, 0, 0, 0, 0, time.UTC)}, maxTimestamp, true},
		{"long username", Row{Username: strings.Repeat("u", 101), CreatedAt: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)}, time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.row
			fitRow(&r, defaultColumns)
			if !r.CreatedAt.Equal(tc.wantAt) || r.Degraded != tc.wantDegraded {
				t.Errorf("got (%s, %v), want (%s, %v)", r.CreatedAt, r.Degraded, tc.wantAt, tc.wantDegraded)
			}
			if got := utf8.RuneCountInString(r.Username); got > 100 {
				t.Errorf("username: got %d characters, want at most 100", got)
			}
		})
	}
}
