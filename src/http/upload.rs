//! Receiving a request body into a temp file: streamed, hashed on a
//! blocking thread, capped at the configured size (413), and refused when
//! the client stops early (nothing is kept).

use std::io::{BufWriter, Write};

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use bytes::Bytes;
use futures_util::StreamExt;
use tempfile::NamedTempFile;
use tokio::sync::mpsc;

use super::error::ApiError;
use crate::store::BlobStore;

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

/// Refuses (507) a body whose declared length would not leave
/// `min_free` bytes free on the data directory's disk.
pub fn check_room(req: &HttpRequest, blobs: &BlobStore, min_free: u64) -> Result<(), ApiError> {
    let Some(n) = declared_length(req) else {
        return Ok(());
    };
    match crate::store::free_bytes(blobs.root()) {
        Ok(free) if free < n.saturating_add(min_free) => Err(ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "insufficient_storage",
            format!(
                "the store has {free} bytes free; a {n}-byte upload would leave less than its \
                 floor of {min_free} (min_free_bytes): nothing stored"
            ),
        )),
        _ => Ok(()),
    }
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

pub async fn receive(
    req: &HttpRequest,
    mut payload: web::Payload,
    blobs: &BlobStore,
    limit: u64,
) -> Result<Received, ApiError> {
    let declared = declared_length(req);
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    let file = blobs.temp_file().map_err(|e| ApiError::io(&e))?;
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
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::body_error(&e))?;
        seen += chunk.len() as u64;
        if seen > limit {
            return Err(too_large(limit));
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
