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
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("the body is larger than the configured limit of {limit} bytes"),
    )
}

pub async fn receive(
    req: &HttpRequest,
    mut payload: web::Payload,
    blobs: &BlobStore,
    limit: u64,
) -> Result<Received, ApiError> {
    let declared = req
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    let file = blobs.temp_file().map_err(ApiError::internal)?;
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
        let chunk = chunk.map_err(|e| {
            ApiError::bad_request(format!(
                "the upload did not arrive whole ({e}): nothing stored"
            ))
        })?;
        seen += chunk.len() as u64;
        if seen > limit {
            return Err(too_large(limit));
        }
        if tx.send(chunk).await.is_err() {
            break; // the writer failed; its error is reported below
        }
    }
    drop(tx);
    let received = writer.await?.map_err(ApiError::internal)?;
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
