// Package sqlitetime holds the scanner of SQLite DATETIME columns, which
// the sqlite adapter reads and postgres's import reads from a SQLite file.
package sqlitetime

import (
	"fmt"
	"strings"
	"time"
)

// Time scans a DATETIME column whichever way the driver hands it over: a
// time.Time where it knows the column's declared type, the text
// otherwise (RETURNING rows, expressions). NULL leaves it invalid.
type Time struct {
	T     time.Time // in UTC
	Valid bool
}

// layouts are the forms the SQLite driver writes times in.
var layouts = []string{
	"2006-01-02 15:04:05.999999999-07:00",
	"2006-01-02T15:04:05.999999999-07:00",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04:05",
	"2006-01-02T15:04:05",
	"2006-01-02",
}

// Scan implements sql.Scanner.
func (st *Time) Scan(v any) error {
	switch x := v.(type) {
	case nil:
		*st = Time{}
		return nil
	case time.Time:
		*st = Time{T: x.UTC(), Valid: true}
		return nil
	case string:
		return st.parse(x)
	case []byte:
		return st.parse(string(x))
	}
	return fmt.Errorf("cannot scan %T into a time", v)
}

func (st *Time) parse(s string) error {
	s = strings.TrimSuffix(s, "Z")
	for _, layout := range layouts {
		if t, err := time.Parse(layout, s); err == nil {
			*st = Time{T: t.UTC(), Valid: true}
			return nil
		}
	}
	return fmt.Errorf("cannot parse time %q", s)
}

// Ptr is a copy of the time, nil when the column was NULL.
func (st Time) Ptr() *time.Time {
	if !st.Valid {
		return nil
	}
	t := st.T
	return &t
}
