package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/dirhash"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// A treeLog is one transparent log of go.sum records, kept in memory.
// Records are only ever appended; a fork builds a new treeLog.
type treeLog struct {
	records [][]byte         // record id → record text (two go.sum lines)
	keys    []string         // record id → "path@version"
	ids     map[string]int64 // "path@version" → record id
	hashes  hashSlice        // tlog stored hashes, indexed by tlog.StoredHashIndex
	signed  []byte           // signed tree note for the current size
}

func newTreeLog() *treeLog {
	return &treeLog{ids: map[string]int64{}}
}

// add appends a record for path@version. It does not re-sign the tree:
// call sign after a batch of adds.
func (l *treeLog) add(path, version string, text []byte) (int64, error) {
	key := path + "@" + version
	if _, ok := l.ids[key]; ok {
		return 0, fmt.Errorf("%s is already in the log", key)
	}
	id := int64(len(l.records))
	hashes, err := tlog.StoredHashes(id, text, l.hashes)
	if err != nil {
		return 0, err
	}
	l.hashes = append(l.hashes, hashes...)
	l.records = append(l.records, text)
	l.keys = append(l.keys, key)
	l.ids[key] = id
	return id, nil
}

// sign computes the tree hash for the current size and signs the tree note
// ("go.sum database tree\nN\nHASH\n") with s.
func (l *treeLog) sign(s note.Signer) error {
	n := int64(len(l.records))
	h, err := tlog.TreeHash(n, l.hashes)
	if err != nil {
		return err
	}
	text := tlog.FormatTree(tlog.Tree{N: n, Hash: h})
	l.signed, err = note.Sign(&note.Note{Text: string(text)}, s)
	return err
}

// hashSlice is a tlog.HashReader over stored hashes. An index past the end
// is "not exist", which sumdb.Server turns into 404 (e.g. a tile wider than
// the tree).
type hashSlice []tlog.Hash

func (h hashSlice) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		if x < 0 || x >= int64(len(h)) {
			return nil, os.ErrNotExist
		}
		out[i] = h[x]
	}
	return out, nil
}

// A view is a read-only snapshot of a treeLog at one tree size. Each HTTP
// request gets its own view, so a lookup's record, its signed tree and the
// tiles stay consistent even while a control request appends or forks.
// It implements sumdb.ServerOps.
type view struct {
	mu      *sync.Mutex // guards log.ids, which appends mutate
	log     *treeLog
	records [][]byte
	hashes  hashSlice
	signed  []byte
}

func (v *view) Signed(ctx context.Context) ([]byte, error) {
	return v.signed, nil
}

func (v *view) ReadRecords(ctx context.Context, id, n int64) ([][]byte, error) {
	if id < 0 || n < 0 || id+n > int64(len(v.records)) {
		return nil, os.ErrNotExist
	}
	return v.records[id : id+n], nil
}

func (v *view) Lookup(ctx context.Context, m module.Version) (int64, error) {
	v.mu.Lock()
	id, ok := v.log.ids[m.Path+"@"+m.Version]
	v.mu.Unlock()
	if !ok || id >= int64(len(v.records)) {
		return 0, &fs.PathError{Op: "lookup", Path: m.String(), Err: fs.ErrNotExist}
	}
	return id, nil
}

func (v *view) ReadTileData(ctx context.Context, t tlog.Tile) ([]byte, error) {
	return tlog.ReadTileData(t, v.hashes)
}

// gosumLines formats a sumdb record: the zip line, then the go.mod line.
func gosumLines(path, version, modHash, zipHash string) []byte {
	return []byte(fmt.Sprintf("%s %s %s\n%s %s/go.mod %s\n",
		path, version, zipHash, path, version, modHash))
}

// hashZip is the go.sum hash of a module zip, as cmd/go computes it.
func hashZip(zipfile string) (string, error) {
	return dirhash.HashZip(zipfile, dirhash.Hash1)
}

// hashGoMod is the go.sum "/go.mod" hash of a go.mod file's content, as
// cmd/go computes it (modfetch.goModSum): Hash1 over one file named go.mod.
func hashGoMod(data []byte) (string, error) {
	return dirhash.Hash1([]string{"go.mod"}, func(string) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	})
}

// A found is one module version in a GOPROXY-layout tree.
type found struct {
	path, version string
	mod, zip      string // files: <dir>/<escaped path>/@v/<escaped version>.{mod,zip}
}

// scanModules lists every <escaped path>/@v/<escaped version>.mod under dir
// that has its .zip beside it, in lexical order. Other files (.info, list)
// are ignored; so are names that do not unescape.
func scanModules(dir string) ([]found, error) {
	var list []found
	err := filepath.WalkDir(dir, func(file string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(file, ".mod") {
			return err
		}
		atV := filepath.Dir(file)
		if filepath.Base(atV) != "@v" {
			return nil
		}
		escPath, err := filepath.Rel(dir, filepath.Dir(atV))
		if err != nil {
			return err
		}
		path, err1 := module.UnescapePath(filepath.ToSlash(escPath))
		version, err2 := module.UnescapeVersion(strings.TrimSuffix(d.Name(), ".mod"))
		if err1 != nil || err2 != nil {
			warnf("skipping %s: not a module version file", file)
			return nil
		}
		zip := strings.TrimSuffix(file, ".mod") + ".zip"
		if _, err := os.Stat(zip); err != nil {
			warnf("skipping %s@%s: no .zip beside %s", path, version, file)
			return nil
		}
		list = append(list, found{path: path, version: version, mod: file, zip: zip})
		return nil
	})
	return list, err
}

// hashFound computes the record for one module version found on disk.
func hashFound(f found) ([]byte, error) {
	data, err := os.ReadFile(f.mod)
	if err != nil {
		return nil, err
	}
	modHash, err := hashGoMod(data)
	if err != nil {
		return nil, err
	}
	zipHash, err := hashZip(f.zip)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", f.zip, err)
	}
	return gosumLines(f.path, f.version, modHash, zipHash), nil
}

func warnf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "sumdb: "+format+"\n", args...)
}
