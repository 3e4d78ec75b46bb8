#!/usr/bin/env bash
# `deps fetch` of a closure against the lab-style loop (one sequential
# `requests` download per dependency, gzip, extracted with tarfile r:gz:
# tests/compat/client.py), in the same run on one release server; and the
# time of resolving a closure of many stored components.
#   bash benches/deps.sh          (N=20 components of SIZE_MB=20, ROUNDS=3, NODES=200)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
BIN=$PWD/target/release/artifact-store
N=${N:-20}; SIZE_MB=${SIZE_MB:-20}; ROUNDS=${ROUNDS:-3}; NODES=${NODES:-200}
W=$(mktemp -d /tmp/as-deps.XXXX); PORT=${PORT:-18290}; KEY=bench-key
printf 'log_requests = false\nmin_free_bytes = 0\nmax_upload_bytes = 4294967296\n[[auth.keys]]\nname = "b"\nrole = "admin"\nblake3 = "%s"\n' \
  "$($BIN key hash $KEY)" > $W/c.toml
$BIN --config $W/c.toml serve --listen 127.0.0.1:$PORT --data-dir $W/data > $W/out.log 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; rm -rf $W' EXIT
sleep 1
S=http://127.0.0.1:$PORT
recipe=$W/config.yaml; echo "dependencies:" > $recipe
for i in $(seq -w 1 $N); do
  mkdir -p $W/src/R1.0/lib
  head -c $((SIZE_MB<<20)) /dev/urandom > $W/src/R1.0/lib/libdep$i.so
  tar -C $W/src -cf $W/d.tar R1.0 && rm -rf $W/src
  curl -sf -X PUT -H "Authorization: Bearer $KEY" --data-binary @$W/d.tar $S/v1/components/dep$i/R1.0/rocky9 >/dev/null
  echo "  - dep$i: R1.0" >> $recipe
done
rm -f $W/d.tar
cat > $W/loop.py <<PY
import sys, time
sys.path.insert(0, "$PWD/tests/compat")
import client
deps = [l.split("-", 1)[1].strip().split(":") for l in open("$recipe") if l.strip().startswith("- ")]
t = time.time()
for name, tag in deps:
    if client.download("$S", name.strip(), tag.strip(), "rocky9", sys.argv[1]) is None:
        sys.exit(1)
print(time.time() - t)
PY
med(){ tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
# warm the service's gzip forms once (the lab loop asks for gzip)
python3 $W/loop.py $W/warm >/dev/null; rm -rf $W/warm
LOOP=""; OURS=""
for r in $(seq $ROUNDS); do
  rm -rf $W/py $W/ours; sync
  LOOP="$LOOP $(python3 $W/loop.py $W/py)"
  t0=$(date +%s.%N)
  (cd $W && $BIN deps fetch --server $S --arch rocky9 --into ours --jobs 4 >/dev/null)
  OURS="$OURS $(echo "$(date +%s.%N) - $t0" | bc)"
done
l=$(echo $LOOP | med); o=$(echo $OURS | med)
printf 'closure of %d x %d MiB: lab loop %.2f s, deps fetch %.2f s: %.2fx faster\n' $N $SIZE_MB "$l" "$o" "$(echo "$l/$o" | bc -l)"
t0=$(date +%s.%N)
(cd $W && $BIN deps fetch --server $S --arch rocky9 --into ours >/dev/null)
printf 'deps fetch again (all cached): %.2f s\n' "$(echo "$(date +%s.%N) - $t0" | bc)"

# resolve: NODES stored components (small), one list of them
for i in $(seq 1 $NODES); do
  mkdir -p $W/s/R1.0 && echo $i > $W/s/R1.0/f && tar -C $W/s -cf $W/s.tar R1.0 && rm -rf $W/s
  curl -sf -X PUT -H "Authorization: Bearer $KEY" --data-binary @$W/s.tar $S/v1/components/node$i/R1.0/rocky9 >/dev/null
done
python3 - "$S" "$NODES" <<'PY'
import json, sys, time, urllib.request
base, n = sys.argv[1], int(sys.argv[2])
body = json.dumps({"components": [{"component": "node%d" % i, "tag": "R1.0"} for i in range(1, n + 1)], "arch": "rocky9"}).encode()
times = []
for _ in range(30):
    req = urllib.request.Request(base + "/v1/resolve", data=body, headers={"Content-Type": "application/json"})
    t = time.perf_counter()
    with urllib.request.urlopen(req) as r:
        a = json.load(r)
    times.append(time.perf_counter() - t)
    assert a["stored"] == n, a["stored"]
times.sort()
print("resolve of a %d-node closure: median %.1f ms, p90 %.1f ms" % (n, times[15] * 1000, times[27] * 1000))
PY
