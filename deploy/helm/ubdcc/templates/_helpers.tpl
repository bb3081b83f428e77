{{/* The image of every role: one binary, the role is the command. */}}
{{- define "ubdcc.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "ubdcc.labels" -}}
app.kubernetes.io/part-of: ubdcc
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ubdcc.mgmtUrl" -}}
http://{{ .Values.name.mgmt }}.{{ .Release.Namespace }}.svc.cluster.local:{{ .Values.mgmtPort }}
{{- end }}

{{/* Environment every role gets: where to listen, who it is, the secrets. */}}
{{- define "ubdcc.env" -}}
- name: UBDCC_HOST
  value: "0.0.0.0"
- name: UBDCC_PORT
  value: "8080"
- name: UBDCC_CLUSTER
  value: {{ .Values.cluster | quote }}
- name: UBDCC_MGMT_URL
  value: {{ include "ubdcc.mgmtUrl" . | quote }}
- name: UBDCC_ALLOWED_HOSTS
  value: {{ printf "%s,%s.%s,%s.%s.svc,%s.%s.svc.cluster.local" .Values.name.mgmt .Values.name.mgmt .Release.Namespace .Values.name.mgmt .Release.Namespace .Values.name.mgmt .Release.Namespace | quote }}
- name: UBDCC_NODE
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
- name: UBDCC_POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: UBDCC_ADVERTISE_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
- name: UBDCC_CLUSTER_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ .Release.Name }}-ubdcc
      key: cluster-secret
- name: UBDCC_API_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .Release.Name }}-ubdcc
      key: api-token
      optional: true
{{- end }}

{{- define "ubdcc.probes" -}}
readinessProbe:
  httpGet:
    path: /test
    port: http
  initialDelaySeconds: {{ .Values.probes.initialDelaySeconds }}
  periodSeconds: {{ .Values.probes.periodSeconds }}
livenessProbe:
  httpGet:
    path: /test
    port: http
  initialDelaySeconds: {{ .Values.probes.initialDelaySeconds }}
  periodSeconds: {{ .Values.probes.periodSeconds }}
  failureThreshold: 6
{{- end }}

{{/* DaemonSet unless more than one per node or explicit replicas are asked for. */}}
{{- define "ubdcc.replicas" -}}
{{- if .replicas -}}
{{ .replicas }}
{{- else -}}
{{ mul .perNode (default 1 .nodeCount) }}
{{- end -}}
{{- end }}
