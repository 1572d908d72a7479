{{/* Names and labels. */}}
{{- define "hubble-otlp.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "hubble-otlp.fullname" -}}
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

{{- define "hubble-otlp.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hubble-otlp.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "hubble-otlp.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "hubble-otlp.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: {{ .Values.mode }}
{{- end }}

{{- define "hubble-otlp.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "hubble-otlp.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "hubble-otlp.leaseName" -}}
{{- default (include "hubble-otlp.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/* repository:tag, or repository@digest. Argument: (dict "image" .Values.image "root" $). */}}
{{- define "hubble-otlp.image" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) }}
{{- end }}
{{- end }}

{{/* Which features are on. */}}
{{- define "hubble-otlp.electing" -}}
{{- if and (eq .Values.mode "relay") .Values.leaderElection.enabled }}true{{ end }}
{{- end }}

{{- define "hubble-otlp.sidecar" -}}
{{- if and (eq .Values.mode "node") .Values.sidecar.enabled }}true{{ end }}
{{- end }}

{{- define "hubble-otlp.sidecarMetadata" -}}
{{- if and (include "hubble-otlp.sidecar" .) .Values.sidecar.kubernetesMetadata }}true{{ end }}
{{- end }}

{{/*
The bridge containers as JSON {"items": [...]}: one reading Relay (relay mode), or in node mode
one reading the node's Hubble socket and, with the sidecar, one reading the sidecar.
*/}}
{{- define "hubble-otlp.bridges" -}}
{{- $items := list }}
{{- if eq .Values.mode "relay" }}
{{- $items = append $items (dict "name" "bridge" "relay" .Values.relay.address "metrics" .Values.ports.metrics "health" .Values.ports.health "suffix" "") }}
{{- else }}
{{- $host := .Values.sidecar.enabled }}
{{- if .Values.node.hubble.enabled }}
{{- $p := ternary .Values.sidecar.hostPorts.hubbleBridge .Values.ports $host }}
{{- $items = append $items (dict "name" "bridge" "relay" (printf "unix://%s" .Values.node.hubble.socketPath) "metrics" $p.metrics "health" $p.health "suffix" "") }}
{{- end }}
{{- if $host }}
{{- $p := .Values.sidecar.hostPorts.sidecarBridge }}
{{- $items = append $items (dict "name" "bridge-sidecar" "relay" (printf "127.0.0.1:%d" (int .Values.sidecar.port)) "metrics" $p.metrics "health" $p.health "suffix" "-sidecar") }}
{{- end }}
{{- end }}
{{- dict "items" $items | toJson }}
{{- end }}

{{/*
The bridge's configuration file: the chart-managed settings over .Values.config. Per-container
settings (source address, listen ports) are flags, which take precedence over the file.
*/}}
{{- define "hubble-otlp.config" -}}
{{- $tlsDir := "/etc/hubble-otlp/tls" }}
{{- $otlp := dict "endpoint" .Values.otlp.endpoint "protocol" .Values.otlp.protocol "compression" .Values.otlp.compression "timeout_s" .Values.otlp.timeoutSeconds }}
{{- if not (kindIs "invalid" .Values.otlp.insecure) }}
{{- $_ := set $otlp "insecure" .Values.otlp.insecure }}
{{- end }}
{{- if .Values.otlp.tls.existingSecret }}
{{- $_ := set $otlp "ca_file" (printf "%s/otlp/ca.crt" $tlsDir) }}
{{- if .Values.otlp.tls.clientCertificate }}
{{- $_ := set $otlp "cert_file" (printf "%s/otlp/tls.crt" $tlsDir) }}
{{- $_ := set $otlp "key_file" (printf "%s/otlp/tls.key" $tlsDir) }}
{{- end }}
{{- end }}
{{- $managed := dict "otlp" $otlp }}
{{- $source := dict }}
{{- if and (eq .Values.mode "relay") .Values.relay.tls.enabled }}
{{- $tls := dict "enabled" true "server_name" .Values.relay.tls.serverName }}
{{- if .Values.relay.tls.existingSecret }}
{{- $_ := set $tls "ca_file" (printf "%s/relay/ca.crt" $tlsDir) }}
{{- if .Values.relay.tls.clientCertificate }}
{{- $_ := set $tls "cert_file" (printf "%s/relay/tls.crt" $tlsDir) }}
{{- $_ := set $tls "key_file" (printf "%s/relay/tls.key" $tlsDir) }}
{{- end }}
{{- end }}
{{- $_ := set $source "tls" $tls }}
{{- end }}
{{- with .Values.filters.allow }}
{{- $_ := set $source "whitelist" . }}
{{- end }}
{{- with .Values.filters.deny }}
{{- $_ := set $source "blacklist" . }}
{{- end }}
{{- if $source }}
{{- $_ := set $managed "source" $source }}
{{- end }}
{{- with .Values.clusterName }}
{{- $_ := set $managed "cluster_name" . }}
{{- end }}
{{- if include "hubble-otlp.electing" . }}
{{- $le := .Values.leaderElection }}
{{- $_ := set $managed "leader_election" (dict "enabled" true "lease_name" (include "hubble-otlp.leaseName" .) "lease_duration_s" $le.leaseDurationSeconds "renew_deadline_s" $le.renewDeadlineSeconds "retry_period_s" $le.retryPeriodSeconds) }}
{{- end }}
{{- $config := deepCopy .Values.config }}
{{- $serviceGraph := .Values.serviceGraph.enabled }}
{{- if kindIs "invalid" $serviceGraph }}
{{- $serviceGraph = eq .Values.mode "relay" }}
{{- end }}
{{- if $serviceGraph }}
{{- $metrics := get $config "metrics" | default dict }}
{{- if not (hasKey $metrics "families") }}
{{- $family := "service-graph" }}
{{- with .Values.serviceGraph.options }}
{{- $family = printf "service-graph:%s" . }}
{{- end }}
{{- $_ := set $metrics "families" (append (include "hubble-otlp.defaultMetricFamilies" . | fromYamlArray) $family) }}
{{- $_ := set $config "metrics" $metrics }}
{{- end }}
{{- end }}
{{- mustMergeOverwrite $config $managed | toYaml }}
{{- end }}

{{/* The bridge's default metric families (MetricsConfig's DEFAULT_FAMILIES; a test keeps them equal). */}}
{{- define "hubble-otlp.defaultMetricFamilies" -}}
- flow
- drop
- tcp
- port-distribution
- icmp
- dns
- httpV2
- kafka
- policy
- flows-to-world
- sidecar-bytes
{{- end }}

{{/* Rules JSON schema cannot express: fail the install with one line saying what to change. */}}
{{- define "hubble-otlp.validate" -}}
{{- $le := .Values.leaderElection }}
{{- if include "hubble-otlp.electing" . }}
{{- if le (float64 $le.leaseDurationSeconds) (float64 $le.renewDeadlineSeconds) }}
{{- fail "leaderElection: leaseDurationSeconds must be greater than renewDeadlineSeconds" }}
{{- end }}
{{- if le (float64 $le.renewDeadlineSeconds) (mulf 1.2 $le.retryPeriodSeconds) }}
{{- fail "leaderElection: renewDeadlineSeconds must be greater than 1.2 x retryPeriodSeconds" }}
{{- end }}
{{- end }}
{{- if and .Values.otlp.tls.existingSecret (hasPrefix "http://" .Values.otlp.endpoint) }}
{{- fail "otlp: certificates are configured but otlp.endpoint is plaintext http://; use https://" }}
{{- end }}
{{- end }}
