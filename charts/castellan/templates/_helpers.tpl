{{/*
Shared template helpers. Names follow `helm create`: <release>-<chart>, cut to the 63 characters
Kubernetes allows in a name, unless the release name already contains the chart name.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "castellan.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name of every namespaced resource (also the Service's DNS name). */}}
{{- define "castellan.fullname" -}}
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
Name of cluster-scoped resources: they have no namespace, so the release namespace is part of
the name, letting one cluster hold Castellan in several namespaces.
*/}}
{{- define "castellan.clusterName" -}}
{{- printf "%s-%s" (include "castellan.fullname" .) .Release.Namespace | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* chart label value: name-version. */}}
{{- define "castellan.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select Castellan's pods; they never change between upgrades. */}}
{{- define "castellan.selectorLabels" -}}
app.kubernetes.io/name: {{ include "castellan.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Standard labels on every resource. */}}
{{- define "castellan.labels" -}}
helm.sh/chart: {{ include "castellan.chart" . }}
{{ include "castellan.selectorLabels" . }}
app.kubernetes.io/version: {{ include "castellan.imageTag" . | quote }}
app.kubernetes.io/component: certificate-authority
app.kubernetes.io/part-of: castellan
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The image tag: image.tag, or the chart's appVersion. */}}
{{- define "castellan.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{/* The ServiceAccount the pods run as. */}}
{{- define "castellan.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "castellan.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
DNS names of Castellan's gRPC serving certificate: the Service's name, short and fully
qualified (what global.caAddress points at), then the operator's extra names, without
duplicates. `castellan serve --serving-dns` replaces serve's defaults, so the list is complete.
*/}}
{{- define "castellan.servingDnsNames" -}}
{{- $svc := printf "%s.%s.svc" (include "castellan.fullname" .) .Release.Namespace }}
{{- $names := list $svc (printf "%s.%s" $svc .Values.clusterDomain) }}
{{- range .Values.servingDns.extraNames }}
{{- $names = append $names . }}
{{- end }}
{{- $names | uniq | join "," }}
{{- end }}
