// Package migration holds the numbered migration files both store
// adapters embed: how they are named, read and ordered. Applying them is
// each adapter's own, since how a migration is recorded and kept from
// running twice belongs to its engine.
package migration

import (
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

// Migration is one numbered file: NNNN_name.sql, whose number is its
// version.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// String is the migration's file name without its extension, as errors
// name it.
func (m Migration) String() string { return fmt.Sprintf("%04d_%s", m.Version, m.Name) }

// List reads the migrations in dir of fsys, ordered by version. A file
// not named NNNN_name.sql, or a version that appears twice, is an error.
func List(fsys fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	var out []Migration
	for _, e := range entries {
		num, name, ok := strings.Cut(strings.TrimSuffix(e.Name(), ".sql"), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration file %s: name is not NNNN_name.sql", e.Name())
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, Migration{Version: v, Name: name, SQL: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i := 1; i < len(out); i++ {
		if out[i].Version == out[i-1].Version {
			return nil, fmt.Errorf("migration version %d appears twice", out[i].Version)
		}
	}
	return out, nil
}

// Apply runs apply on each of all in order and stops at the first error,
// which it returns naming the migration.
func Apply(all []Migration, apply func(Migration) error) error {
	for _, m := range all {
		if err := apply(m); err != nil {
			return fmt.Errorf("migration %s: %w", m, err)
		}
	}
	return nil
}
