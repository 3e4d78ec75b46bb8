#!/usr/bin/env bash
# zlib -> pigz built through the service (local executor, release build)
# against the same `git clone && ./configure && make -j$(nproc)` by hand, in
# one run: the medians of ROUNDS rounds and their ratio (goal <= 1.15x).
# Sources: Debian's source packages of zlib and pigz (`apt-get source`
# from deb.debian.org, into a private list dir), or SRC=<dir> holding
# zlib_*.orig.tar.* and pigz_*.orig.tar.*.
#   bash benches/chain.sh            (ROUNDS=3)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
BIN=$PWD/target/release/artifact-store
ROUNDS=${ROUNDS:-3}; KEY=bench-key; PORT=${PORT:-18420}; J=$(nproc)
W=$(mktemp -d /tmp/as-chain.XXXX)
pids=()
trap 'for p in "${pids[@]}"; do kill $p 2>/dev/null; done; rm -rf $W' EXIT
if [ -z "${SRC:-}" ]; then
  SRC=$W/src; mkdir -p $SRC/etc $SRC/lists/partial
  printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' > $SRC/etc/src.sources
  APT=(-o Dir::Etc::sourcelist=/dev/null -o Dir::Etc::sourceparts=$SRC/etc -o Dir::State::Lists=$SRC/lists)
  apt-get "${APT[@]}" update -qq
  (cd $SRC && apt-get "${APT[@]}" source --download-only zlib pigz >/dev/null 2>&1)
fi
repo(){ # name tarball [extra files...]
  mkdir -p $W/repos/$1 && tar -xf $2 -C $W/repos/$1 --strip-components=1
  (cd $W/repos/$1 && git init -q -b main && git add -A && git -c user.name=b -c user.email=b@b commit -qm "$1" && git tag R1.0)
}
repo zlib "$(ls $SRC/zlib_*.orig.tar.* | head -1)"
repo pigz "$(ls $SRC/pigz_*.orig.tar.* | head -1)"
# pigz's recipe: link the zlib the service built (its tree, packed)
PIGZ_MAKE='make CFLAGS="-O3 -Wall -I$Z" LIBS="-lm -lpthread $Z/libz.a"'
cat > $W/repos/pigz/config.yaml <<YAML
repo: pigz
environments: [rocky9]
dependencies:
  - zlib: R1.0
build: Z=\$ADBS_DEP_ZLIB && $PIGZ_MAKE
artifacts: [pigz, unpigz]
YAML
(cd $W/repos/pigz && git add -A && git -c user.name=b -c user.email=b@b commit -qm recipe && git tag -f R1.0 >/dev/null)
med(){ tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
now(){ date +%s.%N; }
SVC=""; HAND=""
for r in $(seq 1 $ROUNDS); do
  # by hand: clone, configure, make; then pigz against it
  H=$W/hand-$r; mkdir -p $H; t0=$(now)
  (cd $H && git clone -q file://$W/repos/zlib zlib && cd zlib && ./configure >/dev/null && make -j$J >/dev/null 2>&1)
  (cd $H && git clone -q file://$W/repos/pigz pigz && cd pigz && Z=$H/zlib && eval "$PIGZ_MAKE -j$J" >/dev/null 2>&1)
  t1=$(now); HAND="$HAND $(echo "$t1 - $t0" | bc -l)"
  test -x $H/pigz/pigz
  # through the service: a fresh store, one request builds both
  printf 'log_requests = false\nmin_free_bytes = 0\n[build]\nsandbox = "bwrap"\nallow_local_urls = true\njobs = %s\n[build.catalog]\nzlib = "file://%s/repos/zlib"\npigz = "file://%s/repos/pigz"\n[[auth.keys]]\nname = "b"\nrole = "admin"\nblake3 = "%s"\n' \
    $J $W $W "$($BIN key hash $KEY)" > $W/svc.toml
  $BIN --config $W/svc.toml serve --listen 127.0.0.1:$PORT --data-dir $W/data-$r > $W/svc-$r.log 2>&1 &
  pid=$!; pids+=($pid)
  for i in $(seq 50); do curl -sf http://127.0.0.1:$PORT/healthz >/dev/null && break; sleep 0.1; done
  t0=$(now)
  out=$(curl -s -X POST -H "Authorization: Bearer $KEY" -H 'content-type: application/json' \
    "http://127.0.0.1:$PORT/v1/builds?wait=true" -d '{"component":"pigz","tag":"R1.0"}')
  t1=$(now)
  echo "$out" | grep -q '"status":"success"' || { echo "the service's build failed: $out" | head -c 3000; exit 1; }
  SVC="$SVC $(echo "$t1 - $t0" | bc -l)"
  kill $pid; wait $pid 2>/dev/null || true
done
h=$(echo $HAND | med); s=$(echo $SVC | med)
printf 'zlib -> pigz, make -j%s, %d rounds: by hand %.2f s (%s), through the service %.2f s (%s): %.2fx\n' \
  $J $ROUNDS "$h" "$HAND" "$s" "$SVC" "$(echo "$s/$h" | bc -l)"
