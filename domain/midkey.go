package domain

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"log/slog"
	"time"

	"gorm.io/gorm"
)

// A message's Instagram id (mid) is 100-odd random-looking characters.
// Indexed as text, every insert lands on a random page of a wide index,
// and each commit writes one such page per message. The store instead
// keeps mids unique through mid_key, a 64-bit integer derived from the
// mid, kept in the table mid_keys and the writer's buffer of the newest
// keys (midtables.go).
//
// Two mids may share a key. The key is therefore taken by open
// addressing: a mid is stored under the first of its probe keys
// (probe 0, 1, ...) not held by another mid. Rows are never deleted, so
// a probe key once taken stays taken, and a mid that is stored is always
// found before the first free probe key. The writer, which holds
// SQLite's write lock for the whole transaction, is the only one that
// takes keys; a new message is never taken for a duplicate, because a
// duplicate is declared only when the row holding the key has the very
// same mid.

// maxMIDProbes bounds the probe sequence. A 64-bit collision is expected
// about once in four billion billion pairs; eight in a row do not happen.
const maxMIDProbes = 8

// MIDKey is the key a mid is first tried under (probe 0).
func MIDKey(mid string) int64 { return midKeyProbe(mid, 0) }

// midKeyProbe is the probe-th key of mid: the first 8 bytes of
// SHA-256(probe byte, mid), as a signed integer (SQLite's INTEGER).
func midKeyProbe(mid string, probe int) int64 {
	var buf [160]byte // holds a real mid: no allocation
	b := append(append(buf[:0], byte(probe)), mid...)
	sum := sha256.Sum256(b)
	return int64(binary.BigEndian.Uint64(sum[:8]))
}

// midProbeKeys lists every key any of mids can be stored under: a query
// restricted to these keys and to the mids themselves finds each stored
// mid through the index.
func midProbeKeys(mids []string) []int64 {
	keys := make([]int64, 0, len(mids)*maxMIDProbes)
	for _, mid := range mids {
		for p := range maxMIDProbes {
			keys = append(keys, midKeyProbe(mid, p))
		}
	}
	return keys
}

// setMIDKeys gives each message with a mid its probe-0 key.
func setMIDKeys(msgs []Message) {
	for i := range msgs {
		m := &msgs[i]
		if m.InstagramMessageID == nil {
			m.MIDKey = nil
			continue
		}
		k := MIDKey(*m.InstagramMessageID)
		m.MIDKey = &k
	}
}

// oldMIDIndex is the unique index on the mid text that stores before
// mid_key had; migrateMIDKeys replaces it.
const oldMIDIndex = "idx_messages_instagram_message_id"

// migrateMIDKeys gives every stored mid its key, then drops the old
// unique index on the mid text. The old index guards uniqueness until
// the last key is set, and an interrupted run resumes where it stopped.
// The keys are set under a UNIQUE index on mid_key, which
// migrateMIDTables then turns into mid_keys.
func migrateMIDKeys(db *gorm.DB, log *slog.Logger) error {
	// The old index goes only once every mid has its key, and every row
	// written since has one: without it there is nothing to do (and no
	// reason to read the whole table at every start).
	if old, err := schemaHas(db, "index", oldMIDIndex); err != nil || !old {
		return err
	}
	var todo int64
	if err := db.Raw("SELECT COUNT(*) FROM messages WHERE mid_key IS NULL AND instagram_message_id IS NOT NULL").Scan(&todo).Error; err != nil {
		return fmt.Errorf("count mids without a key: %w", err)
	}
	if todo > 0 {
		log.Info("sqlite migration: keying stored message ids", "messages", todo)
	}
	if err := db.Exec("CREATE UNIQUE INDEX IF NOT EXISTS " + midIndex + " ON messages(mid_key)").Error; err != nil {
		return fmt.Errorf("index mid keys: %w", err)
	}
	start, lastLog := time.Now(), time.Now()
	var done, lastID int64
	for {
		var rows []struct {
			ID  int64
			MID string `gorm:"column:instagram_message_id"`
		}
		err := db.Raw("SELECT id, instagram_message_id FROM messages WHERE id > ? AND mid_key IS NULL AND instagram_message_id IS NOT NULL ORDER BY id LIMIT 5000", lastID).
			Scan(&rows).Error
		if err != nil {
			return fmt.Errorf("read mids to key: %w", err)
		}
		if len(rows) == 0 {
			break
		}
		err = db.Transaction(func(tx *gorm.DB) error {
			for _, r := range rows {
				if err := keyStoredMID(tx, r.ID, r.MID); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		done += int64(len(rows))
		lastID = rows[len(rows)-1].ID
		if time.Since(lastLog) > 10*time.Second {
			lastLog = time.Now()
			log.Info("sqlite migration: keying stored message ids", "done", done, "of", todo)
		}
	}
	if err := db.Exec("DROP INDEX IF EXISTS " + oldMIDIndex).Error; err != nil {
		return fmt.Errorf("drop the old mid index: %w", err)
	}
	log.Info("sqlite migration: message ids keyed", "messages", done, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// keyStoredMID sets the key of one stored row: its first probe key that
// no other row holds.
func keyStoredMID(tx *gorm.DB, id int64, mid string) error {
	for p := range maxMIDProbes {
		res := tx.Exec("UPDATE OR IGNORE messages SET mid_key = ? WHERE id = ?", midKeyProbe(mid, p), id)
		if res.Error != nil {
			return fmt.Errorf("key message %d: %w", id, res.Error)
		}
		if res.RowsAffected == 1 {
			return nil
		}
	}
	return fmt.Errorf("key message %d: all %d probe keys of its mid are taken", id, maxMIDProbes)
}
