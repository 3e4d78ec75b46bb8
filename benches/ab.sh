#!/usr/bin/env bash
# Two builds of artifact-store side by side with nginx, interleaved in one
# run: the same 256 MiB component downloaded (MiB/s, median of ROUNDS) and a
# small cache-hit check (/info, req/s with wrk), nginx serving the same file
# and a small JSON file. For before/after numbers of a change:
#   bash benches/ab.sh OLD_BINARY NEW_BINARY      (SIZE_MB, ROUNDS, SECS)
# Build OLD with: git worktree add /tmp/old REV && (cd /tmp/old &&
#   CARGO_TARGET_DIR=$PWD/../main/target cargo build --release) && cp .../artifact-store OLD
set -euo pipefail
OLD=${1:?old binary}; NEW=${2:?new binary}
command -v nginx >/dev/null && command -v wrk >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk curl >/dev/null; }
SIZE_MB=${SIZE_MB:-256}; ROUNDS=${ROUNDS:-7}; SECS=${SECS:-5}
W=$(mktemp -d /tmp/as-ab.XXXX)
pids=()
cleanup(){ for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; [ -f $W/nginx.pid ] && kill "$(cat $W/nginx.pid)" 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT
mkdir -p $W/www $W/c/R1.0
head -c $((SIZE_MB<<20)) /dev/urandom > $W/c/R1.0/blob
echo '{"status":"ok"}' > $W/www/small.json
cat > $W/nginx.conf <<NGINX
worker_processes 2;
pid $W/nginx.pid;
error_log $W/nginx.err;
events { worker_connections 1024; }
http { access_log off; sendfile on; tcp_nopush on;
  server { listen 127.0.0.1:18180; root $W/www; } }
NGINX
KEY=bench-key
start(){ # name binary port
  printf 'log_requests = false\nmax_upload_bytes = 4294967296\nmin_free_bytes = 0\n[[auth.keys]]\nname = "b"\nrole = "admin"\nblake3 = "%s"\n' \
    "$($2 key hash $KEY)" > $W/$1.toml
  $2 --config $W/$1.toml serve --listen 127.0.0.1:$3 --data-dir $W/$1 > $W/$1.out 2>&1 &
  pids+=($!)
}
start old "$OLD" 18181
start new "$NEW" 18182
sleep 1
tar -C $W/c -cf $W/c.tar R1.0
for port in 18181 18182; do
  curl -sf -X PUT -H "Authorization: Bearer $KEY" --data-binary @$W/c.tar \
       http://127.0.0.1:$port/v1/components/bench/R1.0/rocky9 >/dev/null
done
# nginx serves the stored blob itself (the same bytes the services send)
cp "$(find $W/new/blobs -type f | head -1)" $W/www/blob
chmod 755 $W $W/www && chmod 644 $W/www/*
nginx -c $W/nginx.conf
sleep 0.5
declare -A GET CHECK SPEEDS
GET[nginx]=http://127.0.0.1:18180/blob;                       CHECK[nginx]=http://127.0.0.1:18180/small.json
GET[old]=http://127.0.0.1:18181/v1/components/bench/R1.0/rocky9; CHECK[old]=${GET[old]}/info
GET[new]=http://127.0.0.1:18182/v1/components/bench/R1.0/rocky9; CHECK[new]=${GET[new]}/info
names=(nginx old new)
for r in $(seq $ROUNDS); do
  for n in "${names[@]}"; do
    SPEEDS[$n]="${SPEEDS[$n]:-} $(curl -sS -o /dev/null -w '%{speed_download}' "${GET[$n]}")"
  done
done
med(){ tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
declare -A DL RPS
for n in "${names[@]}"; do DL[$n]=$(echo "${SPEEDS[$n]}" | med); done
# checks: two interleaved passes each, best kept (the VM drifts)
for pass in 1 2; do
  for n in "${names[@]}"; do
    v=$(wrk -t2 -c16 -d${SECS}s "${CHECK[$n]}" | awk '/Requests\/sec/{print $2}')
    if [ -z "${RPS[$n]:-}" ] || [ "$(echo "$v > ${RPS[$n]}" | bc)" = 1 ]; then RPS[$n]=$v; fi
  done
done
printf '%-6s %14s %10s %12s %10s\n' peer download_MiB/s vs_nginx check_req/s vs_nginx
for n in "${names[@]}"; do
  printf '%-6s %14.0f %10.2f %12.0f %10.2f\n' "$n" "$(echo "${DL[$n]}/1048576" | bc -l)" \
    "$(echo "${DL[$n]}/${DL[nginx]}" | bc -l)" "${RPS[$n]}" "$(echo "${RPS[$n]}/${RPS[nginx]}" | bc -l)"
done
