//! `artifact-store deps`: a build script's dependencies in one call.
//! `resolve` prints the closure; `fetch` downloads it in parallel (blake3
//! checked while streaming), extracts each as `DIR/<component>/<tag>/`,
//! skips what the previous lock in `DIR` already has, and writes the lock
//! (`DIR/deps.lock.json`) and `DIR/env.sh` with the `ADBS_DEP_*` variables.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{progress, ClientError, Remote, Result};
use crate::api::{
    ClosureEntry, EntryState, LockDocument, ResolveAnswer, ResolveRequest, ResolveStatus,
};
use crate::model::dep_var;

/// The name of the lock `fetch` writes (and reads back) in its directory.
pub const LOCK_FILE: &str = "deps.lock.json";

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
    r.json(r.http.post(&url).json(&body), &url)
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
                Some(c) => format!("{}@{}", s.url, &c[..c.len().min(12)]),
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
    std::fs::create_dir_all(into)?;
    let into = into.canonicalize()?;
    // what the previous fetch left here: component -> (tag, blake3)
    let before: HashMap<String, (String, String)> = read_lock(&into.join(LOCK_FILE))
        .map(|l| {
            l.components
                .into_iter()
                .map(|c| (c.component, (c.tag, c.blake3)))
                .collect()
        })
        .unwrap_or_default();
    let mut todo: Vec<&ClosureEntry> = Vec::new();
    let mut done = Fetched {
        components: a.entries.len(),
        ..Default::default()
    };
    for e in &a.entries {
        let Some(s) = &e.stored else { continue };
        let dir = into.join(&e.component);
        match before.get(&e.component) {
            Some((tag, hash))
                if *tag == e.tag && *hash == s.record.blake3 && dir.join(&e.tag).is_dir() =>
            {
                done.kept += 1;
            }
            Some(_) => {
                // another tag or other bytes than last time: replace it whole
                let _ = std::fs::remove_dir_all(&dir);
                todo.push(e);
            }
            None => todo.push(e),
        }
    }
    let total: u64 = todo
        .iter()
        .filter_map(|e| e.stored.as_ref())
        .map(|s| s.record.size)
        .sum();
    let pb = progress(Some(total), &format!("{} components", todo.len()));
    let queue = Arc::new(Mutex::new(todo.clone()));
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, 16).min(todo.len().max(1)) {
            let (queue, errors, pb, into) =
                (queue.clone(), errors.clone(), pb.clone(), into.clone());
            scope.spawn(move || loop {
                let next = queue.lock().ok().and_then(|mut q| q.pop());
                let Some(e) = next else { break };
                if let Err(err) = fetch_one(r, e, &into, &pb) {
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
        &into.join(LOCK_FILE),
        serde_json::to_string_pretty(&a.lock)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    write_atomic(&into.join("env.sh"), env_sh(a, &into).as_bytes())?;
    Ok(done)
}

/// One component, in one pass: the download is hashed while zstd decodes
/// it and the tar unpacks into a staging directory under
/// `into/<component>/`; only when the whole stream hashes to the pinned
/// blake3 does the staged tree replace `<tag>/` there.
fn fetch_one(r: &Remote, e: &ClosureEntry, into: &Path, pb: &indicatif::ProgressBar) -> Result<()> {
    let s = e
        .stored
        .as_ref()
        .ok_or_else(|| ClientError::Other("not stored".into()))?;
    let url = &s.blob_url;
    let (resp, _) = r.download(url)?;
    let dir = into.join(&e.component);
    std::fs::create_dir_all(&dir)?;
    let stage = tempfile::Builder::new()
        .prefix(".fetch-")
        .tempdir_in(&dir)?;
    let mut hashing = Hashing {
        inner: std::io::BufReader::with_capacity(1 << 20, resp),
        hasher: blake3::Hasher::new(),
        pb,
    };
    {
        let dec = zstd::stream::read::Decoder::new(&mut hashing)?;
        crate::store::unpack::unpack_safe(dec, stage.path(), crate::store::unpack::Limits::NONE)
            .map_err(|e| ClientError::Other(e.to_string()))?;
    }
    // whatever follows the tar's end (zstd's own end, padding) counts too
    std::io::copy(&mut hashing, &mut std::io::sink())?;
    let actual = hashing.hasher.finalize().to_hex().to_string();
    if actual != s.record.blake3 {
        return Err(ClientError::Other(format!(
            "blake3 mismatch: the closure says {}, the download hashes to {actual}; nothing kept",
            s.record.blake3
        )));
    }
    super::replace_with(stage.path(), &dir)
}

/// A reader that hashes (and counts on the progress bar) what passes.
struct Hashing<'a, R> {
    inner: R,
    hasher: blake3::Hasher,
    pb: &'a indicatif::ProgressBar,
}

impl<R: Read> Read for Hashing<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
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

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().map(PathBuf::from).unwrap_or_default();
    let mut tmp = tempfile::NamedTempFile::new_in(&dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
