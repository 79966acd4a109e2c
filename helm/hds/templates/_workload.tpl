{{/*
The ConfigMap, Deployment and Service of one service; each service's own template files
(templates/<svc>/*.yaml) include these with dict "root" $ "svc" "<key>".
*/}}

{{- define "hds.configmap" -}}
{{- $root := .root -}}
{{- $s := index $root.Values.services .svc -}}
{{- if $s.enabled }}
{{- include "hds.validate" $root }}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "hds.svcFullname" . }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "hds.svcLabels" . | nindent 4 }}
data:
  config.toml: |
    {{- regexReplaceAll "(?m)^ +$" (include "hds.configToml" . | nindent 4) "" }}
  {{- if eq (include "hds.authKeySource" $root) "pem" }}
  {{- with $root.Values.auth.publicKeyPem }}
  auth-public-key.pem: |
    {{- . | trim | nindent 4 }}
  {{- end }}
  {{- end }}
{{- end }}
{{- end -}}

{{- define "hds.deployment" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $key := .svc -}}
{{- $s := index $v.services $key -}}
{{- if $s.enabled }}
{{- $component := include "hds.component" $key -}}
{{- $configChecksum := include "hds.configmap" . | sha256sum -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "hds.svcFullname" . }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "hds.svcLabels" . | nindent 4 }}
spec:
  replicas: {{ int $s.replicas }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "hds.svcSelectorLabels" . | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "hds.svcLabels" . | nindent 8 }}
        {{- with (merge (deepCopy (default (dict) $s.podLabels)) (default (dict) $v.podLabels)) }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        checksum/config: {{ $configChecksum }}
        {{- if $v.metrics.podAnnotations }}
        prometheus.io/scrape: "true"
        prometheus.io/port: {{ $s.port | toString | quote }}
        prometheus.io/path: /metrics
        {{- end }}
        {{- with (merge (deepCopy (default (dict) $s.podAnnotations)) (default (dict) $v.podAnnotations)) }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "hds.serviceAccountName" $root }}
      automountServiceAccountToken: {{ $v.serviceAccount.automountServiceAccountToken }}
      {{- with $v.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $v.podSecurityContext | nindent 8 }}
      # SIGTERM lets in-flight requests finish for http.shutdownTimeoutSecs.
      terminationGracePeriodSeconds: {{ add (int64 $v.http.shutdownTimeoutSecs) 10 }}
      containers:
        - name: {{ $component }}
          image: {{ include "hds.image" . | quote }}
          imagePullPolicy: {{ $v.image.pullPolicy }}
          securityContext:
            {{- toYaml $v.securityContext | nindent 12 }}
          env:
            - name: HDS_CONFIG
              value: /etc/hds/config/config.toml
            - name: HDS_DATABASE__URL
              valueFrom:
                secretKeyRef:
                  {{- include "hds.databaseSecretRef" . | nindent 18 }}
            {{- if and (eq $key "dicom") (eq $s.blobs.kind "s3") }}
            - name: HDS_BLOBS__S3__ACCESS_KEY_ID
              valueFrom:
                secretKeyRef:
                  name: {{ include "hds.s3SecretName" $root }}
                  key: {{ include "hds.s3AccessKeyIdKey" $root }}
            - name: HDS_BLOBS__S3__SECRET_ACCESS_KEY
              valueFrom:
                secretKeyRef:
                  name: {{ include "hds.s3SecretName" $root }}
                  key: {{ include "hds.s3SecretAccessKeyKey" $root }}
            {{- end }}
            {{- if and (eq $key "fhir") (eq $s.exports.kind "s3") }}
            - name: HDS_EXPORTS__S3__ACCESS_KEY_ID
              valueFrom:
                secretKeyRef:
                  name: {{ include "hds.s3SecretName" $root }}
                  key: {{ include "hds.s3AccessKeyIdKey" $root }}
            - name: HDS_EXPORTS__S3__SECRET_ACCESS_KEY
              valueFrom:
                secretKeyRef:
                  name: {{ include "hds.s3SecretName" $root }}
                  key: {{ include "hds.s3SecretAccessKeyKey" $root }}
            {{- end }}
            {{- with $v.telemetry.otlpEndpoint }}
            - name: OTEL_EXPORTER_OTLP_ENDPOINT
              value: {{ . | quote }}
            {{- end }}
            {{- with $v.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
            {{- with $s.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          ports:
            - name: http
              containerPort: {{ int $s.port }}
              protocol: TCP
          startupProbe:
            httpGet:
              path: /health/live
              port: http
            periodSeconds: {{ int $v.probes.startup.periodSeconds }}
            timeoutSeconds: {{ int $v.probes.startup.timeoutSeconds }}
            failureThreshold: {{ int $v.probes.startup.failureThreshold }}
          livenessProbe:
            httpGet:
              path: /health/live
              port: http
            periodSeconds: {{ int $v.probes.liveness.periodSeconds }}
            timeoutSeconds: {{ int $v.probes.liveness.timeoutSeconds }}
            failureThreshold: {{ int $v.probes.liveness.failureThreshold }}
          readinessProbe:
            httpGet:
              path: /health/ready
              port: http
            periodSeconds: {{ int $v.probes.readiness.periodSeconds }}
            timeoutSeconds: {{ int $v.probes.readiness.timeoutSeconds }}
            failureThreshold: {{ int $v.probes.readiness.failureThreshold }}
          {{- with $s.resources }}
          resources:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          volumeMounts:
            - name: config
              mountPath: /etc/hds/config
              readOnly: true
            - name: tmp
              mountPath: /tmp
            {{- if eq (include "hds.authKeySource" $root) "secret" }}
            - name: auth-public-key
              mountPath: /etc/hds/auth
              readOnly: true
            {{- end }}
            {{- if and (eq $key "dicom") (eq $s.blobs.kind "local") }}
            - name: blobs
              mountPath: {{ $s.blobs.local.path }}
            {{- end }}
            {{- if and (eq $key "fhir") (eq $s.exports.kind "local") }}
            - name: exports
              mountPath: {{ $s.exports.local.path }}
            {{- end }}
      volumes:
        - name: config
          configMap:
            name: {{ include "hds.svcFullname" . }}
        - name: tmp
          emptyDir: {}
        {{- if eq (include "hds.authKeySource" $root) "secret" }}
        - name: auth-public-key
          secret:
            secretName: {{ $v.auth.existingPublicKeySecret }}
            items:
              - key: {{ $v.auth.existingPublicKeySecretKey }}
                path: public-key.pem
        {{- end }}
        {{- if and (eq $key "dicom") (eq $s.blobs.kind "local") }}
        - name: blobs
          {{- if $s.blobs.local.existingClaim }}
          persistentVolumeClaim:
            claimName: {{ $s.blobs.local.existingClaim }}
          {{- else }}
          emptyDir: {}
          {{- end }}
        {{- end }}
        {{- if and (eq $key "fhir") (eq $s.exports.kind "local") }}
        - name: exports
          {{- if $s.exports.local.existingClaim }}
          persistentVolumeClaim:
            claimName: {{ $s.exports.local.existingClaim }}
          {{- else }}
          emptyDir: {}
          {{- end }}
        {{- end }}
      {{- with (default $v.nodeSelector $s.nodeSelector) }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with (concat (default (list) $v.tolerations) (default (list) $s.tolerations)) }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with (default $v.affinity $s.affinity) }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with (default $v.topologySpreadConstraints $s.topologySpreadConstraints) }}
      topologySpreadConstraints:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end }}
{{- end -}}

{{- define "hds.service" -}}
{{- $root := .root -}}
{{- $s := index $root.Values.services .svc -}}
{{- if $s.enabled }}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "hds.svcFullname" . }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "hds.svcLabels" . | nindent 4 }}
  {{- with $s.service.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: {{ $s.service.type }}
  selector:
    {{- include "hds.svcSelectorLabels" . | nindent 4 }}
  ports:
    - name: http
      port: {{ int $s.service.port }}
      targetPort: http
      protocol: TCP
{{- end }}
{{- end -}}
