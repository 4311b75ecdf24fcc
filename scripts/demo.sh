#!/usr/bin/env bash
# The demo: gets PostgreSQL and Mosquitto ready, builds Aftercare, starts a broker with the
# project's settings and the service, publishes a small synthetic fleet through the broker,
# shows what was stored, scored and offered through the API, and ends with the web console.
# Leaves the service running; `scripts/demo.sh stop` stops it and the demo broker.
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO=.demo
if [ "${1:-}" = "stop" ]; then
  [ -f $DEMO/serve.pid ] && kill "$(cat $DEMO/serve.pid)" 2>/dev/null || true
  [ -f $DEMO/broker/pid ] && kill "$(cat $DEMO/broker/pid)" 2>/dev/null || true
  rm -f $DEMO/serve.pid $DEMO/broker/pid
  echo "demo stopped"; exit 0
fi

scripts/setup.sh
cargo build --release --quiet
BIN=target/release/aftercare
mkdir -p $DEMO
export AFTERCARE_DATABASE_URL=${AFTERCARE_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/aftercare_demo}
export AFTERCARE_MQTT_URL=${AFTERCARE_MQTT_URL:-$(PORT=1884 scripts/broker.sh)}
export AFTERCARE_HTTP_ADDR=${AFTERCARE_HTTP_ADDR:-127.0.0.1:8080}
export AFTERCARE_MQTT_CLIENT_ID=aftercare-demo
# One instance on Mosquitto: a plain subscription (Mosquitto does not keep shared ones
# across its own restarts; see docs/operations.md).
export AFTERCARE_MQTT_SHARE_GROUP=""
psql "${AFTERCARE_DATABASE_URL%/*}/postgres" -qtAc "SELECT 1 FROM pg_database WHERE datname = 'aftercare_demo'" | grep -q 1 \
  || psql "${AFTERCARE_DATABASE_URL%/*}/postgres" -qc "CREATE DATABASE aftercare_demo"
$BIN migrate
$BIN workshops load deploy/workshops.toml

if [ -f $DEMO/serve.pid ] && kill -0 "$(cat $DEMO/serve.pid)" 2>/dev/null; then kill "$(cat $DEMO/serve.pid)"; sleep 1; fi
$BIN serve > $DEMO/serve.log 2>&1 &
echo $! > $DEMO/serve.pid
for _ in $(seq 1 100); do curl -sf "http://$AFTERCARE_HTTP_ADDR/readyz" >/dev/null && break; sleep 0.1; done
# admin: reads, and the simulator registers profiles and posts service records with it.
KEY=$($BIN keys create --name demo --scope admin)
echo "$KEY" > $DEMO/api-key

before=$(curl -s "http://$AFTERCARE_HTTP_ADDR/metrics" | awk '/^aftercare_ingest_messages_total/ {s+=$2} END {print s+0}')
echo
echo "== a synthetic fleet: 40 vehicles, the last 90 days, live through the broker and the API"
$BIN simulate --vehicles 40 --days 90 --compression 0 --rate 2000 --seed "$(date +%s)" \
  --client-id "demo-sim-$$" --api-url "http://$AFTERCARE_HTTP_ADDR" --api-key "$KEY" \
  --truth $DEMO/truth.jsonl 2> >(tee $DEMO/simulate.log >&2)
sent=$(awk '/^messages:/ {print $2}' $DEMO/simulate.log)
for _ in $(seq 1 300); do
  done_now=$(curl -s "http://$AFTERCARE_HTTP_ADDR/metrics" | awk '/^aftercare_ingest_messages_total/ {s+=$2} END {print s+0}')
  [ "$((done_now - before))" -ge "${sent:-0}" ] && break; sleep 0.2
done
echo "ground truth (failures, faults found early) in $DEMO/truth.jsonl; the first failure:"
grep -m1 '"event":"failure"' $DEMO/truth.jsonl || true

echo
echo "== ingest metrics"
curl -s "http://$AFTERCARE_HTTP_ADDR/metrics" | grep -E '^aftercare_(ingest_messages_total|ingest_values_total|dead_letters_total|mqtt_connected)'
echo
echo "== stored"
psql "$AFTERCARE_DATABASE_URL" -c "SELECT (SELECT count(*) FROM vehicles) AS vehicles, (SELECT count(*) FROM samples) AS samples,
  (SELECT count(*) FROM telemetry) AS signal_values, (SELECT count(*) FROM dtc_reports) AS dtc_reports,
  (SELECT count(*) FILTER (WHERE cleared_at IS NULL OR last_seen > cleared_at) FROM dtcs) AS active_dtcs,
  (SELECT count(*) FROM dead_letters) AS dead_letters, (SELECT count(*) FROM service_records) AS service_records"
VIN=$(psql "$AFTERCARE_DATABASE_URL" -qtAc "SELECT v.vin FROM vehicles v JOIN dtcs d ON d.vehicle_id = v.id ORDER BY d.reports DESC LIMIT 1")
echo "== GET /v1/vehicles/$VIN (latest values, active DTCs)"
curl -s -H "Authorization: Bearer $KEY" "http://$AFTERCARE_HTTP_ADDR/v1/vehicles/$VIN" | head -c 1500; echo
echo
echo "== GET /v1/vehicles/$VIN/dtcs (lifecycle), first entry"
curl -s -H "Authorization: Bearer $KEY" "http://$AFTERCARE_HTTP_ADDR/v1/vehicles/$VIN/dtcs" | head -c 800; echo
echo
echo "== GET /v1/vehicles/$VIN/telemetry?signal=Vehicle.LowVoltageBattery.CurrentVoltage&bucket=7d&from=..."
FROM=$(date -u -d '-91 days' +%Y-%m-%dT%H:%M:%SZ)
curl -s -H "Authorization: Bearer $KEY" "http://$AFTERCARE_HTTP_ADDR/v1/vehicles/$VIN/telemetry?signal=Vehicle.LowVoltageBattery.CurrentVoltage&bucket=7d&from=$FROM" | head -c 600; echo
echo
if [ -f models/current.json ]; then
  echo "== risk: the scoring worker re-scores vehicles with new data (models/current.json)"
  for _ in $(seq 1 120); do
    n=$(psql "$AFTERCARE_DATABASE_URL" -qtAc "SELECT count(DISTINCT vehicle_id) FROM risk_current")
    [ "${n:-0}" -ge 40 ] && break; sleep 1
  done
  curl -s -H "Authorization: Bearer $KEY" "http://$AFTERCARE_HTTP_ADDR/v1/fleet/risk?limit=5" | head -c 1200; echo
  echo
  echo "== offers the policy made from those risks, and the demand they bring to WS-01"
  sleep 8
  psql "$AFTERCARE_DATABASE_URL" -c "SELECT state, count(*) FROM offers GROUP BY state ORDER BY state"
  curl -s -H "Authorization: Bearer $KEY" "http://$AFTERCARE_HTTP_ADDR/v1/capacity/preview?workshop=WS-01&days=14" \
    | python3 -c 'import json,sys; w=json.load(sys.stdin)["workshops"][0]; print(json.dumps(w["totals"]), "over capacity:", w["over_capacity"][:5])' || true
else
  echo "(no models/current.json: train one with 'aftercare model train' to see risk and offers)"
fi
echo
URL="http://$AFTERCARE_HTTP_ADDR/console/"
echo "The service is running on http://$AFTERCARE_HTTP_ADDR (API key in $DEMO/api-key, log in $DEMO/serve.log)."
echo "The console: $URL  (sign in with the key in $DEMO/api-key)"
if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] && command -v xdg-open >/dev/null 2>&1; then
  xdg-open "$URL" >/dev/null 2>&1 || true
fi
echo "Stop it with: scripts/demo.sh stop"
