//! `artifact-store deps`: a build script's dependencies in one call.
//! `resolve` prints the closure; `fetch` downloads it in parallel (blake3
//! checked while streaming), extracts each as `DIR/<component>/<tag>/`,
//! skips what the previous lock in `DIR` already has, and writes the lock
//! (`DIR/deps.lock.json`) and `DIR/env.sh` with the `ADBS_DEP_*` variables.
//!
//! The server's answer is not trusted with the file system: every name in
//! it is checked with the server's own rules (one path component, no
//! `..`), each download must be the size the answer declares, only the
//! tarball's `<tag>/` directory is taken, and only directories this
//! command made (they hold a marker file), or that the previous lock
//! names, are ever replaced. The key goes only to the server's own origin.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{progress, ClientError, Remote, Result};
use crate::api::{
    ClosureEntry, EntryState, LockDocument, ResolveAnswer, ResolveRequest, ResolveStatus,
};
use crate::model::{dep_var, validate_name, NameError};
use crate::store::beneath;

/// The name of the lock `fetch` writes (and reads back) in its directory.
pub const LOCK_FILE: &str = "deps.lock.json";

/// The shell file `fetch` writes next to the lock.
pub const ENV_FILE: &str = "env.sh";

/// The file that marks `DIR/<component>/` as made by `fetch` (`~` is in no
/// valid name, so no tag can be called that).
pub const MARKER: &str = "~artifact-store-deps";

/// What to resolve: a recipe file, or a lock file to verify.
pub enum Source<'a> {
    Recipe(&'a Path),
    Lock(&'a Path),
}

/// `POST /v1/resolve` for a recipe file or a lock file.
pub fn resolve(
    r: &Remote,
    source: Source<'_>,
    arch: Option<&str>,
    build_missing: bool,
) -> Result<ResolveAnswer> {
    let mut body = ResolveRequest {
        arch: arch.map(str::to_owned),
        ..Default::default()
    };
    match source {
        Source::Recipe(p) => {
            body.recipe = Some(std::fs::read_to_string(p).map_err(|e| {
                ClientError::Other(format!("cannot read the recipe {}: {e}", p.display()))
            })?)
        }
        Source::Lock(p) => body.lock = Some(read_lock(p)?),
    }
    let url = r.url(&format!("/v1/resolve?build_missing={build_missing}"));
    let answer: ResolveAnswer = r.json(r.http.post(&url).json(&body), &url)?;
    check_answer(&answer)?;
    Ok(answer)
}

fn refused(what: String, e: NameError) -> ClientError {
    ClientError::Other(format!("the server's answer is refused: {what}: {e}"))
}

fn refuse(msg: String) -> ClientError {
    ClientError::Other(format!("the server's answer is refused: {msg}"))
}

fn is_blake3(h: &str) -> bool {
    h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Checks every name of an answer with the server's rules, each component
/// once, stored entries naming themselves, and the lock matching the
/// entries: the answer names directories and files here.
pub fn check_answer(a: &ResolveAnswer) -> Result<()> {
    validate_name("architecture", &a.arch).map_err(|e| refused("arch".into(), e))?;
    let mut seen: HashMap<&str, (&str, Option<&str>)> = HashMap::new();
    for (i, e) in a.entries.iter().enumerate() {
        let at = |f: &str| format!("entries[{i}].{f}");
        validate_name("component", &e.component).map_err(|x| refused(at("component"), x))?;
        validate_name("tag", &e.tag).map_err(|x| refused(at("tag"), x))?;
        if !e.arch.eq_ignore_ascii_case(&a.arch) {
            return Err(refuse(format!(
                "{}: {} is for another architecture than {}",
                at("arch"),
                e.component,
                a.arch
            )));
        }
        if [LOCK_FILE, ENV_FILE].contains(&e.component.as_str()) {
            return Err(refuse(format!(
                "{}: a component may not be called {} here (the file of that name is written next to the components)",
                at("component"),
                e.component
            )));
        }
        for (j, d) in e.dependencies.iter().enumerate() {
            validate_name("component", &d.component)
                .map_err(|x| refused(at(&format!("dependencies[{j}].component")), x))?;
            validate_name("tag", &d.tag)
                .map_err(|x| refused(at(&format!("dependencies[{j}].tag")), x))?;
        }
        let hash = match &e.stored {
            Some(s) => {
                if s.record.component != e.component || s.record.tag != e.tag {
                    return Err(refuse(format!(
                        "{}: the record is of {} {}, not of {} {}",
                        at("stored"),
                        s.record.component,
                        s.record.tag,
                        e.component,
                        e.tag
                    )));
                }
                if !is_blake3(&s.record.blake3) {
                    return Err(refuse(format!(
                        "{}: not 64 hex characters",
                        at("stored.blake3")
                    )));
                }
                Some(s.record.blake3.as_str())
            }
            None => None,
        };
        if seen.insert(&e.component, (e.tag.as_str(), hash)).is_some() {
            return Err(refuse(format!(
                "{}: {} is listed twice",
                at("component"),
                e.component
            )));
        }
    }
    for (list, what) in [(&a.roots, "roots"), (&a.missing, "missing")] {
        for (i, r) in list.iter().enumerate() {
            validate_name("component", &r.component)
                .map_err(|x| refused(format!("{what}[{i}].component"), x))?;
            validate_name("tag", &r.tag).map_err(|x| refused(format!("{what}[{i}].tag"), x))?;
        }
    }
    if let Some(l) = &a.lock {
        validate_name("architecture", &l.arch).map_err(|e| refused("lock.arch".into(), e))?;
        let mut listed = HashSet::new();
        for (i, c) in l.components.iter().enumerate() {
            validate_name("component", &c.component)
                .map_err(|x| refused(format!("lock.components[{i}].component"), x))?;
            validate_name("tag", &c.tag)
                .map_err(|x| refused(format!("lock.components[{i}].tag"), x))?;
            let agrees = seen.get(c.component.as_str()).is_some_and(|(t, h)| {
                *t == c.tag && (h.is_none() || *h == Some(c.blake3.as_str()))
            });
            if !agrees || !listed.insert(c.component.as_str()) {
                return Err(refuse(format!(
                    "lock.components[{i}]: {} {} does not match the closure's entries",
                    c.component, c.tag
                )));
            }
        }
        for (i, r) in l.roots.iter().enumerate() {
            validate_name("component", &r.component)
                .map_err(|x| refused(format!("lock.roots[{i}].component"), x))?;
            validate_name("tag", &r.tag).map_err(|x| refused(format!("lock.roots[{i}].tag"), x))?;
        }
    }
    Ok(())
}

fn read_lock(p: &Path) -> Result<LockDocument> {
    let text = std::fs::read_to_string(p)
        .map_err(|e| ClientError::Other(format!("cannot read the lock {}: {e}", p.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| ClientError::Other(format!("{} is not a lock document: {e}", p.display())))
}

/// The closure as a table (or JSON).
pub fn print(a: &ResolveAnswer, json: bool, out: &mut dyn Write) -> Result<()> {
    if json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(a).unwrap_or_default()
        )?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<24} {:<20} {:<8} {:<14} {:>12}  source",
        "component", "tag", "state", "blake3", "size"
    )?;
    for e in &a.entries {
        let (hash, size, src) = match &e.stored {
            Some(s) => (
                s.record.blake3.chars().take(12).collect::<String>(),
                s.record.size.to_string(),
                s.record.source.as_ref(),
            ),
            None => ("-".into(), "-".into(), e.source.as_ref()),
        };
        let src = src
            .map(|s| match &s.commit {
                Some(c) => format!("{}@{}", s.url, c.chars().take(12).collect::<String>()),
                None => s.url.clone(),
            })
            .unwrap_or_default();
        writeln!(
            out,
            "{:<24} {:<20} {:<8} {:<14} {:>12}  {src}",
            e.component,
            e.tag,
            if e.state == EntryState::Stored {
                "stored"
            } else {
                "missing"
            },
            hash,
            size
        )?;
    }
    writeln!(
        out,
        "{} components for {}: {} stored, {} missing",
        a.entries.len(),
        a.arch,
        a.stored,
        a.missing.len()
    )?;
    Ok(())
}

/// What `fetch` did.
#[derive(Debug, Default)]
pub struct Fetched {
    pub components: usize,
    pub downloaded: usize,
    pub bytes: u64,
    pub kept: usize,
}

/// Downloads and extracts a complete closure into `into`, `jobs` at a time.
pub fn fetch(r: &Remote, a: &ResolveAnswer, into: &Path, jobs: usize) -> Result<Fetched> {
    check_answer(a)?;
    if a.status != ResolveStatus::Complete {
        let names: Vec<String> = a
            .missing
            .iter()
            .map(|m| format!("{} {}", m.component, m.tag))
            .collect();
        return Err(ClientError::Other(format!(
            "not stored for {}: {} (build them with --build-missing, or ask for the builds)",
            a.arch,
            names.join(", ")
        )));
    }
    let lock = a
        .lock
        .as_ref()
        .ok_or_else(|| refuse("a complete closure without its lock".into()))?;
    std::fs::create_dir_all(into)?;
    let into = into.canonicalize()?;
    // what the previous fetch left here: component -> (tag, blake3); its
    // names are checked as the server's are (the file is the server's words)
    let before: HashMap<String, (String, String)> = read_lock(&into.join(LOCK_FILE))
        .map(|l| {
            l.components
                .into_iter()
                .filter(|c| {
                    validate_name("component", &c.component).is_ok()
                        && validate_name("tag", &c.tag).is_ok()
                })
                .map(|c| (c.component, (c.tag, c.blake3)))
                .collect()
        })
        .unwrap_or_default();
    let mut todo: Vec<(&ClosureEntry, PathBuf)> = Vec::new();
    let mut done = Fetched {
        components: a.entries.len(),
        ..Default::default()
    };
    let mut total: u64 = 0;
    for e in &a.entries {
        let Some(s) = &e.stored else { continue };
        let dir = own_dir(&into, &e.component, before.contains_key(&e.component))?;
        let there = matches!(
            beneath::lstat_direct(&dir, Path::new(&e.tag)),
            Ok(Some(m)) if m.is_dir()
        );
        match before.get(&e.component) {
            Some((tag, hash)) if *tag == e.tag && *hash == s.record.blake3 && there => {
                done.kept += 1;
            }
            _ => {
                total = total.checked_add(s.record.size).ok_or_else(|| {
                    refuse("the declared sizes add up to more than 2^64 bytes".into())
                })?;
                todo.push((e, dir));
            }
        }
    }
    let pb = progress(Some(total), &format!("{} components", todo.len()));
    let queue = Arc::new(Mutex::new(todo.clone()));
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, 16).min(todo.len().max(1)) {
            let (queue, errors, pb) = (queue.clone(), errors.clone(), pb.clone());
            scope.spawn(move || loop {
                let next = queue.lock().ok().and_then(|mut q| q.pop());
                let Some((e, dir)) = next else { break };
                if let Err(err) = fetch_one(r, e, &dir, &pb) {
                    if let Ok(mut v) = errors.lock() {
                        v.push(format!("{} {}: {err}", e.component, e.tag));
                    }
                }
            });
        }
    });
    pb.finish_and_clear();
    let errors = errors.lock().map(|v| v.clone()).unwrap_or_default();
    if !errors.is_empty() {
        return Err(ClientError::Other(errors.join("; ")));
    }
    done.downloaded = todo.len();
    done.bytes = total;
    write_atomic(
        &into,
        LOCK_FILE,
        serde_json::to_string_pretty(lock)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    write_atomic(&into, ENV_FILE, env_sh(a, &into).as_bytes())?;
    Ok(done)
}

/// `into/<name>` for a component (`name` a checked name): made, with its
/// marker, when absent; used when it is a real directory holding the
/// marker, or one the previous lock names (`adopt`: an older client made
/// it). Anything else there (a file, a symlink, a directory of someone
/// else's) is refused and left alone.
fn own_dir(into: &Path, name: &str, adopt: bool) -> Result<PathBuf> {
    let dir = into.join(name);
    let not_ours = || {
        ClientError::Other(format!(
            "{} exists and was not made by `deps fetch`: move it away, or fetch into another directory",
            dir.display()
        ))
    };
    match beneath::lstat_direct(into, Path::new(name)) {
        Ok(None) => {
            std::fs::create_dir(&dir)?;
            mark(&dir)?;
        }
        Ok(Some(m)) if m.is_dir() => {
            let marked = matches!(
                beneath::lstat_direct(&dir, Path::new(MARKER)),
                Ok(Some(m)) if m.is_file()
            );
            if !marked {
                if !adopt {
                    return Err(not_ours());
                }
                mark(&dir)?;
            }
        }
        Ok(Some(_)) => return Err(not_ours()),
        Err(e) => return Err(ClientError::Other(e.to_string())),
    }
    Ok(dir)
}

fn mark(dir: &Path) -> Result<()> {
    std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(dir.join(MARKER))?;
    Ok(())
}

/// Removes the entry `p` itself (a directory with what it holds; a
/// symlink, not what it points to).
fn remove_entry(p: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p),
        Ok(_) => std::fs::remove_file(p),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// One component, in one pass: the download is hashed while zstd decodes
/// it and the tar unpacks into a staging directory inside `dir` (the
/// component's own directory); it may not be longer than the size the
/// closure declares. Only when the whole stream hashes to the pinned
/// blake3 does the staged `<tag>/` replace `dir/<tag>/`; whatever else the
/// tarball held is dropped, and so are other tags in `dir`.
fn fetch_one(r: &Remote, e: &ClosureEntry, dir: &Path, pb: &indicatif::ProgressBar) -> Result<()> {
    let s = e
        .stored
        .as_ref()
        .ok_or_else(|| ClientError::Other("not stored".into()))?;
    let size = s.record.size;
    let url = &s.blob_url;
    let (resp, _) = r.download(url)?;
    if let Some(len) = resp.content_length().filter(|l| *l != size) {
        return Err(ClientError::Other(format!(
            "the download is {len} bytes, the closure declares {size}; nothing kept"
        )));
    }
    let stage = tempfile::Builder::new().prefix(".fetch-").tempdir_in(dir)?;
    let mut hashing = Hashing {
        inner: std::io::BufReader::with_capacity(1 << 20, resp.take(size.saturating_add(1))),
        hasher: blake3::Hasher::new(),
        pb,
        count: 0,
        limit: size,
    };
    let unpacked = zstd::stream::read::Decoder::new(&mut hashing)
        .map_err(ClientError::from)
        .and_then(|dec| {
            crate::store::unpack::unpack_safe(dec, stage.path(), crate::store::unpack::Limits::NONE)
                .map_err(|e| ClientError::Other(e.to_string()))
        });
    if hashing.count > size {
        return Err(too_long(size));
    }
    unpacked?;
    // whatever follows the tar's end (zstd's own end, padding) counts too
    std::io::copy(&mut hashing, &mut std::io::sink())?;
    if hashing.count != size {
        return Err(ClientError::Other(format!(
            "the download is {} bytes, the closure declares {size}; nothing kept",
            hashing.count
        )));
    }
    let actual = hashing.hasher.finalize().to_hex().to_string();
    if actual != s.record.blake3 {
        return Err(ClientError::Other(format!(
            "blake3 mismatch: the closure says {}, the download hashes to {actual}; nothing kept",
            s.record.blake3
        )));
    }
    match beneath::lstat_direct(stage.path(), Path::new(&e.tag)) {
        Ok(Some(m)) if m.is_dir() => {}
        _ => {
            return Err(ClientError::Other(format!(
                "the download holds no {}/ directory; nothing kept",
                e.tag
            )))
        }
    }
    let dest = dir.join(&e.tag);
    remove_entry(&dest)?;
    std::fs::rename(stage.path().join(&e.tag), &dest)?;
    // the directory is this command's: other tags (and old stages) go
    let stage_name = stage.path().file_name().map(|n| n.to_owned());
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        if name == MARKER
            || name.as_os_str() == e.tag.as_str()
            || Some(&name) == stage_name.as_ref()
        {
            continue;
        }
        remove_entry(&dir.join(&name))?;
    }
    Ok(())
}

fn too_long(size: u64) -> ClientError {
    ClientError::Other(format!(
        "the download is longer than the {size} bytes the closure declares: stopped; nothing kept"
    ))
}

/// A reader that hashes (and counts on the progress bar) what passes.
/// Past `limit` bytes it fails (the stream under it stops at `limit + 1`).
struct Hashing<'a, R> {
    inner: R,
    hasher: blake3::Hasher,
    pb: &'a indicatif::ProgressBar,
    count: u64,
    limit: u64,
}

impl<R: Read> Read for Hashing<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count = self.count.saturating_add(n as u64);
        if self.count > self.limit {
            return Err(std::io::Error::other(too_long(self.limit).to_string()));
        }
        self.hasher.update(&buf[..n]);
        self.pb.inc(n as u64);
        Ok(n)
    }
}

/// `export` lines for a shell: `ADBS_DEPS` and one `ADBS_DEP_<NAME>` per
/// component, as builds in the service get them.
fn env_sh(a: &ResolveAnswer, into: &Path) -> String {
    let q = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', r"'\''"));
    let mut s = format!(
        "# written by `artifact-store deps fetch` for {}: source it\nexport ADBS_DEPS={}\n",
        a.arch,
        q(into)
    );
    for e in &a.entries {
        s.push_str(&format!(
            "export {}={}\n",
            dep_var(&e.component),
            q(&into.join(&e.component).join(&e.tag))
        ));
    }
    s
}

/// Writes `dir/name` whole or not at all; `name` is replaced only when it
/// is a regular file (or absent), never through a symlink.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    match beneath::lstat_direct(dir, Path::new(name)) {
        Ok(None) => {}
        Ok(Some(m)) if m.is_file() => {}
        Ok(Some(_)) => {
            return Err(ClientError::Other(format!(
                "{} is not a regular file: not replaced",
                dir.join(name).display()
            )))
        }
        Err(e) => return Err(ClientError::Other(e.to_string())),
    }
    let mut tmp = super::shared_temp_file(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(dir.join(name)).map_err(|e| e.error)?;
    Ok(())
}
