package mirror

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"igmirror/domain"
	"igmirror/internal/testkit/mysqltest"
)

// benchTexts are message texts as customers write them: short, with
// Cyrillic, with an emoji (which a utf8mb3 or latin1 column cannot hold).
var benchTexts = []string{
	"Hi! Do you ship to Kyiv?",
	"Привіт! Чи є доставка до Києва? Скільки коштує?",
	"Love it 😍 how much for two?",
}

func benchMessage(b *testing.B, i int) domain.Message {
	b.Helper()
	m := newMessage(i, "5582201937461123", benchTexts[i%len(benchTexts)])
	if err := m.Validate(); err != nil {
		b.Fatal(err)
	}
	m.ID = int64(i + 1)
	return m
}

func BenchmarkMapRow(b *testing.B) {
	m := benchMessage(b, 1)
	b.ReportAllocs()
	for b.Loop() {
		r := MapRow(&m)
		if r.Direction != "in" {
			b.Fatalf("direction: got %q, want in", r.Direction)
		}
	}
}

// BenchmarkFitRow fits the texts to the CRM's columns: utf8mb4 (nothing
// to change, the usual case) and latin1 (the emoji and Cyrillic replaced).
func BenchmarkFitRow(b *testing.B) {
	for _, tc := range []struct {
		name string
		cols map[string]column
	}{
		{"utf8mb4", defaultColumns},
		{"latin1", map[string]column{
			"user_id":  {charset: "latin1", maxChars: 100},
			"username": {charset: "latin1", maxChars: 100},
			"message":  {charset: "latin1", maxBytes: 65535},
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			rows := make([]Row, len(benchTexts))
			for i := range rows {
				m := benchMessage(b, i)
				rows[i] = MapRow(&m)
				rows[i].Username = "customer.name"
			}
			b.ReportAllocs()
			for b.Loop() {
				for i := range rows {
					r := rows[i]
					fitRow(&r, tc.cols)
				}
			}
		})
	}
}

// BenchmarkFitRowLongText fits a message of several kilobytes, the text
// Instagram allows at most (1000 characters) repeated.
func BenchmarkFitRowLongText(b *testing.B) {
	m := benchMessage(b, 1)
	m.MessageText = strings.Repeat(benchTexts[1], 40)
	row := MapRow(&m)
	b.ReportAllocs()
	b.SetBytes(int64(len(row.Message)))
	for b.Loop() {
		r := row
		fitRow(&r, defaultColumns)
	}
}

// BenchmarkSinkInsert writes 200-row multi-row INSERTs into a real
// MariaDB table (skipped without MySQL), as one mirror worker does.
func BenchmarkSinkInsert(b *testing.B) {
	crm := mysqltest.New(b)
	host, port := crm.Host, crm.Port
	sink := sinkTo(b, crm, host, port, 0, nil)
	if err := sink.Ping(context.Background()); err != nil {
		b.Fatal(err)
	}
	const batch = 200
	rows := make([]Row, batch)
	for i := range rows {
		m := benchMessage(b, i)
		rows[i] = MapRow(&m)
		rows[i].Username = "customer_" + strconv.Itoa(i%50)
	}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		if err := sink.Insert(context.Background(), rows); err != nil {
			b.Fatal(err)
		}
		n += batch
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "rows/s")
}
