package page

import (
	"errors"
	"slices"
	"testing"

	"igmirror/domain"
)

func TestTail(t *testing.T) {
	tests := []struct {
		name     string
		cursor   string
		limit    int
		mark     Placeholder
		where    bool
		wantSQL  string
		wantArgs []any
	}{
		{name: "first page", mark: Question, wantSQL: "ORDER BY id DESC LIMIT ?", wantArgs: []any{DefaultLimit + 1}},
		{name: "filtered", limit: 3, mark: Question, where: true, wantSQL: "WHERE user_id = ? ORDER BY id DESC LIMIT ?", wantArgs: []any{"u", 4}},
		{name: "next page", cursor: domain.EncodeCursor(9), limit: 3, mark: Dollar, where: true,
			wantSQL: "WHERE user_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3", wantArgs: []any{"u", int64(9), 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, err := New(tt.cursor, tt.limit, tt.mark)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if tt.where {
				q.Where("user_id =", "u")
			}
			sql, args := q.Tail()
			if sql != tt.wantSQL || !slices.Equal(args, tt.wantArgs) {
				t.Errorf("got %q %v, want %q %v", sql, args, tt.wantSQL, tt.wantArgs)
			}
		})
	}
	if _, err := New("nope", 0, Question); !errors.Is(err, domain.ErrBadCursor) {
		t.Errorf("bad cursor: got %v, want %v", err, domain.ErrBadCursor)
	}
}

func TestCut(t *testing.T) {
	q, _ := New("", 2, Question)
	id := func(x int64) int64 { return x }
	if got, next := Cut(q, []int64{5, 4}, id); len(got) != 2 || next != "" {
		t.Errorf("last page: got %v %q, want 2 rows and no cursor", got, next)
	}
	got, next := Cut(q, []int64{5, 4, 3}, id)
	if want := domain.EncodeCursor(4); !slices.Equal(got, []int64{5, 4}) || next != want {
		t.Errorf("full page: got %v %q, want [5 4] %q", got, next, want)
	}
}
