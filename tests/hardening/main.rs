//! Hardening: what a hostile recipe, tarball, repository or client sends
//! cannot harm the store or the host. One test (or more) per item of the
//! hardening issue, each against the real binary over real HTTP, with real
//! git repositories and the real bubblewrap sandbox.

#[path = "../common/mod.rs"]
mod common;
#[path = "../common/repos.rs"]
mod repos;

mod builds;
mod client;
mod review;
mod service;
mod small;
mod tarballs;

pub use std::io::Write;
pub use std::net::TcpStream;
pub use std::path::{Path, PathBuf};
pub use std::process::Command;
pub use std::time::{Duration, Instant};

pub use common::*;
pub use repos::Repos;
pub use serde_json::{json, Value};

pub fn build_config(extra: &str) -> String {
    config_with_keys(&format!(
        "[build]\nallow_local_urls = true\nsandbox = \"bwrap\"\n{extra}"
    ))
}

pub fn put(s: &Server, path: &str, body: Vec<u8>) -> (u16, Value) {
    json_of(
        client()
            .put(s.url(path))
            .header("Authorization", bearer(WRITE_KEY))
            .body(body)
            .send()
            .unwrap(),
    )
}

pub fn build(s: &Server, component: &str, url: &str) -> (u16, Value) {
    json_of(
        client()
            .post(s.url("/v1/builds?wait=true"))
            .header("Authorization", bearer(WRITE_KEY))
            .json(&json!({"component": component, "tag": "R1.0", "arch": "rocky9", "url": url}))
            .send()
            .unwrap(),
    )
}

pub fn tmp_is_empty(s: &Server) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = files_under(&s.dir.join("data/tmp"));
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "left in tmp/: {left:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The stored victim must still download whole after an attack.
pub fn victim_intact(s: &Server, blake3: &str) {
    let r = client()
        .get(s.url("/v1/components/victim/R1/rocky9"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "the victim's blob must still be served");
    let body = r.bytes().unwrap();
    assert_eq!(blake3::hash(&body).to_hex().to_string(), blake3);
}

pub fn store_victim(s: &Server) -> String {
    let (st, v) = put(
        s,
        "/v1/components/victim/R1/rocky9",
        tar_gz("R1", &[("lib/libvictim.so", b"victim bytes")]),
    );
    assert_eq!(st, 201, "{v}");
    v["component"]["blake3"].as_str().unwrap().to_owned()
}
