#!/usr/bin/env bash
# Gets this machine ready to build, test and run Aftercare: PostgreSQL, Mosquitto and (for the
# console's browser tests) Chromium with its driver from Debian/Ubuntu packages when missing,
# the services started, and the Rust toolchain checked.
# Idempotent; safe to run again. Needs root (or sudo) only when something must be installed.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

need_apt=()
command -v psql >/dev/null 2>&1 && ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need_apt+=(postgresql postgresql-client)
[ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null 2>&1 || need_apt+=(mosquitto)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
# The console's browser tests drive Debian's Chromium through its WebDriver.
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
[ -x /usr/bin/chromedriver ] || need_apt+=(chromium-driver)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# PostgreSQL: start the packaged cluster if it is not answering.
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  echo "setup: starting PostgreSQL"
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null \
    || $SUDO pg_ctlcluster "$version" main start
  for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
fi
# The service and tests connect as postgres over TCP without a password (loopback only).
if ! psql -h 127.0.0.1 -U postgres -d postgres -qtAc 'SELECT 1' >/dev/null 2>&1; then
  echo "setup: allowing trust auth for postgres on loopback"
  hba=$($SUDO -u postgres psql -qtAc 'SHOW hba_file' 2>/dev/null || su postgres -c "psql -qtAc 'SHOW hba_file'")
  $SUDO sed -i '1i host all postgres 127.0.0.1/32 trust\nhost all postgres ::1/128 trust' "$hba"
  $SUDO -u postgres psql -qtAc 'SELECT pg_reload_conf()' >/dev/null 2>&1 || su postgres -c "psql -qtAc 'SELECT pg_reload_conf()'" >/dev/null
fi
psql -h 127.0.0.1 -U postgres -d postgres -qtAc 'SELECT 1' >/dev/null

# Mosquitto: tests and the demo start their own brokers with deploy/mosquitto.conf; the
# binary is all they need. The Debian service is left as it is.
[ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install Rust (rustup) first" >&2
  exit 1
fi
echo "setup: ready (PostgreSQL on 127.0.0.1:5432, mosquitto $(mosquitto -h 2>/dev/null | head -n1 | awk '{print $3}'))"
