//! Tarballs for the tests: noise, compression, hand-made hostile
//! archives, and reading a tarball's entries back.
#![allow(dead_code)]

use std::io::{Read, Write};

pub fn hex_of(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// Deterministic pseudo-random bytes (incompressible).
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
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

pub fn zst(bytes: &[u8]) -> Vec<u8> {
    zstd::encode_all(bytes, 3).expect("zstd")
}

pub fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// A tar with one raw entry whose name (and link name) are written as bytes,
/// bypassing the tar crate's own path checks, so that hostile archives can be
/// built. Preceded by one harmless regular file.
pub fn hostile_tar(name: &[u8], kind: tar::EntryType, link: Option<&[u8]>, data: &[u8]) -> Vec<u8> {
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
pub struct Entry {
    pub path: String,
    pub kind: tar::EntryType,
    pub uid: u64,
    pub gid: u64,
    pub mode: u32,
    pub username: Option<String>,
    pub data: Vec<u8>,
}

pub fn entries(bytes: &[u8], gzip: bool) -> Vec<Entry> {
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
pub fn files_of(bytes: &[u8], gzip: bool) -> Vec<(String, Vec<u8>)> {
    entries(bytes, gzip)
        .into_iter()
        .filter(|e| e.kind.is_file())
        .map(|e| (e.path, e.data))
        .collect()
}
