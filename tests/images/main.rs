//! Container images through the real HTTP API: real rootless podman builds
//! (`--isolation chroot`), pushes to a real OCI registry (Debian's
//! `docker-registry`) on a loopback port, pulls back by digest, the content
//! cache, failures, and the original `POST /image` / `GET /image` API.
//!
//! Tests that need podman fail (they do not skip) when it is missing. Each
//! test starts its own registry and server and uses component names of its
//! own, since the local podman storage is shared.

#[path = "../common/mod.rs"]
mod common;
#[path = "../common/registry.rs"]
mod registry;

mod build;
mod dispatch;
mod failures;
mod original;
mod requests;

pub use std::time::{Duration, Instant};

pub use common::*;
pub use registry::*;
pub use serde_json::{json, Value};

pub fn image_config(image_toml: &str) -> String {
    config_with_keys(&format!("[image]\n{image_toml}"))
}

pub fn registry_config(registry: &str) -> String {
    image_config(&format!("registry = \"{registry}\"\ntls_verify = false\n"))
}

/// A Dockerfile on the test busybox image.
pub fn dockerfile(body: &str) -> String {
    format!("FROM {}\n{body}", busybox_image())
}

/// The multipart form of `POST /v1/images`.
pub fn form(
    component: &str,
    branch: &str,
    arch: &str,
    dockerfile: &str,
    context: Option<(&str, &[u8])>,
) -> Multipart {
    let mut m = Multipart::new()
        .text("component", component)
        .text("branch", branch)
        .text("arch", arch)
        .file("dockerfile", "Dockerfile", dockerfile.as_bytes());
    if let Some((name, data)) = context {
        m = m.file("context", name, data);
    }
    m
}

/// POSTs a multipart form to `path` (with its query), with `key` if any;
/// (status, JSON answer, time to the whole answer).
pub fn post_form_with(
    c: &reqwest::blocking::Client,
    s: &Server,
    path: &str,
    m: Multipart,
    key: Option<&str>,
) -> (u16, Value, Duration) {
    let (ct, body) = m.finish();
    let mut rb = c
        .post(s.url(path))
        .header("content-type", ct)
        .header("linux_username", "imager")
        .body(body);
    if let Some(k) = key {
        rb = rb.header("Authorization", bearer(k));
    }
    let t = Instant::now();
    let r = rb.send().unwrap();
    let (status, v) = json_of(r);
    (status, v, t.elapsed())
}

pub fn post_form(s: &Server, path: &str, m: Multipart) -> (u16, Value, Duration) {
    post_form_with(&client(), s, path, m, Some(WRITE_KEY))
}

pub fn get_json(s: &Server, path: &str) -> (u16, Value) {
    json_of(client().get(s.url(path)).send().unwrap())
}

/// A successful `?wait=true` build answer; checks the fields every
/// registry build answer has.
pub fn assert_pushed(v: &Value, registry: &str, repo: &str, arch: &str) {
    assert_eq!(v["status"], "success", "{v}");
    assert_eq!(v["location"], "registry", "{v}");
    let key = v["key"].as_str().unwrap();
    assert_eq!(key.len(), 64, "{v}");
    assert_eq!(v["imageName"], format!("{registry}/{repo}:{arch}"), "{v}");
    assert_eq!(
        v["immutableName"],
        format!("{registry}/{repo}:{arch}-{}", &key[..12]),
        "the immutable tag ends with the first 12 hex of the key: {v}"
    );
    let digest = v["digest"].as_str().unwrap();
    assert!(
        digest.starts_with("sha256:")
            && digest.len() == 71
            && digest[7..].bytes().all(|b| b.is_ascii_hexdigit()),
        "{v}"
    );
    assert_eq!(
        v["pullCommand"],
        format!("podman pull {registry}/{repo}@{digest}"),
        "{v}"
    );
}

pub fn podman_ok(args: &[&str]) {
    let (ok, _, err) = run("podman", args);
    assert!(ok, "podman {args:?}: {err}");
}
