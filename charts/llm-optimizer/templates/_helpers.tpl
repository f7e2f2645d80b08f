{{- define "llmopt.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "llmopt.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "llmopt.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "llmopt.labels" -}}
app.kubernetes.io/name: {{ include "llmopt.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "llmopt.selector" -}}
app.kubernetes.io/name: {{ include "llmopt.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "llmopt.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "llmopt.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "llmopt.image" -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}

{{/* The namespaces the operator watches in namespaced mode. */}}
{{- define "llmopt.namespaces" -}}
{{- if .Values.operator.watch.namespaces -}}
{{- join "," .Values.operator.watch.namespaces -}}
{{- else -}}
{{- .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{/* The pod and container security contexts of every workload: the restricted pod
security profile by default (podSecurityContext, securityContext). */}}
{{- define "llmopt.podSecurity" -}}
{{- toYaml .Values.podSecurityContext -}}
{{- end -}}

{{- define "llmopt.containerSecurity" -}}
{{- toYaml .Values.securityContext -}}
{{- end -}}

{{/* Where a workload's pods run: nodeSelector, tolerations, affinity and topology
spread of its own values block (the argument "v"), and the chart's pull secrets. */}}
{{- define "llmopt.scheduling" -}}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .v.nodeSelector }}
nodeSelector: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .v.tolerations }}
tolerations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .v.affinity }}
affinity: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .v.topologySpreadConstraints }}
topologySpreadConstraints: {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The rules the operator needs, and no more: its three kinds (no delete: it
never deletes them), their status, the ConfigMaps and canary Deployments it
renders and removes, and Events. */}}
{{- define "llmopt.operatorRules" -}}
- apiGroups: ["optimizer.llmops.dev"]
  resources: ["llmconfigs", "optimizationpolicies", "rollouts"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["optimizer.llmops.dev"]
  resources: ["rollouts"]
  verbs: ["create"]
- apiGroups: ["optimizer.llmops.dev"]
  resources: ["llmconfigs/status", "optimizationpolicies/status", "rollouts/status"]
  verbs: ["get", "patch"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "create", "patch", "delete"]
# trafficRouting gatewayAPI: the weights of an HTTPRoute's backends, which must exist.
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["get", "patch"]
- apiGroups: ["inference.networking.k8s.io", "inference.networking.x-k8s.io"]
  resources: ["inferencepools"]
  verbs: ["get"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end -}}

{{- define "llmopt.env" -}}
- name: LLMOPT_PROMETHEUS_URL
  value: {{ .Values.operator.prometheusUrl | quote }}
{{- if .Values.recordings.existingClaim }}
- name: LLMOPT_RECORDINGS_DIR
  value: {{ .Values.recordings.mountPath | quote }}
{{- end }}
{{- $p := .Values.operator.prometheus }}
- name: LLMOPT_PROMETHEUS_TIMEOUT
  value: {{ $p.timeout | quote }}
{{- if $p.tls.caSecret.name }}
- name: LLMOPT_PROMETHEUS_CA_FILE
  value: /etc/llm-optimizer/prometheus/ca/{{ $p.tls.caSecret.key }}
{{- end }}
{{- if $p.tls.clientCertSecret }}
- name: LLMOPT_PROMETHEUS_CERT_FILE
  value: /etc/llm-optimizer/prometheus/client/tls.crt
- name: LLMOPT_PROMETHEUS_KEY_FILE
  value: /etc/llm-optimizer/prometheus/client/tls.key
{{- end }}
{{- if $p.tls.insecureSkipVerify }}
- name: LLMOPT_PROMETHEUS_INSECURE_SKIP_VERIFY
  value: "true"
{{- end }}
{{- if $p.auth.bearerTokenSecret.name }}
- name: LLMOPT_PROMETHEUS_BEARER_TOKEN_FILE
  value: /etc/llm-optimizer/prometheus/token/{{ $p.auth.bearerTokenSecret.key }}
{{- end }}
{{- if $p.auth.basic.username }}
- name: LLMOPT_PROMETHEUS_USERNAME
  value: {{ $p.auth.basic.username | quote }}
- name: LLMOPT_PROMETHEUS_PASSWORD_FILE
  value: /etc/llm-optimizer/prometheus/password/{{ $p.auth.basic.passwordSecret.key }}
{{- end }}
{{- with $p.headers }}
- name: LLMOPT_PROMETHEUS_HEADERS
  value: {{ toJson . | quote }}
{{- end }}
{{- if .Values.notifications.webhooks }}
- name: LLMOPT_NOTIFY_WEBHOOKS
  value: {{ include "llmopt.webhooksJson" . | quote }}
{{- end }}
- name: LLMOPT_POLICY_TICK
  value: {{ .Values.operator.policyTick | quote }}
- name: LLMOPT_ROLLOUT_TICK
  value: {{ .Values.operator.rolloutTick | quote }}
{{- if .Values.operator.database.existingSecret }}
- name: LLMOPT_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.operator.database.existingSecret }}
      key: {{ .Values.operator.database.key }}
{{- end }}
{{- if .Values.operator.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .Values.operator.otlpEndpoint | quote }}
{{- end }}
{{- with .Values.operator.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}


{{/* The webhooks as the operator reads them: a urlSecret becomes its mounted file. */}}
{{- define "llmopt.webhooksJson" -}}
{{- $out := list }}
{{- range $i, $w := .Values.notifications.webhooks }}
{{- $hook := omit $w "urlSecret" }}
{{- if $w.urlSecret }}
{{- $hook = set $hook "urlFile" (printf "/etc/llm-optimizer/notify/%d/%s" $i ($w.urlSecret.key | default "url")) }}
{{- end }}
{{- $out = append $out $hook }}
{{- end }}
{{- toJson $out }}
{{- end -}}

{{/* The Secrets the operator reads (Prometheus access, webhook URLs), mounted
read-only (operator and batch). */}}
{{- define "llmopt.secretMounts" -}}
{{- $p := .Values.operator.prometheus }}
{{- if $p.tls.caSecret.name }}
- {name: prometheus-ca, mountPath: /etc/llm-optimizer/prometheus/ca, readOnly: true}
{{- end }}
{{- if $p.tls.clientCertSecret }}
- {name: prometheus-client, mountPath: /etc/llm-optimizer/prometheus/client, readOnly: true}
{{- end }}
{{- if $p.auth.bearerTokenSecret.name }}
- {name: prometheus-token, mountPath: /etc/llm-optimizer/prometheus/token, readOnly: true}
{{- end }}
{{- if $p.auth.basic.username }}
- {name: prometheus-password, mountPath: /etc/llm-optimizer/prometheus/password, readOnly: true}
{{- end }}
{{- range $i, $w := .Values.notifications.webhooks }}
{{- if $w.urlSecret }}
- {name: notify-{{ $i }}, mountPath: /etc/llm-optimizer/notify/{{ $i }}, readOnly: true}
{{- end }}
{{- end }}
{{- end -}}

{{- define "llmopt.secretVolumes" -}}
{{- $p := .Values.operator.prometheus }}
{{- if $p.tls.caSecret.name }}
- {name: prometheus-ca, secret: {secretName: {{ $p.tls.caSecret.name }}}}
{{- end }}
{{- if $p.tls.clientCertSecret }}
- {name: prometheus-client, secret: {secretName: {{ $p.tls.clientCertSecret }}}}
{{- end }}
{{- if $p.auth.bearerTokenSecret.name }}
- {name: prometheus-token, secret: {secretName: {{ $p.auth.bearerTokenSecret.name }}}}
{{- end }}
{{- if $p.auth.basic.username }}
- {name: prometheus-password, secret: {secretName: {{ $p.auth.basic.passwordSecret.name }}}}
{{- end }}
{{- range $i, $w := .Values.notifications.webhooks }}
{{- if $w.urlSecret }}
- {name: notify-{{ $i }}, secret: {secretName: {{ $w.urlSecret.name }}}}
{{- end }}
{{- end }}
{{- end -}}
