{{/* Common labels. */}}
{{- define "peerpod.labels" -}}
app.kubernetes.io/name: peerpod
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "peerpod.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "peerpod.webhookImage" -}}
{{ .Values.webhook.image.repository }}:{{ .Values.webhook.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "peerpod.secretName" -}}
{{ .Values.secret.existingName | default "peer-pods-secret" }}
{{- end }}

{{- define "peerpod.validate" -}}
{{- if not (has .Values.provider (list "azure" "aws" "libvirt")) }}
{{- fail (printf "provider: %q is not azure, aws or libvirt" .Values.provider) }}
{{- end }}
{{- if not (has .Values.attester (list "tdx" "snp" "az-snp-vtpm" "fake")) }}
{{- fail (printf "attester: %q is not tdx, snp, az-snp-vtpm or fake" .Values.attester) }}
{{- end }}
{{- if not (has .Values.webhook.certs (list "self" "cert-manager")) }}
{{- fail (printf "webhook.certs: %q is not self or cert-manager" .Values.webhook.certs) }}
{{- end }}
{{- if not (has .Values.webhook.failurePolicy (list "Fail" "Ignore")) }}
{{- fail (printf "webhook.failurePolicy: %q is not Fail or Ignore" .Values.webhook.failurePolicy) }}
{{- end }}
{{- range $k, $v := .Values.config }}
{{- if has $k (list "CLOUD_PROVIDER" "ATTESTER" "PEERPODS_LIMIT_PER_NODE" "PROBE_PORT" "STATE_DIR" "CACERT_FILE" "CERT_FILE" "CERT_KEY") }}
{{- fail (printf "config.%s: set it with the chart's own value, not in config" $k) }}
{{- end }}
{{- end }}
{{- end }}

{{- define "peerpod.quotedList" -}}
{{- $q := list }}
{{- range . }}{{ $q = append $q (printf "'%s'" .) }}{{ end }}
{{- join ", " $q }}
{{- end }}
