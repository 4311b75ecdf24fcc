#!/usr/bin/env bash
# The whole test suite against real PostgreSQL and Mosquitto (installed and started by
# setup.sh). Each test gets its own database and its own broker.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if cargo nextest --version >/dev/null 2>&1; then
  # Heavy end-to-end tests each start brokers and service processes: two at a time on 2 cores.
  cargo nextest run --no-fail-fast --test-threads 2 "$@"
else
  cargo test --no-fail-fast "$@" -- --test-threads 2
fi
