{{- define "rr.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}{{ .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "rr.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* selector labels of one component: (dict "ctx" $ "component" "api") */}}
{{- define "rr.selector" -}}
app.kubernetes.io/name: {{ .ctx.Chart.Name }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "rr.image" -}}
{{ printf "%s:%s" .repository .tag | quote }}
{{- end -}}

{{- define "rr.appSecret" -}}{{ .Values.secrets.existingSecret | default (printf "%s-app" (include "rr.fullname" .)) }}{{- end -}}
{{- define "rr.storageSecret" -}}{{ .Values.storage.existingSecret | default (printf "%s-storage" (include "rr.fullname" .)) }}{{- end -}}
{{- define "rr.redisSecret" -}}
{{- if .Values.redis.inChart -}}{{ include "rr.fullname" . }}-redis
{{- else -}}{{ .Values.redis.external.existingSecret | default (printf "%s-redis" (include "rr.fullname" .)) }}{{- end -}}
{{- end -}}
{{- define "rr.modelSecret" -}}{{ .Values.triton.modelStore.s3.existingSecret | default (printf "%s-models" (include "rr.fullname" .)) }}{{- end -}}

{{/* Pod and container security: non-root, no privilege escalation, nothing extra. */}}
{{- define "rr.podSecurity" -}}
runAsNonRoot: true
runAsUser: {{ .uid | default 10001 }}
runAsGroup: {{ .uid | default 10001 }}
fsGroup: {{ .uid | default 10001 }}
seccompProfile: {type: RuntimeDefault}
{{- end -}}
{{- define "rr.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: {{ .readOnly }}
capabilities: {drop: [ALL]}
{{- end -}}

{{/* The job service's environment: every name a field of client_api.config.Settings (tests check it). */}}
{{- define "rr.serviceEnv" -}}
- name: RESTYLE_REDIS_URL
  valueFrom: {secretKeyRef: {name: {{ include "rr.redisSecret" . }}, key: redis-url}}
- name: RESTYLE_S3_ACCESS_KEY_ID
  valueFrom: {secretKeyRef: {name: {{ include "rr.storageSecret" . }}, key: access-key-id}}
- name: RESTYLE_S3_SECRET_ACCESS_KEY
  valueFrom: {secretKeyRef: {name: {{ include "rr.storageSecret" . }}, key: secret-access-key}}
{{- range $env, $key := dict "RESTYLE_API_KEYS" "api-keys" "RESTYLE_ADMIN_API_KEY" "admin-api-key" "RESTYLE_WEBHOOK_SECRET" "webhook-secret" "RESTYLE_SIGNING_SECRET" "signing-secret" }}
- name: {{ $env }}
  valueFrom: {secretKeyRef: {name: {{ include "rr.appSecret" $ }}, key: {{ $key }}, optional: true}}
{{- end }}
{{- end -}}

{{- define "rr.serviceEnvFrom" -}}
- configMapRef: {name: {{ include "rr.fullname" . }}-service}
{{- end -}}

{{/* NetworkPolicy peers: the chart's pods of one component; a namespace by name. */}}
{{- define "rr.from" -}}
- podSelector:
    matchLabels: {{- include "rr.selector" . | nindent 6 }}
{{- end -}}
{{- define "rr.fromNamespace" -}}
- namespaceSelector:
    matchLabels: {kubernetes.io/metadata.name: {{ . }}}
{{- end -}}
