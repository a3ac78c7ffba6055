#!/usr/bin/env bash
# Builds the test control plane binaries from the three Go modules next to this
# script and prints the directory holding them as the LAST line of stdout.
# All progress goes to stderr.
#
#   BIN=$(bash tests/cluster/build.sh | tail -n1)
#
# Output: ${TEST_CLUSTER_BIN_ROOT:-$HOME/.cache/ncp-pca-issuer/cluster-bin}/<hash>/
#   etcd kube-apiserver kube-controller-manager kubectl cert-manager-controller helm
#   cert-manager-crds/*.yaml  VERSIONS  .ok
# <hash> covers the three go.mod/go.sum files, certmanager/main.go, `go version`
# and this script, so any change produces a fresh directory. A directory is
# only ever published complete (built in a temp dir, then renamed), so
# concurrent runs are safe: the loser of the rename race discards its copy.
set -euo pipefail

export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="-trimpath -buildvcs=false -mod=readonly"

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=${TEST_CLUSTER_BIN_ROOT:-$HOME/.cache/ncp-pca-issuer/cluster-bin}

log() { printf 'cluster-build: %s\n' "$*" >&2; }

command -v go >/dev/null || { log "go not found in PATH"; exit 1; }

HASH=$(
	{
		for m in controlplane certmanager tools; do
			for f in go.mod go.sum; do
				printf '== %s/%s\n' "$m" "$f"
				cat "$HERE/$m/$f"
			done
		done
		printf '== certmanager/main.go\n'
		cat "$HERE/certmanager/main.go"
		printf '== go\n'
		go version
		go env GOOS GOARCH
		printf '== build.sh\n'
		cat "$HERE/build.sh"
	} | sha256sum | cut -c1-16
)
BIN=$ROOT/$HASH

if [[ -f $BIN/.ok ]]; then
	log "up to date: $BIN"
	printf '%s\n' "$BIN"
	exit 0
fi

mkdir -p "$ROOT"
TMP=$(mktemp -d "$ROOT/.build.$HASH.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
chmod 0755 "$TMP" # mktemp makes it 0700
log "building into $TMP (final: $BIN)"

now() { date +%s; }
T_ALL=$(now)
TIMINGS=()
step() { # step <name> <module dir> <cmd...>
	local name=$1 dir=$2 t0
	shift 2
	t0=$(now)
	log "[$name] start"
	(cd "$HERE/$dir" && "$@") >&2
	local dt=$(($(now) - t0))
	TIMINGS+=("$name ${dt}s")
	log "[$name] done in ${dt}s"
}

# --- versions, derived from the go.mod files -------------------------------
modver() { (cd "$HERE/$1" && go list -m -f '{{.Version}}' "$2"); }
KV=$(modver controlplane k8s.io/kubernetes)             # v1.35.4
ETCDV=$(modver controlplane go.etcd.io/etcd/server/v3)  # v3.6.5
CMV=$(modver certmanager github.com/cert-manager/cert-manager)
HELMV=$(modver tools helm.sh/helm/v3)
HELM_CLIENTGO=$(modver tools k8s.io/client-go)          # v0.35.x -> k8s 1.35
[[ $KV =~ ^v([0-9]+)\.([0-9]+)\.[0-9]+$ ]] || { log "unexpected k8s version $KV"; exit 1; }
KMAJ=${BASH_REMATCH[1]} KMIN=${BASH_REMATCH[2]}
[[ $HELM_CLIENTGO =~ ^v0\.([0-9]+)\. ]] || { log "unexpected helm client-go $HELM_CLIENTGO"; exit 1; }
HMIN=${BASH_REMATCH[1]}
log "k8s $KV, etcd $ETCDV, cert-manager $CMV, helm $HELMV (chartutil k8s 1.$HMIN)"

# Same keys as kubernetes' hack/lib/version.sh. Without them /version says
# v0.0.0-master+$Format:%H$ and Helm kubeVersion constraints fail.
KVF=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	KVF+=" -X $pkg.gitVersion=$KV -X $pkg.gitMajor=$KMAJ -X $pkg.gitMinor=$KMIN"
	KVF+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
# Same keys as helm's Makefile.
HVF="-X helm.sh/helm/v3/internal/version.version=$HELMV -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
HVF+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$HMIN"
HVF+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$HMIN"

# --- builds -----------------------------------------------------------------
step etcd controlplane go build -ldflags "-s -w" -o "$TMP/etcd" go.etcd.io/etcd/server/v3
step kube-apiserver controlplane go build -ldflags "-s -w$KVF" -o "$TMP/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
step kube-controller-manager controlplane go build -ldflags "-s -w$KVF" -o "$TMP/kube-controller-manager" k8s.io/kubernetes/cmd/kube-controller-manager
step kubectl controlplane go build -ldflags "-s -w$KVF" -o "$TMP/kubectl" k8s.io/kubernetes/cmd/kubectl
step cert-manager-controller certmanager go build -ldflags "-s -w" -o "$TMP/cert-manager-controller" .
step helm tools go build -ldflags "-s -w $HVF" -o "$TMP/helm" helm.sh/helm/v3/cmd/helm

CMDIR=$(cd "$HERE/certmanager" && go list -m -f '{{.Dir}}' github.com/cert-manager/cert-manager)
mkdir -p "$TMP/cert-manager-crds"
install -m 0644 "$CMDIR"/deploy/crds/*.yaml "$TMP/cert-manager-crds/"

cat >"$TMP/VERSIONS" <<EOF
kubernetes=$KV
etcd=$ETCDV
cert-manager=$CMV
helm=$HELMV
go=$(go env GOVERSION)
EOF
: >"$TMP/.ok"

# Publish atomically. If another build won the race, keep theirs.
if mv -T "$TMP" "$BIN" 2>/dev/null; then
	trap - EXIT
else
	log "another build published $BIN first; discarding ours"
	[[ -f $BIN/.ok ]] || { log "$BIN exists but is incomplete"; exit 1; }
fi

log "timings: ${TIMINGS[*]}; total $(($(now) - T_ALL))s"
printf '%s\n' "$BIN"
