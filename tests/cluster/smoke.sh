#!/usr/bin/env bash
# Manual smoke test of the test control plane built by build.sh:
# etcd + kube-apiserver + kube-controller-manager (GC, namespace) +
# cert-manager-controller, all on 127.0.0.1, certificates made with openssl.
#
#   bash tests/cluster/smoke.sh [BIN]      # BIN defaults to $(build.sh | tail -n1)
#
# Checks: SelfSigned Issuer + Certificate -> TLS Secret; a CertificateRequest
# for an external issuer group gets Approved; ownerReference GC; namespace
# deletion completes. Every child is killed by PID on exit. KEEP=1 keeps the
# temp dir (logs, certs, kubeconfig) for inspection.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BIN=${1:-$(bash "$HERE/build.sh" | tail -n1)}
D=$(mktemp -d /tmp/ncp-cluster-smoke.XXXXXX)
PIDS=() NAMES=()

log() { printf '[smoke %6.1fs] %s\n' "$(($(date +%s%N) / 1000000 - T0))e-3" "$*" >&2; }
T0=$(($(date +%s%N) / 1000000))
cleanup() {
	local rc=$?
	# Reverse start order, one at a time: stopping etcd while kube-apiserver
	# still runs only makes the apiserver log grpc reconnect noise.
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
		kill -TERM "${PIDS[i]}" 2>/dev/null || continue
		wait "${PIDS[i]}" 2>/dev/null || true
		log "stopped pid ${PIDS[i]} (${NAMES[i]})"
	done
	if [[ $rc -ne 0 ]]; then
		for f in "$D"/*.log; do echo "---- tail $f" >&2; tail -n 30 "$f" >&2; done
	fi
	if [[ ${KEEP:-0} == 1 ]]; then echo "kept $D" >&2; else rm -rf "$D"; fi
	exit $rc
}
trap cleanup EXIT INT TERM

freeport() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
# wait_for <what> <timeout-seconds> <cmd...>: poll every 100 ms.
wait_for() {
	local what=$1 budget=$2 t=$(($(date +%s) + $2))
	shift 2
	until "$@" >/dev/null 2>&1; do
		if (($(date +%s) > t)); then log "TIMEOUT after ${budget}s waiting for $what"; return 1; fi
		sleep 0.1
	done
	log "$what ready"
}

# ---- certificates ------------------------------------------------------------
cd "$D"
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=test-ca \
	-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
leaf() { # leaf <name> <subject> <extensions>
	openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
	openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -out "$1.crt" \
		-extfile <(printf '%s\n' "$3") 2>/dev/null
}
leaf apiserver /CN=kube-apiserver $'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment'
leaf admin /O=system:masters/CN=admin $'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment'
openssl genrsa -out sa.key 2048 2>/dev/null
log "certs generated"

EP=$(freeport) PP=$(freeport) AP=$(freeport)

# ---- etcd ----------------------------------------------------------------------
"$BIN/etcd" --name=e0 --data-dir="$D/etcd" \
	--listen-client-urls="http://127.0.0.1:$EP" --advertise-client-urls="http://127.0.0.1:$EP" \
	--listen-peer-urls="http://127.0.0.1:$PP" --initial-advertise-peer-urls="http://127.0.0.1:$PP" \
	--initial-cluster="e0=http://127.0.0.1:$PP" --unsafe-no-fsync=true --log-level=warn \
	>etcd.log 2>&1 &
PIDS+=($!) NAMES+=(etcd)
etcd_ok() { curl -fsS "http://127.0.0.1:$EP/health" | grep -q '"health":"true"'; }
wait_for etcd 30 etcd_ok

# ---- kube-apiserver ----------------------------------------------------------
"$BIN/kube-apiserver" \
	--etcd-servers="http://127.0.0.1:$EP" \
	--bind-address=127.0.0.1 --secure-port="$AP" \
	--advertise-address=127.0.0.1 --endpoint-reconciler-type=none \
	--cert-dir="$D/apiserver-certs" \
	--tls-cert-file="$D/apiserver.crt" --tls-private-key-file="$D/apiserver.key" \
	--client-ca-file="$D/ca.crt" \
	--service-account-issuer="https://127.0.0.1:$AP" \
	--service-account-key-file="$D/sa.key" --service-account-signing-key-file="$D/sa.key" \
	--service-cluster-ip-range=10.0.0.0/24 \
	--authorization-mode=RBAC \
	--disable-admission-plugins=ServiceAccount --allow-privileged=true \
	--enable-priority-and-fairness=false --profiling=false --v=1 \
	>apiserver.log 2>&1 &
PIDS+=($!) NAMES+=(kube-apiserver)
CURL=(curl -fsS --cacert "$D/ca.crt" --cert "$D/admin.crt" --key "$D/admin.key")
apiserver_ok() { [[ $("${CURL[@]}" "https://127.0.0.1:$AP/readyz") == ok ]]; }
wait_for kube-apiserver 120 apiserver_ok
"${CURL[@]}" "https://127.0.0.1:$AP/version" | jq -c '{gitVersion,goVersion}' >&2
# /readyz, /livez, /healthz and /version are readable anonymously too
# (system:public-info-viewer), so a poller needs only the CA.
[[ $(curl -fsS --cacert "$D/ca.crt" "https://127.0.0.1:$AP/readyz") == ok ]] || { log "FAIL: anonymous /readyz"; exit 1; }

cat >"$D/admin.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: https://127.0.0.1:$AP
    certificate-authority: $D/ca.crt
users:
- name: admin
  user:
    client-certificate: $D/admin.crt
    client-key: $D/admin.key
contexts:
- name: test
  context: {cluster: test, user: admin}
current-context: test
EOF
export KUBECONFIG=$D/admin.kubeconfig
k() { "$BIN/kubectl" "$@"; }

# ---- cert-manager CRDs ------------------------------------------------------------
k apply --server-side -f "$BIN/cert-manager-crds/" >&2
k wait --for condition=established --timeout=60s crd --all >&2
log "cert-manager CRDs established"

# ---- kube-controller-manager (GC + namespace deletion only) ------------------
# Started after the CRDs exist: the garbage collector only re-reads discovery
# every 30 s, so objects of CRDs created later get "unable to get REST mapping"
# errors (and no GC) for up to 30 s.
"$BIN/kube-controller-manager" \
	--kubeconfig="$D/admin.kubeconfig" \
	--controllers=garbage-collector-controller,namespace-controller \
	--leader-elect=false --secure-port=0 \
	--use-service-account-credentials=false \
	--v=1 \
	>kcm.log 2>&1 &
PIDS+=($!) NAMES+=(kube-controller-manager)
kcm_ok() { grep -q 'Proceeding to collect garbage' "$D/kcm.log"; }
wait_for kube-controller-manager 60 kcm_ok

# ---- cert-manager-controller (our own main, see certmanager/main.go) -----------
"$BIN/cert-manager-controller" --kubeconfig="$D/admin.kubeconfig" \
	--cluster-resource-namespace=kube-system \
	>cert-manager.log 2>&1 &
PIDS+=($!) NAMES+=(cert-manager-controller)
cm_ok() { grep -q 'caches synced' "$D/cert-manager.log"; }
wait_for cert-manager-controller 60 cm_ok

# ---- listeners: everything must be on loopback -------------------------------
: >listeners.txt
for p in "${PIDS[@]}"; do ss -ltnpH | grep -F "pid=$p," >>listeners.txt || true; done
cat listeners.txt >&2
if awk '{print $4}' listeners.txt | grep -v '^127\.0\.0\.1:'; then log "FAIL: non-loopback listener"; exit 1; fi

# ---- SelfSigned Issuer + Certificate -> Secret --------------------------------
k create namespace smoke >&2
k apply -f - >&2 <<'EOF'
apiVersion: cert-manager.io/v1
kind: Issuer
metadata: {name: selfsigned, namespace: smoke}
spec: {selfSigned: {}}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: demo, namespace: smoke}
spec:
  secretName: demo-tls
  commonName: demo.smoke.test
  dnsNames: [demo.smoke.test]
  issuerRef: {name: selfsigned, kind: Issuer, group: cert-manager.io}
EOF
k -n smoke wait --for=condition=Ready --timeout=60s issuer/selfsigned >&2
k -n smoke wait --for=condition=Ready --timeout=120s certificate/demo >&2
k -n smoke get secret demo-tls -o jsonpath='{.data.tls\.crt}' | base64 -d | openssl x509 -noout -subject -issuer -ext subjectAltName >&2
log "Certificate issued, Secret demo-tls present"

# ---- external issuer group: the approver approves it too --------------------
openssl req -newkey rsa:2048 -nodes -keyout ext.key -out ext.csr -subj /CN=ext.smoke.test 2>/dev/null
k apply -f - >&2 <<EOF
apiVersion: cert-manager.io/v1
kind: CertificateRequest
metadata: {name: ext, namespace: smoke}
spec:
  request: $(base64 -w0 ext.csr)
  issuerRef: {name: whatever, kind: PrivateCA, group: pca.ncp-issuer.dev}
EOF
k -n smoke wait --for=condition=Approved --timeout=60s certificaterequest/ext >&2
log "external-group CertificateRequest approved"

# ---- GC: dependent deleted with its owner -----------------------------------
k -n smoke create configmap owner >&2
OWNER_UID=$(k -n smoke get configmap owner -o jsonpath='{.metadata.uid}')
k apply -f - >&2 <<EOF
apiVersion: v1
kind: ConfigMap
metadata:
  name: dependent
  namespace: smoke
  ownerReferences: [{apiVersion: v1, kind: ConfigMap, name: owner, uid: $OWNER_UID}]
EOF
k -n smoke delete configmap owner >&2
k -n smoke wait --for=delete --timeout=60s configmap/dependent >&2
log "garbage collector deleted the dependent"

# ---- GC of CRD objects: the Certificate owns its CertificateRequest ---------
CRS=$(k -n smoke get certificaterequests -o name | grep -v '/ext$')
k -n smoke delete certificate demo >&2
k -n smoke wait --for=delete --timeout=60s $CRS >&2
log "garbage collector deleted the Certificate's CertificateRequest"

# ---- helm: offline capabilities and a real install against the cluster ------
export HELM_CACHE_HOME=$D/helm/cache HELM_CONFIG_HOME=$D/helm/config HELM_DATA_HOME=$D/helm/data
mkdir -p "$D/chart/templates"
printf 'apiVersion: v2\nname: smoke\nversion: 0.1.0\nkubeVersion: ">=1.30.0-0"\n' >"$D/chart/Chart.yaml"
printf '%s\n' 'apiVersion: v1' 'kind: ConfigMap' 'metadata: {name: helm-smoke}' \
	'data: {kube: "{{ .Capabilities.KubeVersion.Version }}"}' >"$D/chart/templates/cm.yaml"
"$BIN/helm" lint --strict "$D/chart" >&2
OFFLINE=$("$BIN/helm" template "$D/chart" | grep 'kube:')
"$BIN/helm" install smoke "$D/chart" -n smoke >&2
ONLINE=$(k -n smoke get configmap helm-smoke -o jsonpath='{.data.kube}')
log "helm: template (no cluster) sees '${OFFLINE# *}', install sees '$ONLINE'"
[[ $ONLINE == v1.*.* && $ONLINE != v0.0.0* ]] || { log "FAIL: bad server version via helm"; exit 1; }

# ---- ServiceAccount tokens (TokenRequest) + RBAC are enforced ----------------
k -n smoke create serviceaccount op >&2
TOKEN=$(k -n smoke create token op --duration=10m)
ksa() { KUBECONFIG=/dev/null "$BIN/kubectl" --server="https://127.0.0.1:$AP" --certificate-authority="$D/ca.crt" --token="$TOKEN" "$@"; }
ksa auth whoami >&2
[[ $(ksa auth can-i list secrets -n smoke || true) == no ]] || { log "FAIL: RBAC not enforced"; exit 1; }
log "TokenRequest token authenticates; RBAC denies by default"

# The RBAC an external issuer needs in a real cluster (enforced there by
# cert-manager's webhook, which we don't run): approve on signers.
k apply -f - >&2 <<'EOF'
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: smoke-approve-pca}
rules:
- apiGroups: [cert-manager.io]
  resources: [signers]
  verbs: [approve]
  resourceNames: ["issuers.pca.ncp-issuer.dev/*", "clusterissuers.pca.ncp-issuer.dev/*"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: smoke-approve-pca}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: smoke-approve-pca}
subjects: [{kind: ServiceAccount, name: op, namespace: smoke}]
EOF
# What cert-manager's webhook asks: a SubjectAccessReview for the user that
# sets the Approved condition.
sar() { # sar <user> <signer name>
	k create -o jsonpath='{.status.allowed}' -f - <<EOF
apiVersion: authorization.k8s.io/v1
kind: SubjectAccessReview
spec:
  user: $1
  groups: [system:serviceaccounts, system:authenticated]
  resourceAttributes: {group: cert-manager.io, resource: signers, verb: approve, name: "$2"}
EOF
}
[[ $(sar system:serviceaccount:smoke:op 'issuers.pca.ncp-issuer.dev/*') == true ]] || { log "FAIL: signer approve RBAC"; exit 1; }
[[ $(sar system:serviceaccount:smoke:op 'issuers.cert-manager.io/*') != true ]] || { log "FAIL: signer RBAC too broad"; exit 1; }
log "kubectl auth can-i (informational): $(k auth can-i approve 'signers.cert-manager.io/issuers.pca.ncp-issuer.dev/*' --as=system:serviceaccount:smoke:op 2>&1 | tr '\n' ' ')"
k delete clusterrolebinding/smoke-approve-pca clusterrole/smoke-approve-pca >&2
log "SubjectAccessReview: approve on signers issuers.pca.ncp-issuer.dev/* is allowed by the ClusterRole"

# ---- namespace deletion completes -------------------------------------------
k create namespace empty >&2
k delete namespace empty --wait=false >&2
k wait --for=delete --timeout=120s namespace/empty >&2
log "empty namespace deleted"
k delete namespace smoke --wait=false >&2
k wait --for=delete --timeout=120s namespace/smoke >&2
log "namespace smoke deleted"

log "ALL OK"
