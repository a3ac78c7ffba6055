{{/*
The chart name, or nameOverride.
*/}}
{{- define "ncp-pca-issuer.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The base name of every object: fullnameOverride, else the release name (with the chart name appended
unless the release name already contains it). Truncated to 63 characters (a DNS label).
*/}}
{{- define "ncp-pca-issuer.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
chart label value: name-version.
*/}}
{{- define "ncp-pca-issuer.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object.
*/}}
{{- define "ncp-pca-issuer.labels" -}}
helm.sh/chart: {{ include "ncp-pca-issuer.chart" . }}
{{ include "ncp-pca-issuer.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: cert-manager
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Labels that select the controller pods (stable across upgrades: never add to them).
*/}}
{{- define "ncp-pca-issuer.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ncp-pca-issuer.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end }}

{{/*
The controller's ServiceAccount.
*/}}
{{- define "ncp-pca-issuer.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ncp-pca-issuer.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Where ClusterPrivateCA credentials Secrets live: --cluster-resource-namespace in extraArgs, else
clusterResourceNamespace, else the release namespace.
*/}}
{{- define "ncp-pca-issuer.clusterResourceNamespace" -}}
{{- include "ncp-pca-issuer.flag" (list . "cluster-resource-namespace") }}
{{- end }}

{{/*
An image reference from an `image` value (registry, repository, tag, digest):
`include "ncp-pca-issuer.imageRef" (dict "image" .Values.image "global" .Values.global "tag" <default tag>)`.
The registry (`image.registry`, else `global.imageRegistry`) replaces the registry of `repository`
(its first path element when it contains "." or ":" or is "localhost") or, if it names none, is put
in front. repository@digest when a digest is set, else repository:tag.
*/}}
{{- define "ncp-pca-issuer.imageRef" -}}
{{- $image := .image }}
{{- $repository := $image.repository }}
{{- $registry := $image.registry | default (dig "imageRegistry" "" (.global | default dict)) }}
{{- if $registry }}
{{- $parts := splitList "/" $repository }}
{{- $first := first $parts }}
{{- if and (gt (len $parts) 1) (or (contains "." $first) (contains ":" $first) (eq "localhost" $first)) }}
{{- $parts = rest $parts }}
{{- end }}
{{- $repository = printf "%s/%s" (trimSuffix "/" $registry) (join "/" $parts) }}
{{- end }}
{{- if $image.digest }}
{{- printf "%s@%s" $repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $repository ($image.tag | default .tag) }}
{{- end }}
{{- end }}

{{/*
The controller's image (tag defaults to the chart's appVersion).
*/}}
{{- define "ncp-pca-issuer.image" -}}
{{- include "ncp-pca-issuer.imageRef" (dict "image" .Values.image "global" .Values.global "tag" .Chart.AppVersion) }}
{{- end }}

{{/*
The flags the chart sets on `ncp-pca-issuer controller`, in the order they are rendered.
*/}}
{{- define "ncp-pca-issuer.chartFlagNames" -}}
{{- toYaml (list "cluster-resource-namespace" "http-addr" "leader-elect" "leader-election-namespace" "leader-election-lease" "leader-election-lease-duration-seconds" "leader-election-renew-deadline-seconds" "leader-election-retry-period-seconds" "concurrency" "issuer-recheck-seconds" "ncp-timeout-seconds" "max-retry-seconds" "expiry-warning-days" "metrics-auth" "log-format") }}
{{- end }}

{{/*
extraArgs split, as YAML: `overrides` maps each chart-set flag given there (`--flag=value`, or
`--flag` then `value`) to its value; `extra` holds every other entry, verbatim and in order.
*/}}
{{- define "ncp-pca-issuer.extraArgs" -}}
{{- $names := include "ncp-pca-issuer.chartFlagNames" . | fromYamlArray }}
{{- $overrides := dict }}
{{- $extra := list }}
{{- $pending := "" }}
{{- range .Values.extraArgs }}
{{- $arg := toString . }}
{{- if $pending }}
{{- $_ := set $overrides $pending $arg }}
{{- $pending = "" }}
{{- else if hasPrefix "--" $arg }}
{{- $parts := splitn "=" 2 (trimPrefix "--" $arg) }}
{{- if has $parts._0 $names }}
{{- if eq (len $parts) 2 }}
{{- $_ := set $overrides $parts._0 $parts._1 }}
{{- else }}
{{- $pending = $parts._0 }}
{{- end }}
{{- else }}
{{- $extra = append $extra $arg }}
{{- end }}
{{- else }}
{{- $extra = append $extra $arg }}
{{- end }}
{{- end }}
{{- if $pending }}
{{- fail (printf "extraArgs: --%s is the last entry and has no value (write --%s=<value>)" $pending $pending) }}
{{- end }}
{{- toYaml (dict "overrides" $overrides "extra" $extra) }}
{{- end }}

{{/*
The controller's effective flags, as a YAML map from flag name to value: the chart's values, each
replaced by an extraArgs entry for the same flag. Every flag is rendered once (the binary refuses a
repeated flag), and the objects that depend on a flag (Lease Role, ports, RBAC namespaces) follow
the effective value.
*/}}
{{- define "ncp-pca-issuer.controllerFlags" -}}
{{- $le := .Values.leaderElection }}
{{- $c := .Values.controller }}
{{- $flags := dict
  "cluster-resource-namespace" (default .Release.Namespace .Values.clusterResourceNamespace)
  "http-addr" "0.0.0.0:8080"
  "leader-elect" (toString $le.enabled)
  "leader-election-namespace" .Release.Namespace
  "leader-election-lease" $le.leaseName
  "leader-election-lease-duration-seconds" (toString (int $le.leaseDurationSeconds))
  "leader-election-renew-deadline-seconds" (toString (int $le.renewDeadlineSeconds))
  "leader-election-retry-period-seconds" (toString (int $le.retryPeriodSeconds))
  "concurrency" (toString (int $c.concurrency))
  "issuer-recheck-seconds" (toString (int $c.issuerRecheckSeconds))
  "ncp-timeout-seconds" (toString (int $c.ncpTimeoutSeconds))
  "max-retry-seconds" (toString (int $c.maxRetrySeconds))
  "expiry-warning-days" (toString (int $c.expiryWarningDays))
  "metrics-auth" (toString .Values.metrics.auth)
  "log-format" $c.logFormat }}
{{- toYaml (merge (include "ncp-pca-issuer.extraArgs" . | fromYaml).overrides $flags) }}
{{- end }}

{{/*
One effective controller flag: `include "ncp-pca-issuer.flag" (list $ "concurrency")`.
*/}}
{{- define "ncp-pca-issuer.flag" -}}
{{- $flags := include "ncp-pca-issuer.controllerFlags" (index . 0) | fromYaml }}
{{- index $flags (index . 1) }}
{{- end }}

{{/*
Whether leader election is on (the effective --leader-elect): "true" or "".
*/}}
{{- define "ncp-pca-issuer.leaderElect" -}}
{{- if eq (include "ncp-pca-issuer.flag" (list . "leader-elect")) "true" }}true{{ end }}
{{- end }}

{{/*
The port of the controller's HTTP server (/metrics, /livez, /readyz): the port of --http-addr.
*/}}
{{- define "ncp-pca-issuer.httpPort" -}}
{{- $addr := include "ncp-pca-issuer.flag" (list . "http-addr") }}
{{- $port := regexFind ":[0-9]+$" $addr | trimPrefix ":" }}
{{- if not $port }}
{{- fail (printf "--http-addr=%s: expected <address>:<port>" $addr) }}
{{- end }}
{{- $port }}
{{- end }}

{{/*
Labels of the `helm test` hook's objects: the chart's, with component "test" (so they never match
the controller's selector).
*/}}
{{- define "ncp-pca-issuer.testLabels" -}}
{{- include "ncp-pca-issuer.labels" . | replace "app.kubernetes.io/component: controller" "app.kubernetes.io/component: test" }}
{{- end }}

{{/*
One container of the `helm test` Job: `kubectl <step.args>`.
*/}}
{{- define "ncp-pca-issuer.testStep" -}}
- name: {{ .step.name }}
  image: {{ .image | quote }}
  imagePullPolicy: {{ .root.Values.testHook.image.pullPolicy }}
  command: ["kubectl"]
  args:
    {{- toYaml .step.args | nindent 4 }}
  env:
    - name: HOME
      value: /home/test
  volumeMounts:
    - name: home
      mountPath: /home/test
  resources:
    requests:
      cpu: 10m
      memory: 32Mi
    limits:
      memory: 128Mi
  {{- with .root.Values.securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
