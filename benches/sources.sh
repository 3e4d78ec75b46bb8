#!/usr/bin/env bash
# The clone cache: the clone step of a second build of a large repository
# (COMMITS commits, made with git fast-import) at another tag, against a
# cold clone of the same tag (no cache), in one run on a release server.
#   bash benches/sources.sh        (COMMITS=20000, ROUNDS=3)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
BIN=$PWD/target/release/artifact-store
COMMITS=${COMMITS:-20000}; ROUNDS=${ROUNDS:-3}
W=$(mktemp -d /tmp/as-src.XXXX); KEY=bench-key; PORT=${PORT:-18390}; GPORT=$((PORT+1))
pids=()
trap 'for p in "${pids[@]}"; do kill $p 2>/dev/null; done; rm -rf $W' EXIT
mkdir -p $W/repos/big && cd $W/repos/big && git init -q -b main
python3 - "$COMMITS" <<'PY' | git fast-import --quiet
import sys
n = int(sys.argv[1])
for i in range(1, n + 1):
    body = "".join("line %d of file %d at commit %d\n" % (j, i % 50, i) for j in range(20))
    msg = "commit %d\n" % i
    print("commit refs/heads/main")
    print("mark :%d" % i)
    print("committer Bench <bench@example.org> %d +0000" % (1700000000 + i))
    print("data %d" % len(msg)); sys.stdout.write(msg)
    if i > 1:
        print("from :%d" % (i - 1))
    print("M 644 inline src/file%d.txt" % (i % 50))
    print("data %d" % len(body)); sys.stdout.write(body)
    if i == 1:
        cfg = 'build: "ls src | wc -l > count.txt"\nartifacts: [count.txt]\n'
        print("M 644 inline config.yaml")
        print("data %d" % len(cfg)); sys.stdout.write(cfg)
    print()
PY
git tag R1 main~$((ROUNDS + 1)) 2>/dev/null || git tag R1 main~1
for r in $(seq 1 $ROUNDS); do git tag R1-$r main~$((ROUNDS - r)); done
cd - >/dev/null
git daemon --reuseaddr --export-all --base-path=$W/repos --listen=127.0.0.1 --port=$GPORT $W/repos >/dev/null 2>&1 &
pids+=($!)
start(){ # name cache
  printf 'log_requests = false\nmin_free_bytes = 0\n[build]\nsandbox = "bwrap"\n[build.git]\ncache = %s\n[[auth.keys]]\nname = "b"\nrole = "admin"\nblake3 = "%s"\n' \
    "$2" "$($BIN key hash $KEY)" > $W/$1.toml
  $BIN --config $W/$1.toml serve --listen 127.0.0.1:$3 --data-dir $W/$1 > $W/$1.log 2>&1 &
  pids+=($!)
}
start warm true $PORT
start cold false $((PORT+2))
sleep 1
clone_secs(){ # port tag -> seconds of the clone step
  curl -sf -X POST -H "Authorization: Bearer $KEY" -H 'content-type: application/json' \
    "http://127.0.0.1:$1/v1/builds?wait=true" \
    -d "{\"component\":\"big\",\"tag\":\"$2\",\"url\":\"git://127.0.0.1:$GPORT/big\"}" |
  python3 -c 'import json,sys,datetime as d
j=json.load(sys.stdin); jid=j["job"]
import urllib.request
job=json.load(urllib.request.urlopen("http://127.0.0.1:'"$1"'/v1/jobs/"+jid))["job"]
s=[x for x in job["steps"] if x["name"].startswith("clone")][0]
f=lambda t: d.datetime.fromisoformat(t.replace("Z","+00:00")[:26]+"+00:00")
print((f(s["finished"])-f(s["started"])).total_seconds())'
}
first=$(clone_secs $PORT R1)
med(){ tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
WARM=""; COLD=""
for r in $(seq 1 $ROUNDS); do
  WARM="$WARM $(clone_secs $PORT R1-$r)"
  COLD="$COLD $(clone_secs $((PORT+2)) R1-$r)"
done
w=$(echo $WARM | med); c=$(echo $COLD | med)
printf '%d commits: first build (mirror made) %.2f s; another tag: cold clone %.2f s, from the cache %.2f s: %.1fx faster\n' \
  $COMMITS "$first" "$c" "$w" "$(echo "$c/$w" | bc -l)"
