#!/usr/bin/env bash
# Starts a Mosquitto with Aftercare's settings (deploy/mosquitto.conf) on 127.0.0.1:${PORT:-1884},
# state under ${DIR:-.demo/broker}. Prints the broker URL. Stop it with: kill $(cat DIR/pid)
# With TLS_PORT and CERTS (a directory from `aftercare certs` holding ca.pem, broker.pem and
# broker.key), also the TLS listener of deploy/mosquitto-tls.conf on 127.0.0.1:$TLS_PORT,
# client certificates required, without its ACL (the ingest bench publishes every vehicle's
# messages through the plain listener).
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-1884}
DIR=${DIR:-.demo/broker}
mkdir -p "$DIR" && chmod 777 "$DIR"
abs=$(cd "$DIR" && pwd)
if [ -f "$abs/pid" ] && kill -0 "$(cat "$abs/pid")" 2>/dev/null; then
  echo "mqtt://127.0.0.1:$PORT"; exit 0
fi
{
  cat deploy/mosquitto.conf
  echo "listener $PORT 127.0.0.1"
  echo "persistence_location $abs/"
  echo "log_dest file $abs/broker.log"
  if [ -n "${TLS_PORT:-}" ]; then
    certs=$(cd "${CERTS:?CERTS must name the certificate directory}" && pwd)
    # Mosquitto reads its key after dropping root.
    [ "$(id -u)" -ne 0 ] || chown mosquitto "$certs/broker.key"
    grep -v '^acl_file' deploy/mosquitto-tls.conf \
      | sed -e "s#^listener 8883#listener $TLS_PORT 127.0.0.1#" -e "s#/certs/#$certs/#g"
  fi
} > "$abs/mosquitto.conf"
mosquitto -c "$abs/mosquitto.conf" >/dev/null 2>&1 &
echo $! > "$abs/pid"
for _ in $(seq 1 50); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
echo "mqtt://127.0.0.1:$PORT"
