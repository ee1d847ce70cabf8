package domain

import (
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// TruncateUTF8 cuts s to at most n bytes without splitting a character.
func TruncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// DisplayText is what a person should read for m: its text, or, when it
// has only attachments, a placeholder naming them, such as "[image]".
func DisplayText(m *Message) string {
	if m.MessageText != "" {
		return m.MessageText
	}
	if m.Attachments == "" {
		return "[unsupported message]"
	}
	var atts []Attachment
	if err := json.Unmarshal([]byte(m.Attachments), &atts); err != nil || len(atts) == 0 {
		return "[attachment]"
	}
	kinds := make([]string, 0, len(atts))
	for _, a := range atts {
		t := strings.TrimSpace(a.Type)
		if t == "" {
			t = "attachment"
		}
		kinds = append(kinds, t)
	}
	return "[" + strings.Join(kinds, ", ") + "]"
}
