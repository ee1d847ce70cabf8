package domain

import (
	"context"
	"path/filepath"
	"reflect"
	"testing"
)

// TestQueryMessagesMatchesGORM: the hand-written scan reads every field
// as GORM does, for messages with and without mid, unsent, mirrored
// (clean and degraded), failed and attempted.
func TestQueryMessagesMatchesGORM(t *testing.T) {
	ctx := context.Background()
	s := openTestStore(t, filepath.Join(t.TempDir(), "s.db"))
	defer closeStore(t, s)
	withAttachment := testMsg(t, "mid-att", "")
	withAttachment.Attachments = `[{"type":"image","url":"https://example.test/i.jpg"}]`
	withAttachment.ReplyToMID = "mid-plain"
	res, err := s.Save(ctx, []Message{testMsg(t, "mid-plain", "héllo"), testMsg(t, "", "no mid"), withAttachment,
		testMsg(t, "mid-mirrored", "m"), testMsg(t, "mid-lossy", "l"), testMsg(t, "mid-failed", "f")}, []string{})
	if err != nil || len(res.New) != 6 {
		t.Fatalf("Save: %v, %d new", err, len(res.New))
	}
	ids := make([]int64, len(res.New))
	for i, m := range res.New {
		ids[i] = m.ID
	}
	if _, err := s.Save(ctx, nil, []string{"mid-plain"}); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkAttempting(ctx, ids[3:]); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkMirrored(ctx, ids[3:5], map[int64]bool{ids[4]: true}); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkFailed(ctx, ids[5:], "CRM said no"); err != nil {
		t.Fatal(err)
	}
	got, err := s.queryMessages(ctx, "ORDER BY id")
	if err != nil || len(got) != 6 {
		t.Fatalf("queryMessages: %d rows, %v", len(got), err)
	}
	for i, m := range got {
		want, err := s.Get(ctx, ids[i])
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(m, want) {
			t.Errorf("message %d:\n scan %+v\n gorm %+v", ids[i], m, want)
		}
	}
	if !got[0].Deleted || got[0].DeletedAt == nil || got[1].InstagramMessageID != nil || got[1].MIDKey != nil ||
		got[4].MirroredAt == nil || !got[4].MirrorDegraded || got[5].MirrorLastError != "CRM said no" || got[5].MirrorAttempts != 1 {
		t.Errorf("the sample does not cover what it should: %+v", got)
	}
}
