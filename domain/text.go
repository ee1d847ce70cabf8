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

// AttachmentUnsupported is the attachment type recorded for a message
// Instagram marks is_unsupported (a kind of message its API does not
// expose): the message is kept, and the mark tells a reader why it has
// no text.
const AttachmentUnsupported = "unsupported"

// placeholderUnsupported is what a person reads for a message with
// neither text nor attachments; the CRM shows it instead of an empty cell.
const placeholderUnsupported = "[unsupported]"

// attachmentNames are the readable names of the attachment types
// Instagram sends; a type not listed is shown as Instagram names it.
var attachmentNames = map[string]string{
	"image":               "image",
	"video":               "video",
	"audio":               "audio",
	"file":                "file",
	"ig_post":             "Instagram post",
	"share":               "shared post",
	"reel":                "reel",
	"ig_reel":             "reel",
	"story_mention":       "story mention",
	"animated_image":      "GIF",
	"sticker":             "sticker",
	AttachmentUnsupported: "unsupported",
}

// DisplayText is what a person should read for m: its text, or, when it
// has only attachments, a placeholder naming them, such as "[image]" or
// "[Instagram post]". A message with neither is one Instagram could not
// show this service (is_unsupported, or stored before that mark was
// kept), so it reads "[unsupported]".
func DisplayText(m *Message) string {
	if m.MessageText != "" {
		return m.MessageText
	}
	if m.Attachments == "" {
		return placeholderUnsupported
	}
	var atts []Attachment
	if err := json.Unmarshal([]byte(m.Attachments), &atts); err != nil || len(atts) == 0 {
		return "[attachment]"
	}
	kinds := make([]string, 0, len(atts))
	for _, a := range atts {
		t := strings.TrimSpace(a.Type)
		if name, ok := attachmentNames[strings.ToLower(t)]; ok {
			t = name
		} else if t == "" {
			t = "attachment"
		}
		kinds = append(kinds, t)
	}
	return "[" + strings.Join(kinds, ", ") + "]"
}
