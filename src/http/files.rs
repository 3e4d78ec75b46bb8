//! Serving a blob: a local file streamed as 2 MiB mmap windows prepared on
//! a blocking thread, or a blob held elsewhere (object storage) streamed
//! from a ranged read, or a `307` to a presigned URL of the object store;
//! never held in memory. `ETag`/`If-None-Match`, single `Range` requests,
//! `Content-Length`, and HEAD without reading the blob.

use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::body::SizedStream;
use actix_web::http::{header, Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::mpsc;

use super::error::ApiError;

const CHUNK: usize = 2 << 20;

/// What to serve and how to label it.
pub struct FileSpec {
    /// The blob's blake3 (hex), used as the strong ETag.
    pub etag: String,
    pub content_type: &'static str,
    /// `Content-Disposition` file name, if any.
    pub filename: Option<String>,
    /// Content under this URL never changes (blob URLs).
    pub immutable: bool,
}

/// Opens `count` bytes from `start` of a blob held elsewhere (blocking).
pub type Opener = Box<dyn FnOnce(u64, u64) -> Result<Box<dyn Read + Send>, ApiError> + Send>;

/// Serves a local file with mmap windows.
pub fn serve(req: &HttpRequest, path: PathBuf, spec: FileSpec) -> Result<HttpResponse, ApiError> {
    let file = File::open(&path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            ApiError::blob_lost()
        } else {
            ApiError::internal(format!("{}: {e}", path.display()))
        }
    })?;
    let len = file.metadata().map_err(ApiError::internal)?.len();
    let (mut b, start, count) = match headers(req, &spec, len) {
        Prepared::Done(r) => return Ok(r),
        Prepared::Send(b, s, c) => (b, s, c),
    };
    if req.method() == Method::HEAD {
        return Ok(b.body(SizedStream::new(count, Lazy::empty())));
    }
    Ok(b.body(SizedStream::new(count, Lazy::file(file, start, count))))
}

/// Serves a blob of `len` bytes held elsewhere (object storage), read
/// through `open`; the read starts before the answer does, so a blob the
/// store lost is an error answer, never a truncated 200.
pub async fn serve_reader(
    req: &HttpRequest,
    len: u64,
    open: Opener,
    spec: FileSpec,
) -> Result<HttpResponse, ApiError> {
    let (mut b, start, count) = match headers(req, &spec, len) {
        Prepared::Done(r) => return Ok(r),
        Prepared::Send(b, s, c) => (b, s, c),
    };
    if req.method() == Method::HEAD {
        return Ok(b.body(SizedStream::new(count, Lazy::empty())));
    }
    let reader = tokio::task::spawn_blocking(move || open(start, count))
        .await
        .map_err(ApiError::internal)??;
    Ok(b.body(SizedStream::new(count, Lazy::reader(reader, count))))
}

/// A `307` to `url` (a presigned URL of the object store), unless the
/// client's copy is current (`304`). The ETag is ours (the blake3).
pub fn redirect(req: &HttpRequest, etag: &str, url: &str) -> HttpResponse {
    let etag = format!("\"{etag}\"");
    if not_modified(req, &etag) {
        return HttpResponse::NotModified()
            .insert_header((header::ETAG, etag))
            .finish();
    }
    HttpResponse::TemporaryRedirect()
        .insert_header((header::LOCATION, url))
        .insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, "private, no-store"))
        .finish()
}

fn not_modified(req: &HttpRequest, etag: &str) -> bool {
    req.headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|inm| {
            inm.split(',')
                .map(|t| t.trim().trim_start_matches("W/"))
                .any(|t| t == "*" || t == etag || t.trim_matches('"') == etag.trim_matches('"'))
        })
}

enum Prepared {
    /// Answer this (304, 416).
    Done(HttpResponse),
    /// Send `count` bytes from `start` with these headers.
    Send(actix_web::HttpResponseBuilder, u64, u64),
}

/// Status and headers for serving `len` bytes: ETag, conditional request,
/// content type and disposition, a single range.
fn headers(req: &HttpRequest, spec: &FileSpec, len: u64) -> Prepared {
    let etag = format!("\"{}\"", spec.etag);
    let mut b = HttpResponse::build(StatusCode::OK);
    b.insert_header((header::ETAG, etag.as_str()))
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .insert_header((
            header::CACHE_CONTROL,
            if spec.immutable {
                "public, max-age=31536000, immutable"
            } else {
                "no-cache"
            },
        ));
    if not_modified(req, &etag) {
        return Prepared::Done(b.status(StatusCode::NOT_MODIFIED).finish());
    }
    b.insert_header((header::CONTENT_TYPE, spec.content_type));
    if let Some(name) = &spec.filename {
        b.insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\""),
        ));
    }
    let (start, count) = match req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
    {
        Some(r) if if_range_ok(req, &etag) => match parse_range(r, len) {
            RangeSpec::Full => (0, len),
            RangeSpec::Part(s, e) => {
                b.status(StatusCode::PARTIAL_CONTENT)
                    .insert_header((header::CONTENT_RANGE, format!("bytes {s}-{e}/{len}")));
                (s, e - s + 1)
            }
            RangeSpec::Unsatisfiable => {
                return Prepared::Done(
                    HttpResponse::build(StatusCode::RANGE_NOT_SATISFIABLE)
                        .insert_header((header::CONTENT_RANGE, format!("bytes */{len}")))
                        .json(crate::api::ErrorBody::new(
                            "range_not_satisfiable",
                            format!("range {r} is outside the {len} bytes of this file"),
                        )),
                )
            }
        },
        _ => (0, len),
    };
    Prepared::Send(b, start, count)
}

/// `If-Range` absent, or naming our ETag.
fn if_range_ok(req: &HttpRequest, etag: &str) -> bool {
    match req
        .headers()
        .get(header::IF_RANGE)
        .and_then(|v| v.to_str().ok())
    {
        None => true,
        Some(v) => v.trim() == etag,
    }
}

#[derive(Debug, PartialEq, Eq)]
enum RangeSpec {
    Full,
    /// Inclusive byte positions.
    Part(u64, u64),
    Unsatisfiable,
}

/// One `bytes=` range; anything we do not support (several ranges, other
/// units, garbage) is served in full, as RFC 9110 allows.
fn parse_range(h: &str, len: u64) -> RangeSpec {
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return RangeSpec::Full;
    };
    if spec.contains(',') {
        return RangeSpec::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeSpec::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    let parsed = match (a.is_empty(), b.is_empty()) {
        (true, false) => b.parse::<u64>().ok().map(|n| {
            if n == 0 || len == 0 {
                None
            } else {
                Some((len.saturating_sub(n), len - 1))
            }
        }),
        (false, true) => a
            .parse::<u64>()
            .ok()
            .map(|s| (s < len).then(|| (s, len - 1))),
        (false, false) => match (a.parse::<u64>(), b.parse::<u64>()) {
            (Ok(s), Ok(e)) if s <= e => Some((s < len).then(|| (s, e.min(len - 1)))),
            _ => None,
        },
        (true, true) => None,
    };
    match parsed {
        None => RangeSpec::Full,
        Some(None) => RangeSpec::Unsatisfiable,
        Some(Some((s, e))) => RangeSpec::Part(s, e),
    }
}

/// A body that starts reading (on a blocking thread) only when first
/// polled, so a HEAD answer or a dropped connection reads nothing.
struct Lazy {
    pending: Option<Source>,
    rx: Option<mpsc::Receiver<io::Result<Bytes>>>,
}

enum Source {
    File(File, u64, u64),
    Reader(Box<dyn Read + Send>, u64),
}

impl Lazy {
    fn file(f: File, start: u64, count: u64) -> Self {
        Self {
            pending: Some(Source::File(f, start, count)),
            rx: None,
        }
    }
    fn reader(r: Box<dyn Read + Send>, count: u64) -> Self {
        Self {
            pending: Some(Source::Reader(r, count)),
            rx: None,
        }
    }
    fn empty() -> Self {
        Self {
            pending: None,
            rx: None,
        }
    }
}

/// Sends the file as mmap windows of `CHUNK` bytes, each prefaulted here
/// (`MAP_POPULATE`, so disk reads block this thread, never an HTTP worker)
/// and unmapped as soon as it has been written to the socket. The only
/// copy is the kernel's into the socket, and at most a few windows are
/// mapped at once. Blobs are never modified in place (only renamed into
/// place and unlinked), so a mapping cannot see a truncated file.
fn read_loop(f: File, start: u64, left: u64, tx: mpsc::Sender<io::Result<Bytes>>) {
    let end = start + left;
    let mut pos = start;
    while pos < end {
        let n = (end - pos).min(CHUNK as u64) as usize;
        // SAFETY: the blob file is immutable while mapped (see above).
        let map = unsafe {
            memmap2::MmapOptions::new()
                .offset(pos)
                .len(n)
                .populate()
                .map(&f)
        };
        let chunk = match map {
            Ok(m) => Bytes::from_owner(m),
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        pos += n as u64;
        if tx.blocking_send(Ok(chunk)).is_err() {
            return; // client went away
        }
    }
}

/// Sends exactly `left` bytes of a reader in chunks; a reader that ends
/// early is an error (the connection is cut, never a short 200).
fn copy_loop(mut r: Box<dyn Read + Send>, mut left: u64, tx: mpsc::Sender<io::Result<Bytes>>) {
    const READ: usize = 1 << 20;
    while left > 0 {
        let want = left.min(READ as u64) as usize;
        let mut buf = vec![0u8; want];
        let mut got = 0;
        while got < want {
            match r.read(&mut buf[got..]) {
                Ok(0) => {
                    let _ = tx.blocking_send(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the blob store sent fewer bytes than the blob holds",
                    )));
                    return;
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
        left -= want as u64;
        if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
            return; // client went away
        }
    }
}

impl Stream for Lazy {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(src) = self.pending.take() {
            let (tx, rx) = mpsc::channel(4);
            match src {
                Source::File(f, start, count) => {
                    tokio::task::spawn_blocking(move || read_loop(f, start, count, tx));
                }
                Source::Reader(r, count) => {
                    tokio::task::spawn_blocking(move || copy_loop(r, count, tx));
                }
            }
            self.rx = Some(rx);
        }
        match self.rx.as_mut() {
            Some(rx) => rx.poll_recv(cx),
            None => Poll::Ready(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::Just;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), RangeSpec::Part(0, 9));
        assert_eq!(parse_range("bytes=90-", 100), RangeSpec::Part(90, 99));
        assert_eq!(parse_range("bytes=-10", 100), RangeSpec::Part(90, 99));
        assert_eq!(parse_range("bytes=95-200", 100), RangeSpec::Part(95, 99));
        assert_eq!(parse_range("bytes=100-", 100), RangeSpec::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), RangeSpec::Full);
        assert_eq!(parse_range("items=0-1", 100), RangeSpec::Full);
        assert_eq!(parse_range("bytes=9-1", 100), RangeSpec::Full);
    }

    fn cases() -> u32 {
        std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(256)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: cases(),
            failure_persistence: None,
            ..Default::default()
        })]

        /// Whatever the header, a served part lies inside the file.
        #[test]
        fn a_range_is_inside_the_file(
            h in proptest::prop_oneof![
                "bytes=[0-9]{0,21}-[0-9]{0,21}",
                "bytes= ?-?[0-9]{0,5} ?- ?[0-9]{0,5}(,[0-9]-[0-9])?",
                "\\PC{0,30}",
            ],
            len in proptest::prop_oneof![Just(0u64), 0u64..10_000, Just(u64::MAX)],
        ) {
            match parse_range(&h, len) {
                RangeSpec::Part(s, e) => {
                    proptest::prop_assert!(s <= e && e < len, "{h} {len}: {s}-{e}");
                }
                RangeSpec::Full | RangeSpec::Unsatisfiable => {}
            }
        }
    }
}
