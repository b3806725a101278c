{{/* The EPP's name: "<release>-epp", as upstream. */}}
{{- define "inferpool.eppName" -}}
{{- printf "%s-epp" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "inferpool.labels" -}}
app.kubernetes.io/name: {{ include "inferpool.eppName" . }}
{{ include "inferpool.commonLabels" . }}
{{- end -}}

{{/* Labels of every object but the name; `inferpool.labels` adds the EPP's name. */}}
{{- define "inferpool.commonLabels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* What the EPP Service selects: "app: <release>-epp", as the guide expects. */}}
{{- define "inferpool.selectorLabels" -}}
app: {{ include "inferpool.eppName" . }}
{{- end -}}

{{- define "inferpool.poolGroup" -}}
{{- (split "/" .Values.inferencePool.apiVersion)._0 -}}
{{- end -}}

{{- define "inferpool.isV1" -}}
{{- if eq .Values.inferencePool.apiVersion "inference.networking.k8s.io/v1" -}}true{{- end -}}
{{- end -}}

{{- define "inferpool.targetPorts" -}}
{{- if .Values.inferencePool.targetPorts -}}
{{- range .Values.inferencePool.targetPorts }}
- number: {{ .number }}
{{- end -}}
{{- else }}
- number: {{ .Values.inferencePool.targetPortNumber }}
{{- end -}}
{{- end -}}

{{- define "inferpool.validate" -}}
{{- if not (and .Values.inferencePool.modelServers .Values.inferencePool.modelServers.matchLabels) -}}
{{- fail "inferencePool.modelServers.matchLabels is required" -}}
{{- end -}}
{{- if not (has .Values.inferencePool.apiVersion (list "inference.networking.x-k8s.io/v1alpha2" "inference.networking.k8s.io/v1")) -}}
{{- fail (printf "inferencePool.apiVersion %q is not supported" .Values.inferencePool.apiVersion) -}}
{{- end -}}
{{- if not (has (lower .Values.provider.name) (list "none" "gke" "istio")) -}}
{{- fail (printf "provider.name %q: use none, gke or istio" .Values.provider.name) -}}
{{- end -}}
{{- if not (has (.Values.inferencePool.modelServerType | default "vllm") (list "vllm" "sglang" "triton-tensorrt-llm")) -}}
{{- fail (printf "inferencePool.modelServerType %q: use vllm, sglang or triton-tensorrt-llm" .Values.inferencePool.modelServerType) -}}
{{- end -}}
{{- end -}}

{{/* The P/D model servers' ServiceAccount and RBAC: "<release>-pd". */}}
{{- define "inferpool.pdName" -}}
{{- printf "%s-pd" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The pool's first target port: where the P/D pods serve (the decode pods' sidecar). */}}
{{- define "inferpool.firstTargetPort" -}}
{{- if .Values.inferencePool.targetPorts -}}
{{- (first .Values.inferencePool.targetPorts).number -}}
{{- else -}}
{{- .Values.inferencePool.targetPortNumber -}}
{{- end -}}
{{- end -}}
