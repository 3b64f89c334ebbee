{{/*
Names.
*/}}
{{- define "evgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "evgate.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* A name with a suffix, kept within 63 characters. */}}
{{- define "evgate.suffixed" -}}
{{- $base := include "evgate.fullname" .ctx }}
{{- printf "%s-%s" ($base | trunc (int (sub 62 (len .suffix))) | trimSuffix "-") .suffix }}
{{- end }}

{{- define "evgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels: every resource carries these; the selector labels identify the pods.
*/}}
{{- define "evgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "evgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "evgate.labels" -}}
helm.sh/chart: {{ include "evgate.chart" . }}
{{ include "evgate.selectorLabels" . }}
app.kubernetes.io/version: {{ (default .Chart.AppVersion .Values.image.tag) | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: evgate
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels with a component: include "evgate.componentLabels" (dict "ctx" $ "component" "admin") */}}
{{- define "evgate.componentLabels" -}}
{{ include "evgate.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "evgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "evgate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "evgate.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* HOST:PORT with the chart's bind address; IPv6 in brackets. */}}
{{- define "evgate.bind" -}}
{{- $host := .ctx.Values.bindAddress }}
{{- if contains ":" $host }}
{{- printf "[%s]:%d" $host (int .port) }}
{{- else }}
{{- printf "%s:%d" $host (int .port) }}
{{- end }}
{{- end }}

{{/*
Paths inside the container.
*/}}
{{- define "evgate.configDir" -}}/etc/evgate{{- end }}
{{- define "evgate.tokenDir" -}}/var/run/secrets/evgate/admin{{- end }}
{{- define "evgate.tlsDir" -}}/var/run/secrets/evgate/tls{{- end }}
{{- define "evgate.clientCADir" -}}/var/run/secrets/evgate/client-ca{{- end }}
{{- define "evgate.stateDir" -}}/var/lib/evgate{{- end }}

{{- define "evgate.tokenSecretName" -}}
{{- default (include "evgate.suffixed" (dict "ctx" . "suffix" "admin-token")) .Values.admin.existingSecret }}
{{- end }}

{{- define "evgate.clientCASecretName" -}}
{{- default .Values.admin.tls.secretName .Values.admin.tls.clientCA.secretName }}
{{- end }}

{{/*
The evgate configuration file as a dict (rendered with toYaml into the ConfigMap). The `config`
values pass through; the chart owns the addresses, the credential files and the state file.
*/}}
{{- define "evgate.configDict" -}}
{{- $cfg := omit (deepCopy .Values.config) "rollOnChange" }}
{{- $admin := deepCopy (default dict $cfg.admin) }}
{{- $_ := set $admin "address" (include "evgate.bind" (dict "ctx" . "port" .Values.admin.port)) }}
{{- $_ := set $admin "health_address" (include "evgate.bind" (dict "ctx" . "port" .Values.health.port)) }}
{{- if .Values.admin.token.enabled }}
{{- $_ := set $admin "token_file" (printf "%s/token" (include "evgate.tokenDir" .)) }}
{{- if .Values.admin.readOnlyToken.enabled }}
{{- $_ := set $admin "read_only_token_file" (printf "%s/read-only-token" (include "evgate.tokenDir" .)) }}
{{- end }}
{{- end }}
{{- if .Values.admin.insecure }}
{{- $_ := set $admin "insecure" true }}
{{- end }}
{{- if .Values.admin.tls.enabled }}
{{- $tls := dict "cert_file" (printf "%s/tls.crt" (include "evgate.tlsDir" .)) "key_file" (printf "%s/tls.key" (include "evgate.tlsDir" .)) }}
{{- if .Values.admin.tls.clientCA.enabled }}
{{- $_ := set $tls "client_ca_file" (printf "%s/%s" (include "evgate.clientCADir" .) .Values.admin.tls.clientCA.key) }}
{{- end }}
{{- $_ := set $admin "tls" $tls }}
{{- end }}
{{- $_ := set $cfg "admin" $admin }}
{{- $metrics := dict "address" (include "evgate.bind" (dict "ctx" . "port" .Values.metrics.port)) }}
{{- if .Values.metrics.listenerDetail }}
{{- $_ := set $metrics "listener_detail" .Values.metrics.listenerDetail }}
{{- end }}
{{- $_ := set $cfg "metrics" $metrics }}
{{- if .Values.stateFile }}
{{- $_ := set $cfg "state_file" (printf "%s/state.yaml" (include "evgate.stateDir" .)) }}
{{- end }}
{{- if eq (default "" (dig "access_log" "path" "" $cfg)) "" }}
{{- $_ := set $cfg "access_log" (omit $cfg.access_log "path") }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{/*
What evgate cannot change in place (gateway/gateway.cc: workers, listener_sockets, admin,
metrics, log, access_log, state_file; also config_watch), plus the credentials the chart supplies. Its checksum
goes on the pod template, so changing any of it rolls the pods; listeners, clusters and
drain_timeout and max_buffered_bytes are applied live by config_watch and are left out.
*/}}
{{- define "evgate.restartChecksum" -}}
{{- $cfg := include "evgate.configDict" . | fromYaml }}
{{- $parts := dict "config" (pick $cfg "workers" "listener_sockets" "admin" "metrics" "log" "access_log" "state_file" "config_watch") }}
{{- $_ := set $parts "token" (.Values.admin.token.value | sha256sum) }}
{{- $_ := set $parts "readOnlyToken" (.Values.admin.readOnlyToken.value | sha256sum) }}
{{- $_ := set $parts "secrets" (list (include "evgate.tokenSecretName" .) .Values.admin.tls.secretName (include "evgate.clientCASecretName" .)) }}
{{- toJson $parts | sha256sum }}
{{- end }}

{{/*
Duration (evgate syntax: 500ms, 30s, 1.5m, 0) to whole seconds, rounded up.
*/}}
{{- define "evgate.durationSeconds" -}}
{{- $d := toString . }}
{{- if eq $d "0" }}0{{- else }}
{{- $m := regexFind "^[0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h)$" $d }}
{{- if not $m }}{{- fail (printf "config.drain_timeout: expected a duration like 30s, got %q" $d) }}{{- end }}
{{- $unit := regexFind "(ns|us|ms|s|m|h)$" $d }}
{{- $num := float64 (trimSuffix $unit $d) }}
{{- $scale := get (dict "ns" 0.000000001 "us" 0.000001 "ms" 0.001 "s" 1.0 "m" 60.0 "h" 3600.0) $unit }}
{{- ceil (mulf $num $scale) | int }}
{{- end }}
{{- end }}

{{- define "evgate.terminationGracePeriodSeconds" -}}
{{- $drain := int (include "evgate.durationSeconds" .Values.config.drain_timeout) }}
{{- $sleep := int .Values.shutdown.preStopSleepSeconds }}
{{- $set := .Values.shutdown.terminationGracePeriodSeconds }}
{{- if kindIs "invalid" $set }}
{{- add $sleep $drain (int .Values.shutdown.marginSeconds) }}
{{- else if le (int $set) (add $sleep $drain) }}
{{- fail (printf "shutdown.terminationGracePeriodSeconds (%d) must be larger than shutdown.preStopSleepSeconds (%d) + config.drain_timeout (%s = %ds), or the kubelet kills evgate before its drain ends; leave it null to compute it" (int $set) $sleep (toString .Values.config.drain_timeout) $drain) }}
{{- else }}
{{- int $set }}
{{- end }}
{{- end }}

{{/*
Listener ports, as a JSON list of {listener, name, port, servicePort, nodePort, appProtocol}.
Listeners bound to loopback (127.x, [::1]) serve the pod itself and are not exposed.
Port names follow IANA_SVC_NAME: at most 15 characters of a-z 0-9 -, with a letter, no "--",
no "-" at either end. A listener bound to port 0 (any free port) cannot be exposed: skipped.
*/}}
{{- define "evgate.listenerPorts" -}}
{{- $out := list }}
{{- $seen := dict "admin" "the admin port" "metrics" "the metrics port" "health" "the health port" }}
{{- range $i, $l := (default list .Values.config.listeners) }}
{{- $port := int (trimPrefix ":" (regexFind ":[0-9]+$" (toString $l.bind))) }}
{{- $loopback := or (hasPrefix "127." (toString $l.bind)) (hasPrefix "[::1]:" (toString $l.bind)) }}
{{- if and (gt $port 0) (not $loopback) }}
{{- $o := default dict (get $.Values.service.ports (toString $l.name)) }}
{{- $name := "" }}
{{- if $o.name }}
{{- $name = $o.name }}
{{- else }}
{{- $name = regexReplaceAll "[^a-z0-9-]+" (lower (toString $l.name)) "-" }}
{{- $name = regexReplaceAll "-+" $name "-" | trimAll "-" }}
{{- if not (regexMatch "[a-z]" $name) }}{{- $name = printf "l-%s" $name }}{{- end }}
{{- $name = $name | trunc 15 | trimAll "-" }}
{{- end }}
{{- if not (regexMatch "^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$" $name) }}
{{- fail (printf "listener %q: port name %q is not a valid port name (at most 15 characters a-z 0-9 -): set service.ports.%s.name" (toString $l.name) $name (toString $l.name)) }}
{{- end }}
{{- if hasKey $seen $name }}
{{- fail (printf "listener %q: port name %q is already used by %s: set service.ports.%s.name" (toString $l.name) $name (get $seen $name) (toString $l.name)) }}
{{- end }}
{{- $_ := set $seen $name (printf "listener %q" (toString $l.name)) }}
{{- if and (lt $port 1024) (not $.Values.securityContext.bindLowPorts) }}
{{- fail (printf "listener %q binds port %d, below 1024, which a non-root process cannot bind: set securityContext.bindLowPorts=true, or bind a port >= 1024 and expose it as %d with service.ports.%s.port" (toString $l.name) $port $port (toString $l.name)) }}
{{- end }}
{{- $out = append $out (dict "listener" (toString $l.name) "name" $name "port" $port "servicePort" (int (default $port $o.port)) "nodePort" (int (default 0 $o.nodePort)) "appProtocol" (default "" $o.appProtocol)) }}
{{- end }}
{{- end }}
{{- toJson $out }}
{{- end }}

{{/*
Checks across values that the schema cannot express. Included by the workload template.
*/}}
{{- define "evgate.validate" -}}
{{- $v := .Values }}
{{- $secure := or $v.admin.token.enabled (and $v.admin.tls.enabled $v.admin.tls.clientCA.enabled) }}
{{- if and (not $secure) (not $v.admin.insecure) }}
{{- fail "admin: the admin API listens on every pod address, so it needs admin.token.enabled=true or admin.tls.clientCA.enabled=true (mutual TLS); admin.insecure=true allows it without either" }}
{{- end }}
{{- if and $v.admin.readOnlyToken.enabled (not $v.admin.token.enabled) }}
{{- fail "admin.readOnlyToken.enabled needs admin.token.enabled" }}
{{- end }}
{{- if and $v.admin.readOnlyToken.enabled $v.admin.token.value (eq $v.admin.token.value $v.admin.readOnlyToken.value) }}
{{- fail "admin.readOnlyToken.value must differ from admin.token.value" }}
{{- end }}
{{- if and $v.admin.tls.enabled (not $v.admin.tls.secretName) }}
{{- fail "admin.tls.enabled needs admin.tls.secretName (a kubernetes.io/tls Secret)" }}
{{- end }}
{{- if and $v.admin.tls.clientCA.enabled (not $v.admin.tls.enabled) }}
{{- fail "admin.tls.clientCA.enabled needs admin.tls.enabled" }}
{{- end }}
{{- if and $v.admin.existingSecret (or $v.admin.token.value $v.admin.readOnlyToken.value) }}
{{- fail "admin.existingSecret and admin.token.value / admin.readOnlyToken.value exclude each other: the tokens come from the existing Secret" }}
{{- end }}
{{- $ports := list (int $v.admin.port) (int $v.metrics.port) (int $v.health.port) }}
{{- if ne (len (uniq $ports)) 3 }}
{{- fail (printf "admin.port, metrics.port and health.port must differ, got %v" $ports) }}
{{- end }}
{{- range (include "evgate.listenerPorts" . | fromJsonArray) }}
{{- if has (int .port) $ports }}
{{- fail (printf "listener %q binds port %d, which the chart uses for admin, metrics or health" .listener (int .port)) }}
{{- end }}
{{- end }}
{{- if and (not $v.securityContext.bindLowPorts) (lt (int (min $v.admin.port $v.metrics.port $v.health.port)) 1024) }}
{{- fail "admin.port, metrics.port and health.port below 1024 need securityContext.bindLowPorts=true" }}
{{- end }}
{{- if and $v.autoscaling.enabled (ne $v.kind "Deployment") }}
{{- fail (printf "autoscaling.enabled works with kind Deployment only, not %s" $v.kind) }}
{{- end }}
{{- if and $v.persistence.enabled (ne $v.kind "StatefulSet") }}
{{- fail (printf "persistence.enabled needs kind StatefulSet (a volume claim per pod), not %s; Deployment and DaemonSet pods keep the state file on an emptyDir" $v.kind) }}
{{- end }}
{{- if and $v.persistence.enabled (not $v.stateFile) }}
{{- fail "persistence.enabled keeps the state file: it needs stateFile=true" }}
{{- end }}
{{- if and $v.metrics.monitor.enabled (eq $v.metrics.monitor.kind "ServiceMonitor") (not $v.metrics.service.enabled) }}
{{- fail "metrics.monitor.kind ServiceMonitor scrapes the metrics Service: it needs metrics.service.enabled (or use kind PodMonitor)" }}
{{- end }}
{{- if and $v.service.externalTrafficPolicy (eq $v.service.type "ClusterIP") }}
{{- fail "service.externalTrafficPolicy applies to NodePort and LoadBalancer Services only" }}
{{- end }}
{{- range $name, $_ := $v.service.ports }}
{{- $found := false }}
{{- range (default list $v.config.listeners) }}{{- if eq (toString .name) $name }}{{- $found = true }}{{- end }}{{- end }}
{{- if not $found }}
{{- fail (printf "service.ports.%s: there is no listener %q in config.listeners" $name $name) }}
{{- end }}
{{- end }}
{{- $_ := include "evgate.terminationGracePeriodSeconds" . }}
{{- end }}
