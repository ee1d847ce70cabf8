package domain

import (
	"encoding/base64"
	"strconv"
)

// EncodeCursor makes the opaque cursor that resumes a listing below id.
// Paging goes by id, so rows stored while a client pages never shift the
// pages it has yet to fetch.
func EncodeCursor(id int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte("m:" + strconv.FormatInt(id, 10)))
}

// DecodeCursor reads a cursor made by EncodeCursor.
func DecodeCursor(c string) (int64, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) < 3 || string(b[:2]) != "m:" {
		return 0, ErrBadCursor
	}
	id, err := strconv.ParseInt(string(b[2:]), 10, 64)
	if err != nil || id < 1 {
		return 0, ErrBadCursor
	}
	return id, nil
}
