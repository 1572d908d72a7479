{{/* The pod template shared by the Deployment (relay mode) and the DaemonSet (node mode). */}}
{{- define "hubble-otlp.podTemplate" -}}
{{- $node := eq .Values.mode "node" }}
{{- $sidecar := include "hubble-otlp.sidecar" . }}
{{- $tokenNeeded := or (include "hubble-otlp.electing" .) (include "hubble-otlp.sidecarMetadata" .) }}
{{- $relayTls := and (not $node) .Values.relay.tls.enabled .Values.relay.tls.existingSecret }}
metadata:
  labels:
    {{- include "hubble-otlp.selectorLabels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ include "hubble-otlp.config" . | sha256sum }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "hubble-otlp.serviceAccountName" . }}
  automountServiceAccountToken: {{ ternary true false (not (empty $tokenNeeded)) }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  {{- if $sidecar }}
  # XDP attaches to the host's interfaces, so the pod lives in the host's network namespace.
  hostNetwork: true
  dnsPolicy: ClusterFirstWithHostNet
  {{- end }}
  securityContext:
    {{- $podSecurity := deepCopy .Values.podSecurityContext }}
    {{- if and $node .Values.node.hubble.enabled }}
    {{- $_ := set $podSecurity "supplementalGroups" (list (int .Values.node.hubble.socketGroup)) }}
    {{- end }}
    {{- toYaml $podSecurity | nindent 4 }}
  containers:
    {{- range $bridge := (include "hubble-otlp.bridges" $ | fromJson).items }}
    - name: {{ $bridge.name }}
      image: {{ include "hubble-otlp.image" (dict "image" $.Values.image "root" $) }}
      imagePullPolicy: {{ $.Values.image.pullPolicy }}
      args:
        {{- if $.Values.verbose }}
        - --verbose
        {{- end }}
        - bridge
        - --config=/etc/hubble-otlp/config.yaml
        - --relay={{ $bridge.relay }}
        - --metrics-listen=:{{ $bridge.metrics }}
        - --health-listen=:{{ $bridge.health }}
      env:
        - name: POD_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        - name: POD_NAMESPACE
          valueFrom:
            fieldRef:
              fieldPath: metadata.namespace
        - name: NODE_NAME
          valueFrom:
            fieldRef:
              fieldPath: spec.nodeName
        - name: OTEL_RESOURCE_ATTRIBUTES
          value: service.instance.id=$(POD_NAME)/{{ $bridge.name }},k8s.pod.name=$(POD_NAME),k8s.namespace.name=$(POD_NAMESPACE),k8s.node.name=$(NODE_NAME),k8s.container.name={{ $bridge.name }}
        {{- with $.Values.otlp.headersSecret.name }}
        - name: OTEL_EXPORTER_OTLP_HEADERS
          valueFrom:
            secretKeyRef:
              name: {{ . }}
              key: {{ $.Values.otlp.headersSecret.key }}
        {{- end }}
        {{- with $.Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        - name: metrics{{ $bridge.suffix }}
          containerPort: {{ $bridge.metrics }}
          protocol: TCP
        - name: health{{ $bridge.suffix }}
          containerPort: {{ $bridge.health }}
          protocol: TCP
      livenessProbe:
        httpGet:
          path: /healthz
          port: health{{ $bridge.suffix }}
        periodSeconds: 10
        failureThreshold: 3
      readinessProbe:
        httpGet:
          path: /readyz
          port: health{{ $bridge.suffix }}
        periodSeconds: 10
        failureThreshold: 3
      resources:
        {{- toYaml $.Values.resources | nindent 8 }}
      securityContext:
        {{- toYaml $.Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: /etc/hubble-otlp/config.yaml
          subPath: config.yaml
          readOnly: true
        - name: tmp
          mountPath: /tmp
        {{- if $relayTls }}
        - name: relay-tls
          mountPath: /etc/hubble-otlp/tls/relay
          readOnly: true
        {{- end }}
        {{- if $.Values.otlp.tls.existingSecret }}
        - name: otlp-tls
          mountPath: /etc/hubble-otlp/tls/otlp
          readOnly: true
        {{- end }}
        {{- if and $node (eq $bridge.name "bridge") }}
        - name: hubble-socket
          mountPath: {{ dir $.Values.node.hubble.socketPath }}
          readOnly: true
        {{- end }}
    {{- end }}
    {{- if $sidecar }}
    {{- include "hubble-otlp.sidecarContainer" . | nindent 4 }}
    {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "hubble-otlp.fullname" . }}
    - name: tmp
      emptyDir:
        sizeLimit: 64Mi
    {{- if $relayTls }}
    - name: relay-tls
      secret:
        secretName: {{ .Values.relay.tls.existingSecret }}
        defaultMode: 0440
    {{- end }}
    {{- with .Values.otlp.tls.existingSecret }}
    - name: otlp-tls
      secret:
        secretName: {{ . }}
        defaultMode: 0440
    {{- end }}
    {{- if and $node .Values.node.hubble.enabled }}
    - name: hubble-socket
      hostPath:
        path: {{ dir .Values.node.hubble.socketPath }}
        type: Directory
    {{- end }}
    {{- if $sidecar }}
    {{- include "hubble-otlp.sidecarVolumes" . | nindent 4 }}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with (ternary .Values.node.tolerations .Values.tolerations $node) }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if not $node }}
  {{- with .Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- end }}
{{- end }}
