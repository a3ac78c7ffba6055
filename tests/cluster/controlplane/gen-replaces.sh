#!/usr/bin/env bash
# Re-pins this module to another Kubernetes release: rewrites the staging
# replaces from k8s.io/kubernetes' own go.mod (read from the module cache, no
# GitHub needed), the etcd server version (what k8s.io/apiserver requires) and
# the go/godebug lines, then runs go mod tidy.
#   bash gen-replaces.sh v1.35.4
# Only for bumping; the build never runs this.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod
KV=v${1#v}; SV=v0.${KV#v1.}
json() { python3 -c 'import json,sys;print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
KGOMOD=$(go mod download -json "k8s.io/kubernetes@$KV" | json GoMod)
AGOMOD=$(go mod download -json "k8s.io/apiserver@$SV" | json GoMod)
ETCDV=$(awk '$1=="go.etcd.io/etcd/server/v3"{print $2}' "$AGOMOD")
GOLINE=$(awk '$1=="go"{print $2; exit}' "$KGOMOD")
GODEBUG=$(awk '$1=="godebug"{print $2; exit}' "$KGOMOD")

for r in $(go mod edit -json | python3 -c 'import json,sys;[print(r["Old"]["Path"]) for r in (json.load(sys.stdin).get("Replace") or [])]'); do
	go mod edit -dropreplace="$r"
done
for m in $(sed -n 's|^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => \./staging/src/k8s.io/.*|\1|p' "$KGOMOD"); do
	go mod edit -replace="$m=$m@$SV"
done
go mod edit -go="$GOLINE" -require="k8s.io/kubernetes@$KV" -require="go.etcd.io/etcd/server/v3@$ETCDV"
[[ -n $GODEBUG ]] && go mod edit -godebug="$GODEBUG"
go mod tidy
echo "k8s $KV, staging $SV, etcd $ETCDV, go $GOLINE, godebug $GODEBUG, $(grep -c '=> k8s.io/' go.mod) replaces" >&2
