package migration

import (
	"slices"
	"testing"
	"testing/fstest"
)

func TestList(t *testing.T) {
	tests := []struct {
		name    string
		files   []string
		want    []string // String of each, in order
		wantErr bool
	}{
		{name: "ordered by version", files: []string{"0010_b.sql", "0002_a.sql", "0001_schema.sql"}, want: []string{"0001_schema", "0002_a", "0010_b"}},
		{name: "no number", files: []string{"schema.sql"}, wantErr: true},
		{name: "version zero", files: []string{"0000_x.sql"}, wantErr: true},
		{name: "version twice", files: []string{"0001_a.sql", "01_b.sql"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys := fstest.MapFS{}
			for _, f := range tt.files {
				fsys["m/"+f] = &fstest.MapFile{Data: []byte("-- " + f)}
			}
			all, err := List(fsys, "m")
			if (err != nil) != tt.wantErr {
				t.Fatalf("List: got err %v, want error %v", err, tt.wantErr)
			}
			var got []string
			for _, m := range all {
				got = append(got, m.String())
				if want := "-- " + m.String() + ".sql"; m.SQL != want {
					t.Errorf("%s: got SQL %q, want %q", m, m.SQL, want)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}
