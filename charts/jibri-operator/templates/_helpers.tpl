{{/*
Names and labels, built in one place: every template uses these.
*/}}

{{- define "jibri-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "jibri-operator.fullname" -}}
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

{{- define "jibri-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The labels that select the operator's pods; they never change after install. */}}
{{- define "jibri-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "jibri-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end }}

{{/* Labels on every object the chart renders. */}}
{{- define "jibri-operator.labels" -}}
helm.sh/chart: {{ include "jibri-operator.chart" . }}
app.kubernetes.io/name: {{ include "jibri-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: jibri-operator
{{- end }}

{{- define "jibri-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "jibri-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The operator's ServiceAccount, as the subject of its bindings. */}}
{{- define "jibri-operator.rbacSubjects" -}}
- kind: ServiceAccount
  name: {{ include "jibri-operator.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
{{- end }}

{{- define "jibri-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
The namespaces the operator watches, one per line; empty means every namespace.
With rbac.scope=namespaced an empty list means the release namespace, and globs
are refused: a Role needs a namespace that exists by name.
*/}}
{{- define "jibri-operator.watchNamespaces" -}}
{{- $namespaces := .Values.watchNamespaces }}
{{- if eq .Values.rbac.scope "namespaced" }}
{{- if not $namespaces }}
{{- $namespaces = list .Release.Namespace }}
{{- end }}
{{- range $namespaces }}
{{- if regexMatch "[*?\\[]" . }}
{{- fail (printf "watchNamespaces: %q is a glob; rbac.scope=namespaced needs namespace names (a Role per namespace), or use rbac.scope=cluster" .) }}
{{- end }}
{{- end }}
{{- end }}
{{- range $namespaces }}
{{ . }}
{{- end }}
{{- end }}

{{/*
RBAC rules. manifests/rbac.yaml grants the same (a test renders both and
compares them): change both together.

The rules on namespaced resources: a ClusterRole's with rbac.scope=cluster,
each watched namespace's Role with rbac.scope=namespaced.
*/}}
{{- define "jibri-operator.namespacedRules" -}}
# Its own resources, and their status.
- apiGroups: [jibri.dev]
  resources: [xmppenvironments, recordingsessions, jibripools]
  verbs: [get, list, watch, patch, update]
- apiGroups: [jibri.dev]
  resources: [xmppenvironments/status, recordingsessions/status, jibripools/status]
  verbs: [get, patch, update]
# A pool owns its pods and its jibri.conf Secret with blockOwnerDeletion; where the
# OwnerReferencesPermissionEnforcement admission plugin runs (OpenShift, hardened clusters)
# that needs update on the owner's finalizers, or the pods and the Secret are refused.
- apiGroups: [jibri.dev]
  resources: [jibripools/finalizers]
  verbs: [update]
# Logins, CAs and stream keys, read one by one when needed (never listed); each pool's rendered jibri.conf.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, create, patch]
# The pools' Jibri pods (patch: their jibri.dev/state label and shield annotations).
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch, create, delete, patch]
# Each pool's learned arrival profile, in a ConfigMap it owns.
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, create, patch]
# Each pool's PodDisruptionBudget, which shields its recording pods from evictions.
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, create, patch]
# Events for every decision.
- apiGroups: ["", events.k8s.io]
  resources: [events]
  verbs: [create, patch]
# kopf peering in a namespace, when replicas coordinate (--peering).
- apiGroups: [kopf.dev]
  resources: [kopfpeerings]
  verbs: [get, list, watch, patch]
{{- end }}

{{/* Cluster-scoped reads kopf does: only a ClusterRole can grant them. */}}
{{- define "jibri-operator.clusterRules" -}}
# kopf: namespace globs (-n 'team-*') and CRD discovery. Without them kopf still
# works, but notices new namespaces and CRD changes only when restarted. A namespace's
# labels are read when its sessions use an environment shared from another namespace
# (spec.allowedNamespaces).
- apiGroups: [""]
  resources: [namespaces]
  verbs: [get, list, watch]
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
# kopf peering across the cluster, when replicas coordinate (--peering).
- apiGroups: [kopf.dev]
  resources: [clusterkopfpeerings]
  verbs: [get, list, watch, patch]
{{- end }}

{{/* Leader election among replicas, on a Lease in the release namespace only. */}}
{{- define "jibri-operator.leaderElectionRules" -}}
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [get, list, watch, create, update, patch]
{{- end }}
