//! Blobs on S3-compatible object storage (AWS S3, SeaweedFS, MinIO, ...):
//! `<prefix>blobs/<first 2 hex>/<64 hex>`, small named objects at
//! `<prefix><name>`, corrupt blobs set aside at `<prefix>quarantine/<hex>`.
//!
//! The [`BlobStore`] trait is blocking and is called from blocking threads,
//! sometimes from async code: the store has a tokio runtime of its own (two
//! workers) and runs each request there, the caller waiting on a channel
//! (which works from any thread, where `block_on` would panic inside a
//! runtime).
//!
//! Writes: a blob is uploaded from its temp file (one PUT below
//! `multipart_threshold_bytes`, else a multipart upload of `part_bytes`
//! parts read from the file one at a time, a few in flight), and is durable
//! when the object store acknowledged it. A blob already stored with the
//! same size is not uploaded again.
//!
//! Reads stream, long ones in parallel segments ([`read`]); a body that
//! ends before the announced length is an error, never a short read.

use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::sync::{mpsc, Arc};
use std::time::{Duration, UNIX_EPOCH};

use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::path::Path;
use object_store::signer::{SignedUrlOptions, Signer};
use object_store::{
    ClientOptions, MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
};
use tempfile::NamedTempFile;

use super::{object_name, BlobInfo, BlobMeta, BlobStore};
use crate::config::S3Config;
use errors::{detail, Names};

mod errors;
mod read;

/// S3's limits on multipart uploads.
const MIN_PART: u64 = 5 << 20;
const MAX_PART: u64 = 5 << 30;
const MAX_PARTS: u64 = 10_000;
/// Parts uploading at once (each holds `part_bytes` of memory).
const PARTS_IN_FLIGHT: usize = 3;
/// A small object larger than this is refused by `get_object`.
const MAX_SMALL_OBJECT: u64 = 64 << 20;
/// The longest validity SigV4 allows a presigned URL.
const MAX_PRESIGN: Duration = Duration::from_secs(7 * 24 * 3600);

pub struct S3Blobs {
    store: Arc<AmazonS3>,
    /// `Some` until dropped (then shut down without blocking).
    rt: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    names: Arc<Names>,
    /// `""` or ending with `/`.
    prefix: String,
    multipart_threshold: u64,
    part_bytes: u64,
}

impl std::fmt::Debug for S3Blobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Drop for S3Blobs {
    fn drop(&mut self) {
        // dropping a runtime blocks, which panics inside async code
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// `""`, or the prefix with exactly one trailing `/`.
fn normalize_prefix(prefix: &str) -> io::Result<String> {
    let p = prefix.trim_matches('/');
    if p.is_empty() {
        return Ok(String::new());
    }
    object_name(p).map_err(|_| {
        invalid(format!(
            "[storage.s3] prefix {prefix:?} is not valid: use /-separated segments of letters, \
             digits, '.', '_' and '-'"
        ))
    })?;
    Ok(format!("{p}/"))
}

/// A `Content-Disposition` naming `filename`, with anything that could
/// break out of the quotes (or the header) replaced.
fn attachment(filename: &str) -> String {
    let safe: String = filename
        .chars()
        .take(200)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-+@()[],= ".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("attachment; filename=\"{safe}\"")
}

/// The size of each part of a multipart upload of `size` bytes: the
/// configured size within S3's limits, larger when it would take more than
/// 10 000 parts.
fn part_size(configured: u64, size: u64) -> u64 {
    configured
        .clamp(MIN_PART, MAX_PART)
        .max(size.div_ceil(MAX_PARTS))
}

impl S3Blobs {
    /// Connects (lazily: nothing is sent before the first request) to the
    /// bucket of `cfg`, with its credentials, or else those of
    /// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`.
    pub fn open(cfg: &S3Config) -> io::Result<S3Blobs> {
        if cfg.bucket.is_empty() {
            return Err(invalid("[storage.s3] bucket is not set".into()));
        }
        let prefix = normalize_prefix(&cfg.prefix)?;
        let (key, secret) =
            match (&cfg.access_key_id, &cfg.secret_access_key) {
                (Some(k), Some(s)) => (k.clone(), s.clone()),
                (None, None) => match (
                    env_var("AWS_ACCESS_KEY_ID"),
                    env_var("AWS_SECRET_ACCESS_KEY"),
                ) {
                    (Some(k), Some(s)) => (k, s),
                    _ => {
                        return Err(invalid(
                            "no credentials for the object store: set access_key_id and \
                         secret_access_key in [storage.s3], or the environment variables \
                         AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                                .into(),
                        ))
                    }
                },
                _ => return Err(invalid(
                    "[storage.s3] sets only one of access_key_id and secret_access_key: set both"
                        .into(),
                )),
            };
        let mut options = ClientOptions::new()
            // a download may take long: no limit on a whole request, but
            // one on a stalled connection
            .with_timeout_disabled()
            .with_connect_timeout(Duration::from_secs(5))
            .with_read_timeout(Duration::from_secs(60));
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&cfg.bucket)
            .with_region(&cfg.region)
            .with_access_key_id(key)
            .with_secret_access_key(secret)
            .with_virtual_hosted_style_request(!cfg.path_style)
            .with_retry(RetryConfig {
                max_retries: 4,
                retry_timeout: Duration::from_secs(30),
                ..RetryConfig::default()
            });
        let endpoint = match &cfg.endpoint {
            Some(e) => {
                let url = url::Url::parse(e).map_err(|err| {
                    invalid(format!("[storage.s3] endpoint {e:?} is not a URL: {err}"))
                })?;
                match url.scheme() {
                    "http" => options = options.with_allow_http(true),
                    "https" => {}
                    _ => {
                        return Err(invalid(format!(
                            "[storage.s3] endpoint {e:?} must start with http:// or https://"
                        )))
                    }
                }
                if !url.username().is_empty() || url.password().is_some() {
                    return Err(invalid(
                        "[storage.s3] endpoint must not hold credentials: set access_key_id \
                         and secret_access_key"
                            .into(),
                    ));
                }
                let e = e.trim_end_matches('/').to_owned();
                builder = builder.with_endpoint(&e);
                e
            }
            None => format!("AWS S3 ({})", cfg.region),
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("s3-blobs")
            .enable_all()
            .build()?;
        let store = {
            let _in_rt = rt.enter();
            builder.with_client_options(options).build().map_err(|e| {
                invalid(format!(
                    "[storage.s3] cannot be used: {}",
                    detail(&e as &(dyn std::error::Error + 'static))
                ))
            })?
        };
        Ok(S3Blobs {
            store: Arc::new(store),
            handle: rt.handle().clone(),
            rt: Some(rt),
            names: Arc::new(Names {
                bucket: cfg.bucket.clone(),
                endpoint,
            }),
            prefix,
            multipart_threshold: cfg.multipart_threshold_bytes,
            part_bytes: cfg.part_bytes,
        })
    }

    fn blob_path(&self, hash: &blake3::Hash) -> Path {
        let hex = hash.to_hex();
        Path::from(format!("{}blobs/{}/{}", self.prefix, &hex[..2], hex))
    }

    /// The key of a small object (whose name was checked).
    fn object_path(&self, name: &str) -> io::Result<Path> {
        let name = object_name(name)?;
        let first = name.split('/').next().unwrap_or_default();
        if first == "blobs" || first == "quarantine" {
            return Err(invalid(format!(
                "not a valid object name: {name:?} (blobs/ and quarantine/ hold blobs)"
            )));
        }
        Ok(Path::from(format!("{}{name}", self.prefix)))
    }

    /// Runs `fut` on the store's runtime and waits for its answer (from any
    /// thread, async or not).
    fn run<T, F>(&self, fut: F) -> io::Result<T>
    where
        T: Send + 'static,
        F: Future<Output = io::Result<T>> + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv()
            .map_err(|_| io::Error::other("the object store request stopped without an answer"))?
    }

    /// The size of the object at `path`, or `None`.
    fn head(&self, path: Path, what: String) -> io::Result<Option<u64>> {
        let (store, names) = (self.store.clone(), self.names.clone());
        self.run(async move {
            match store.head(&path).await {
                Ok(m) => Ok(Some(m.size)),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(names.err(&what, e)),
            }
        })
    }

    fn put_single(
        &self,
        tmp: &NamedTempFile,
        path: Path,
        size: u64,
        what: String,
    ) -> io::Result<()> {
        let mut body = vec![0u8; size as usize];
        tmp.as_file().read_exact_at(&mut body, 0)?;
        let (store, names) = (self.store.clone(), self.names.clone());
        self.run(async move {
            store
                .put(&path, PutPayload::from(body))
                .await
                .map(|_| ())
                .map_err(|e| names.write_err(&what, e))
        })
    }

    /// A multipart upload, its parts read from the file one at a time and
    /// [`PARTS_IN_FLIGHT`] uploading at once; aborted on any error.
    fn put_parts(
        &self,
        tmp: &NamedTempFile,
        path: Path,
        size: u64,
        what: String,
    ) -> io::Result<()> {
        let part = part_size(self.part_bytes, size);
        let (store, names) = (self.store.clone(), self.names.clone());
        let w = what.clone();
        let mut upload = self.run(async move {
            store
                .put_multipart(&path)
                .await
                .map_err(|e| names.write_err(&w, e))
        })?;
        let mut in_flight: VecDeque<mpsc::Receiver<object_store::Result<()>>> = VecDeque::new();
        let wait = |rx: mpsc::Receiver<object_store::Result<()>>| -> io::Result<()> {
            match rx.recv() {
                Ok(r) => r.map_err(|e| self.names.write_err(&what, e)),
                Err(_) => Err(io::Error::other(format!(
                    "{what}: a part upload stopped without an answer"
                ))),
            }
        };
        let mut sent = || -> io::Result<()> {
            let mut offset = 0;
            while offset < size {
                let n = part.min(size - offset) as usize;
                let mut buf = vec![0u8; n];
                tmp.as_file().read_exact_at(&mut buf, offset)?;
                offset += n as u64;
                if in_flight.len() >= PARTS_IN_FLIGHT {
                    if let Some(rx) = in_flight.pop_front() {
                        wait(rx)?;
                    }
                }
                let fut = upload.put_part(PutPayload::from(buf));
                let (tx, rx) = mpsc::sync_channel(1);
                self.handle.spawn(async move {
                    let _ = tx.send(fut.await);
                });
                in_flight.push_back(rx);
            }
            while let Some(rx) = in_flight.pop_front() {
                wait(rx)?;
            }
            Ok(())
        };
        let outcome = sent();
        // every part has ended (a failed one may leave others running)
        for rx in in_flight {
            let _ = rx.recv();
        }
        let names = self.names.clone();
        match outcome {
            Ok(()) => self.run(async move {
                match upload.complete().await {
                    Ok(_) => Ok(()),
                    Err(e) => {
                        let _ = upload.abort().await;
                        Err(names.write_err(&what, e))
                    }
                }
            }),
            Err(e) => {
                let _ = self.run(async move { upload.abort().await.map_err(io::Error::from) });
                Err(e)
            }
        }
    }
}

impl BlobStore for S3Blobs {
    fn describe(&self) -> String {
        format!(
            "s3://{}/{} at {}",
            self.names.bucket, self.prefix, self.names.endpoint
        )
    }

    fn put(&self, tmp: NamedTempFile, info: &BlobInfo) -> io::Result<()> {
        let hex = info.hex();
        let what = format!("store blob {hex}");
        let len = tmp.as_file().metadata()?.len();
        if len != info.size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{what}: the temp file holds {len} bytes, not {}", info.size),
            ));
        }
        let path = self.blob_path(&info.hash);
        match self.head(path.clone(), what.clone())? {
            // content-addressed: the same size is the same content
            Some(size) if size == info.size => return Ok(()),
            Some(size) => tracing::warn!(
                "blob {hex} in the object store has {size} bytes, not {}: uploading it again",
                info.size
            ),
            None => {}
        }
        if info.size < self.multipart_threshold {
            self.put_single(&tmp, path, info.size, what)
        } else {
            self.put_parts(&tmp, path, info.size, what)
        }
    }

    fn size(&self, hash: &blake3::Hash) -> io::Result<Option<u64>> {
        self.head(
            self.blob_path(hash),
            format!("look up blob {}", hash.to_hex()),
        )
    }

    fn read_range(
        &self,
        hash: &blake3::Hash,
        start: u64,
        len: Option<u64>,
    ) -> io::Result<Box<dyn Read + Send>> {
        let what = format!("read blob {}", hash.to_hex());
        let path = self.blob_path(hash);
        let mut range = None;
        if start > 0 || len.is_some() {
            // a range past the end is empty (as in a file), where S3
            // would answer 416
            let size = self.head(path.clone(), what.clone())?.ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{what}: not found in bucket {}", self.names.bucket),
                )
            })?;
            let end = len.map_or(size, |l| start.saturating_add(l).min(size));
            if start >= end {
                return Ok(Box::new(io::empty()));
            }
            range = Some(start..end);
        }
        let get = read::Get {
            store: self.store.clone(),
            path,
            names: self.names.clone(),
            what,
        };
        read::open(&self.handle, get, range)
    }

    fn delete(&self, hash: &blake3::Hash) -> io::Result<()> {
        let path = self.blob_path(hash);
        let what = format!("delete blob {}", hash.to_hex());
        let (store, names) = (self.store.clone(), self.names.clone());
        self.run(async move {
            match store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(names.write_err(&what, e)),
            }
        })
    }

    fn list(&self) -> io::Result<Vec<BlobMeta>> {
        let base = format!("{}blobs/", self.prefix);
        let (store, names) = (self.store.clone(), self.names.clone());
        self.run(async move {
            let mut out = Vec::new();
            let mut listing = store.list(Some(&Path::from(base.as_str())));
            while let Some(item) = listing.next().await {
                let m = item.map_err(|e| names.write_err("list the blobs", e))?;
                // blobs/<2 hex>/<64 hex>, exactly as written: anything else
                // is not ours
                let Some((dir, hex)) = m
                    .location
                    .as_ref()
                    .strip_prefix(&base)
                    .and_then(|k| k.split_once('/'))
                else {
                    continue;
                };
                let Ok(hash) = blake3::Hash::from_hex(hex) else {
                    continue;
                };
                if hash.to_hex().as_str() != hex || dir != &hex[..2] {
                    continue;
                }
                let secs = m.last_modified.timestamp().max(0) as u64;
                out.push(BlobMeta {
                    hash,
                    size: m.size,
                    modified: UNIX_EPOCH + Duration::from_secs(secs),
                });
            }
            Ok(out)
        })
    }

    /// A no-op: objects cannot be touched without copying them. GC's grace
    /// period for a reused blob counts from the index's note of its use
    /// (`Index::note_blob_use`), which covers every replica.
    fn touch(&self, _hash: &blake3::Hash) {}

    fn local_path(&self, _hash: &blake3::Hash) -> Option<std::path::PathBuf> {
        None
    }

    fn quarantine(&self, hash: &blake3::Hash) -> io::Result<()> {
        let hex = hash.to_hex();
        let from = self.blob_path(hash);
        let to = Path::from(format!("{}quarantine/{hex}", self.prefix));
        let what = format!("quarantine blob {hex}");
        let (store, names) = (self.store.clone(), self.names.clone());
        self.run(async move {
            store
                .copy(&from, &to)
                .await
                .map_err(|e| names.err(&what, e))?;
            match store.delete(&from).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(names.write_err(&what, e)),
            }
        })
    }

    fn free_bytes(&self) -> io::Result<Option<u64>> {
        Ok(None)
    }

    fn presigned_url(
        &self,
        hash: &blake3::Hash,
        filename: Option<&str>,
        ttl: Duration,
    ) -> io::Result<Option<String>> {
        let path = self.blob_path(hash);
        let ttl = ttl.clamp(Duration::from_secs(1), MAX_PRESIGN);
        let mut opts = SignedUrlOptions::default();
        if let Some(f) = filename {
            opts = opts.with_query([("response-content-disposition", attachment(f))]);
        }
        let what = format!("presign a URL for blob {}", hash.to_hex());
        let (store, names) = (self.store.clone(), self.names.clone());
        self.run(async move {
            // reqwest's Method is the `http` crate's, as object_store's
            store
                .signed_url_opts(reqwest::Method::GET, &path, ttl, &opts)
                .await
                .map(|u| Some(u.to_string()))
                .map_err(|e| names.err(&what, e))
        })
    }

    /// One listing of at most one key: answers for a reachable bucket with
    /// valid credentials.
    fn ping(&self) -> io::Result<()> {
        let prefix = (!self.prefix.is_empty()).then(|| self.prefix.clone());
        let (store, names) = (self.store.clone(), self.names.clone());
        self.run(async move {
            let opts = PaginatedListOptions {
                max_keys: Some(1),
                ..PaginatedListOptions::default()
            };
            store
                .list_paginated(prefix.as_deref(), opts)
                .await
                .map(|_| ())
                .map_err(|e| names.write_err("reach the object store", e))
        })
    }

    fn put_object(&self, name: &str, body: &[u8]) -> io::Result<()> {
        let path = self.object_path(name)?;
        let what = format!("store object {name}");
        let payload = PutPayload::from(body.to_vec());
        let (store, names) = (self.store.clone(), self.names.clone());
        self.run(async move {
            store
                .put(&path, payload)
                .await
                .map(|_| ())
                .map_err(|e| names.write_err(&what, e))
        })
    }

    fn get_object(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        let path = self.object_path(name)?;
        let what = format!("read object {name}");
        let (store, names) = (self.store.clone(), self.names.clone());
        self.run(async move {
            let got = match store.get(&path).await {
                Ok(g) => g,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(names.err(&what, e)),
            };
            if got.meta.size > MAX_SMALL_OBJECT {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{what}: {} bytes, more than a small object may hold ({MAX_SMALL_OBJECT})",
                        got.meta.size
                    ),
                ));
            }
            let bytes = got.bytes().await.map_err(|e| names.err(&what, e))?;
            Ok(Some(bytes.to_vec()))
        })
    }

    fn list_objects(&self, prefix: &str) -> io::Result<Vec<String>> {
        let Some(dir) = prefix.strip_suffix('/') else {
            return Err(invalid("an object prefix ends with /".into()));
        };
        let base = self.object_path(dir)?;
        let strip = self.prefix.clone();
        let what = format!("list the objects under {prefix}");
        let (store, names) = (self.store.clone(), self.names.clone());
        self.run(async move {
            let mut out = Vec::new();
            let mut listing = store.list(Some(&base));
            while let Some(item) = listing.next().await {
                let m = item.map_err(|e| names.write_err(&what, e))?;
                if let Some(name) = m.location.as_ref().strip_prefix(&strip) {
                    out.push(name.to_owned());
                }
            }
            out.sort();
            Ok(out)
        })
    }

    fn delete_object(&self, name: &str) -> io::Result<()> {
        let path = self.object_path(name)?;
        let what = format!("delete object {name}");
        let (store, names) = (self.store.clone(), self.names.clone());
        self.run(async move {
            match store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(names.write_err(&what, e)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_normalized_and_checked() {
        assert_eq!(normalize_prefix("").unwrap(), "");
        assert_eq!(normalize_prefix("/").unwrap(), "");
        assert_eq!(normalize_prefix("a").unwrap(), "a/");
        assert_eq!(normalize_prefix("a/b/").unwrap(), "a/b/");
        assert!(normalize_prefix("a/../b").is_err());
        assert!(normalize_prefix("a b").is_err());
    }

    #[test]
    fn parts_respect_s3_limits() {
        assert_eq!(part_size(1, 100), MIN_PART);
        assert_eq!(part_size(16 << 20, 1 << 30), 16 << 20);
        assert_eq!(part_size(u64::MAX, 1 << 30), MAX_PART);
        // 10 000 parts at most
        let big = 1u64 << 40;
        assert!(big.div_ceil(part_size(5 << 20, big)) <= MAX_PARTS);
    }

    #[test]
    fn attachment_names_cannot_break_out() {
        assert_eq!(
            attachment("pkg-1.0_x86.tar.zst"),
            "attachment; filename=\"pkg-1.0_x86.tar.zst\""
        );
        assert_eq!(
            attachment("a\"b\r\nX: y;é"),
            "attachment; filename=\"a_b__X_ y__\""
        );
    }

    #[test]
    fn open_needs_credentials_and_a_sane_endpoint() {
        let mut cfg = S3Config {
            bucket: "b".into(),
            endpoint: Some("ftp://127.0.0.1:1".into()),
            access_key_id: Some("k".into()),
            secret_access_key: Some("s".into()),
            ..S3Config::default()
        };
        let e = S3Blobs::open(&cfg).unwrap_err();
        assert!(e.to_string().contains("http://"), "{e}");
        cfg.endpoint = Some("http://127.0.0.1:1".into());
        cfg.secret_access_key = None;
        let e = S3Blobs::open(&cfg).unwrap_err();
        assert!(e.to_string().contains("set both"), "{e}");
        cfg.secret_access_key = Some("s3cr3t-value".into());
        cfg.prefix = "team/".into();
        let s = S3Blobs::open(&cfg).unwrap();
        assert_eq!(s.describe(), "s3://b/team/ at http://127.0.0.1:1");
        assert!(!format!("{s:?}").contains("s3cr3t"));
    }
}
