//! Deterministic tarballs: a directory becomes a tar with sorted entries,
//! owner 0:0 and no user names, permission bits only, mtimes clamped, and a
//! single top-level directory (the tag), compressed with zstd. The same tree
//! gives the same bytes, hence the same blake3. A directory's mtime is the
//! newest mtime below it (0 when empty), never the directory's own.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{beneath, StoreError};

#[derive(Debug, Clone)]
pub struct PackOptions {
    /// Name of the single top-level directory (the tag).
    pub prefix: String,
    /// Entries newer than this (unix seconds) get this mtime; `None` keeps them.
    pub mtime_clamp: Option<u64>,
    /// zstd level.
    pub level: i32,
    /// Most bytes the tar may hold (file contents plus a 512-byte header per
    /// entry); past it the pack stops with [`StoreError::TooLarge`].
    pub max_bytes: u64,
    /// Most entries the tree may hold (each is listed in memory first).
    pub max_entries: u64,
}

/// Number of zstd worker threads: fixed, because the frame layout (and so
/// the hash) must not depend on the machine.
const ZSTD_WORKERS: u32 = 2;

/// Bytes of input per zstd job.
const ZSTD_JOB_SIZE: u32 = 3 << 20;

/// Packs `src` (its contents, not itself) under `opts.prefix/` into `out` as
/// tar.zst. Returns `out` after the zstd frame is finished.
///
/// Refuses a tree holding a symlink that resolves outside it (chains
/// followed on the real file system) and devices, fifos and sockets. Files
/// hard-linked together are stored once, later names as hard links to the
/// first (in sorted order), so a hard link never multiplies the output.
pub fn pack_dir<W: Write>(src: &Path, opts: &PackOptions, out: W) -> Result<W, StoreError> {
    beneath::check_links(src, "the component").map_err(|e| match e {
        beneath::BeneathError::Io { err, .. } => StoreError::Io(err),
        other => StoreError::bad(format!("{other}: use a relative link inside the tree")),
    })?;
    let mut written: u64 = 0;
    let mut count = |n: u64| -> Result<(), StoreError> {
        written = written.saturating_add(n).saturating_add(512);
        if written > opts.max_bytes {
            return Err(StoreError::TooLarge {
                limit: opts.max_bytes,
            });
        }
        Ok(())
    };
    let clamp = |m: i64| -> u64 {
        let m = m.max(0) as u64;
        opts.mtime_clamp.map_or(m, |c| m.min(c))
    };
    // First the listing, so that directory mtimes can be derived from their
    // contents: a directory's own mtime on disk only says when something was
    // last unpacked into it, which would make equal trees hash differently.
    let mut entries = Vec::new();
    let walker = walkdir::WalkDir::new(src)
        .min_depth(1)
        .follow_links(false)
        .sort_by(|a, b| a.file_name().cmp(b.file_name()));
    for entry in walker {
        if entries.len() as u64 >= opts.max_entries {
            return Err(StoreError::TooManyEntries {
                limit: opts.max_entries,
            });
        }
        let entry = entry.map_err(io::Error::other)?;
        let meta = entry.metadata().map_err(io::Error::other)?;
        entries.push((entry.into_path(), meta));
    }
    let mut dir_mtime: HashMap<PathBuf, u64> = HashMap::new();
    for (path, meta) in entries.iter().filter(|(_, m)| !m.is_dir()) {
        let m = clamp(meta.mtime());
        for dir in path.ancestors().skip(1) {
            let e = dir_mtime.entry(dir.to_owned()).or_insert(0);
            *e = (*e).max(m);
            if dir == src {
                break;
            }
        }
    }

    let mut tar = tar_writer(out, opts.level)?;

    // (device, inode) of a file with several links -> its first name in the tar
    let mut linked: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let root_mtime = dir_mtime.get(src).copied().unwrap_or(0);
    let mut header = dir_header(root_mtime, 0o755);
    tar.append_data(&mut header, format!("{}/", opts.prefix), io::empty())?;

    for (path, meta) in &entries {
        let rel = path.strip_prefix(src).map_err(io::Error::other)?;
        let name = Path::new(&opts.prefix).join(rel);
        let perm = meta.mode() & 0o777;
        let ft = meta.file_type();
        if ft.is_dir() {
            count(0)?;
            let mtime = dir_mtime.get(path.as_path()).copied().unwrap_or(0);
            let mut h = dir_header(mtime, perm | 0o700);
            tar.append_data(&mut h, &name, io::empty())?;
        } else if ft.is_file() && meta.nlink() > 1 && linked.contains_key(&(meta.dev(), meta.ino()))
        {
            count(0)?;
            let first = &linked[&(meta.dev(), meta.ino())];
            let mut h = base_header(tar::EntryType::Link, clamp(meta.mtime()), perm);
            h.set_size(0);
            tar.append_link(&mut h, &name, first)?;
        } else if ft.is_file() {
            count(meta.len())?;
            if meta.nlink() > 1 {
                linked.insert((meta.dev(), meta.ino()), name.clone());
            }
            let mut h = base_header(tar::EntryType::Regular, clamp(meta.mtime()), perm);
            h.set_size(meta.len());
            // never follow a link swapped in for the file after the listing
            let open = || {
                File::options()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(path)
            };
            let f = match open() {
                // a file its owner may not read (mode 000): the tree is the
                // service's own copy, so let it read; the tar keeps the mode
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                    fs::set_permissions(path, fs::Permissions::from_mode(perm | 0o400))?;
                    open()?
                }
                other => other?,
            };
            tar.append_data(&mut h, &name, f.take(meta.len()))?;
        } else if ft.is_symlink() {
            count(0)?;
            let target = fs::read_link(path)?;
            let mut h = base_header(tar::EntryType::Symlink, clamp(meta.mtime()), 0o777);
            h.set_size(0);
            tar.append_link(&mut h, &name, &target)?;
        } else {
            return Err(StoreError::bad(format!(
                "{} is a device file, socket or fifo; components may only hold files, directories and symlinks",
                rel.display()
            )));
        }
    }
    let enc = tar.into_inner()?.into_inner().map_err(|e| e.into_error())?;
    Ok(enc.finish()?)
}

type TarZst<W> = tar::Builder<io::BufWriter<zstd::stream::write::Encoder<'static, W>>>;

/// A tar writer into zstd with the canonical settings.
fn tar_writer<W: Write>(out: W, level: i32) -> Result<TarZst<W>, StoreError> {
    let mut enc = zstd::stream::write::Encoder::new(out, level)?;
    enc.multithread(ZSTD_WORKERS)?;
    // Smaller jobs than zstd's default (4x the window) keep the memory of a
    // large pack bounded (a few MiB per worker); part of the format, so fixed.
    enc.set_parameter(zstd::stream::raw::CParameter::JobSize(ZSTD_JOB_SIZE))?;
    // Large writes into zstd: tar alone would feed it 512-byte headers and
    // 8 KiB pieces; through a BufWriter, io::copy reads files straight into
    // its 1 MiB buffer.
    let mut tar = tar::Builder::new(io::BufWriter::with_capacity(1 << 20, enc));
    tar.mode(tar::HeaderMode::Deterministic);
    tar.follow_symlinks(false);
    Ok(tar)
}

/// Re-packs a canonical tar.zst under another top-level directory (a
/// build reused for another tag): every entry and hard-link target moves
/// from `<old>/` to `<prefix>/`; contents, modes and mtimes are kept.
pub fn reprefix<R: Read, W: Write>(
    src: R,
    prefix: &str,
    level: i32,
    out: W,
) -> Result<W, StoreError> {
    let mut ar = tar::Archive::new(zstd::stream::read::Decoder::new(src)?);
    let mut tar = tar_writer(out, level)?;
    let moved = |p: &Path| -> PathBuf {
        let rest: PathBuf = p.components().skip(1).collect();
        Path::new(prefix).join(rest)
    };
    for entry in ar.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let mut h = entry.header().clone();
        if path.components().count() <= 1 {
            tar.append_data(&mut h, format!("{prefix}/"), io::empty())?;
            continue;
        }
        let name = moved(&path);
        match h.entry_type() {
            tar::EntryType::Link => {
                let target = entry
                    .link_name()?
                    .ok_or_else(|| StoreError::bad("a hard link without a target"))?;
                tar.append_link(&mut h, &name, moved(&target))?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()?
                    .ok_or_else(|| StoreError::bad("a symlink without a target"))?
                    .into_owned();
                tar.append_link(&mut h, &name, target)?;
            }
            _ => tar.append_data(&mut h, &name, &mut entry)?,
        }
    }
    let enc = tar.into_inner()?.into_inner().map_err(|e| e.into_error())?;
    Ok(enc.finish()?)
}

fn base_header(kind: tar::EntryType, mtime: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime);
    h.set_mode(mode);
    h
}

fn dir_header(mtime: u64, mode: u32) -> tar::Header {
    let mut h = base_header(tar::EntryType::Directory, mtime, mode);
    h.set_size(0);
    h
}

/// Re-encodes a stored tar.zst as tar.gz (gzip header mtime 0, so the same
/// input gives the same bytes). Used for clients that open `r:gz`.
pub fn zstd_to_gzip<R: Read, W: Write>(src: R, out: W) -> io::Result<W> {
    let mut dec = zstd::stream::read::Decoder::new(src)?;
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(out, flate2::Compression::new(6));
    io::copy(&mut dec, &mut gz)?;
    gz.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree(root: &Path) {
        fs::create_dir_all(root.join("bin")).unwrap();
        fs::create_dir_all(root.join("lib/x")).unwrap();
        fs::write(root.join("bin/tool"), b"#!/bin/sh\necho hi\n").unwrap();
        fs::write(root.join("lib/x/a.txt"), b"aaa").unwrap();
        fs::write(root.join("README"), b"r").unwrap();
        symlink("../lib/x/a.txt", root.join("bin/link")).unwrap();
    }

    #[test]
    fn same_tree_same_bytes() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        tree(a.path());
        tree(b.path());
        let opts = PackOptions {
            prefix: "R1.0".into(),
            mtime_clamp: Some(1_700_000_000),
            level: 3,
            max_bytes: u64::MAX,
            max_entries: u64::MAX,
        };
        let x = pack_dir(a.path(), &opts, Vec::new()).unwrap();
        let y = pack_dir(b.path(), &opts, Vec::new()).unwrap();
        assert_eq!(blake3::hash(&x), blake3::hash(&y));

        let dec = zstd::stream::read::Decoder::new(&x[..]).unwrap();
        let mut ar = tar::Archive::new(dec);
        let names: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                assert_eq!(e.header().uid().unwrap(), 0);
                assert!(e.header().mtime().unwrap() <= 1_700_000_000);
                e.path().unwrap().display().to_string()
            })
            .collect();
        assert_eq!(
            names,
            [
                "R1.0/",
                "R1.0/README",
                "R1.0/bin",
                "R1.0/bin/link",
                "R1.0/bin/tool",
                "R1.0/lib",
                "R1.0/lib/x",
                "R1.0/lib/x/a.txt"
            ]
        );
    }

    #[test]
    fn reprefix_is_a_pack_under_the_new_name() {
        let a = tempfile::tempdir().unwrap();
        tree(a.path());
        fs::write(a.path().join("long-".repeat(30)), b"long name").unwrap();
        fs::hard_link(a.path().join("README"), a.path().join("README.hard")).unwrap();
        let opts = |p: &str| PackOptions {
            prefix: p.into(),
            mtime_clamp: Some(1_700_000_000),
            level: 3,
            max_bytes: u64::MAX,
            max_entries: u64::MAX,
        };
        let old = pack_dir(a.path(), &opts("R1.0"), Vec::new()).unwrap();
        let new = pack_dir(a.path(), &opts("R1.0-rc1"), Vec::new()).unwrap();
        let moved = reprefix(&old[..], "R1.0-rc1", 3, Vec::new()).unwrap();
        assert_eq!(blake3::hash(&moved), blake3::hash(&new));
    }

    #[test]
    fn gzip_roundtrip() {
        let a = tempfile::tempdir().unwrap();
        tree(a.path());
        let opts = PackOptions {
            prefix: "T".into(),
            mtime_clamp: None,
            level: 3,
            max_bytes: u64::MAX,
            max_entries: u64::MAX,
        };
        let zst = pack_dir(a.path(), &opts, Vec::new()).unwrap();
        let gz = zstd_to_gzip(&zst[..], Vec::new()).unwrap();
        let gz2 = zstd_to_gzip(&zst[..], Vec::new()).unwrap();
        assert_eq!(gz, gz2);
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(&gz[..]));
        assert_eq!(ar.entries().unwrap().count(), 8);
    }
}
