#!/usr/bin/env bash
# Builds the static musl binary and checks that it runs as a client in a
# container with no libc, no /lib and no /tmp (FROM scratch + busybox-static),
# against a server on the host. Not part of .ci/run (a cold musl build takes
# ~9 minutes); run it when touching the client or the dependency set.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add x86_64-unknown-linux-musl
command -v musl-gcc >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq musl-tools
# the client needs neither S3 nor PostgreSQL
cargo build --release --target x86_64-unknown-linux-musl --no-default-features --features vendored
cargo build --release
STATIC=target/x86_64-unknown-linux-musl/release/artifact-store
file "$STATIC" | grep -q 'static' || { echo "not static: $(file "$STATIC")"; exit 1; }
W=$(mktemp -d); PORT=18791
cleanup(){ kill "${PID:-}" 2>/dev/null || true; podman rmi -f localhost/as-static-client localhost/as-static-base >/dev/null 2>&1 || true; rm -rf "$W"; }
trap cleanup EXIT
printf 'log_requests = false\n[[auth.keys]]\nname = "t"\nrole = "write"\nblake3 = "%s"\n' "$(target/release/artifact-store key hash t)" > "$W/c.toml"
target/release/artifact-store --config "$W/c.toml" serve --listen 127.0.0.1:$PORT --data-dir "$W/d" >/dev/null 2>&1 &
PID=$!; sleep 1
mkdir -p "$W/t/R1" && echo static-ok > "$W/t/R1/hello" && tar czf "$W/t.tgz" -C "$W/t" R1
curl -sf -X PUT -H "Authorization: Bearer t" --data-binary @"$W/t.tgz" http://127.0.0.1:$PORT/v1/components/static/R1/rocky9 >/dev/null
mkdir -p "$W/base" "$W/img" && cp /bin/busybox "$W/base/" && cp "$STATIC" "$W/img/"
printf 'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox","--install","-s","/bin"]\n' > "$W/base/Containerfile"
podman build -q --isolation chroot -t localhost/as-static-base "$W/base" >/dev/null
printf 'FROM localhost/as-static-base\nCOPY artifact-store /bin/artifact-store\n' > "$W/img/Containerfile"
podman build -q --isolation chroot -t localhost/as-static-client "$W/img" >/dev/null
ctr=$(buildah from --pull=never localhost/as-static-client)
out=$(buildah run --isolation chroot "$ctr" -- sh -c "test ! -e /lib && test ! -e /tmp && mkdir /w && cd /w && \
  artifact-store get static R1 --extract deps --server http://127.0.0.1:$PORT >/dev/null && cat deps/R1/hello")
# and a build script's whole closure: deps fetch, then its env.sh
out2=$(buildah run --isolation chroot "$ctr" -- sh -c "mkdir /v && cd /v && \
  printf 'dependencies:\n  - static: R1\n' > config.yaml && \
  artifact-store deps fetch --arch rocky9 --into deps --server http://127.0.0.1:$PORT >/dev/null && \
  . deps/env.sh && cat \$ADBS_DEP_STATIC/hello")
buildah rm "$ctr" >/dev/null
[ "$out" = static-ok ] && echo "static client OK: get runs without libc, /lib or /tmp" || { echo "static client FAILED: $out"; exit 1; }
[ "$out2" = static-ok ] && echo "static client OK: deps fetch and env.sh work there too" || { echo "static deps fetch FAILED: $out2"; exit 1; }
