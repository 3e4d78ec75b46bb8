#!/usr/bin/env bash
# Downloads and cache-hit checks against nginx, in the same run: starts a
# release artifact-store, stores a component holding the same 256 MiB file
# that ../shared/bench/peers.sh serves from nginx (and its other peers),
# then runs that script with the project as a row. Also measures peak RSS
# of the service while uploading and downloading a 1 GiB component.
#   bash benches/peers.sh            (SIZE_MB, ROUNDS as in peers.sh; RSS_GB=1)
set -euo pipefail
cd "$(dirname "$0")/.."
PEERS=${PEERS:-../shared/bench/peers.sh}
cargo build --release --quiet
BIN=$PWD/target/release/artifact-store
W=$(mktemp -d /tmp/as-bench.XXXX)
PORT=${PORT:-18090}
KEY=bench-key
cat > $W/config.toml <<TOML
log_requests = false
max_upload_bytes = 4294967296
[[auth.keys]]
name = "bench"
role = "admin"
blake3 = "$($BIN key hash $KEY)"
TOML
$BIN --config $W/config.toml serve --listen 127.0.0.1:$PORT --data-dir $W/data > $W/out.log 2> $W/err.log &
PID=$!
trap 'kill $PID 2>/dev/null; rm -rf $W' EXIT
sleep 1
S=http://127.0.0.1:$PORT

# the same bytes peers.sh serves (it makes /tmp/peer-data/blob if missing)
SIZE_MB=${SIZE_MB:-256}
mkdir -p /tmp/peer-data
[ -f /tmp/peer-data/blob ] || head -c $((SIZE_MB<<20)) /dev/urandom > /tmp/peer-data/blob
mkdir -p $W/c/R1.0 && cp /tmp/peer-data/blob $W/c/R1.0/blob
tar -C $W/c -cf $W/c.tar R1.0
curl -sf -X PUT -H "Authorization: Bearer $KEY" --data-binary @$W/c.tar $S/v1/components/bench/R1.0/rocky9 >/dev/null

PROJECT_GET_URL=$S/v1/components/bench/R1.0/rocky9 \
PROJECT_CHECK_URL=$S/v1/components/bench/R1.0/rocky9/info \
  bash "$PEERS"

# GET /image (an indexed image) against nginx's small file, same run
if command -v podman >/dev/null; then
  B=$W/bb && mkdir -p $B && cp /bin/busybox $B/
  printf 'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox","--install","-s","/bin"]\n' > $B/Containerfile
  podman build -q --isolation chroot -t localhost/as-bench-busybox:latest $B >/dev/null
  printf 'FROM localhost/as-bench-busybox:latest\nRUN echo bench > /bench.txt\n' > $W/Dockerfile
  curl -sf -H "Authorization: Bearer $KEY" -F dockerfile=@$W/Dockerfile -F component=bench -F branch=main \
       -F arch=rocky9 "$S/v1/images?wait=true" >/dev/null
  # a cache-hit POST /image for an unchanged Dockerfile: p99 over 200 requests
  for i in $(seq 200); do
    curl -s -o /dev/null -w '%{time_total}\n' -H "Authorization: Bearer $KEY" -F dockerfile=@$W/Dockerfile \
         -F component=bench -F branch=main -F arch=rocky9 "$S/image"
  done | sort -g | awk '{a[NR]=$1} END{printf "cache-hit POST /image: p50 %.1f ms, p99 %.1f ms\n", a[int(NR/2)]*1000, a[int(NR*0.99)]*1000}'
  nginx -c "$(cd "$(dirname "$PEERS")" && pwd)/nginx.conf"
  sleep 0.5
  n=$(wrk -t2 -c16 -d5s http://127.0.0.1:18080/comp/small.json | awk '/Requests\/sec/{print $2}')
  p=$(wrk -t2 -c16 -d5s "$S/image?component=bench&branch=main&architecture=rocky9" | awk '/Requests\/sec/{print $2}')
  kill "$(cat /tmp/peer-data/nginx.pid)" 2>/dev/null || true
  echo "GET /image: $p req/s; nginx small file: $n req/s; ratio $(echo "$p/$n" | bc -l | cut -c1-4)x"
fi

# peak RSS while uploading and downloading a large component, on a fresh
# server (the high-water mark must not include the load above)
kill $PID 2>/dev/null; wait $PID 2>/dev/null || true
$BIN --config $W/config.toml serve --listen 127.0.0.1:$PORT --data-dir $W/data-rss > $W/out2.log 2> $W/err2.log &
PID=$!
sleep 1
RSS_GB=${RSS_GB:-1}
mkdir -p $W/big/R2.0
head -c $((RSS_GB<<30)) /dev/urandom > $W/big/R2.0/blob
tar -C $W/big -cf $W/big.tar R2.0 && rm -rf $W/big
t0=$(date +%s.%N)
curl -sf -X PUT -H "Authorization: Bearer $KEY" -T $W/big.tar $S/v1/components/big/R2.0/rocky9 >/dev/null
t1=$(date +%s.%N)
curl -sf -o /dev/null $S/v1/components/big/R2.0/rocky9
t2=$(date +%s.%N)
echo "1 GiB x $RSS_GB: upload+normalise $(echo "$t1-$t0" | bc) s, download $(echo "$t2-$t1" | bc) s"
echo "artifact-store peak RSS: $(awk '/VmHWM/{print $2/1024 " MiB"}' /proc/$PID/status)"
