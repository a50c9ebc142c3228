// Command sumdb is a Go checksum database (sumdb) server for modgate's
// tests, built from the go toolchain's own golang.org/x/mod/sumdb sources
// (see build.sh). It is an independent oracle: the hashing, tree, tile and
// note code is exactly what the go command itself uses. This file has the
// command line, HTTP and control API; log.go has the in-memory log.
//
// Serve:
//
//	sumdb [-listen 127.0.0.1:0] [-name sum.test] [-key-file FILE] [-modules DIR] [-v] [-exit-on-eof]
//
// It records a go.sum record for every DIR/<escaped path>/@v/<escaped
// version>.mod that has its .zip beside it (the GOPROXY=file:// layout),
// serves /lookup/M@V, /latest and /tile/... (tile height 8, like
// sum.golang.org) with sumdb.NewServer, and prints one line to stdout:
//
//	sumdb listening on 127.0.0.1:PORT key NAME+HASH+KEY
//
// The control API, on the same listener (POST only; answers are text):
//
//	/_control/add?path=M&version=V&mod=H1&zip=H1
//	    Appends a record for M@V with the given hashes, right or wrong.
//	    A hash left out is computed from -modules (400 if it has no M@V).
//	    409 if M@V is already in the log. Answers "ID\n<record>".
//	/_control/rescan
//	    Re-reads -modules and appends records for versions not yet in the
//	    log. Answers one "ID PATH VERSION" line per new record.
//	/_control/fork
//	    Replaces the log with a fork: a marker record
//	    "fork.sumdb.test/marker v0.0.K" (K counts forks) is inserted at
//	    id 0 and every record follows one id later. Every module still
//	    looks up with its true hashes, and the new tree (one record larger)
//	    is signed by the same key, but it is not an extension of the tree
//	    served before, so a client that kept the old tree head must report
//	    a fork. Later adds and rescans append to the fork. 409 if the log
//	    is empty. Answers "forked: tree size OLD -> NEW".
//
// Oracle subcommands (no server):
//
//	sumdb hash ZIPFILE [MODPATH VERSION]   h1: of a module zip
//	sumdb hash-mod GOMODFILE [MODPATH VERSION]   h1: of a go.mod
//
// print the bare h1: value, or the full go.sum line when MODPATH and
// VERSION are given.
package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"

	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
	"golang.org/x/mod/sumdb"
	"golang.org/x/mod/sumdb/note"
)

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "hash" || os.Args[1] == "hash-mod") {
		if err := hashCommand(os.Args[1], os.Args[2:]); err != nil {
			fmt.Fprintf(os.Stderr, "sumdb %s: %v\n", os.Args[1], err)
			os.Exit(1)
		}
		return
	}

	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	name := flag.String("name", "sum.test", "database name (the verifier key's name)")
	keyFile := flag.String("key-file", "", "signer key file: read if it exists, else generated and written (default: a fresh key each run)")
	modules := flag.String("modules", "", "GOPROXY-layout directory whose .mod/.zip pairs are recorded")
	verbose := flag.Bool("v", false, "log every request to stderr")
	exitOnEOF := flag.Bool("exit-on-eof", false, "exit when stdin reaches EOF (so the server dies with the test that pipes it)")
	flag.Parse()
	if flag.NArg() > 0 {
		fatalf("unexpected arguments: %q", flag.Args())
	}

	skey, vkey, err := loadOrCreateKey(*keyFile, *name)
	if err != nil {
		fatalf("%v", err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		fatalf("%v", err)
	}
	s := &server{signer: signer, modules: *modules, log: newTreeLog()}
	if _, err := s.rescan(); err != nil {
		fatalf("%v", err)
	}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fatalf("%v", err)
	}
	fmt.Printf("sumdb listening on %s key %s\n", ln.Addr(), vkey)

	if *exitOnEOF {
		go func() {
			io.Copy(io.Discard, os.Stdin)
			os.Exit(0)
		}()
	}
	var h http.Handler = s.handler()
	if *verbose {
		h = logRequests(h)
	}
	fatalf("%v", http.Serve(ln, h))
}

// A server holds the current log. Its mutex guards every change to it.
type server struct {
	signer  note.Signer
	modules string

	mu    sync.Mutex
	log   *treeLog
	forks int
}

func (s *server) handler() http.Handler {
	mux := http.NewServeMux()
	db := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sumdb.NewServer(s.view()).ServeHTTP(w, r)
	})
	for _, p := range sumdb.ServerPaths {
		mux.Handle(p, db)
	}
	mux.HandleFunc("/_control/add", s.control(s.add))
	mux.HandleFunc("/_control/rescan", s.control(func(*http.Request) (int, string) {
		added, err := s.rescan()
		if err != nil {
			return http.StatusInternalServerError, err.Error()
		}
		return http.StatusOK, added
	}))
	mux.HandleFunc("/_control/fork", s.control(s.fork))
	return mux
}

// view snapshots the current log for one request.
func (s *server) view() *view {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.log
	return &view{mu: &s.mu, log: l, records: l.records, hashes: l.hashes, signed: l.signed}
}

// rescan appends a record for every module version in -modules that the
// log does not have yet, and re-signs the tree. It returns one
// "ID PATH VERSION" line per new record.
func (s *server) rescan() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var added strings.Builder
	if s.modules != "" {
		list, err := scanModules(s.modules)
		if err != nil {
			return "", err
		}
		for _, f := range list {
			if _, ok := s.log.ids[f.path+"@"+f.version]; ok {
				continue
			}
			text, err := hashFound(f)
			if err != nil {
				return "", err
			}
			id, err := s.log.add(f.path, f.version, text)
			if err != nil {
				return "", err
			}
			fmt.Fprintf(&added, "%d %s %s\n", id, f.path, f.version)
		}
	}
	return added.String(), s.log.sign(s.signer)
}

// add is /_control/add.
func (s *server) add(r *http.Request) (int, string) {
	path, version := r.FormValue("path"), r.FormValue("version")
	modHash, zipHash := r.FormValue("mod"), r.FormValue("zip")
	if _, err := module.EscapePath(path); err != nil {
		return http.StatusBadRequest, err.Error()
	}
	if v := strings.TrimSuffix(version, "+incompatible"); !semver.IsValid(v) || semver.Canonical(v) != v {
		return http.StatusBadRequest, fmt.Sprintf("version %q is not canonical semver", version)
	}
	if modHash == "" || zipHash == "" {
		// Fill in what was left out from the module on disk.
		text, err := s.hashOnDisk(path, version)
		if err != nil {
			return http.StatusBadRequest, fmt.Sprintf("mod= or zip= left out, and %v", err)
		}
		// text is "P V ZIP\nP V/go.mod MOD\n".
		lines := strings.Split(string(text), "\n")
		if zipHash == "" {
			zipHash = strings.Fields(lines[0])[2]
		}
		if modHash == "" {
			modHash = strings.Fields(lines[1])[2]
		}
	}
	for _, h := range []string{modHash, zipHash} {
		if strings.IndexFunc(h, func(c rune) bool { return c <= ' ' || c == 0x7f }) >= 0 {
			return http.StatusBadRequest, fmt.Sprintf("hash %q has spaces or control characters", h)
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	text := gosumLines(path, version, modHash, zipHash)
	id, err := s.log.add(path, version, text)
	if err != nil {
		return http.StatusConflict, err.Error()
	}
	if err := s.log.sign(s.signer); err != nil {
		return http.StatusInternalServerError, err.Error()
	}
	return http.StatusOK, fmt.Sprintf("%d\n%s", id, text)
}

// hashOnDisk computes the true record for path@version from -modules.
func (s *server) hashOnDisk(path, version string) ([]byte, error) {
	if s.modules != "" {
		list, err := scanModules(s.modules)
		if err != nil {
			return nil, err
		}
		for _, f := range list {
			if f.path == path && f.version == version {
				return hashFound(f)
			}
		}
	}
	return nil, fmt.Errorf("%s@%s is not in -modules", path, version)
}

// fork is /_control/fork: see the package comment.
func (s *server) fork(*http.Request) (int, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.log
	if len(old.records) == 0 {
		return http.StatusConflict, "the log is empty: nothing to fork"
	}
	s.forks++
	marker := "fork.sumdb.test/marker"
	version := fmt.Sprintf("v0.0.%d", s.forks)
	sum := sha256.Sum256([]byte(marker + " " + version))
	fake := "h1:" + base64.StdEncoding.EncodeToString(sum[:]) // well-formed, matches nothing
	fork := newTreeLog()
	if _, err := fork.add(marker, version, gosumLines(marker, version, fake, fake)); err != nil {
		return http.StatusInternalServerError, err.Error()
	}
	for i, text := range old.records {
		path, version, _ := strings.Cut(old.keys[i], "@")
		if _, err := fork.add(path, version, text); err != nil {
			return http.StatusInternalServerError, err.Error()
		}
	}
	if err := fork.sign(s.signer); err != nil {
		return http.StatusInternalServerError, err.Error()
	}
	s.log = fork
	return http.StatusOK, fmt.Sprintf("forked: tree size %d -> %d\n", len(old.records), len(fork.records))
}

// control wraps a control operation: POST only, plain-text answer.
func (s *server) control(op func(*http.Request) (int, string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			http.Error(w, "use POST", http.StatusMethodNotAllowed)
			return
		}
		code, body := op(r)
		if body != "" && !strings.HasSuffix(body, "\n") {
			body += "\n"
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(code)
		io.WriteString(w, body)
	}
}

// loadOrCreateKey returns the signer key in file (or a new one, written to
// file when file is given but does not exist) and its verifier key.
func loadOrCreateKey(file, name string) (skey, vkey string, err error) {
	if file == "" {
		return note.GenerateKey(rand.Reader, name)
	}
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		skey, vkey, err = note.GenerateKey(rand.Reader, name)
		if err != nil {
			return "", "", err
		}
		return skey, vkey, os.WriteFile(file, []byte(skey+"\n"), 0o600)
	}
	if err != nil {
		return "", "", err
	}
	skey = strings.TrimSpace(string(data))
	signer, err := note.NewSigner(skey)
	if err != nil {
		return "", "", fmt.Errorf("%s: %v", file, err)
	}
	if signer.Name() != name {
		return "", "", fmt.Errorf("%s holds a key for %q, not -name %q", file, signer.Name(), name)
	}
	// A signer key is PRIVATE+KEY+NAME+HASH+base64(0x01 || Ed25519 seed);
	// the verifier key is derived from the seed's public key.
	// (The base64 may itself contain '+'.)
	fields := strings.SplitN(skey, "+", 5)
	raw, err := base64.StdEncoding.DecodeString(fields[len(fields)-1])
	if len(fields) != 5 || err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != 1 {
		return "", "", fmt.Errorf("%s: not an Ed25519 signer key", file)
	}
	pub := ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey)
	vkey, err = note.NewEd25519VerifierKey(name, pub)
	return skey, vkey, err
}

// hashCommand runs "hash ZIPFILE [MODPATH VERSION]" or
// "hash-mod GOMODFILE [MODPATH VERSION]".
func hashCommand(cmd string, args []string) error {
	if len(args) != 1 && len(args) != 3 {
		return fmt.Errorf("usage: sumdb %s FILE [MODPATH VERSION]", cmd)
	}
	var h, suffix string
	var err error
	if cmd == "hash" {
		h, err = hashZip(args[0])
	} else {
		var data []byte
		if data, err = os.ReadFile(args[0]); err == nil {
			h, err = hashGoMod(data)
		}
		suffix = "/go.mod"
	}
	if err != nil {
		return err
	}
	if len(args) == 3 {
		fmt.Printf("%s %s%s %s\n", args[1], args[2], suffix, h)
	} else {
		fmt.Println(h)
	}
	return nil
}

// logRequests logs each request and its status to stderr.
func logRequests(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(rec, r)
		fmt.Fprintf(os.Stderr, "sumdb: %s %s -> %d\n", r.Method, r.URL.RequestURI(), rec.code)
	})
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "sumdb: "+format+"\n", args...)
	os.Exit(1)
}
