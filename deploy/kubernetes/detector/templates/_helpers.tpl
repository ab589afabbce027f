{{/* Names, labels, images, the settings every app pod gets, and the pod template
the workers share. */}}

{{- define "detector.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "detector.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "api"). */}}
{{- define "detector.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* An image by its key in image.names (api, worker, gpu). */}}
{{- define "detector.image" -}}
{{- $image := .root.Values.image -}}
{{- $name := required (printf "image.names has no %q image" .name) (get $image.names .name) -}}
{{- printf "%s%s:%s" $image.registry $name (toString $image.tag) -}}
{{- end -}}

{{- define "detector.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "detector.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "detector.secretName" -}}
{{- default (printf "%s-secrets" (include "detector.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* The queue a model's chunks go to (detector/runtime/queues.py, model_queue). */}}
{{- define "detector.modelQueue" -}}
{{- printf "detector.%s" . -}}
{{- end -}}

{{- define "detector.defaultModel" -}}
{{- $first := index .Values.models 0 -}}
{{- default $first.name .Values.defaultModel -}}
{{- end -}}

{{/* A value as TOML writes it: strings quoted, whole numbers without a fraction,
lists as arrays and tables inline ([models.x.input] size = [300, 300] is
input = { size = [300, 300] }). */}}
{{- define "detector.tomlValue" -}}
{{- if kindIs "slice" . -}}
[{{- range $i, $item := . }}{{ if $i }}, {{ end }}{{ include "detector.tomlValue" $item }}{{ end -}}]
{{- else if kindIs "map" . -}}
{ {{- range $i, $key := keys . | sortAlpha }}{{ if $i }},{{ end }} {{ $key }} = {{ include "detector.tomlValue" (get $ $key) }}{{ end }} }
{{- else if kindIs "string" . -}}
{{- toJson . -}}
{{- else if kindIs "bool" . -}}
{{- . -}}
{{- else if kindIs "float64" . -}}
{{- if eq . (float64 (int64 .)) -}}{{- int64 . -}}{{- else -}}{{- . -}}{{- end -}}
{{- else if or (kindIs "int" .) (kindIs "int64" .) -}}
{{- . -}}
{{- else -}}
{{- fail (printf "models[].catalog: %v is not a string, number, boolean, list or table" .) -}}
{{- end -}}
{{- end -}}

{{/* DETECTOR_MODELS: the catalog of the models in values, in their order. */}}
{{- define "detector.modelsToml" -}}
default = {{ include "detector.defaultModel" . | toJson }}
{{- range .Values.models }}

[models.{{ .name }}]
{{- range $key, $value := .catalog }}
{{ $key }} = {{ include "detector.tomlValue" $value }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The trial servers' names and the URLs made for them. */}}
{{- define "detector.trialHost" -}}
{{- printf "%s-%s" (include "detector.fullname" .root) .server -}}
{{- end -}}

{{- define "detector.databaseUrl" -}}
{{- $pg := .Values.trial.postgres -}}
{{- if .Values.secrets.databaseUrl -}}
{{- .Values.secrets.databaseUrl -}}
{{- else if $pg.enabled -}}
{{- $password := required "trial.postgres.password is required when trial.postgres.enabled is true" $pg.password -}}
{{- printf "postgresql+psycopg://%s:%s@%s:5432/%s" $pg.user (urlquery $password) (include "detector.trialHost" (dict "root" . "server" "postgres")) $pg.database -}}
{{- else -}}
postgresql+psycopg://detector:change-me@postgres:5432/detector
{{- end -}}
{{- end -}}

{{- define "detector.brokerUrl" -}}
{{- $mq := .Values.trial.rabbitmq -}}
{{- if .Values.secrets.brokerUrl -}}
{{- .Values.secrets.brokerUrl -}}
{{- else if $mq.enabled -}}
{{- $password := required "trial.rabbitmq.password is required when trial.rabbitmq.enabled is true" $mq.password -}}
{{- printf "amqp://%s:%s@%s:5672//" $mq.user (urlquery $password) (include "detector.trialHost" (dict "root" . "server" "rabbitmq")) -}}
{{- else -}}
amqp://detector:change-me@rabbitmq:5672//
{{- end -}}
{{- end -}}

{{/* Redis database 0 holds the results, 1 the login rate limiter's counters. */}}
{{- define "detector.redisUrl" -}}
{{- if .root.Values.trial.redis.enabled -}}
{{- printf "redis://%s:6379/%d" (include "detector.trialHost" (dict "root" .root "server" "redis")) .db -}}
{{- else -}}
{{- printf "redis://redis:6379/%d" .db -}}
{{- end -}}
{{- end -}}

{{/* RabbitMQ's management API on the broker's host, with the broker's user. */}}
{{- define "detector.rabbitmqManagementUrl" -}}
{{- if .Values.secrets.rabbitmqManagementUrl -}}
{{- .Values.secrets.rabbitmqManagementUrl -}}
{{- else -}}
{{- $broker := urlParse (include "detector.brokerUrl" .) -}}
{{- $host := index (splitList ":" $broker.host) 0 -}}
{{- printf "http://%s@%s:15672" $broker.userinfo $host -}}
{{- end -}}
{{- end -}}

{{- define "detector.kedaPostgresUrl" -}}
{{- if .Values.secrets.kedaPostgresUrl -}}
{{- .Values.secrets.kedaPostgresUrl -}}
{{- else -}}
{{- include "detector.databaseUrl" . | replace "postgresql+psycopg://" "postgresql://" -}}
{{- end -}}
{{- end -}}

{{/* Videos in a bucket (storage.s3.bucket set): "true", else empty. */}}
{{- define "detector.s3" -}}
{{- if .Values.storage.s3.bucket -}}true{{- end -}}
{{- end -}}

{{/* VIDEO_STORAGE, S3_ENDPOINT_URL and AWS_DEFAULT_REGION of the bucket; the trial
MinIO's endpoint and region when it is on. */}}
{{- define "detector.s3Settings" -}}
{{- $s3 := .Values.storage.s3 -}}
{{- $settings := dict "VIDEO_STORAGE" (printf "s3://%s/%s" $s3.bucket (trimAll "/" (toString $s3.prefix)) | trimSuffix "/") -}}
{{- if .Values.trial.minio.enabled -}}
{{- $_ := set $settings "S3_ENDPOINT_URL" (printf "http://%s:9000" (include "detector.trialHost" (dict "root" . "server" "minio"))) -}}
{{- $_ := set $settings "AWS_DEFAULT_REGION" (default "us-east-1" $s3.region) -}}
{{- else -}}
{{- with $s3.endpoint }}{{ $_ := set $settings "S3_ENDPOINT_URL" . }}{{ end -}}
{{- with $s3.region }}{{ $_ := set $settings "AWS_DEFAULT_REGION" . }}{{ end -}}
{{- end -}}
{{- toJson $settings -}}
{{- end -}}

{{/* The Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY: storage.s3.existingSecret,
or the chart's (keys in values, or the trial MinIO's root user); empty: none (a pod role). */}}
{{- define "detector.s3SecretName" -}}
{{- $s3 := .Values.storage.s3 -}}
{{- if $s3.existingSecret -}}
{{- $s3.existingSecret -}}
{{- else if or $s3.accessKeyId .Values.trial.minio.enabled -}}
{{- printf "%s-s3" (include "detector.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* Non-root with the images' uid/gid (10001), no privilege escalation, no capabilities. */}}
{{- define "detector.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "detector.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}

{{/* The settings every app container gets, as docker-compose.yaml's x-app-env
sets them, and the ConfigMap and Secret. (dict "root" $ "worker" true) */}}
{{- define "detector.appEnv" -}}
envFrom:
  - configMapRef:
      name: {{ include "detector.fullname" .root }}-config
  - secretRef:
      name: {{ include "detector.secretName" .root }}
env:
  - name: DATA_DIR
    value: /data
  {{- if include "detector.s3" .root }}
  {{- with include "detector.s3SecretName" .root }}
  # VIDEO_STORAGE, S3_ENDPOINT_URL, AWS_DEFAULT_REGION: in the ConfigMap.
  - name: AWS_ACCESS_KEY_ID
    valueFrom:
      secretKeyRef:
        name: {{ . }}
        key: AWS_ACCESS_KEY_ID
  - name: AWS_SECRET_ACCESS_KEY
    valueFrom:
      secretKeyRef:
        name: {{ . }}
        key: AWS_SECRET_ACCESS_KEY
  {{- end }}
  {{- else }}
  - name: VIDEO_STORAGE
    value: /videos
  {{- end }}
  - name: DETECTOR_CACHE_DIR
    value: /cache
  - name: PROMETHEUS_MULTIPROC_DIR
    value: /tmp/metrics
  - name: DETECTOR_MODELS
    value: /etc/detector/models.toml
  - name: MIGRATE_WAIT_SECONDS
    value: {{ .root.Values.migrate.waitSeconds | quote }}
  {{- if .worker }}
  - name: METRICS_PORT
    value: {{ .root.Values.metricsPort | quote }}
  {{- end }}
  {{- range $name, $value := .env }}
  - name: {{ $name }}
    value: {{ $value | quote }}
  {{- end }}
{{- end -}}

{{/* The volumes every app pod mounts: videos (shared; none with a bucket), cache,
and scratch space for a read-only root filesystem (/tmp holds a render on its way
to the bucket). */}}
{{- define "detector.appVolumes" -}}
{{- if not (include "detector.s3" .) }}
- name: videos
  persistentVolumeClaim:
    claimName: {{ default (printf "%s-videos" (include "detector.fullname" .)) .Values.storage.videos.existingClaim }}
{{- end }}
- name: cache
  {{- if .Values.storage.cache.existingClaim }}
  persistentVolumeClaim:
    claimName: {{ .Values.storage.cache.existingClaim }}
  {{- else }}
  emptyDir:
    sizeLimit: {{ .Values.storage.cache.scratchSize }}
  {{- end }}
- name: models
  configMap:
    name: {{ include "detector.fullname" . }}-models
- name: data
  emptyDir: {}
- name: tmp
  emptyDir: {}
- name: home
  emptyDir: {}
# prometheus_client's multiprocess files: in memory, empty at every start.
- name: metrics
  emptyDir:
    medium: Memory
    sizeLimit: 64Mi
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "detector.appMounts" -}}
{{- if not (include "detector.s3" .) }}
- name: videos
  mountPath: /videos
{{- end }}
- name: cache
  mountPath: /cache
- name: models
  mountPath: /etc/detector
  readOnly: true
- name: data
  mountPath: /data
- name: tmp
  mountPath: /tmp
- name: home
  mountPath: /home/detector
- name: metrics
  mountPath: /tmp/metrics
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Annotations that roll the pods when their settings change. */}}
{{- define "detector.checksums" -}}
checksum/config: {{ include (print .Template.BasePath "/config.yaml") . | sha256sum }}
checksum/secret: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end -}}

{{/* A worker Deployment: (dict "root" $ "name" "processor" "component" "processor"
"image" "worker" "command" (list ...) "replicas" 2 "spec" .Values.processor
"node" "processor" "gpus" 0 "strategy" "RollingUpdate" "extraLabels" (dict)). */}}
{{- define "detector.workerDeployment" -}}
{{- $root := .root -}}
{{- $spec := .spec -}}
{{- $fullname := include "detector.fullname" $root -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $fullname }}-{{ .name }}
  labels:
    {{- include "detector.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
    {{- with .extraLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  {{- if hasKey . "replicas" }}
  replicas: {{ .replicas }}
  {{- end }}
  revisionHistoryLimit: 3
  {{- if eq .strategy "Recreate" }}
  strategy:
    type: Recreate
  {{- else }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 1
      maxUnavailable: 0
  {{- end }}
  selector:
    matchLabels:
      {{- include "detector.selectorLabels" (dict "root" $root "component" .component) | nindent 6 }}
      {{- with .extraLabels }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
  template:
    metadata:
      labels:
        {{- include "detector.selectorLabels" (dict "root" $root "component" .component) | nindent 8 }}
        {{- with .extraLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
        {{- with $root.Values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        {{- include "detector.checksums" $root | nindent 8 }}
        {{- with $root.Values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "detector.serviceAccountName" $root }}
      automountServiceAccountToken: false
      {{- with $root.Values.image.pullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- include "detector.podSecurityContext" $root | nindent 8 }}
      # SIGTERM starts Celery's warm shutdown: the worker takes no new message
      # and its running tasks finish within this grace; a task killed after it
      # goes back to the queue (late acks) and counts against MAX_CHUNK_DELIVERIES.
      terminationGracePeriodSeconds: {{ .grace }}
      containers:
        - name: {{ .node }}
          image: {{ include "detector.image" (dict "root" $root "name" .image) }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          command:
            {{- toYaml .command | nindent 12 }}
          {{- include "detector.appEnv" (dict "root" $root "worker" true "env" .env) | nindent 10 }}
          ports:
            - name: metrics
              containerPort: {{ $root.Values.metricsPort }}
          {{- with $root.Values.workerLivenessProbe }}
          {{- if .enabled }}
          livenessProbe:
            exec:
              command:
                - sh
                - -c
                - {{ printf "celery -A detector.worker inspect ping -d \"%s@${HOSTNAME}\" --timeout 10" $.node | quote }}
            initialDelaySeconds: {{ .initialDelaySeconds }}
            periodSeconds: {{ .periodSeconds }}
            timeoutSeconds: {{ .timeoutSeconds }}
            failureThreshold: {{ .failureThreshold }}
          {{- end }}
          {{- end }}
          resources:
            {{- $resources := deepCopy (default dict $spec.resources) }}
            {{- if gt (int (default 0 .gpus)) 0 }}
            {{- $_ := set $resources "limits" (merge (dict "nvidia.com/gpu" (int .gpus)) (default dict $resources.limits)) }}
            {{- end }}
            {{- toYaml $resources | nindent 12 }}
          securityContext:
            {{- include "detector.containerSecurityContext" $root | nindent 12 }}
          volumeMounts:
            {{- include "detector.appMounts" $root | nindent 12 }}
      volumes:
        {{- include "detector.appVolumes" $root | nindent 8 }}
      {{- with $spec.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $spec.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $spec.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end -}}
