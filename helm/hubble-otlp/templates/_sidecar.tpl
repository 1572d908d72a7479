{{/*
The BCC sidecar. It is the one container that runs as root: loading BPF programs needs
CAP_BPF and CAP_PERFMON (kernel >= 5.8), XDP needs CAP_NET_ADMIN and raising the locked-memory
limit CAP_SYS_RESOURCE; every other capability is dropped. BCC compiles its programs at start
against the node's kernel headers, hence the host mounts.
*/}}
{{- define "hubble-otlp.sidecarContainer" -}}
- name: sidecar
  image: {{ include "hubble-otlp.image" (dict "image" .Values.sidecar.image "root" .) }}
  imagePullPolicy: {{ .Values.sidecar.image.pullPolicy }}
  args:
    {{- if .Values.verbose }}
    - --verbose
    {{- end }}
    - sidecar
    - --listen=127.0.0.1:{{ .Values.sidecar.port }}
    - --interval={{ .Values.sidecar.intervalSeconds }}
    - --health-listen=:{{ .Values.sidecar.healthPort }}
    {{- if not .Values.sidecar.l7.enabled }}
    - --no-l7
    {{- end }}
    {{- range .Values.sidecar.interfaces }}
    - --interface={{ . }}
    {{- end }}
  env:
    - name: NODE_NAME
      valueFrom:
        fieldRef:
          fieldPath: spec.nodeName
    - name: HOME
      value: /tmp
  ports:
    - name: sidecar-health
      containerPort: {{ .Values.sidecar.healthPort }}
      protocol: TCP
  # The Observer API listens on loopback only, where the kubelet cannot reach it; /readyz says whether
  # it serves, over plain HTTP the kubelet sends itself (no process started per probe). BCC compiles for a
  # while before the probes attach: the startup probe allows 5 minutes.
  startupProbe:
    httpGet:
      path: /readyz
      port: sidecar-health
    periodSeconds: 10
    failureThreshold: 30
  readinessProbe:
    httpGet:
      path: /readyz
      port: sidecar-health
    periodSeconds: 10
    failureThreshold: 3
  livenessProbe:
    httpGet:
      path: /healthz
      port: sidecar-health
    periodSeconds: 30
    failureThreshold: 3
  resources:
    {{- toYaml .Values.sidecar.resources | nindent 4 }}
  securityContext:
    runAsUser: 0
    runAsGroup: 0
    runAsNonRoot: false
    privileged: false
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    capabilities:
      drop: ["ALL"]
      # NET_RAW: the packet sockets whose socket filter keeps DNS and HTTP/1.x messages (sidecar.l7)
      add: ["BPF", "PERFMON", "NET_ADMIN", "SYS_RESOURCE"{{ if .Values.sidecar.l7.enabled }}, "NET_RAW"{{ end }}]
  volumeMounts:
    - name: sidecar-tmp
      mountPath: /tmp
    - name: bpffs
      mountPath: /sys/fs/bpf
    - name: tracefs
      mountPath: /sys/kernel/tracing
    - name: debugfs
      mountPath: /sys/kernel/debug
    - name: lib-modules
      mountPath: /lib/modules
      readOnly: true
    - name: usr-src
      mountPath: /usr/src
      readOnly: true
{{- end }}

{{- define "hubble-otlp.sidecarVolumes" -}}
- name: sidecar-tmp
  emptyDir:
    sizeLimit: 256Mi
- name: bpffs
  hostPath:
    path: /sys/fs/bpf
    type: DirectoryOrCreate
- name: tracefs
  hostPath:
    path: /sys/kernel/tracing
    type: Directory
- name: debugfs
  hostPath:
    path: /sys/kernel/debug
    type: Directory
- name: lib-modules
  hostPath:
    path: /lib/modules
    type: Directory
- name: usr-src
  hostPath:
    path: /usr/src
    type: Directory
{{- end }}
