//! HTTP helpers for the tests: a response read in full, requests with a
//! key, raw HTTP/1.1 over TCP for clients that must misbehave, waiting.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::blocking::RequestBuilder;
use serde_json::Value;

use super::{bearer, client, Server};

/// A response read in full.
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: body is not JSON ({e}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ascii header").to_owned())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub fn send(rb: RequestBuilder) -> Resp {
    let r = rb.send().expect("request");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.bytes().expect("body").to_vec();
    Resp {
        status,
        headers,
        body,
    }
}

pub fn with_key(rb: RequestBuilder, key: Option<&str>) -> RequestBuilder {
    match key {
        Some(k) => rb.header("Authorization", bearer(k)),
        None => rb,
    }
}

pub fn get(s: &Server, path: &str) -> Resp {
    send(client().get(s.url(path)))
}

pub fn get_key(s: &Server, path: &str, key: &str) -> Resp {
    send(
        client()
            .get(s.url(path))
            .header("Authorization", bearer(key)),
    )
}

/// Asserts a JSON error answer with this status and returns it.
pub fn assert_error_answer(r: &Resp, status: u16) -> Value {
    assert_eq!(
        r.status,
        status,
        "expected {status}, got {}: {}",
        r.status,
        r.text()
    );
    let ct = r.header("content-type").unwrap_or_default();
    assert!(ct.starts_with("application/json"), "content-type {ct}");
    let v = r.json();
    assert_eq!(v["status"], "error", "{v}");
    let msg = v["errorMessage"]
        .as_str()
        .expect("errorMessage is a string");
    assert!(!msg.trim().is_empty(), "empty errorMessage: {v}");
    assert!(
        v["code"].as_str().is_some_and(|c| !c.is_empty()),
        "no code: {v}"
    );
    v
}

pub fn data_dir(s: &Server) -> PathBuf {
    s.dir.join("data")
}

/// Every file below `dir` (recursively).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd {
        let e = e.unwrap();
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            out.extend(files_under(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

/// The blobs a server stores: files under `data/blobs`, or the objects of
/// its bucket (as `blobs/<2 hex>/<blake3>`) on S3.
pub fn blob_files(s: &Server) -> Vec<PathBuf> {
    #[cfg(feature = "s3")]
    if let Some(t) = &s.bucket {
        use artifact_store::store::BlobStore;
        let store = artifact_store::store::s3::S3Blobs::open(&t.config("")).expect("the bucket");
        let mut out: Vec<PathBuf> = store
            .list()
            .expect("list the bucket")
            .into_iter()
            .map(|b| {
                let h = b.hash.to_hex();
                PathBuf::from(format!("blobs/{}/{h}", &h[..2]))
            })
            .collect();
        out.sort();
        return out;
    }
    files_under(&data_dir(s).join("blobs"))
}

/// Entries (files or directories) directly in `data/tmp`.
pub fn tmp_entries(dir: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(dir.join("data/tmp")) {
        Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

/// Waits (up to `secs`) for `cond`; returns whether it became true.
pub fn wait_for(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn addr(s: &Server) -> String {
    s.base
        .strip_prefix("http://")
        .expect("http base")
        .to_owned()
}

/// Sends a raw HTTP/1.1 request (which should say `Connection: close`) and
/// returns the status and the body.
pub fn raw_http(s: &Server, request: &[u8]) -> (u16, Vec<u8>) {
    let mut c = TcpStream::connect(addr(s)).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    c.write_all(request).expect("write");
    let mut buf = Vec::new();
    let _ = c.read_to_end(&mut buf);
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP answer: {:?}", String::from_utf8_lossy(&buf)));
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head}"));
    (status, buf[split + 4..].to_vec())
}
