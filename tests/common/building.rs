//! What the build tests share (tests/builds.rs, tests/cluster.rs): the
//! config of a server that builds, starting a build, reading what it
//! stored, and the `slow` fixture's processes.

use std::process::Command;

use serde_json::Value;

use super::*;

/// Builds from local URLs in bwrap, plus `extra` (more `[build]` keys,
/// then any tables).
pub fn build_config(extra: &str) -> String {
    config_with_keys(&format!(
        "[build]\nallow_local_urls = true\nsandbox = \"bwrap\"\n{extra}"
    ))
}

/// `POST /v1/builds` (`?wait=true` with `wait`) with the write key, as
/// user `builder`.
pub fn post_build(s: &Server, body: Value, wait: bool) -> (u16, Value) {
    let url = if wait {
        s.url("/v1/builds?wait=true")
    } else {
        s.url("/v1/builds")
    };
    json_of(
        client()
            .post(url)
            .header("Authorization", bearer(WRITE_KEY))
            .header("linux_username", "builder")
            .json(&body)
            .send()
            .expect("post build"),
    )
}

/// The stored tarball of `c` R1.0 (rocky9), unpacked in memory.
pub fn download(s: &Server, c: &str) -> Vec<(String, Vec<u8>)> {
    let r = client()
        .get(s.url(&format!("/v1/components/{c}/R1.0/rocky9")))
        .send()
        .expect("get");
    assert_eq!(r.status(), 200, "{c} should be stored");
    read_tar(&r.bytes().expect("body"), false)
}

/// Tests using the `slow` fixture count its processes: one at a time.
static SLOW: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn slow_lock() -> std::sync::MutexGuard<'static, ()> {
    SLOW.lock().unwrap_or_else(|e| e.into_inner())
}

/// The `slow` fixture's processes still running.
pub fn sleepers() -> usize {
    let out = Command::new("pgrep")
        .args(["-f", "sleep 7201"])
        .output()
        .expect("pgrep");
    String::from_utf8_lossy(&out.stdout).lines().count()
}
