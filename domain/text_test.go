package domain_test

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"igmirror/domain"
)

func TestTruncateUTF8(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    string
		n    int
		want string
	}{
		{"short enough", "abc", 5, "abc"},
		{"exact", "abc", 3, "abc"},
		{"ascii cut", "abcdef", 4, "abcd"},
		{"zero", "abc", 0, ""},
		{"inside a 2-byte rune", "aé", 2, "a"},
		{"after a 2-byte rune", "aéb", 3, "aé"},
		{"inside a 3-byte rune", "a€", 3, "a"},
		{"inside a 4-byte rune", "a😍", 4, "a"},
		{"inside a 4-byte rune at the start", "😍", 2, ""},
		{"cyrillic", "Привіт", 5, "Пр"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := domain.TruncateUTF8(tc.s, tc.n); got != tc.want {
				t.Errorf("TruncateUTF8(%q, %d): got %q, want %q", tc.s, tc.n, got, tc.want)
			}
		})
	}
}

func TestTruncateUTF8NeverSplitsARune(t *testing.T) {
	s := "Привіт! Olá, café? 😍👍 €x"
	for n := 0; n <= len(s)+1; n++ {
		got := domain.TruncateUTF8(s, n)
		if !utf8.ValidString(got) || !strings.HasPrefix(s, got) || len(got) > n {
			t.Fatalf("n=%d: got %q, want a valid prefix of at most %d bytes", n, got, n)
		}
		// It keeps as much as fits: the next rune would not.
		if rest := s[len(got):]; rest != "" {
			_, size := utf8.DecodeRuneInString(rest)
			if len(got)+size <= n {
				t.Fatalf("n=%d: got %q, cut more than needed", n, got)
			}
		}
	}
}

func TestDisplayText(t *testing.T) {
	for _, tc := range []struct {
		name       string
		text, atts string
		want       string
	}{
		{"text wins", "hello", `[{"type":"image"}]`, "hello"},
		{"unicode text", "Привіт! 😍", "", "Привіт! 😍"},
		{"one image", "", `[{"type":"image","url":"https://x"}]`, "[image]"},
		{"several kinds", "", `[{"type":"image"},{"type":"video"},{"type":"ig_reel"}]`, "[image, video, reel]"},
		{"video", "", `[{"type":"video"}]`, "[video]"},
		{"audio", "", `[{"type":"audio"}]`, "[audio]"},
		{"file (a PDF)", "", `[{"type":"file","url":"https://x/a.pdf"}]`, "[file]"},
		{"instagram post", "", `[{"type":"ig_post","url":"https://x"}]`, "[Instagram post]"},
		{"share", "", `[{"type":"share"}]`, "[shared post]"},
		{"reel", "", `[{"type":"reel"}]`, "[reel]"},
		{"ig_reel", "", `[{"type":"ig_reel"}]`, "[reel]"},
		{"story mention", "", `[{"type":"story_mention"}]`, "[story mention]"},
		{"type in capitals", "", `[{"type":"IMAGE"}]`, "[image]"},
		{"unknown type named as sent", "", `[{"type":"hologram"}]`, "[hologram]"},
		{"unsupported mark", "", `[{"type":"unsupported"}]`, "[unsupported]"},
		{"untyped attachment", "", `[{"type":" "}]`, "[attachment]"},
		{"empty list", "", `[]`, "[attachment]"},
		{"broken json", "", `[{`, "[attachment]"},
		// Rows stored before the is_unsupported mark was kept have neither
		// text nor attachments; they read like the marked ones.
		{"nothing at all", "", "", "[unsupported]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &domain.Message{MessageText: tc.text, Attachments: tc.atts}
			if got := domain.DisplayText(m); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	mid, empty := "mid-1", ""
	zone := time.FixedZone("UTC+5:45", 5*3600+45*60)
	valid := func() domain.Message {
		return domain.Message{
			InstagramMessageID: &mid, SenderID: customer, RecipientID: business,
			Direction: domain.Inbound, Timestamp: t0.In(zone),
		}
	}
	t.Run("inbound", func(t *testing.T) {
		m := valid()
		if err := m.Validate(); err != nil {
			t.Fatal(err)
		}
		if m.UserID != customer {
			t.Errorf("user id: got %q, want the sender %q", m.UserID, customer)
		}
		if m.Timestamp.Location() != time.UTC || !m.Timestamp.Equal(t0) {
			t.Errorf("timestamp: got %v, want %v in UTC", m.Timestamp, t0)
		}
	})
	t.Run("outbound", func(t *testing.T) {
		m := valid()
		m.Direction, m.SenderID, m.RecipientID = domain.Outbound, business, customer
		if err := m.Validate(); err != nil {
			t.Fatal(err)
		}
		if m.UserID != customer {
			t.Errorf("user id: got %q, want the recipient %q", m.UserID, customer)
		}
	})
	// Each case wants a phrase only its own check writes: every message
	// begins "invalid message", so a bare field name like "id" would match
	// whichever check fired.
	longMID := strings.Repeat("m", 513)
	for _, tc := range []struct {
		name   string
		break_ func(*domain.Message)
		want   string
	}{
		{"no sender", func(m *domain.Message) { m.SenderID = " " }, "sender_id is required"},
		{"no recipient", func(m *domain.Message) { m.RecipientID = "" }, "recipient_id is required"},
		{"bad direction", func(m *domain.Message) { m.Direction = "sideways" }, "direction must be inbound or outbound"},
		{"empty mid", func(m *domain.Message) { m.InstagramMessageID = &empty }, "instagram_message_id must not be empty"},
		{"no timestamp", func(m *domain.Message) { m.Timestamp = time.Time{} }, "timestamp is required"},
		{"long sender id", func(m *domain.Message) { m.SenderID = strings.Repeat("9", 101) }, "an id is longer than allowed"},
		{"long recipient id", func(m *domain.Message) { m.RecipientID = strings.Repeat("9", 101) }, "an id is longer than allowed"},
		{"long mid", func(m *domain.Message) { m.InstagramMessageID = &longMID }, "an id is longer than allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := valid()
			tc.break_(&m)
			err := m.Validate()
			if !errors.Is(err, domain.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want ErrInvalid saying %q", err, tc.want)
			}
		})
	}
}

func TestStatusAndDirectionValid(t *testing.T) {
	for _, s := range []domain.MirrorStatus{domain.MirrorPending, domain.MirrorMirrored, domain.MirrorDropped, domain.MirrorFailed, domain.MirrorDisabled} {
		if !s.Valid() {
			t.Errorf("%q: Valid false, want true", s)
		}
	}
	if domain.MirrorStatus("done").Valid() || domain.MirrorStatus("").Valid() {
		t.Error("unknown status: Valid true, want false")
	}
	if !domain.Inbound.Valid() || !domain.Outbound.Valid() || domain.Direction("in").Valid() {
		t.Error("Direction.Valid: want true for inbound/outbound only")
	}
}
