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
Where ClusterPrivateCA credentials Secrets live: clusterResourceNamespace, else the release namespace.
*/}}
{{- define "ncp-pca-issuer.clusterResourceNamespace" -}}
{{- default .Release.Namespace .Values.clusterResourceNamespace }}
{{- end }}

{{/*
The container image: repository@digest when a digest is set, else repository:tag (tag defaults to the
chart's appVersion).
*/}}
{{- define "ncp-pca-issuer.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}
