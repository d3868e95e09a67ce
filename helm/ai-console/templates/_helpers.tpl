{{/* Names and labels shared by every object of the chart. */}}
{{- define "ai-console.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "ai-console.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "hub") */}}
{{- define "ai-console.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "ai-console.image" -}}
{{- printf "%s:%s" .repository .tag -}}
{{- end -}}

{{/* A ClusterRole's name: unique per release and namespace, as cluster objects must be. */}}
{{- define "ai-console.clusterName" -}}
{{- printf "%s-%s-%s" .root.Release.Namespace (include "ai-console.fullname" .root) .name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The rules of one of hub_config/kubernetes/*-rbac.yaml (files/rbac links there: the chart grants
exactly what the tests on the real control plane grant), bound to a ServiceAccount.
(dict "root" $ "file" "hub-rbac.yaml" "account" "<sa name>" "component" "hub")
*/}}
{{- define "ai-console.rbac" -}}
{{- $root := .root -}}
{{- $full := include "ai-console.fullname" $root -}}
{{- range $object := ($root.Files.Get (printf "files/rbac/%s" $.file) | fromYamlArray) }}
{{- $cluster := eq $object.kind "ClusterRole" }}
{{- $short := trimPrefix "ai-console-" $object.metadata.name }}
{{- $name := ternary (include "ai-console.clusterName" (dict "root" $root "name" $short)) (printf "%s-%s" $full $short) $cluster }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: {{ $object.kind }}
metadata:
  name: {{ $name }}
  {{- if not $cluster }}
  namespace: {{ $root.Release.Namespace }}
  {{- end }}
  labels:
    {{- include "ai-console.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ $.component }}
rules:
  {{- toYaml $object.rules | nindent 2 }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: {{ $object.kind }}Binding
metadata:
  name: {{ $name }}
  {{- if not $cluster }}
  namespace: {{ $root.Release.Namespace }}
  {{- end }}
  labels:
    {{- include "ai-console.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ $.component }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: {{ $object.kind }}
  name: {{ $name }}
subjects:
  - kind: ServiceAccount
    name: {{ $.account }}
    namespace: {{ $root.Release.Namespace }}
{{- end }}
{{- end -}}
