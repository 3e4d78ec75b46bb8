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

# peak RSS while uploading and downloading a large component
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
