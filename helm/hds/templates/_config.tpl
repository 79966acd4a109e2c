{{/*
The TOML configuration of one service: dict "root" $ "svc" "fhir".
Strings go through toJson: a JSON string is a valid TOML basic string.
Secrets are not here: HDS_DATABASE__URL and, for dicom-svc, HDS_BLOBS__S3__ACCESS_KEY_ID and
HDS_BLOBS__S3__SECRET_ACCESS_KEY (for fhir-svc's exports, HDS_EXPORTS__S3__*) come from a
Secret as environment variables, which the services apply over this file.
*/}}
{{- define "hds.configToml" -}}
{{- $v := .root.Values -}}
{{- $key := .svc -}}
{{- $s := index $v.services $key -}}
# {{ include "hds.component" $key }} configuration, rendered by the hds Helm chart.
# Environment variables HDS_<SECTION>__<KEY> override it (the database URL and S3 keys
# arrive that way, from a Secret).

[http]
bind = {{ printf "%s:%d" $v.http.bindAddress (int $s.port) | toJson }}
{{- with $s.publicBaseUrl }}
public_base_url = {{ . | toJson }}
{{- end }}
shutdown_timeout_secs = {{ int64 $v.http.shutdownTimeoutSecs }}
max_body_bytes = {{ int64 (default $v.http.maxBodyBytes $s.maxBodyBytes) }}

[database]
# url: from the environment (HDS_DATABASE__URL).
schema = {{ toString $s.database.schema | toJson }}
max_connections = {{ int64 $v.database.maxConnections }}
acquire_timeout_secs = {{ int64 $v.database.acquireTimeoutSecs }}

[bus]
kind = "kafka"

[bus.kafka]
brokers = {{ $v.kafka.brokers | toString | toJson }}
replication_factor = {{ int64 $v.kafka.replicationFactor }}
message_timeout_ms = {{ int64 $v.kafka.messageTimeoutMs }}
session_timeout_ms = {{ int64 $v.kafka.sessionTimeoutMs }}
max_poll_interval_ms = {{ int64 $v.kafka.maxPollIntervalMs }}
{{- with $v.kafka.properties }}

[bus.kafka.properties]
{{- range $k, $val := . }}
{{ $k | toJson }} = {{ $val | toString | toJson }}
{{- end }}
{{- end }}
{{- if eq $key "dicom" }}

[blobs]
kind = {{ $s.blobs.kind | toJson }}
{{- if eq $s.blobs.kind "s3" }}

[blobs.s3]
# access_key_id, secret_access_key: from the environment (HDS_BLOBS__S3__*).
bucket = {{ $v.s3.bucket | toJson }}
{{- with $v.s3.endpoint }}
endpoint = {{ . | toJson }}
{{- end }}
region = {{ $v.s3.region | toJson }}
force_path_style = {{ $v.s3.forcePathStyle }}
create_bucket = {{ $v.s3.createBucket }}
{{- if $v.s3.partSizeBytes }}
part_size = {{ int64 $v.s3.partSizeBytes }}
{{- end }}
{{- else }}

[blobs.local]
path = {{ $s.blobs.local.path | toJson }}
{{- end }}
{{- end }}
{{- if and (eq $key "fhir") (ne $s.exports.kind "none") }}

# Where $export writes.
[exports]
kind = {{ $s.exports.kind | toJson }}
{{- if eq $s.exports.kind "s3" }}

[exports.s3]
# access_key_id, secret_access_key: from the environment (HDS_EXPORTS__S3__*).
bucket = {{ $s.exports.bucket | toJson }}
{{- with $v.s3.endpoint }}
endpoint = {{ . | toJson }}
{{- end }}
region = {{ $v.s3.region | toJson }}
force_path_style = {{ $v.s3.forcePathStyle }}
create_bucket = {{ $v.s3.createBucket }}
{{- if $v.s3.partSizeBytes }}
part_size = {{ int64 $v.s3.partSizeBytes }}
{{- end }}
{{- else }}

[exports.local]
path = {{ $s.exports.local.path | toJson }}
{{- end }}
{{- end }}

[auth]
enabled = {{ $v.auth.enabled }}
issuer = {{ $v.auth.issuer | toJson }}
audience = {{ $v.auth.audience | toJson }}
{{- $keySource := include "hds.authKeySource" .root }}
{{- if eq $keySource "pem" }}
public_key_file = "/etc/hds/config/auth-public-key.pem"
{{- else if eq $keySource "jwks" }}
jwks_url = {{ $v.auth.jwksUrl | toJson }}
{{- else }}
public_key_file = "/etc/hds/auth/public-key.pem"
{{- end }}
roles_claim = {{ $v.auth.rolesClaim | toJson }}
leeway_secs = {{ int64 $v.auth.leewaySecs }}

[telemetry]
log_format = {{ $v.telemetry.logFormat | toJson }}
log_filter = {{ $v.telemetry.logFilter | toJson }}
{{- if eq $key "operations" }}
{{- $b := $s.bootstrap }}

[bootstrap]
enabled = {{ $b.enabled }}
{{- if $b.enabled }}
workspace = {{ $b.workspace | toJson }}
fhir_service = {{ $b.fhirService | toJson }}
dicom_service = {{ $b.dicomService | toJson }}
medtech_service = {{ $b.medtechService | toJson }}
subscription_id = {{ $b.subscriptionId | toString | toJson }}
resource_group = {{ $b.resourceGroup | toJson }}
location = {{ $b.location | toJson }}
{{- end }}
{{- end }}
{{ end -}}
