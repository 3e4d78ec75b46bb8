//! Request bodies: every body is read through [`IdleBody`], which fails
//! when no bytes arrive for `http.body_idle_secs` (handlers then answer 408
//! and drop what they had: temp files are removed on drop); uploads stream
//! into a scratch temp file, hashed on a blocking thread and capped (413);
//! small JSON bodies are read whole with a cap; an upload whose declared
//! length would leave the disk below its floor is refused (507) before it
//! is read.

use std::future::Future;
use std::io::{BufWriter, Write};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tempfile::NamedTempFile;
use tokio::sync::mpsc;

use super::error::ApiError;
use crate::components::Components;

pub struct IdleBody {
    inner: Payload,
    idle: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    /// Slower than this on average (after the first `idle`) is a stall too.
    min_rate: u64,
    started: tokio::time::Instant,
    received: u64,
}

impl IdleBody {
    pub fn new(inner: Payload, idle: Duration, min_rate: u64) -> Self {
        Self {
            inner,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
            min_rate,
            started: tokio::time::Instant::now(),
            received: 0,
        }
    }

    fn too_slow(&self) -> Option<PayloadError> {
        let secs = self.started.elapsed().as_secs_f64();
        let slow =
            secs > self.idle.as_secs_f64() && (self.received as f64) < self.min_rate as f64 * secs;
        slow.then(|| {
            PayloadError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "the request body arrives slower than {} bytes/s (http.body_min_bytes_per_sec)",
                    self.min_rate
                ),
            ))
        })
    }
}

impl Stream for IdleBody {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(b))) => {
                self.received += b.len() as u64;
                if let Some(e) = self.too_slow() {
                    return Poll::Ready(Some(Err(e)));
                }
                let next = tokio::time::Instant::now() + self.idle;
                self.timer.as_mut().reset(next);
                Poll::Ready(Some(Ok(b)))
            }
            Poll::Ready(other) => Poll::Ready(other),
            Poll::Pending => match self.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "the request body sent nothing for {} s (http.body_idle_secs)",
                        self.idle.as_secs()
                    ),
                ))))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

/// Whether a request announces a body (a length above 0, or chunked).
pub fn has_body(h: &actix_web::http::header::HeaderMap) -> bool {
    use actix_web::http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
    h.contains_key(TRANSFER_ENCODING)
        || h.get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}

/// A fully received body.
pub struct Received {
    pub file: NamedTempFile,
    pub hash: blake3::Hash,
    pub size: u64,
}

fn too_large(limit: u64) -> ApiError {
    ApiError::too_large(format!(
        "the body is larger than the configured limit of {limit} bytes"
    ))
}

fn declared_length(req: &HttpRequest) -> Option<u64> {
    req.headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Refuses (507) a body whose declared length (0 when chunked) would not
/// leave `min_free_bytes` free.
pub fn check_room(req: &HttpRequest, components: &Components) -> Result<(), ApiError> {
    let n = declared_length(req).unwrap_or(0);
    components.room_for(n).map_err(|(free, floor)| {
        ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "insufficient_storage",
            format!(
                "the store has {free} bytes free; a {n}-byte upload would leave less than its \
                 floor of {floor} (min_free_bytes): nothing stored"
            ),
        )
    })
}

/// Largest body of the original API's JSON requests.
pub const SMALL_BODY: usize = 256 << 10;

/// A small request body (JSON on the original API's routes) read whole,
/// with a limit answered as 413 JSON.
pub async fn read_small(mut payload: web::Payload, limit: usize) -> Result<Bytes, ApiError> {
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::body_error(&e))?;
        if buf.len() + chunk.len() > limit {
            return Err(ApiError::too_large(format!(
                "the request body is larger than the limit of {limit} bytes"
            )));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// How often (in bytes received) a growing upload is checked against the
/// free-space floor.
const ROOM_CHECK_EVERY: u64 = 64 << 20;

/// Streams an upload into a scratch temp file, hashing it.
pub async fn receive(
    req: &HttpRequest,
    mut payload: web::Payload,
    components: &Components,
    limit: u64,
) -> Result<Received, ApiError> {
    let declared = declared_length(req);
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    let file = components
        .scratch()
        .temp_file()
        .map_err(|e| ApiError::io(&e))?;
    let (tx, mut rx) = mpsc::channel::<Bytes>(8);
    let writer = tokio::task::spawn_blocking(move || -> std::io::Result<Received> {
        let mut hasher = blake3::Hasher::new();
        let mut size = 0u64;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        while let Some(chunk) = rx.blocking_recv() {
            w.write_all(&chunk)?;
            hasher.update(&chunk);
            size += chunk.len() as u64;
        }
        let file = w.into_inner().map_err(|e| e.into_error())?;
        Ok(Received {
            file,
            hash: hasher.finalize(),
            size,
        })
    });

    let mut seen = 0u64;
    let mut next_check = ROOM_CHECK_EVERY;
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::body_error(&e))?;
        seen += chunk.len() as u64;
        if seen > limit {
            return Err(too_large(limit));
        }
        // a body of unknown length is checked against the floor as it grows
        if seen >= next_check {
            next_check = seen + ROOM_CHECK_EVERY;
            check_room(req, components)?;
        }
        if tx.send(chunk).await.is_err() {
            break; // the writer failed; its error is reported below
        }
    }
    drop(tx);
    let received = writer.await?.map_err(|e| ApiError::io(&e))?;
    if let Some(n) = declared {
        if n != received.size {
            return Err(ApiError::bad_request(format!(
                "the upload stopped after {} of {n} bytes: nothing stored",
                received.size
            )));
        }
    }
    Ok(received)
}
