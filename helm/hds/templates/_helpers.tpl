{{/*
Names, labels and checks shared by every template.
A service is named by its key under .Values.services (operations, fhir, dicom, medtech); its
binary and component name is "<key>-svc".
*/}}

{{- define "hds.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "hds.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "hds.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The component (binary) name of a service key: fhir -> fhir-svc. */}}
{{- define "hds.component" -}}
{{- printf "%s-svc" . -}}
{{- end -}}

{{/* Resource name of one service: dict "root" $ "svc" "fhir" -> <fullname>-fhir-svc. */}}
{{- define "hds.svcFullname" -}}
{{- $base := include "hds.fullname" .root | trunc 53 | trimSuffix "-" -}}
{{- printf "%s-%s" $base (include "hds.component" .svc) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "hds.labels" -}}
helm.sh/chart: {{ include "hds.chart" . }}
app.kubernetes.io/name: {{ include "hds.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: hds
{{- end -}}

{{/* dict "root" $ "svc" "fhir" */}}
{{- define "hds.svcSelectorLabels" -}}
app.kubernetes.io/name: {{ include "hds.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ include "hds.component" .svc }}
{{- end -}}

{{- define "hds.svcLabels" -}}
{{ include "hds.labels" .root }}
app.kubernetes.io/component: {{ include "hds.component" .svc }}
{{- end -}}

{{- define "hds.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "hds.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The chart's own Secret (database URL, S3 keys given inline). */}}
{{- define "hds.secretName" -}}
{{- include "hds.fullname" . -}}
{{- end -}}

{{/* Whether the chart creates its Secret: something was given inline. */}}
{{- define "hds.createSecret" -}}
{{- if or .Values.database.url .Values.s3.accessKeyId -}}
true
{{- end -}}
{{- end -}}

{{/* dict "root" $ "svc" "fhir": the Secret and key holding the service's database URL. */}}
{{- define "hds.databaseSecretRef" -}}
{{- $v := .root.Values -}}
{{- $s := index $v.services .svc -}}
{{- $name := "" -}}
{{- $key := "" -}}
{{- if $s.database.existingSecret -}}
{{- $name = $s.database.existingSecret -}}
{{- $key = default $v.database.existingSecretKey $s.database.existingSecretKey -}}
{{- else if $v.database.url -}}
{{- $name = include "hds.secretName" .root -}}
{{- $key = "database-url" -}}
{{- else -}}
{{- $name = $v.database.existingSecret -}}
{{- $key = $v.database.existingSecretKey -}}
{{- end -}}
name: {{ $name }}
key: {{ $key }}
{{- end -}}

{{/* The S3 credentials' Secret. */}}
{{- define "hds.s3SecretName" -}}
{{- if .Values.s3.accessKeyId -}}{{ include "hds.secretName" . }}{{- else -}}{{ .Values.s3.existingSecret }}{{- end -}}
{{- end -}}

{{- define "hds.s3AccessKeyIdKey" -}}
{{- if .Values.s3.accessKeyId -}}s3-access-key-id{{- else -}}{{ .Values.s3.accessKeyIdKey }}{{- end -}}
{{- end -}}

{{- define "hds.s3SecretAccessKeyKey" -}}
{{- if .Values.s3.accessKeyId -}}s3-secret-access-key{{- else -}}{{ .Values.s3.secretAccessKeyKey }}{{- end -}}
{{- end -}}

{{/* How tokens are verified: "pem" (inline), "jwks" or "secret" (an existing Secret). */}}
{{- define "hds.authKeySource" -}}
{{- if .Values.auth.publicKeyPem -}}pem
{{- else if .Values.auth.jwksUrl -}}jwks
{{- else if .Values.auth.existingPublicKeySecret -}}secret
{{- end -}}
{{- end -}}

{{/* dict "root" $ "svc" "fhir": registry/repository:tag */}}
{{- define "hds.image" -}}
{{- $v := .root.Values -}}
{{- $s := index $v.services .svc -}}
{{- $tag := default (default .root.Chart.AppVersion $v.image.tag) $s.image.tag -}}
{{- if $v.image.registry -}}
{{- printf "%s/%s:%s" (trimSuffix "/" $v.image.registry) $s.image.repository $tag -}}
{{- else -}}
{{- printf "%s:%s" $s.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/*
Checks that fail rendering with a message naming what to fix. Every ConfigMap includes it,
so `helm template` / `helm install` stop before anything is applied.
*/}}
{{- define "hds.validate" -}}
{{- $v := .Values -}}
{{- if not $v.auth.enabled -}}
{{- fail "auth.enabled must be true: the hds services listen on 0.0.0.0 in their pods and refuse to start without authentication. Set auth.enabled = true with auth.issuer, auth.audience and a key (auth.publicKeyPem, auth.jwksUrl or auth.existingPublicKeySecret)." -}}
{{- end -}}
{{- if not $v.auth.issuer -}}
{{- fail "auth.issuer is required (the expected `iss` of bearer tokens, e.g. https://login.microsoftonline.com/<tenant>/v2.0, or hds-local for tokens from `hds token`)" -}}
{{- end -}}
{{- if not $v.auth.audience -}}
{{- fail "auth.audience is required (the expected `aud` of bearer tokens)" -}}
{{- end -}}
{{- if not (include "hds.authKeySource" .) -}}
{{- fail "auth needs a key: set auth.publicKeyPem (an RS256 public key in PEM), auth.jwksUrl (OpenID Connect jwks_uri) or auth.existingPublicKeySecret" -}}
{{- end -}}
{{- if and (eq (include "hds.authKeySource" .) "secret") (not $v.auth.existingPublicKeySecretKey) -}}
{{- fail "auth.existingPublicKeySecretKey is required with auth.existingPublicKeySecret" -}}
{{- end -}}
{{- if not $v.kafka.brokers -}}
{{- fail "kafka.brokers is required (host:port[,host:port...]): the services talk to each other through Kafka" -}}
{{- end -}}
{{- range $key := list "operations" "fhir" "dicom" "medtech" -}}
{{- $s := index $v.services $key -}}
{{- if $s.enabled -}}
{{- if not (or $v.database.url $v.database.existingSecret $s.database.existingSecret) -}}
{{- fail (printf "services.%s: no database: set database.url (postgres://user:password@host:5432/db), database.existingSecret, or services.%s.database.existingSecret" $key $key) -}}
{{- end -}}
{{- if not (regexMatch "^[a-z0-9_]+$" (toString $s.database.schema)) -}}
{{- fail (printf "services.%s.database.schema '%s' is invalid: use lowercase letters, digits and '_'" $key (toString $s.database.schema)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if $v.database.url -}}
{{- if not (hasPrefix "postgres" $v.database.url) -}}
{{- fail "database.url must be a PostgreSQL URL (postgres://...): SQLite files are not shared between pods" -}}
{{- end -}}
{{- end -}}
{{- $d := $v.services.dicom -}}
{{- if and $d.enabled (eq $d.blobs.kind "s3") -}}
{{- if not $v.s3.bucket -}}
{{- fail "s3.bucket is required for dicom-svc (services.dicom.blobs.kind = s3)" -}}
{{- end -}}
{{- else if and $d.enabled (ne $d.blobs.kind "local") -}}
{{- fail (printf "services.dicom.blobs.kind must be s3 or local (got '%s')" $d.blobs.kind) -}}
{{- end -}}
{{- $f := $v.services.fhir -}}
{{- if and $f.enabled (eq $f.exports.kind "s3") -}}
{{- if not $f.exports.bucket -}}
{{- fail "services.fhir.exports.bucket is required with services.fhir.exports.kind = s3" -}}
{{- end -}}
{{- else if and $f.enabled (not (has $f.exports.kind (list "local" "none"))) -}}
{{- fail (printf "services.fhir.exports.kind must be s3, local or none (got '%s')" $f.exports.kind) -}}
{{- end -}}
{{- /* Both S3 users share the s3 block's credentials. */ -}}
{{- $users := list -}}
{{- if and $d.enabled (eq $d.blobs.kind "s3") -}}{{- $users = append $users "dicom-svc" -}}{{- end -}}
{{- if and $f.enabled (eq $f.exports.kind "s3") -}}{{- $users = append $users "fhir-svc (exports)" -}}{{- end -}}
{{- if $users -}}
{{- if $v.s3.accessKeyId -}}
{{- if not $v.s3.secretAccessKey -}}
{{- fail "s3.secretAccessKey is required with s3.accessKeyId" -}}
{{- end -}}
{{- else if not $v.s3.existingSecret -}}
{{- fail (printf "%s needs S3 credentials: set s3.accessKeyId and s3.secretAccessKey, or s3.existingSecret (keys s3.accessKeyIdKey and s3.secretAccessKeyKey)" (join " and " $users)) -}}
{{- end -}}
{{- end -}}
{{- $b := $v.services.operations.bootstrap -}}
{{- if and $v.services.operations.enabled $b.enabled -}}
{{- range $k := list "workspace" "fhirService" "dicomService" "medtechService" -}}
{{- if not (index $b $k) -}}
{{- fail (printf "services.operations.bootstrap.%s is empty: operations-svc cannot leave a bootstrapped service out through its configuration file (its defaults name all three); set bootstrap.enabled = false and create workspaces through the API instead" $k) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
