package storetest

import (
	"testing"

	"time"

	"igmirror/domain"
)

func init() {
	register("UnsendMarksDeletedOnce", testUnsendMarksDeletedOnce)
	register("UnsendInSameBatch", testUnsendInSameBatch)
	register("EditUpdatesTextKeepsOriginal", testEditUpdatesTextKeepsOriginal)
	register("EditInSameBatch", testEditInSameBatch)
}

func testUnsendMarksDeletedOnce(t *testing.T, open Opener) {
	s := mustOpen(t, open, Options{})
	m := mustSaveOne(t, s, newMsg(t, "gone"))
	keep := mustSaveOne(t, s, newMsg(t, "kept"))

	res, err := s.Save(ctx, domain.Batch{Unsends: []string{"gone", "never-stored"}})
	if err != nil {
		t.Fatalf("Save(unsends): %v", err)
	}
	if got, want := res.Unsent, 1; got != want {
		t.Errorf("unsent: got %d, want %d (an unknown mid counts 0)", got, want)
	}
	got := mustGet(t, s, m.ID)
	if !got.Deleted || got.DeletedAt == nil {
		t.Fatalf("unsent message: got deleted %v at %v, want deleted with a time", got.Deleted, got.DeletedAt)
	}
	if got.DeletedAt.Location() != time.UTC {
		t.Errorf("deleted_at location: got %v, want UTC", got.DeletedAt.Location())
	}
	if got.MessageText != m.MessageText {
		t.Errorf("unsent message text: got %q, want %q kept", got.MessageText, m.MessageText)
	}
	firstAt := *got.DeletedAt

	res, err = s.Save(ctx, domain.Batch{Unsends: []string{"gone"}})
	if err != nil {
		t.Fatalf("Save(unsend again): %v", err)
	}
	if got, want := res.Unsent, 0; got != want {
		t.Errorf("unsent again: got %d, want %d (already deleted)", got, want)
	}
	if again := mustGet(t, s, m.ID); again.DeletedAt == nil || !again.DeletedAt.Equal(firstAt) {
		t.Errorf("deleted_at after a second unsend: got %v, want the first %v", again.DeletedAt, firstAt)
	}
	if k := mustGet(t, s, keep.ID); k.Deleted {
		t.Errorf("message %q: got deleted, want untouched", k.MID())
	}
}

func testUnsendInSameBatch(t *testing.T, open Opener) {
	s := mustOpen(t, open, Options{})
	res, err := s.Save(ctx, domain.Batch{Messages: []domain.Message{newMsg(t, "x"), newMsg(t, "y")}, Unsends: []string{"x"}})
	if err != nil {
		t.Fatalf("Save: %v", err)
	}
	if got, want := len(res.New), 2; got != want {
		t.Fatalf("new: got %d, want %d", got, want)
	}
	if got, want := res.Unsent, 1; got != want {
		t.Errorf("unsent: got %d, want %d", got, want)
	}
	if m := mustGet(t, s, res.New[0].ID); !m.Deleted {
		t.Errorf("x: got not deleted, want deleted (unsent in the batch that stored it)")
	}
	if m := mustGet(t, s, res.New[1].ID); m.Deleted {
		t.Errorf("y: got deleted, want not")
	}
}

func edit(mid, text string, n int) domain.Edit { return domain.Edit{MID: mid, Text: text, NumEdit: n} }

func testEditUpdatesTextKeepsOriginal(t *testing.T, open Opener) {
	s := mustOpen(t, open, Options{})
	m := mustSaveOne(t, s, newMsg(t, "e", func(m *domain.Message) { m.MessageText = "first words" }))

	steps := []struct {
		name      string
		edits     []domain.Edit
		edited    int
		unknown   int
		wantText  string
		wantCount int
	}{
		{"first edit", []domain.Edit{edit("e", "second words", 1)}, 1, 0, "second words", 1},
		{"later edit", []domain.Edit{edit("e", "third words", 3)}, 1, 0, "third words", 3},
		{"older edit arrives late", []domain.Edit{edit("e", "stale words", 2)}, 0, 0, "third words", 3},
		{"same edit redelivered", []domain.Edit{edit("e", "third words again", 3)}, 0, 0, "third words", 3},
		{"unknown mid", []domain.Edit{edit("nobody", "x", 1)}, 0, 1, "third words", 3},
		{"two edits in one batch, newest first", []domain.Edit{edit("e", "fifth", 5), edit("e", "fourth", 4)}, 1, 0, "fifth", 5},
	}
	for _, st := range steps {
		res, err := s.Save(ctx, domain.Batch{Edits: st.edits})
		if err != nil {
			t.Fatalf("%s: Save: %v", st.name, err)
		}
		if res.Edited != st.edited || res.UnknownEdits != st.unknown {
			t.Errorf("%s: got edited %d unknown %d, want %d, %d", st.name, res.Edited, res.UnknownEdits, st.edited, st.unknown)
		}
		got := mustGet(t, s, m.ID)
		if got.MessageText != st.wantText || got.EditCount != st.wantCount {
			t.Errorf("%s: got text %q edit_count %d, want %q, %d", st.name, got.MessageText, got.EditCount, st.wantText, st.wantCount)
		}
		if got.OriginalText == nil || *got.OriginalText != "first words" {
			t.Errorf("%s: original text: got %v, want %q (the text before the first edit, kept once)", st.name, got.OriginalText, "first words")
		}
	}
}

func testEditInSameBatch(t *testing.T, open Opener) {
	s := mustOpen(t, open, Options{})
	res, err := s.Save(ctx, domain.Batch{
		Messages: []domain.Message{newMsg(t, "e", func(m *domain.Message) { m.MessageText = "before" })},
		Edits:    []domain.Edit{edit("e", "after", 1), edit("missing", "x", 1)},
	})
	if err != nil {
		t.Fatalf("Save: %v", err)
	}
	if res.Edited != 1 || res.UnknownEdits != 1 || len(res.New) != 1 {
		t.Fatalf("result: got new %d edited %d unknown %d, want 1, 1, 1", len(res.New), res.Edited, res.UnknownEdits)
	}
	got := mustGet(t, s, res.New[0].ID)
	if got.MessageText != "after" || got.EditCount != 1 || got.OriginalText == nil || *got.OriginalText != "before" {
		t.Errorf("edited in its own batch: got text %q count %d original %v, want %q, 1, %q", got.MessageText, got.EditCount, got.OriginalText, "after", "before")
	}
}
