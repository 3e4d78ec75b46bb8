//! Integration tests of the component store: the real binary on a loopback
//! port (see `common`), real HTTP with reqwest (blocking), and raw TCP where
//! a client must misbehave (truncated uploads, crashes mid-upload, paths a
//! URL library would normalise).

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::*;
use reqwest::blocking::RequestBuilder;
use serde_json::{json, Value};

// ---------------------------------------------------------------- helpers

/// A response read in full.
struct Resp {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: body is not JSON ({e}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ascii header").to_owned())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn send(rb: RequestBuilder) -> Resp {
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

fn with_key(rb: RequestBuilder, key: Option<&str>) -> RequestBuilder {
    match key {
        Some(k) => rb.header("Authorization", bearer(k)),
        None => rb,
    }
}

/// PUT `body` to `/v1/components/{path}` with `key` and extra headers.
fn put_with(
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

fn put(s: &Server, path: &str, key: Option<&str>, body: Vec<u8>) -> Resp {
    put_with(s, path, key, body, &[])
}

fn get(s: &Server, path: &str) -> Resp {
    send(client().get(s.url(path)))
}

fn get_key(s: &Server, path: &str, key: &str) -> Resp {
    send(
        client()
            .get(s.url(path))
            .header("Authorization", bearer(key)),
    )
}

/// Asserts a 201 "created" answer and returns its record.
fn assert_created(r: &Resp) -> Value {
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

/// Asserts a JSON error answer with this status and returns it.
fn assert_error(r: &Resp, status: u16) -> Value {
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

fn hex_of(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// Deterministic pseudo-random bytes (incompressible).
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn zst(bytes: &[u8]) -> Vec<u8> {
    zstd::encode_all(bytes, 3).expect("zstd")
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// A tar with one raw entry whose name (and link name) are written as bytes,
/// bypassing the tar crate's own path checks, so that hostile archives can be
/// built. Preceded by one harmless regular file.
fn hostile_tar(name: &[u8], kind: tar::EntryType, link: Option<&[u8]>, data: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut ok = tar::Header::new_gnu();
    ok.set_size(2);
    ok.set_mode(0o644);
    ok.set_mtime(1_700_000_000);
    b.append_data(&mut ok, "1.0/fine.txt", &b"ok"[..])
        .expect("append");

    let mut h = tar::Header::new_gnu();
    {
        let old = h.as_old_mut();
        old.name = [0; 100];
        old.name[..name.len()].copy_from_slice(name);
        if let Some(l) = link {
            old.linkname = [0; 100];
            old.linkname[..l.len()].copy_from_slice(l);
        }
    }
    h.set_entry_type(kind);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    b.append(&h, data).expect("append raw");
    gz(&b.into_inner().expect("tar"))
}

/// One entry of a tarball, with the header fields the canonical form fixes.
#[derive(Debug)]
struct Entry {
    path: String,
    kind: tar::EntryType,
    uid: u64,
    gid: u64,
    mode: u32,
    username: Option<String>,
    data: Vec<u8>,
}

fn entries(bytes: &[u8], gzip: bool) -> Vec<Entry> {
    let r: Box<dyn Read> = if gzip {
        Box::new(flate2::read::GzDecoder::new(bytes))
    } else {
        Box::new(zstd::stream::read::Decoder::new(bytes).expect("zstd"))
    };
    let mut ar = tar::Archive::new(r);
    let mut out = Vec::new();
    for e in ar.entries().expect("entries") {
        let mut e = e.expect("entry");
        let h = e.header().clone();
        let path = e.path().expect("path").display().to_string();
        let mut data = Vec::new();
        e.read_to_end(&mut data).expect("read");
        out.push(Entry {
            path: path.trim_end_matches('/').to_owned(),
            kind: h.entry_type(),
            uid: h.uid().expect("uid"),
            gid: h.gid().expect("gid"),
            mode: h.mode().expect("mode"),
            username: h
                .username()
                .ok()
                .flatten()
                .filter(|u| !u.is_empty())
                .map(str::to_owned),
            data,
        });
    }
    out
}

/// (path, content) of the regular files in a tarball.
fn files_of(bytes: &[u8], gzip: bool) -> Vec<(String, Vec<u8>)> {
    entries(bytes, gzip)
        .into_iter()
        .filter(|e| e.kind.is_file())
        .map(|e| (e.path, e.data))
        .collect()
}

fn data_dir(s: &Server) -> PathBuf {
    s.dir.join("data")
}

/// Every file below `dir` (recursively).
fn files_under(dir: &Path) -> Vec<PathBuf> {
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

fn blob_files(s: &Server) -> Vec<PathBuf> {
    files_under(&data_dir(s).join("blobs"))
}

/// Entries (files or directories) directly in `data/tmp`.
fn tmp_entries(dir: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(dir.join("data/tmp")) {
        Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

/// Waits (up to `secs`) for `cond`; returns whether it became true.
fn wait_for(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
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

fn addr(s: &Server) -> String {
    s.base
        .strip_prefix("http://")
        .expect("http base")
        .to_owned()
}

/// Sends a raw HTTP/1.1 request (which should say `Connection: close`) and
/// returns the status and the body.
fn raw_http(s: &Server, request: &[u8]) -> (u16, Vec<u8>) {
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

/// A config with the standard keys, `top` (top-level keys) and `[auth]`.
fn config_full(top: &str, anonymous_read: bool) -> String {
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
fn store(s: &Server, component: &str, tag: &str, arch: &str, seed: u64) -> (Value, Vec<u8>) {
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

// ---------------------------------------------------------------- 1. uploads

#[test]
fn put_targz_creates_record_and_canonical_tarball() {
    let s = Server::start();
    let body = tar_gz(
        "R4.39",
        &[
            ("zeta.txt", b"zeta"),
            ("bin/tool", b"#!/bin/sh\necho hi\n"),
            ("alpha.txt", b"alpha"),
            ("lib/x/a.txt", b"aaa"),
        ],
    );
    let r = put_with(
        &s,
        "asyn/R4.39/rocky9",
        Some(WRITE_KEY),
        body,
        &[("linux_username", "jdoe"), ("github_username", "jdoe-gh")],
    );
    let rec = assert_created(&r);
    assert_eq!(rec["component"], "asyn");
    assert_eq!(rec["tag"], "R4.39");
    assert_eq!(rec["arch"], "rocky9");
    assert_eq!(rec["uploaded_by"]["linux_username"], "jdoe");
    assert_eq!(rec["uploaded_by"]["github_username"], "jdoe-gh");
    assert_eq!(rec["path"], "/v1/components/asyn/R4.39/rocky9");
    let b3 = rec["blake3"].as_str().expect("blake3").to_owned();
    assert_eq!(b3.len(), 64);
    assert!(b3
        .chars()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    assert_eq!(
        rec["download_url"],
        s.url("/v1/components/asyn/R4.39/rocky9")
    );
    assert_eq!(rec["blob_url"], s.url(&format!("/v1/blobs/{b3}")));
    assert_eq!(
        rec["info_url"],
        s.url("/v1/components/asyn/R4.39/rocky9/info")
    );
    let created = rec["created"].as_str().expect("created");
    chrono::DateTime::parse_from_rfc3339(created).expect("created is RFC 3339");

    let dl = get(&s, "/v1/components/asyn/R4.39/rocky9");
    assert_eq!(dl.status, 200);
    assert_eq!(&dl.body[..4], &[0x28, 0xb5, 0x2f, 0xfd], "zstd magic");
    assert_eq!(hex_of(&dl.body), b3, "blake3 of the download");
    assert_eq!(rec["size"].as_u64(), Some(dl.body.len() as u64));

    let es = entries(&dl.body, false);
    let paths: Vec<&str> = es.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "R4.39",
            "R4.39/alpha.txt",
            "R4.39/bin",
            "R4.39/bin/tool",
            "R4.39/lib",
            "R4.39/lib/x",
            "R4.39/lib/x/a.txt",
            "R4.39/zeta.txt"
        ]
    );
    assert!(es[0].kind.is_dir());
    for e in &es {
        assert_eq!((e.uid, e.gid), (0, 0), "{e:?}");
        assert_eq!(e.username, None, "{e:?}");
        assert_eq!(e.mode & !0o777, 0, "permission bits only: {e:?}");
    }
    let files = files_of(&dl.body, false);
    assert!(files.contains(&("R4.39/bin/tool".into(), b"#!/bin/sh\necho hi\n".to_vec())));
    assert!(files.contains(&("R4.39/lib/x/a.txt".into(), b"aaa".to_vec())));

    // the upload's temp file is gone
    assert!(
        wait_for(5, || tmp_entries(&s.dir).is_empty()),
        "left in data/tmp: {:?}",
        tmp_entries(&s.dir)
    );
}

#[test]
fn put_plain_tar_and_tar_zst_with_x_adbs_identity() {
    let s = Server::start();

    // plain tar without a top-level directory: put under <tag>/
    let body = plain_tar("", &[("b.txt", b"bee"), ("a.txt", b"ay")]);
    let r = put_with(
        &s,
        "plain/1.0/rocky9",
        Some(WRITE_KEY),
        body,
        &[
            ("X-adbs-linux-user", "alice"),
            ("X-adbs-github-user", "alice-gh"),
        ],
    );
    let rec = assert_created(&r);
    assert_eq!(rec["uploaded_by"]["linux_username"], "alice");
    assert_eq!(rec["uploaded_by"]["github_username"], "alice-gh");
    let dl = get(&s, "/v1/components/plain/1.0/rocky9");
    assert_eq!(dl.status, 200);
    assert_eq!(hex_of(&dl.body), rec["blake3"].as_str().unwrap());
    let paths: Vec<String> = entries(&dl.body, false)
        .into_iter()
        .map(|e| e.path)
        .collect();
    assert_eq!(paths, ["1.0", "1.0/a.txt", "1.0/b.txt"]);
    assert_eq!(
        files_of(&dl.body, false),
        [
            ("1.0/a.txt".to_owned(), b"ay".to_vec()),
            ("1.0/b.txt".to_owned(), b"bee".to_vec())
        ]
    );

    // tar.zst whose top directory is not the tag: put under <tag>/ too
    let body = zst(&plain_tar("other", &[("c.txt", b"see")]));
    let r = put(&s, "zsty/2.0/rocky9", Some(WRITE_KEY), body);
    let rec = assert_created(&r);
    assert_eq!(rec["uploaded_by"], json!({}), "no identity headers sent");
    let dl = get(&s, "/v1/components/zsty/2.0/rocky9");
    assert_eq!(dl.status, 200);
    let paths: Vec<String> = entries(&dl.body, false)
        .into_iter()
        .map(|e| e.path)
        .collect();
    assert_eq!(paths, ["2.0", "2.0/other", "2.0/other/c.txt"]);

    // tar.zst whose only top directory is the tag: kept as is (no 2.0/2.0/)
    let body = zst(&plain_tar("2.0", &[("d.txt", b"dee")]));
    let rec = assert_created(&put(&s, "zsty2/2.0/rocky9", Some(WRITE_KEY), body));
    let dl = get(&s, "/v1/components/zsty2/2.0/rocky9");
    assert_eq!(hex_of(&dl.body), rec["blake3"].as_str().unwrap());
    assert_eq!(
        files_of(&dl.body, false),
        [("2.0/d.txt".to_owned(), b"dee".to_vec())]
    );
}

#[test]
fn reupload_of_the_same_content_is_unchanged() {
    let s = Server::start();
    let v1 = tar_gz("1.0", &[("a.txt", b"version one"), ("sub/b.txt", b"b")]);
    let rec = assert_created(&put_with(
        &s,
        "same/1.0/rocky9",
        Some(WRITE_KEY),
        v1.clone(),
        &[("linux_username", "first")],
    ));
    let original = get(&s, "/v1/components/same/1.0/rocky9").body;

    // A client re-uploads the same tarball later (a rebuild, a retry): the
    // second upload is on purpose in another second than the first.
    std::thread::sleep(Duration::from_millis(1100));
    let r = put_with(
        &s,
        "same/1.0/rocky9",
        Some(WRITE_KEY),
        v1,
        &[("linux_username", "second")],
    );
    assert_eq!(r.status, 200, "same content again: {}", r.text());
    let v = r.json();
    assert_eq!(v["status"], "unchanged");
    assert_eq!(v["component"]["blake3"], rec["blake3"]);
    assert_eq!(v["component"]["created"], rec["created"], "the kept record");
    assert_eq!(v["component"]["uploaded_by"]["linux_username"], "first");
    assert_eq!(get(&s, "/v1/components/same/1.0/rocky9").body, original);
    assert_eq!(blob_files(&s).len(), 1, "{:?}", blob_files(&s));
}

#[test]
fn other_content_for_a_tag_conflicts_and_only_admins_overwrite() {
    let s = Server::start();
    let v1 = tar_gz("1.0", &[("a.txt", b"version one")]);
    let v2 = tar_gz("1.0", &[("a.txt", b"version two")]);
    let rec = assert_created(&put(&s, "imm/1.0/rocky9", Some(WRITE_KEY), v1));
    let original = get(&s, "/v1/components/imm/1.0/rocky9").body;

    // other content for the same tag: 409, stored content unchanged
    let r = put(&s, "imm/1.0/rocky9", Some(WRITE_KEY), v2.clone());
    let e = assert_error(&r, 409);
    assert_eq!(e["code"], "conflict");
    assert_eq!(get(&s, "/v1/components/imm/1.0/rocky9").body, original);
    let info = get(&s, "/v1/components/imm/1.0/rocky9/info").json();
    assert_eq!(info["component"]["blake3"], rec["blake3"]);

    // overwrite needs the admin role
    let r = put(
        &s,
        "imm/1.0/rocky9?overwrite=true",
        Some(WRITE_KEY),
        v2.clone(),
    );
    assert_error(&r, 403);
    assert_eq!(get(&s, "/v1/components/imm/1.0/rocky9").body, original);

    let r = put(&s, "imm/1.0/rocky9?overwrite=true", Some(ADMIN_KEY), v2);
    let rec2 = assert_created(&r);
    assert_ne!(rec2["blake3"], rec["blake3"]);
    let now = get(&s, "/v1/components/imm/1.0/rocky9");
    assert_eq!(hex_of(&now.body), rec2["blake3"].as_str().unwrap());
    assert_eq!(
        files_of(&now.body, false),
        [("1.0/a.txt".to_owned(), b"version two".to_vec())]
    );
    let info = get(&s, "/v1/components/imm/1.0/rocky9/info").json();
    assert_eq!(info["component"]["blake3"], rec2["blake3"]);

    // overwrite with the content already stored: unchanged
    let r = put(
        &s,
        "imm/1.0/rocky9?overwrite=true",
        Some(ADMIN_KEY),
        now.body,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["status"], "unchanged");
}

#[test]
fn identical_content_under_two_keys_is_stored_once() {
    let s = Server::start();
    let body = tar_gz("3.1", &[("x.txt", b"shared"), ("y/z.txt", b"zzz")]);
    let a = assert_created(&put(&s, "one/3.1/rocky9", Some(WRITE_KEY), body.clone()));
    // uploaded later, as a second build of the same content would be
    std::thread::sleep(Duration::from_millis(1100));
    let b = assert_created(&put(&s, "two/3.1/rocky9", Some(WRITE_KEY), body));
    assert_eq!(a["blake3"], b["blake3"]);
    let blobs = blob_files(&s);
    assert_eq!(blobs.len(), 1, "blobs: {blobs:?}");
    assert_eq!(
        blobs[0].file_name().unwrap().to_str().unwrap(),
        a["blake3"].as_str().unwrap()
    );
}

// ---------------------------------------------------------------- 2. arch

#[test]
fn architecture_is_case_insensitive() {
    let s = Server::start();
    let body = tar_gz("1.0", &[("f", b"case")]);
    let rec = assert_created(&put(&s, "casey/1.0/ROCKY9", Some(WRITE_KEY), body.clone()));
    assert_eq!(rec["arch"], "rocky9");
    assert_eq!(rec["path"], "/v1/components/casey/1.0/rocky9");
    let dl = get(&s, "/v1/components/casey/1.0/rocky9");
    assert_eq!(dl.status, 200);
    assert_eq!(hex_of(&dl.body), rec["blake3"].as_str().unwrap());
    assert_eq!(get(&s, "/v1/components/casey/1.0/Rocky9").body, dl.body);
    let info = get(&s, "/v1/components/casey/1.0/rOcKy9/info").json();
    assert_eq!(info["component"]["arch"], "rocky9");
    // the same key, whatever its case: 200 unchanged, not a second entry
    let r = put(&s, "casey/1.0/rocky9", Some(WRITE_KEY), dl.body.clone());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["status"], "unchanged");
    let v = get(&s, "/v1/components/casey").json();
    assert_eq!(v["versions"].as_array().unwrap().len(), 1, "{v}");
}

// ---------------------------------------------------------------- 3. downloads

#[test]
fn download_headers_head_range_and_etag() {
    let s = Server::start();
    let (rec, full) = store(&s, "dl", "1.0", "rocky9", 1);
    let b3 = rec["blake3"].as_str().unwrap().to_owned();
    let url = "/v1/components/dl/1.0/rocky9";

    let r = get(&s, url);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/zstd")
    );
    let cd = r
        .header("content-disposition")
        .expect("content-disposition");
    assert!(cd.starts_with("attachment"), "{cd}");
    assert!(cd.contains("dl-1.0-rocky9.tar.zst"), "{cd}");
    assert_eq!(r.header("etag"), Some(format!("\"{b3}\"")));
    assert_eq!(r.header("content-length"), Some(full.len().to_string()));
    assert_eq!(r.body, full);

    // HEAD: the same headers, no body
    let h = send(client().head(s.url(url)));
    assert_eq!(h.status, 200);
    assert!(h.body.is_empty());
    assert_eq!(h.header("etag"), Some(format!("\"{b3}\"")));
    assert_eq!(h.header("content-length"), Some(full.len().to_string()));
    assert_eq!(
        h.header("content-type").as_deref(),
        Some("application/zstd")
    );

    // a range
    let r = send(client().get(s.url(url)).header("Range", "bytes=0-9"));
    assert_eq!(r.status, 206);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 0-9/{}", full.len()))
    );
    assert_eq!(r.header("content-length").as_deref(), Some("10"));
    assert_eq!(r.body, &full[..10]);

    // a suffix range
    let r = send(client().get(s.url(url)).header("Range", "bytes=-5"));
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &full[full.len() - 5..]);

    // unsatisfiable
    let r = send(
        client()
            .get(s.url(url))
            .header("Range", format!("bytes={}-", full.len() + 10)),
    );
    assert_error(&r, 416);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes */{}", full.len()))
    );

    // conditional
    let r = send(
        client()
            .get(s.url(url))
            .header("If-None-Match", format!("\"{b3}\"")),
    );
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    let r = send(
        client()
            .get(s.url(url))
            .header("If-None-Match", format!("\"{}\"", "0".repeat(64))),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body, full);

    // unknown format
    assert_error(&get(&s, &format!("{url}?format=rar")), 400);
    // unknown component
    assert_error(&get(&s, "/v1/components/dl/9.9/rocky9"), 404);
    let h = send(client().head(s.url("/v1/components/dl/9.9/rocky9")));
    assert_eq!(h.status, 404);
}

#[test]
fn download_as_gzip_has_the_same_files() {
    let s = Server::start();
    let body = tar_gz("2.5", &[("a.txt", b"A"), ("d/b.bin", &noise(7, 5000))]);
    let rec = assert_created(&put(&s, "gzc/2.5/rocky9", Some(WRITE_KEY), body));
    let zstd_dl = get(&s, "/v1/components/gzc/2.5/rocky9");
    let r = get(&s, "/v1/components/gzc/2.5/rocky9?format=tar.gz");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/gzip")
    );
    assert!(r
        .header("content-disposition")
        .unwrap_or_default()
        .contains("gzc-2.5-rocky9.tar.gz"));
    assert_eq!(&r.body[..2], &[0x1f, 0x8b], "gzip magic");
    assert_eq!(
        r.header("etag"),
        Some(format!("\"{}\"", hex_of(&r.body))),
        "the etag of the gzip form is its own blake3"
    );
    assert_ne!(hex_of(&r.body), rec["blake3"].as_str().unwrap());
    assert_eq!(files_of(&r.body, true), files_of(&zstd_dl.body, false));
    let paths: Vec<String> = entries(&r.body, true).into_iter().map(|e| e.path).collect();
    let zpaths: Vec<String> = entries(&zstd_dl.body, false)
        .into_iter()
        .map(|e| e.path)
        .collect();
    assert_eq!(paths, zpaths);
    // made once, then served the same
    let again = get(&s, "/v1/components/gzc/2.5/rocky9?format=tar.gz");
    assert_eq!(again.body, r.body);
    assert_eq!(again.header("etag"), r.header("etag"));
}

#[test]
fn info_and_blob_routes() {
    let s = Server::start();
    let (rec, full) = store(&s, "inf", "0.1", "rhel9", 3);
    let b3 = rec["blake3"].as_str().unwrap().to_owned();

    let r = get(&s, "/v1/components/inf/0.1/rhel9/info");
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["status"], "found");
    let c = &v["component"];
    assert_eq!(c["component"], "inf");
    assert_eq!(c["tag"], "0.1");
    assert_eq!(c["arch"], "rhel9");
    assert_eq!(c["blake3"], b3.as_str());
    assert_eq!(c["size"].as_u64(), Some(full.len() as u64));
    assert_eq!(c["created"], rec["created"]);
    assert_eq!(c["path"], "/v1/components/inf/0.1/rhel9");
    assert_error(&get(&s, "/v1/components/inf/0.2/rhel9/info"), 404);

    let r = get(&s, &format!("/v1/blobs/{b3}"));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, full);
    let cc = r.header("cache-control").unwrap_or_default();
    assert!(cc.contains("immutable"), "cache-control: {cc}");
    assert_eq!(r.header("etag"), Some(format!("\"{b3}\"")));
    // upper-case hex names the same blob
    let r = get(&s, &format!("/v1/blobs/{}", b3.to_ascii_uppercase()));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, full);
    // HEAD
    let h = send(client().head(s.url(&format!("/v1/blobs/{b3}"))));
    assert_eq!(h.status, 200);
    assert!(h.body.is_empty());
    assert_eq!(h.header("content-length"), Some(full.len().to_string()));

    assert_error(&get(&s, "/v1/blobs/not-a-hash"), 400);
    assert_error(&get(&s, &format!("/v1/blobs/{}", "g".repeat(64))), 400);
    assert_error(&get(&s, &format!("/v1/blobs/{}", "ab".repeat(31))), 400);
    let e = assert_error(&get(&s, &format!("/v1/blobs/{}", hex_of(b"nothing"))), 404);
    assert_eq!(e["code"], "blob_not_found");
}

// ---------------------------------------------------------------- 4. listing

#[test]
fn listing_paging_versions_and_missing() {
    let s = Server::start();
    let keys = [
        ("alpha", "1.0", "rocky9"),
        ("alpha", "2.0", "rocky9"),
        ("alpha", "1.0", "rhel9"),
        ("alpine", "1", "rocky9"),
        ("beta", "1", "rocky9"),
    ];
    for (i, (c, t, a)) in keys.iter().enumerate() {
        store(&s, c, t, a, i as u64);
    }
    let paths = |v: &Value| -> Vec<String> {
        v["components"]
            .as_array()
            .expect("components")
            .iter()
            .map(|r| {
                format!(
                    "{}/{}/{}",
                    r["component"].as_str().unwrap(),
                    r["tag"].as_str().unwrap(),
                    r["arch"].as_str().unwrap()
                )
            })
            .collect()
    };

    // everything
    let v = get(&s, "/v1/components").json();
    assert_eq!(v["status"], "ok");
    assert_eq!(
        paths(&v),
        [
            "alpha/1.0/rhel9",
            "alpha/1.0/rocky9",
            "alpha/2.0/rocky9",
            "alpine/1/rocky9",
            "beta/1/rocky9"
        ]
    );
    assert!(v["next"].is_null(), "{v}");
    assert!(v["components"][0]["blake3"].is_string());

    // paged by prefix
    let v = get(&s, "/v1/components?prefix=al&limit=2").json();
    assert_eq!(paths(&v), ["alpha/1.0/rhel9", "alpha/1.0/rocky9"]);
    let next = v["next"].as_str().expect("next").to_owned();
    assert_eq!(next, "alpha/1.0/rocky9");
    let v = get(
        &s,
        &format!("/v1/components?prefix=al&limit=2&after={next}"),
    )
    .json();
    assert_eq!(paths(&v), ["alpha/2.0/rocky9", "alpine/1/rocky9"]);
    let mut seen = paths(&v).len() + 2;
    let mut next = v["next"].clone();
    while let Some(n) = next.as_str() {
        let v = get(&s, &format!("/v1/components?prefix=al&limit=2&after={n}")).json();
        for p in paths(&v) {
            assert!(p.starts_with("al"), "{p}");
        }
        seen += paths(&v).len();
        next = v["next"].clone();
    }
    assert_eq!(seen, 4, "every 'al' component exactly once");

    let v = get(&s, "/v1/components?prefix=beta").json();
    assert_eq!(paths(&v), ["beta/1/rocky9"]);
    let v = get(&s, "/v1/components?prefix=zzz").json();
    assert_eq!(paths(&v), Vec::<String>::new());
    assert_error(&get(&s, "/v1/components?after=only-two/parts"), 400);
    assert_error(&get(&s, "/v1/components?limit=lots"), 400);

    // one component
    let r = get(&s, "/v1/components/alpha");
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["component"], "alpha");
    let mut vs: Vec<String> = v["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{}/{}",
                r["tag"].as_str().unwrap(),
                r["arch"].as_str().unwrap()
            )
        })
        .collect();
    vs.sort();
    assert_eq!(vs, ["1.0/rhel9", "1.0/rocky9", "2.0/rocky9"]);
    // "alp" is a prefix of alpha and alpine, but not a component
    assert_error(&get(&s, "/v1/components/alp"), 404);
    assert_error(&get(&s, "/v1/components/nothere"), 404);

    // missing: a bare list
    let r = send(client().post(s.url("/v1/components/missing")).json(&json!([
        {"component": "alpha", "tag": "1.0", "arch": "rocky9"},
        {"component": "zzz", "tag": "1", "arch": "rocky9"},
        {"component": "alpha", "tag": "1.0", "arch": "centos7"}
    ])));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["checked"], 3);
    assert_eq!(
        v["missing"],
        json!([
            {"component": "zzz", "tag": "1", "arch": "rocky9"},
            {"component": "alpha", "tag": "1.0", "arch": "centos7"}
        ])
    );
    // wrapped, arch optional (default rocky9), "architecture" alias, any case
    let r = send(client().post(s.url("/v1/components/missing")).json(&json!({
        "components": [
            {"component": "alpha", "tag": "2.0"},
            {"component": "alpha", "tag": "1.0", "architecture": "RHEL9"},
            {"component": "alpha", "tag": "3.0"},
            {"component": "beta", "tag": "1", "arch": "null"}
        ]
    })));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["checked"], 4);
    assert_eq!(
        v["missing"],
        json!([{"component": "alpha", "tag": "3.0", "arch": "rocky9"}])
    );
    // nothing missing
    let v = send(
        client()
            .post(s.url("/v1/components/missing"))
            .json(&json!([{"component": "beta", "tag": "1"}])),
    )
    .json();
    assert_eq!(v["missing"], json!([]));
    // bad input
    assert_error(
        &send(
            client()
                .post(s.url("/v1/components/missing"))
                .json(&json!([{"component": "a b", "tag": "1"}])),
        ),
        400,
    );
    assert_error(
        &send(
            client()
                .post(s.url("/v1/components/missing"))
                .header("content-type", "application/json")
                .body("{not json"),
        ),
        400,
    );
}

// ---------------------------------------------------------------- 5. checksums

#[test]
fn checksum_header_checks_the_body_and_deploys_stored_blobs() {
    let s = Server::start();
    let body = tar_gz("5.0", &[("lib.so", &noise(5, 3000))]);

    // matching the body as sent
    let rec = assert_created(&put_with(
        &s,
        "ck/5.0/rocky9",
        Some(WRITE_KEY),
        body.clone(),
        &[("X-Checksum-Blake3", &hex_of(&body))],
    ));
    let b3 = rec["blake3"].as_str().unwrap().to_owned();
    let canonical = get(&s, "/v1/components/ck/5.0/rocky9").body;

    // mismatch: 400 and nothing stored
    let other = tar_gz("5.0", &[("lib.so", b"different")]);
    let e = assert_error(
        &put_with(
            &s,
            "ck/5.0/rhel8",
            Some(WRITE_KEY),
            other.clone(),
            &[("X-Checksum-Blake3", &hex_of(&body))],
        ),
        400,
    );
    assert_eq!(e["code"], "checksum_mismatch");
    assert_error(&get(&s, "/v1/components/ck/5.0/rhel8"), 404);
    assert_eq!(blob_files(&s).len(), 1, "nothing new stored");

    // not hex
    assert_error(
        &put_with(
            &s,
            "ck/5.0/rhel8",
            Some(WRITE_KEY),
            other.clone(),
            &[("X-Checksum-Blake3", "xyz")],
        ),
        400,
    );
    assert_error(
        &put_with(
            &s,
            "ck/5.0/rhel8",
            Some(WRITE_KEY),
            other,
            &[("X-Checksum-Blake3", &"z".repeat(64))],
        ),
        400,
    );
    assert_error(&get(&s, "/v1/components/ck/5.0/rhel8"), 404);

    // checksum deploy: no body, the blob is stored (same tag, another arch)
    let r = put_with(
        &s,
        "ck/5.0/rhel9",
        Some(WRITE_KEY),
        Vec::new(),
        &[("X-Checksum-Blake3", &b3), ("linux_username", "deployer")],
    );
    let rec9 = assert_created(&r);
    assert_eq!(rec9["blake3"], b3.as_str());
    assert_eq!(rec9["arch"], "rhel9");
    assert_eq!(rec9["size"], rec["size"]);
    assert_eq!(rec9["uploaded_by"]["linux_username"], "deployer");
    let dl = get(&s, "/v1/components/ck/5.0/rhel9");
    assert_eq!(dl.status, 200);
    assert_eq!(dl.body, canonical);
    // again: unchanged
    let r = put_with(
        &s,
        "ck/5.0/rhel9",
        Some(WRITE_KEY),
        Vec::new(),
        &[("X-Checksum-Blake3", &b3)],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["status"], "unchanged");

    // the canonical tar.zst with its own checksum, to a third arch
    let rec7 = assert_created(&put_with(
        &s,
        "ck/5.0/centos7",
        Some(WRITE_KEY),
        canonical.clone(),
        &[("X-Checksum-Blake3", &b3)],
    ));
    assert_eq!(rec7["blake3"], b3.as_str());
    assert_eq!(blob_files(&s).len(), 1, "still one blob");

    // no body, blob not stored: 404
    let e = assert_error(
        &put_with(
            &s,
            "ck/5.0/rhel8",
            Some(WRITE_KEY),
            Vec::new(),
            &[("X-Checksum-Blake3", &hex_of(b"never stored"))],
        ),
        404,
    );
    assert_eq!(e["code"], "blob_not_found");
    assert_error(&get(&s, "/v1/components/ck/5.0/rhel8"), 404);

    // no body, stored blob of another tag (its top directory is 5.0/): refused
    let r = put_with(
        &s,
        "ck/6.0/rocky9",
        Some(WRITE_KEY),
        Vec::new(),
        &[("X-Checksum-Blake3", &b3)],
    );
    assert!(
        r.status == 400 || r.status == 409,
        "a 5.0/ blob under tag 6.0: {} {}",
        r.status,
        r.text()
    );
    assert_error(&r, r.status);
    assert_error(&get(&s, "/v1/components/ck/6.0/rocky9"), 404);

    // no body and no header: 400
    assert_error(&put(&s, "ck/5.0/rhel8", Some(WRITE_KEY), Vec::new()), 400);
    assert_error(&get(&s, "/v1/components/ck/5.0/rhel8"), 404);
}

// ---------------------------------------------------------------- 6. auth

#[test]
fn writes_need_a_key_and_role() {
    let s = Server::start();
    let body = tar_gz("1.0", &[("f", b"auth")]);

    let r = put(&s, "au/1.0/rocky9", None, body.clone());
    let e = assert_error(&r, 401);
    assert_eq!(e["code"], "unauthorized");
    assert_eq!(r.header("www-authenticate").as_deref(), Some("Bearer"));

    let e = assert_error(&put(&s, "au/1.0/rocky9", Some(READ_KEY), body.clone()), 403);
    assert_eq!(e["code"], "forbidden");
    assert_error(
        &put(&s, "au/1.0/rocky9", Some("not-a-key"), body.clone()),
        401,
    );
    assert_error(&get(&s, "/v1/components/au/1.0/rocky9"), 404);
    // "Bearer" is case-insensitive; other schemes are not keys
    let r = send(
        client()
            .put(s.url("/v1/components/au/1.0/rocky9"))
            .header("Authorization", format!("Basic {WRITE_KEY}"))
            .body(body.clone()),
    );
    assert_error(&r, 401);

    let (rec, full) = store(&s, "au", "1.0", "rocky9", 0);

    // anonymous reads
    let r = get(&s, "/v1/components/au/1.0/rocky9");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, full);
    assert_eq!(get(&s, "/v1/components/au/1.0/rocky9/info").status, 200);
    assert_eq!(get(&s, "/v1/components?prefix=au").status, 200);
    // keyed reads
    for k in [READ_KEY, WRITE_KEY, ADMIN_KEY] {
        let r = get_key(&s, "/v1/components/au/1.0/rocky9", k);
        assert_eq!(r.status, 200, "{k}");
        assert_eq!(r.body, full);
    }
    // a wrong key is refused even for reads
    for path in [
        "/v1/components/au/1.0/rocky9".to_owned(),
        "/v1/components/au/1.0/rocky9/info".to_owned(),
        "/v1/components".to_owned(),
        "/v1/components/au".to_owned(),
        format!("/v1/blobs/{}", rec["blake3"].as_str().unwrap()),
        "/component?component=au&tag=1.0".to_owned(),
    ] {
        let e = assert_error(&get_key(&s, &path, "test-wrong-key"), 401);
        assert_eq!(e["code"], "unauthorized", "{path}");
    }
    assert_error(
        &send(
            client()
                .post(s.url("/v1/components/missing"))
                .header("Authorization", bearer("test-wrong-key"))
                .json(&json!([])),
        ),
        401,
    );

    // delete: admin only
    let del = |key: Option<&str>| {
        send(with_key(
            client().delete(s.url("/v1/components/au/1.0/rocky9")),
            key,
        ))
    };
    assert_error(&del(None), 401);
    assert_error(&del(Some(READ_KEY)), 403);
    assert_error(&del(Some(WRITE_KEY)), 403);
    assert_eq!(get(&s, "/v1/components/au/1.0/rocky9").status, 200);
    let r = del(Some(ADMIN_KEY));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["status"], "deleted");
    assert_eq!(v["component"]["blake3"], rec["blake3"]);
    assert_error(&get(&s, "/v1/components/au/1.0/rocky9"), 404);
    assert_error(&del(Some(ADMIN_KEY)), 404);
    // the blob stays until garbage collection
    let r = get(
        &s,
        &format!("/v1/blobs/{}", rec["blake3"].as_str().unwrap()),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body, full);
}

#[test]
fn anonymous_read_can_be_disabled() {
    let s = Server::start_with(&config_full("max_upload_bytes = 67108864", false));
    let body = tar_gz("1.0", &[("f", b"private")]);
    let rec = assert_created(&put(&s, "priv/1.0/rocky9", Some(WRITE_KEY), body));
    let r = get_key(&s, "/v1/components/priv/1.0/rocky9", READ_KEY);
    assert_eq!(r.status, 200);
    assert_eq!(hex_of(&r.body), rec["blake3"].as_str().unwrap());
    for path in [
        "/v1/components/priv/1.0/rocky9",
        "/v1/components/priv/1.0/rocky9/info",
        "/v1/components",
        "/v1/components/priv",
        "/component?component=priv&tag=1.0",
    ] {
        let e = assert_error(&get(&s, path), 401);
        assert_eq!(e["code"], "unauthorized", "{path}");
        let r = get_key(&s, path, READ_KEY);
        assert_eq!(r.status, 200, "{path} with the read key: {}", r.text());
    }
    assert_error(
        &send(
            client()
                .post(s.url("/v1/components/missing"))
                .json(&json!([])),
        ),
        401,
    );
    // health checks stay open
    assert_eq!(get(&s, "/healthz").status, 200);
}

fn admin_key_in(banner: &[String]) -> Option<String> {
    banner
        .iter()
        .find_map(|l| l.split_once("admin key:").map(|(_, k)| k.trim().to_owned()))
}

#[test]
fn first_start_without_keys_generates_an_admin_key_once() {
    let cfg = "max_upload_bytes = 67108864\n";
    let mut s = Server::start_with(cfg);
    let key = admin_key_in(&s.banner)
        .unwrap_or_else(|| panic!("no admin key in the banner: {:?}", s.banner));
    assert!(key.starts_with("as_"), "{key}");
    assert_eq!(key.len(), 3 + 64, "{key}");
    assert!(key[3..].chars().all(|c| c.is_ascii_hexdigit()), "{key}");
    // only its hash is kept on disk
    for f in files_under(&data_dir(&s)) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !bytes.windows(key.len()).any(|w| w == key.as_bytes()),
            "the key is stored in clear in {}",
            f.display()
        );
    }

    let body = tar_gz("1.0", &[("f", b"boot")]);
    assert_error(&put(&s, "boot/1.0/rocky9", None, body.clone()), 401);
    assert_created(&put(&s, "boot/1.0/rocky9", Some(&key), body.clone()));
    let r = send(
        client()
            .delete(s.url("/v1/components/boot/1.0/rocky9"))
            .header("Authorization", bearer(&key)),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["status"], "deleted");
    assert_error(&get(&s, "/v1/components/boot/1.0/rocky9"), 404);
    assert_error(
        &put(&s, "boot/1.0/rocky9", Some("as_wrong"), body.clone()),
        401,
    );

    // restart on the same data: no new key, the old one still works
    let tmp = s.keep_dir().expect("temp dir");
    s.kill();
    let mut s2 = Server::start_in(tmp.path(), cfg);
    assert_eq!(
        admin_key_in(&s2.banner),
        None,
        "a second key was printed: {:?}",
        s2.banner
    );
    assert!(
        !s2.banner.iter().any(|l| l.contains("as_")),
        "{:?}",
        s2.banner
    );
    assert_created(&put(
        &s2,
        "boot/2.0/rocky9",
        Some(&key),
        tar_gz("2.0", &[("f", b"2")]),
    ));

    // once keys are configured, the generated key stops working
    s2.kill();
    let s3 = Server::start_in(tmp.path(), &config_with_keys(""));
    assert_eq!(admin_key_in(&s3.banner), None);
    assert_error(
        &put(
            &s3,
            "boot/3.0/rocky9",
            Some(&key),
            tar_gz("3.0", &[("f", b"3")]),
        ),
        401,
    );
    assert_created(&put(
        &s3,
        "boot/3.0/rocky9",
        Some(ADMIN_KEY),
        tar_gz("3.0", &[("f", b"3")]),
    ));
    assert_eq!(get(&s3, "/v1/components/boot/2.0/rocky9").status, 200);
    drop(s3);
    drop(s2);
    drop(tmp);
}

// ---------------------------------------------------------------- 7. bad input

#[test]
fn bad_names_are_refused() {
    let s = Server::start();
    let body = tar_gz("1.0", &[("f", b"x")]);
    for path in [
        "a%20b/1.0/rocky9",
        "a..b/1.0/rocky9",
        "ok/a..b/rocky9",
        "ok/1.0/roc%24ky9",
        "ok/1.0/a..b",
        "-rf/1.0/rocky9",
        "ok/a%2Fb/rocky9",
        "ok/a%3Bb/rocky9",
        "ok/1.0/rocky9%00",
    ] {
        let r = put(&s, path, Some(WRITE_KEY), body.clone());
        let e = assert_error(&r, 400);
        assert!(
            e["code"] == "invalid_name" || e["code"] == "bad_request",
            "{path}: {e}"
        );
        assert_error(&get(&s, &format!("/v1/components/{path}")), 400);
    }
    let long = "x".repeat(129);
    assert_error(
        &put(
            &s,
            &format!("{long}/1.0/rocky9"),
            Some(WRITE_KEY),
            body.clone(),
        ),
        400,
    );

    // `..` and `.` as whole segments, sent raw (a URL library would normalise them)
    for path in [
        "/v1/components/../1.0/rocky9",
        "/v1/components/ok/../rocky9",
        "/v1/components/ok/1.0/..",
        "/v1/components/./1.0/rocky9",
    ] {
        let req = format!(
            "PUT {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {WRITE_KEY}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            addr(&s),
            body.len()
        );
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(&body);
        let (status, rbody) = raw_http(&s, &bytes);
        assert_eq!(status, 400, "{path}: {}", String::from_utf8_lossy(&rbody));
        let v: Value = serde_json::from_slice(&rbody).expect("JSON error");
        assert_eq!(v["status"], "error", "{path}");
        assert!(v["errorMessage"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // the original API too
    assert_error(&get(&s, "/component?component=..&tag=1.0"), 400);
    assert_error(&get(&s, "/component?component=ok&tag=a%20b"), 400);
    assert!(blob_files(&s).is_empty());
    let v = get(&s, "/v1/components").json();
    assert_eq!(v["components"], json!([]));
}

#[test]
fn bodies_that_are_not_tarballs_are_refused() {
    let s = Server::start();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("text", b"hello, this is not a tarball at all".to_vec()),
        ("noise", noise(1, 4096)),
        ("gzip of text", gz(b"just some text, not a tar")),
        ("zstd of text", zst(&noise(2, 2048))),
        ("truncated tar.gz", {
            let t = tar_gz("1.0", &[("big", &noise(3, 100_000))]);
            t[..t.len() / 2].to_vec()
        }),
        ("empty tar", vec![0u8; 1024]),
    ];
    for (i, (what, body)) in cases.into_iter().enumerate() {
        let path = format!("junk{i}/1.0/rocky9");
        let r = put(&s, &path, Some(WRITE_KEY), body);
        assert_error(&r, 400);
        assert_error(&get(&s, &format!("/v1/components/{path}")), 404);
        assert!(blob_files(&s).is_empty(), "{what}: a blob was stored");
    }
    assert!(
        wait_for(5, || tmp_entries(&s.dir).is_empty()),
        "left in data/tmp: {:?}",
        tmp_entries(&s.dir)
    );
}

#[test]
fn hostile_tarballs_are_refused_and_nothing_stored() {
    let s = Server::start();
    use tar::EntryType as T;
    let outside = format!("/tmp/artifact-store-evil-{}.txt", std::process::id());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "absolute path",
            hostile_tar(outside.as_bytes(), T::Regular, None, b"evil"),
        ),
        (
            "dot-dot path",
            hostile_tar(b"1.0/../../evil.txt", T::Regular, None, b"evil"),
        ),
        (
            "leading dot-dot",
            hostile_tar(b"../evil.txt", T::Regular, None, b"evil"),
        ),
        (
            "symlink escaping up",
            hostile_tar(b"1.0/passwd", T::Symlink, Some(b"../../etc/passwd"), b""),
        ),
        (
            "symlink to an absolute path",
            hostile_tar(b"1.0/passwd", T::Symlink, Some(b"/etc/passwd"), b""),
        ),
        (
            "hard link outside",
            hostile_tar(b"1.0/hl", T::Link, Some(b"../../etc/passwd"), b""),
        ),
        (
            "hard link absolute",
            hostile_tar(b"1.0/hl", T::Link, Some(b"/etc/passwd"), b""),
        ),
        ("fifo", hostile_tar(b"1.0/fifo", T::Fifo, None, b"")),
        ("char device", hostile_tar(b"1.0/null", T::Char, None, b"")),
        ("block device", hostile_tar(b"1.0/sda", T::Block, None, b"")),
    ];
    for (i, (what, body)) in cases.into_iter().enumerate() {
        let path = format!("evil{i}/1.0/rocky9");
        let r = put(&s, &path, Some(WRITE_KEY), body);
        assert_eq!(r.status, 400, "{what}: {}", r.text());
        assert_error(&r, 400);
        assert_error(&get(&s, &format!("/v1/components/{path}")), 404);
        assert!(blob_files(&s).is_empty(), "{what}: a blob was stored");
    }
    assert!(!Path::new(&outside).exists(), "{outside} was written");
    assert!(!s.dir.join("evil.txt").exists());
    assert!(!data_dir(&s).join("evil.txt").exists());
    assert!(
        wait_for(5, || tmp_entries(&s.dir).is_empty()),
        "left in data/tmp: {:?}",
        tmp_entries(&s.dir)
    );
    let v = get(&s, "/v1/components").json();
    assert_eq!(v["components"], json!([]));

    // a symlink that stays inside is fine
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    b.append_data(&mut h, "1.0/lib/real.so", &b"x"[..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(T::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "1.0/lib/link.so", "real.so").unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(T::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "1.0/bin/up", "../lib/real.so")
        .unwrap();
    let rec = assert_created(&put(
        &s,
        "links/1.0/rocky9",
        Some(WRITE_KEY),
        gz(&b.into_inner().unwrap()),
    ));
    let dl = get(&s, "/v1/components/links/1.0/rocky9");
    assert_eq!(hex_of(&dl.body), rec["blake3"].as_str().unwrap());
    let es = entries(&dl.body, false);
    assert!(es
        .iter()
        .any(|e| e.path == "1.0/lib/link.so" && e.kind == T::Symlink));
}

#[test]
fn upload_limits_answer_413() {
    let s = Server::start_with(&config_full(
        "max_upload_bytes = 4096\nmax_unpacked_bytes = 20000",
        true,
    ));
    // declared length over the limit
    let big = tar_gz("1.0", &[("n", &noise(9, 8192))]);
    assert!(big.len() > 4096);
    let e = assert_error(
        &put(&s, "big/1.0/rocky9", Some(WRITE_KEY), big.clone()),
        413,
    );
    assert_eq!(e["code"], "too_large");
    assert_error(&get(&s, "/v1/components/big/1.0/rocky9"), 404);

    // no declared length (chunked): cut off while streaming
    let r = send(
        client()
            .put(s.url("/v1/components/big/1.0/rocky9"))
            .header("Authorization", bearer(WRITE_KEY))
            .body(reqwest::blocking::Body::new(std::io::Cursor::new(big))),
    );
    assert_error(&r, 413);
    assert_error(&get(&s, "/v1/components/big/1.0/rocky9"), 404);

    // small upload, unpacks to more than max_unpacked_bytes
    let bomb = tar_gz("1.0", &[("zeros", &vec![0u8; 200_000])]);
    assert!(bomb.len() < 4096, "{}", bomb.len());
    let e = assert_error(&put(&s, "bomb/1.0/rocky9", Some(WRITE_KEY), bomb), 413);
    assert_eq!(e["code"], "too_large");
    assert_error(&get(&s, "/v1/components/bomb/1.0/rocky9"), 404);
    assert!(blob_files(&s).is_empty());

    // under both limits: fine
    let ok = tar_gz("1.0", &[("small", &vec![7u8; 10_000])]);
    assert_created(&put(&s, "fits/1.0/rocky9", Some(WRITE_KEY), ok));
    assert!(
        wait_for(5, || tmp_entries(&s.dir).is_empty()),
        "left in data/tmp: {:?}",
        tmp_entries(&s.dir)
    );
}

#[test]
fn truncated_upload_stores_nothing() {
    let s = Server::start();
    let body = tar_gz("1.0", &[("big.bin", &noise(11, 600_000))]);
    let sent = &body[..200_000];
    let mut c = TcpStream::connect(addr(&s)).expect("connect");
    let head = format!(
        "PUT /v1/components/trunc/1.0/rocky9 HTTP/1.1\r\nHost: {}\r\n\
         Authorization: Bearer {WRITE_KEY}\r\nContent-Length: {}\r\n\r\n",
        addr(&s),
        body.len()
    );
    c.write_all(head.as_bytes()).unwrap();
    c.write_all(sent).unwrap();
    c.flush().unwrap();
    // the server is receiving (its temp file exists)...
    assert!(
        wait_for(10, || !tmp_entries(&s.dir).is_empty()),
        "the upload never reached data/tmp"
    );
    // ... when the client goes away
    c.shutdown(Shutdown::Write).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answer = Vec::new();
    let _ = c.read_to_end(&mut answer);
    drop(c);
    if let Some(status) = String::from_utf8_lossy(&answer)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
    {
        assert!(
            status >= 400,
            "a truncated upload was answered {status}: {}",
            String::from_utf8_lossy(&answer)
        );
    }
    assert_error(&get(&s, "/v1/components/trunc/1.0/rocky9"), 404);
    assert!(
        wait_for(5, || tmp_entries(&s.dir).is_empty()),
        "left in data/tmp: {:?}",
        tmp_entries(&s.dir)
    );
    assert!(blob_files(&s).is_empty(), "{:?}", blob_files(&s));
    // the server is still fine, and the same key can be uploaded whole
    assert_created(&put(&s, "trunc/1.0/rocky9", Some(WRITE_KEY), body));
}

#[test]
fn unknown_routes_and_methods_answer_json() {
    let s = Server::start();
    for path in ["/nope", "/v1", "/v1/components/a/b/c/d/e", "/v1/blobs"] {
        let e = assert_error(&get(&s, path), 404);
        assert_eq!(e["code"], "not_found", "{path}");
    }
    let r = send(
        client()
            .post(s.url("/v1/components/a/1.0/rocky9"))
            .body("x"),
    );
    let e = assert_error(&r, 405);
    assert_eq!(e["code"], "method_not_allowed");
    assert_error(&send(client().delete(s.url("/healthz"))), 405);
    assert_error(&send(client().put(s.url("/v1/components")).body("x")), 405);
    assert_error(&get(&s, "/v1/components/missing"), 405);
    assert_error(
        &send(client().delete(s.url(&format!("/v1/blobs/{}", hex_of(b"x"))))),
        405,
    );
    assert_error(&send(client().patch(s.url("/component")).body("{}")), 405);
}

// ---------------------------------------------------------------- 8. original API

#[test]
fn original_get_component_api() {
    let s = Server::start();
    let body = tar_gz(
        "R4.39",
        &[("lib/libasyn.so", &noise(4, 2000)), ("README", b"asyn")],
    );
    let rec = assert_created(&put(&s, "asyn/R4.39/rocky9", Some(WRITE_KEY), body));
    let zstd_bytes = get(&s, "/v1/components/asyn/R4.39/rocky9").body;
    let expect_files = files_of(&zstd_bytes, false);
    assert!(expect_files.iter().all(|(p, _)| p.starts_with("R4.39/")));
    let comp = s.url("/component");

    // the build scripts: GET with a JSON body and accept: application/json
    let r = send(
        client()
            .get(&comp)
            .header("accept", "application/json")
            .json(&json!({"component": "asyn", "tag": "R4.39", "arch": "rocky9"})),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/gzip")
    );
    assert_eq!(&r.body[..2], &[0x1f, 0x8b]);
    assert_eq!(files_of(&r.body, true), expect_files);
    let etag = r.header("etag").expect("etag");
    assert_eq!(etag, format!("\"{}\"", hex_of(&r.body)));
    let cd = r.header("content-disposition").unwrap_or_default();
    assert!(cd.contains("R4.39.tar.gz"), "{cd}");

    // without accept, and again: the same bytes, the same etag
    let r2 = send(
        client()
            .get(&comp)
            .json(&json!({"component": "asyn", "tag": "R4.39", "arch": "rocky9"})),
    );
    assert_eq!(r2.status, 200);
    assert_eq!(r2.body, r.body);
    assert_eq!(r2.header("etag").as_deref(), Some(etag.as_str()));
    // conditional
    let r3 = send(
        client()
            .get(&comp)
            .header("If-None-Match", &etag)
            .json(&json!({"component": "asyn", "tag": "R4.39"})),
    );
    assert_eq!(r3.status, 304);

    // zstd on request
    let r = send(client().get(&comp).json(
        &json!({"component": "asyn", "tag": "R4.39", "arch": "rocky9", "format": "tar.zst"}),
    ));
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/zstd")
    );
    assert_eq!(r.body, zstd_bytes);
    let r = get(&s, "/component?component=asyn&tag=R4.39&format=tar.zst");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, zstd_bytes);
    let r = send(
        client()
            .get(s.url("/component?component=asyn&tag=R4.39"))
            .header("Accept", "application/zstd"),
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/zstd")
    );
    assert_eq!(r.body, zstd_bytes);

    // the record
    let r = get(&s, "/component?component=asyn&tag=R4.39&view=info");
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["status"], "found");
    assert_eq!(v["component"]["blake3"], rec["blake3"]);
    assert_eq!(v["component"]["arch"], "rocky9");
    let v = send(
        client()
            .get(&comp)
            .json(&json!({"component": "asyn", "tag": "R4.39", "view": "info"})),
    )
    .json();
    assert_eq!(v["component"]["tag"], "R4.39");

    // absent arch, "null", null, the `architecture` alias, any case: all rocky9
    for b in [
        json!({"component": "asyn", "tag": "R4.39"}),
        json!({"component": "asyn", "tag": "R4.39", "arch": "null"}),
        json!({"component": "asyn", "tag": "R4.39", "arch": null}),
        json!({"component": "asyn", "tag": "R4.39", "architecture": "ROCKY9"}),
    ] {
        let r = send(client().get(&comp).json(&b));
        assert_eq!(r.status, 200, "{b}: {}", r.text());
        assert_eq!(r.body, r2.body, "{b}");
    }
    let r = get(
        &s,
        "/component?component=asyn&tag=R4.39&arch=null&format=zst",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body, zstd_bytes);

    // a miss
    for b in [
        json!({"component": "asyn", "tag": "R9.99", "arch": "rocky9"}),
        json!({"component": "asyn", "tag": "R4.39", "arch": "rhel7"}),
        json!({"component": "nope", "tag": "R4.39"}),
    ] {
        let r = send(
            client()
                .get(&comp)
                .header("accept", "application/json")
                .json(&b),
        );
        let e = assert_error(&r, 404);
        assert!(
            e["errorMessage"]
                .as_str()
                .unwrap()
                .contains("does not exist"),
            "{e}"
        );
    }
    // missing fields, bad JSON
    assert_error(
        &send(client().get(&comp).json(&json!({"component": "asyn"}))),
        400,
    );
    assert_error(
        &send(
            client()
                .get(&comp)
                .header("content-type", "application/json")
                .body("{oops"),
        ),
        400,
    );
    assert_error(&get(&s, "/component"), 400);
}

// ---------------------------------------------------------------- 9. persistence

#[test]
fn data_survives_sigkill_and_restart() {
    let cfg = config_with_keys("");
    let mut s = Server::start_with(&cfg);
    let (rec, full) = store(&s, "keep", "1.0", "rocky9", 42);
    let (rec2, full2) = store(&s, "keep", "2.0", "rhel9", 43);
    let gzip = get(&s, "/v1/components/keep/1.0/rocky9?format=tar.gz").body;
    let tmp = s.keep_dir().expect("temp dir");
    s.kill();
    assert!(s.child.try_wait().unwrap().is_some(), "killed");

    let s = Server::start_in(tmp.path(), &cfg);
    let r = get(&s, "/v1/components/keep/1.0/rocky9");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, full);
    assert_eq!(
        r.header("etag"),
        Some(format!("\"{}\"", rec["blake3"].as_str().unwrap()))
    );
    assert_eq!(get(&s, "/v1/components/keep/2.0/rhel9").body, full2);
    let info = get(&s, "/v1/components/keep/2.0/rhel9/info").json();
    assert_eq!(info["component"]["blake3"], rec2["blake3"]);
    assert_eq!(info["component"]["created"], rec2["created"]);
    assert_eq!(
        get(&s, "/v1/components/keep/1.0/rocky9?format=tar.gz").body,
        gzip
    );
    let v = get(&s, "/v1/components?prefix=keep").json();
    assert_eq!(v["components"].as_array().unwrap().len(), 2);
    // still immutable after the restart
    let r = put(
        &s,
        "keep/1.0/rocky9",
        Some(WRITE_KEY),
        tar_gz("1.0", &[("file.txt", b"something else")]),
    );
    assert_error(&r, 409);
    drop(s);
    drop(tmp);
}

// ---------------------------------------------------------------- 10. concurrency

#[test]
fn concurrent_uploads_of_the_same_content_create_once() {
    let s = Server::start();
    let body = tar_gz("1.0", &[("a", &noise(21, 300_000)), ("b/c", b"c")]);
    let barrier = Arc::new(Barrier::new(8));
    let url = s.url("/v1/components/race/1.0/rocky9");
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (b, body, url) = (barrier.clone(), body.clone(), url.clone());
            std::thread::spawn(move || {
                let c = client();
                b.wait();
                send(
                    c.put(url)
                        .header("Authorization", bearer(WRITE_KEY))
                        .body(body),
                )
            })
        })
        .collect();
    let answers: Vec<Resp> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut created = 0;
    let mut hashes = std::collections::BTreeSet::new();
    for r in &answers {
        assert!(
            r.status == 200 || r.status == 201,
            "{} {}",
            r.status,
            r.text()
        );
        let v = r.json();
        match r.status {
            201 => {
                assert_eq!(v["status"], "created");
                created += 1;
            }
            _ => assert_eq!(v["status"], "unchanged"),
        }
        hashes.insert(v["component"]["blake3"].as_str().unwrap().to_owned());
    }
    assert_eq!(created, 1, "exactly one upload creates the entry");
    assert_eq!(hashes.len(), 1, "{hashes:?}");
    let dl = get(&s, "/v1/components/race/1.0/rocky9");
    assert_eq!(hex_of(&dl.body), *hashes.iter().next().unwrap());
    assert_eq!(blob_files(&s).len(), 1, "{:?}", blob_files(&s));
    assert!(
        wait_for(5, || tmp_entries(&s.dir).is_empty()),
        "left in data/tmp: {:?}",
        tmp_entries(&s.dir)
    );
}

#[test]
fn concurrent_uploads_of_different_keys_all_succeed() {
    let s = Server::start();
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8u64)
        .map(|i| {
            let b = barrier.clone();
            let url = s.url(&format!("/v1/components/par{i}/1.{i}/rocky9"));
            std::thread::spawn(move || {
                let tag = format!("1.{i}");
                let content = noise(100 + i, 200_000);
                let body = tar_gz(&tag, &[("data.bin", &content)]);
                let c = client();
                b.wait();
                let r = send(
                    c.put(&url)
                        .header("Authorization", bearer(WRITE_KEY))
                        .body(body),
                );
                (i, content, r)
            })
        })
        .collect();
    for h in handles {
        let (i, content, r) = h.join().unwrap();
        let rec = assert_created(&r);
        let dl = get(&s, &format!("/v1/components/par{i}/1.{i}/rocky9"));
        assert_eq!(dl.status, 200);
        assert_eq!(hex_of(&dl.body), rec["blake3"].as_str().unwrap());
        assert_eq!(
            files_of(&dl.body, false),
            [(format!("1.{i}/data.bin"), content)]
        );
    }
    assert_eq!(blob_files(&s).len(), 8);
    let v = get(&s, "/v1/components?prefix=par").json();
    assert_eq!(v["components"].as_array().unwrap().len(), 8);
}

// ---------------------------------------------------------------- 11. crash

#[test]
fn crash_mid_upload_leaves_nothing_behind() {
    let cfg = config_with_keys("");
    let mut s = Server::start_with(&cfg);
    let body = tar_gz("1.0", &[("huge.bin", &noise(77, 8 << 20))]);
    let mut c = TcpStream::connect(addr(&s)).expect("connect");
    let head = format!(
        "PUT /v1/components/crash/1.0/rocky9 HTTP/1.1\r\nHost: {}\r\n\
         Authorization: Bearer {WRITE_KEY}\r\nContent-Length: 50000000\r\n\r\n",
        addr(&s)
    );
    c.write_all(head.as_bytes()).unwrap();
    c.write_all(&body[..4 << 20]).unwrap();
    c.flush().unwrap();
    // the upload is in flight: its temp file is filling up
    let tmp_dir = s.dir.clone();
    assert!(
        wait_for(10, || {
            files_under(&tmp_dir.join("data/tmp"))
                .iter()
                .any(|f| f.metadata().map(|m| m.len() >= 1 << 20).unwrap_or(false))
        }),
        "the upload never reached data/tmp"
    );
    let tmp = s.keep_dir().expect("temp dir");
    s.kill(); // SIGKILL, mid-upload
    drop(c);

    let s = Server::start_in(tmp.path(), &cfg);
    assert_error(&get(&s, "/v1/components/crash/1.0/rocky9"), 404);
    assert_eq!(
        tmp_entries(&s.dir),
        Vec::<PathBuf>::new(),
        "data/tmp after restart"
    );
    assert_eq!(
        blob_files(&s),
        Vec::<PathBuf>::new(),
        "data/blobs after restart"
    );
    let v = get(&s, "/v1/components").json();
    assert_eq!(v["components"], json!([]));
    // and the key can be uploaded normally now
    let small = tar_gz("1.0", &[("ok", b"ok")]);
    assert_created(&put(&s, "crash/1.0/rocky9", Some(WRITE_KEY), small));
    drop(s);
    drop(tmp);
}
