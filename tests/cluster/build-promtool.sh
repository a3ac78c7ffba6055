#!/usr/bin/env bash
# Builds Prometheus' `promtool` (the chart's alert rules are checked and unit tested with it) from
# the Go module in promtool/ next to this script, and prints the directory holding it as the LAST
# line of stdout. All progress goes to stderr.
#
#   PROMTOOL_BIN=$(bash tests/cluster/build-promtool.sh | tail -n1)
#
# Output: ${TEST_CLUSTER_BIN_ROOT:-$HOME/.cache/ncp-pca-issuer/cluster-bin}/promtool-<hash>/promtool
# <hash> covers promtool/go.mod, promtool/go.sum, `go version` and this script: it is a cache of its
# own, so that changing Prometheus' version never rebuilds the control plane (build.sh), and the
# reverse. Published complete only (built in a temp dir, then renamed): concurrent runs are safe.
set -euo pipefail

export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="-trimpath -buildvcs=false -mod=readonly"

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=${TEST_CLUSTER_BIN_ROOT:-$HOME/.cache/ncp-pca-issuer/cluster-bin}

log() { printf 'promtool-build: %s\n' "$*" >&2; }

command -v go >/dev/null || { log "go not found in PATH"; exit 1; }

HASH=$(
	{
		for f in go.mod go.sum; do
			printf '== promtool/%s\n' "$f"
			cat "$HERE/promtool/$f"
		done
		printf '== go\n'
		go version
		go env GOOS GOARCH
		printf '== build-promtool.sh\n'
		cat "$HERE/build-promtool.sh"
	} | sha256sum | cut -c1-16
)
BIN=$ROOT/promtool-$HASH

if [[ -x $BIN/promtool ]]; then
	log "up to date: $BIN"
	printf '%s\n' "$BIN"
	exit 0
fi

mkdir -p "$ROOT"
TMP=$(mktemp -d "$ROOT/.build.promtool-$HASH.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
chmod 0755 "$TMP" # mktemp makes it 0700
VERSION=$(cd "$HERE/promtool" && go list -m -f '{{.Version}}' github.com/prometheus/prometheus)
log "building promtool (prometheus $VERSION) into $TMP (final: $BIN)"
t0=$(date +%s)
# The version promtool reports, as Prometheus' own build stamps it.
VF="-X github.com/prometheus/common/version.Version=${VERSION#v}"
(cd "$HERE/promtool" && go build -ldflags "-s -w $VF" -o "$TMP/promtool" github.com/prometheus/prometheus/cmd/promtool) >&2
"$TMP/promtool" --version >&2
printf 'prometheus %s\n' "$VERSION" >"$TMP/VERSIONS"
if mv -T "$TMP" "$BIN" 2>/dev/null; then
	trap - EXIT
else
	log "another build published $BIN first; discarding this one"
fi
log "done in $(($(date +%s) - t0))s"
printf '%s\n' "$BIN"
