//! Integration tests of the component store: the real binary on a loopback
//! port (see `common`), real HTTP with reqwest (blocking), and raw TCP where
//! a client must misbehave (truncated uploads, crashes mid-upload, paths a
//! URL library would normalise). One file per section.

#[path = "../common/mod.rs"]
mod common;

mod auth;
mod bad_input;
mod checksum;
mod download;
mod durability;
mod listing;
mod original;
mod upload;

pub use std::io::{Read, Write};
pub use std::net::{Shutdown, TcpStream};
pub use std::path::{Path, PathBuf};
pub use std::sync::{Arc, Barrier};
pub use std::time::{Duration, Instant};

pub use common::*;
pub use serde_json::{json, Value};

/// PUT `body` to `/v1/components/{path}` with `key` and extra headers.
pub fn put_with(
    s: &Server,
    path: &str,
    key: Option<&str>,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> Resp {
    let mut rb = with_key(client().put(s.url(&format!("/v1/components/{path}"))), key);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    send(rb.body(body))
}

pub fn put(s: &Server, path: &str, key: Option<&str>, body: Vec<u8>) -> Resp {
    put_with(s, path, key, body, &[])
}

/// Asserts a 201 "created" answer and returns its record.
pub fn assert_created(r: &Resp) -> Value {
    assert_eq!(
        r.status,
        201,
        "expected 201, got {}: {}",
        r.status,
        r.text()
    );
    let v = r.json();
    assert_eq!(v["status"], "created", "{v}");
    assert!(v["component"].is_object(), "{v}");
    v["component"].clone()
}

/// A config with the standard keys, `top` (top-level keys) and `[auth]`.
pub fn config_full(top: &str, anonymous_read: bool) -> String {
    format!(
        "{top}\n[auth]\nanonymous_read = {anonymous_read}\n\
         [[auth.keys]]\nname = \"admin\"\nrole = \"admin\"\nblake3 = \"{}\"\n\
         [[auth.keys]]\nname = \"ci\"\nrole = \"write\"\nblake3 = \"{}\"\n\
         [[auth.keys]]\nname = \"reader\"\nrole = \"read\"\nblake3 = \"{}\"\n",
        hash(ADMIN_KEY),
        hash(WRITE_KEY),
        hash(READ_KEY)
    )
}

/// Stores a small component and returns (record, canonical tar.zst bytes).
pub fn store(s: &Server, component: &str, tag: &str, arch: &str, seed: u64) -> (Value, Vec<u8>) {
    let content = format!("{component} {tag} {arch} {seed}");
    let body = tar_gz(tag, &[("file.txt", content.as_bytes())]);
    let r = put(
        s,
        &format!("{component}/{tag}/{arch}"),
        Some(WRITE_KEY),
        body,
    );
    let rec = assert_created(&r);
    let dl = get(s, &format!("/v1/components/{component}/{tag}/{arch}"));
    assert_eq!(dl.status, 200, "{}", dl.text());
    (rec, dl.body)
}
