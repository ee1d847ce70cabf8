package mirror

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// referenceFitText is fitText as first written: a copy of every text,
// built rune by rune. fitText now copies only texts that change; the two
// must agree on every input.
func referenceFitText(s string, c column) (string, bool) {
	charset := strings.ToLower(c.charset)
	lossy := false
	var b strings.Builder
	chars, bytes := 0, 0
	for i, r := range s {
		if (r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD")) || !encodable(charset, r) {
			r = '?'
			lossy = true
		}
		n := encodedLen(charset, r)
		if (c.maxChars > 0 && chars+1 > c.maxChars) || (c.maxBytes > 0 && bytes+n > c.maxBytes) {
			lossy = true
			break
		}
		chars++
		bytes += n
		b.WriteRune(r)
	}
	if !lossy {
		return s, false
	}
	return b.String(), true
}

// fitColumns are the column shapes the comparison runs on, charsets in
// the case the server may report them.
var fitColumns = []column{
	{charset: "utf8mb4", maxChars: 100},
	{charset: "utf8mb4", maxBytes: 65535},
	{charset: "UTF8MB3", maxChars: 10},
	{charset: "utf8", maxBytes: 12},
	{charset: "latin1", maxChars: 8},
	{charset: "latin1", maxBytes: 65535},
	{charset: "ascii", maxChars: 5},
	{charset: "utf16", maxBytes: 9},
	{charset: "utf32", maxBytes: 9},
	{charset: "koi8r", maxChars: 100},
}

func FuzzFitTextMatchesReference(f *testing.F) {
	for _, s := range []string{
		"", "Hi! Do you ship to Kyiv?", "Привіт, Київ", "Love it 😍😍", "€ “quoted” — dash",
		"bad \xff byte", "\xc3", "spelled \uFFFD out", "0123456789abcdef", strings.Repeat("é", 12),
		"a😍b", "\u0081\u008d ctl",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, c := range fitColumns {
			got, gotLossy := fitText(s, c)
			want, wantLossy := referenceFitText(s, c)
			if got != want || gotLossy != wantLossy {
				t.Fatalf("fitText(%q, %+v) = %q, %v; reference %q, %v", s, c, got, gotLossy, want, wantLossy)
			}
		}
	})
}
