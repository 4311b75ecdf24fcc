#!/usr/bin/env bash
# The demo: gets PostgreSQL and Mosquitto ready, builds Aftercare, starts a broker with the
# project's settings and the service, publishes a small synthetic fleet through the broker,
# shows what was stored, scored and offered through the API and the demand the offers bring
# to a workshop, and ends with the web console. It checks that risk, offers and demand are
# there and fails (exit 1) if not. Leaves the service running; `scripts/demo.sh stop` stops
# it and the demo broker.
#
# Settings (environment): the service's AFTERCARE_* (database, broker, HTTP address; the
# database defaults to aftercare_demo, recreated on each run when its name starts with
# aftercare_demo); DEMO_DIR (state, default .demo); DEMO_SEED (the fleet,
# default 6: the same fleet every run); DEMO_BIN (a built binary; default: build release).
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO=${DEMO_DIR:-.demo}
if [ "${1:-}" = "stop" ]; then
  [ -f "$DEMO/serve.pid" ] && kill "$(cat "$DEMO/serve.pid")" 2>/dev/null || true
  [ -f "$DEMO/broker/pid" ] && kill "$(cat "$DEMO/broker/pid")" 2>/dev/null || true
  rm -f "$DEMO/serve.pid" "$DEMO/broker/pid"
  echo "demo stopped"; exit 0
fi

scripts/setup.sh
if [ -n "${DEMO_BIN:-}" ]; then
  BIN=$DEMO_BIN
else
  cargo build --release --quiet
  BIN=target/release/aftercare
fi
mkdir -p "$DEMO"
export AFTERCARE_DATABASE_URL=${AFTERCARE_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/aftercare_demo}
export AFTERCARE_MQTT_URL=${AFTERCARE_MQTT_URL:-$(PORT=1884 DIR="$DEMO/broker" scripts/broker.sh)}
export AFTERCARE_HTTP_ADDR=${AFTERCARE_HTTP_ADDR:-127.0.0.1:8080}
export AFTERCARE_MQTT_CLIENT_ID=${AFTERCARE_MQTT_CLIENT_ID:-aftercare-demo}
# One instance on Mosquitto: a plain subscription (Mosquitto does not keep shared ones
# across its own restarts; see docs/operations.md).
export AFTERCARE_MQTT_SHARE_GROUP=""
API="http://$AFTERCARE_HTTP_ADDR"
DB=$AFTERCARE_DATABASE_URL
q() { psql "$DB" -qtAc "$1"; }

if [ -f "$DEMO/serve.pid" ] && kill -0 "$(cat "$DEMO/serve.pid")" 2>/dev/null; then kill "$(cat "$DEMO/serve.pid")"; sleep 1; fi
# A fresh demo database each run, so every run shows the same thing from the same start.
name=${DB##*/}; name=${name%%\?*}
if [[ "$name" == aftercare_demo* ]]; then
  psql "${DB%/*}/postgres" -qc "DROP DATABASE IF EXISTS $name WITH (FORCE)" -qc "CREATE DATABASE $name"
fi
$BIN migrate
$BIN workshops load deploy/workshops.toml

$BIN serve > "$DEMO/serve.log" 2>&1 &
echo $! > "$DEMO/serve.pid"
for _ in $(seq 1 100); do curl -sf "$API/readyz" >/dev/null && break; sleep 0.1; done
# admin: reads, and the simulator registers profiles and posts service records with it.
KEY=$($BIN keys create --name demo --scope admin)
echo "$KEY" > "$DEMO/api-key"
get() { curl -s -H "Authorization: Bearer $KEY" "$API$1"; }
metric() { curl -s "$API/metrics" | awk -v m="^$1" '$0 ~ m {s+=$2} END {print s+0}'; }
fail() { echo "demo: $1 (service log: $DEMO/serve.log)" >&2; exit 1; }

before=$(metric aftercare_ingest_messages_total)
echo
echo "== a synthetic fleet: 40 vehicles, the last 90 days, live through the broker and the API"
$BIN simulate --vehicles 40 --days 90 --compression 0 --rate 2000 --seed "${DEMO_SEED:-6}" \
  --client-id "demo-sim-$$" --api-url "$API" --api-key "$KEY" \
  --truth "$DEMO/truth.jsonl" 2> >(tee "$DEMO/simulate.log" >&2)
sent=$(awk '/^messages:/ {print $2}' "$DEMO/simulate.log")
for _ in $(seq 1 300); do
  [ "$(( $(metric aftercare_ingest_messages_total) - before ))" -ge "${sent:-0}" ] && break; sleep 0.2
done
echo "ground truth (failures, faults found early) in $DEMO/truth.jsonl; the first failure:"
grep -m1 '"event":"failure"' "$DEMO/truth.jsonl" || true

echo
echo "== ingest metrics"
curl -s "$API/metrics" | grep -E '^aftercare_(ingest_messages_total|ingest_values_total|dead_letters_total|mqtt_connected)'
echo
echo "== stored"
psql "$DB" -c "SELECT (SELECT count(*) FROM vehicles) AS vehicles, (SELECT count(*) FROM samples) AS samples,
  (SELECT count(*) FROM telemetry) AS signal_values, (SELECT count(*) FROM dtc_reports) AS dtc_reports,
  (SELECT count(*) FILTER (WHERE cleared_at IS NULL OR last_seen > cleared_at) FROM dtcs) AS active_dtcs,
  (SELECT count(*) FROM dead_letters) AS dead_letters, (SELECT count(*) FROM service_records) AS service_records"
VIN=$(q "SELECT v.vin FROM vehicles v JOIN dtcs d ON d.vehicle_id = v.id ORDER BY d.reports DESC, v.vin LIMIT 1")
echo "== GET /v1/vehicles/$VIN (latest values, active DTCs)"
get "/v1/vehicles/$VIN" | head -c 1500; echo
echo
echo "== GET /v1/vehicles/$VIN/dtcs (lifecycle), first entry"
get "/v1/vehicles/$VIN/dtcs" | head -c 800; echo
echo
echo "== GET /v1/vehicles/$VIN/telemetry?signal=Vehicle.LowVoltageBattery.CurrentVoltage&bucket=7d&from=..."
FROM=$(date -u -d '-91 days' +%Y-%m-%dT%H:%M:%SZ)
get "/v1/vehicles/$VIN/telemetry?signal=Vehicle.LowVoltageBattery.CurrentVoltage&bucket=7d&from=$FROM" | head -c 600; echo
echo

[ -f models/current.json ] || fail "no models/current.json: train one with 'aftercare model train' to see risk and offers"
echo "== risk: the scoring worker scores every vehicle with new data (models/current.json)"
# Settled when no mark waits for scoring (a vehicle without recent data keeps its mark with
# the reason, and is not waited for).
for _ in $(seq 1 120); do
  [ "$(q "SELECT count(*) FROM score_dirty WHERE released_at IS NULL")" = 0 ] \
    && [ "$(q "SELECT count(*) FROM risk_current")" != 0 ] && break
  sleep 1
done
scored=$(q "SELECT count(DISTINCT vehicle_id) FROM risk_current")
[ "$scored" != 0 ] || fail "no vehicle was scored"
echo "$scored vehicles scored; without a score: $(q "SELECT count(*) FROM score_dirty WHERE released_at IS NOT NULL") (no recent data)"
get "/v1/fleet/risk?limit=5" | head -c 1200; echo

echo
echo "== offers the policy made from those risks (one visit per car for jobs due together)"
# The offer worker passes every few seconds: settled when a pass adds nothing.
last=-1
for _ in $(seq 1 60); do
  n=$(q "SELECT count(*) FROM offers")
  [ "$n" != 0 ] && [ "$n" = "$last" ] && break
  last=$n; sleep 6
done
[ "$(q "SELECT count(*) FROM offers")" != 0 ] || fail "no offers were made"
psql "$DB" -c "SELECT o.state, count(*) AS offers, sum((SELECT count(*) FROM offer_jobs l WHERE l.offer_id = o.id)) AS jobs
  FROM offers o GROUP BY o.state ORDER BY o.state"
VISIT=$(q "SELECT offer_id FROM offer_jobs GROUP BY offer_id HAVING count(*) > 1 ORDER BY offer_id LIMIT 1")
if [ -n "$VISIT" ]; then
  echo "== one visit for jobs due together: GET /v1/offers/$VISIT"
  get "/v1/offers/$VISIT" > "$DEMO/visit.json"
  python3 - "$DEMO/visit.json" <<'PY' || true
import json, sys
o = json.load(open(sys.argv[1]))
jobs = ", ".join(f'{j["job_name"]} ({j["minutes"]} min, {j["price_cents"] / 100:.2f})' for j in o["jobs"])
print(f'{o["vin"]} at {o["workshop"]}: {jobs}; {o["duration_minutes"]} min, {o["estimated_cost_cents"] / 100:.2f} in all')
PY
fi
WS=$(q "SELECT w.code FROM offers o JOIN workshops w ON w.id = o.workshop_id
        WHERE o.state IN ('proposed', 'notified') GROUP BY w.code ORDER BY count(*) DESC, w.code LIMIT 1")
[ -n "$WS" ] || fail "no open offer"

echo
echo "== the demand they bring to $WS: GET /v1/capacity/preview?workshop=$WS&days=28"
get "/v1/capacity/preview?workshop=$WS&days=28" > "$DEMO/preview.json"
python3 - "$DEMO/preview.json" <<'PY' || fail "the preview shows no demand from the offers"
import json, sys
w = json.load(open(sys.argv[1]))["workshops"][0]
t = w["totals"]
print("totals (hours):", json.dumps(t))
print("over capacity:", [f'{c["day"]} {c["skill"]}' for c in w["over_capacity"][:5]])
busiest = sorted(w["cells"], key=lambda c: -c["offer_hours"])[:3]
for c in busiest:
    print(f'{c["day"]} {c["skill"]}: {c["offer_hours"]} h from offers, {c["demand_hours"]} h demand of {c["capacity_hours"]} h')
sys.exit(0 if t["offer_hours"] > 0 else 1)
PY

echo
URL="$API/console/"
echo "The service is running on $API (API key in $DEMO/api-key, log in $DEMO/serve.log)."
echo "The console: $URL  (sign in with the key in $DEMO/api-key)"
if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] && command -v xdg-open >/dev/null 2>&1; then
  xdg-open "$URL" >/dev/null 2>&1 || true
fi
echo "Stop it with: scripts/demo.sh stop"
