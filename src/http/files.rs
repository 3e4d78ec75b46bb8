//! Serving a blob file: streamed as 2 MiB mmap windows prepared on a
//! blocking thread (never held in memory), with `ETag`/`If-None-Match`, single `Range`
//! requests, `Content-Length`, and HEAD without reading the file.

use std::fs::File;
use std::io;
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
    pub path: PathBuf,
    /// The blob's blake3 (hex), used as the strong ETag.
    pub etag: String,
    pub content_type: &'static str,
    /// `Content-Disposition` file name, if any.
    pub filename: Option<String>,
    /// Content under this URL never changes (blob URLs).
    pub immutable: bool,
}

pub fn serve(req: &HttpRequest, spec: FileSpec) -> Result<HttpResponse, ApiError> {
    let file = File::open(&spec.path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            ApiError::not_found("the blob is missing from the store (run `artifact-store verify`)")
        } else {
            ApiError::internal(format!("{}: {e}", spec.path.display()))
        }
    })?;
    let len = file.metadata().map_err(ApiError::internal)?.len();
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

    if let Some(inm) = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    {
        let hit = inm
            .split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == "*" || t == etag || t.trim_matches('"') == spec.etag);
        if hit {
            return Ok(b.status(StatusCode::NOT_MODIFIED).finish());
        }
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
                return Ok(HttpResponse::build(StatusCode::RANGE_NOT_SATISFIABLE)
                    .insert_header((header::CONTENT_RANGE, format!("bytes */{len}")))
                    .json(crate::api::ErrorBody::new(
                        "range_not_satisfiable",
                        format!("range {r} is outside the {len} bytes of this file"),
                    )))
            }
        },
        _ => (0, len),
    };

    if req.method() == Method::HEAD {
        return Ok(b.body(SizedStream::new(count, LazyFile::empty())));
    }
    Ok(b.body(SizedStream::new(count, LazyFile::new(file, start, count))))
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

/// A file body that starts reading (on a blocking thread) only when first
/// polled, so a HEAD answer or a dropped connection reads nothing.
struct LazyFile {
    pending: Option<(File, u64, u64)>,
    rx: Option<mpsc::Receiver<io::Result<Bytes>>>,
}

impl LazyFile {
    fn new(f: File, start: u64, count: u64) -> Self {
        Self {
            pending: Some((f, start, count)),
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

impl Stream for LazyFile {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some((f, start, count)) = self.pending.take() {
            let (tx, rx) = mpsc::channel(2);
            tokio::task::spawn_blocking(move || read_loop(f, start, count, tx));
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
