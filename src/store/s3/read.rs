//! Streamed reads of an object: a task on the store's runtime pulls the
//! answer into a channel of chunks bounded in bytes ([`READ_AHEAD`]), and
//! a blocking [`Read`] drains it. One answer carries a read, unless a long
//! one ([`PARALLEL_FROM`]) streams slower than [`FAST_STREAM`] over its
//! first [`SEGMENT`] (one connection to a distant object store rarely
//! carries its bandwidth): then the rest comes as ranged GETs of the same
//! version (`If-Match`), [`SEGMENTS_IN_FLIGHT`] at a time, delivered in
//! order. Whatever ends before the announced length is an error, never a
//! short read.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::ops::Range;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use futures_util::StreamExt;
use object_store::aws::AmazonS3;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::errors::Names;

/// Bytes of an answer a reader holds ahead of its consumer.
const READ_AHEAD: usize = 8 << 20;
/// Reads at least this long may fetch segments in parallel.
const PARALLEL_FROM: u64 = 32 << 20;
/// The length of each segment of a long read.
const SEGMENT: u64 = 8 << 20;
/// A long read whose first answer streams slower than this (bytes a
/// second, waiting on the network only) fetches the rest in segments.
const FAST_STREAM: u64 = 256 << 20;
/// Segments fetched at once, ahead of the one being read (each held in
/// memory once fetched).
const SEGMENTS_IN_FLIGHT: usize = 3;

/// What to read.
pub(super) struct Get {
    pub store: Arc<AmazonS3>,
    pub path: Path,
    pub names: Arc<Names>,
    /// For messages: `read blob <hex>`.
    pub what: String,
}

/// What the pumping task sends to its reader.
enum Chunk {
    /// The length of the answer (first).
    Start(u64),
    /// Bytes, and the read-ahead they take.
    Data(Bytes, u32),
    Fail(io::Error),
}

/// Streams `range` of the object (all of it with `None`): returns once the
/// object store answered (`NotFound` then, when absent).
pub(super) fn open(
    handle: &tokio::runtime::Handle,
    get: Get,
    range: Option<Range<u64>>,
) -> io::Result<Box<dyn Read + Send>> {
    // unbounded in chunks, bounded in bytes by `ahead` (a blocking send
    // would stall a worker of the runtime)
    let (tx, rx) = mpsc::channel();
    let ahead = Arc::new(Semaphore::new(READ_AHEAD));
    let what = get.what.clone();
    let out = Out {
        tx,
        ahead: ahead.clone(),
    };
    handle.spawn(pump(get, range, out));
    let want = match rx.recv() {
        Ok(Chunk::Start(n)) => n,
        Ok(Chunk::Fail(e)) => return Err(e),
        _ => {
            return Err(io::Error::other(format!(
                "{what}: the request stopped without an answer"
            )))
        }
    };
    Ok(Box::new(BodyReader {
        rx,
        ahead,
        cur: Bytes::new(),
        cur_permits: 0,
        want,
        got: 0,
        what,
        failed: None,
        ended: false,
    }))
}

/// The task's end of the channel.
struct Out {
    tx: mpsc::Sender<Chunk>,
    ahead: Arc<Semaphore>,
}

impl Out {
    /// Sends bytes once there is room; false when the reader is gone.
    async fn send(&self, bytes: Bytes) -> bool {
        if bytes.is_empty() {
            return true;
        }
        let permits = bytes.len().min(READ_AHEAD) as u32;
        match self.ahead.acquire_many(permits).await {
            Ok(p) => p.forget(),
            Err(_) => return false,
        }
        self.tx.send(Chunk::Data(bytes, permits)).is_ok()
    }

    fn fail(&self, e: io::Error) {
        let _ = self.tx.send(Chunk::Fail(e));
    }
}

/// A segment being fetched; cancelled when dropped (the reader gave up).
struct Fetch(JoinHandle<io::Result<Vec<Bytes>>>);

impl Drop for Fetch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One segment, whole (its chunks as they came), from the same version
/// of the object (`etag`).
async fn fetch(get: Arc<Get>, range: Range<u64>, etag: Option<String>) -> io::Result<Vec<Bytes>> {
    let want = range.end - range.start;
    let opts = GetOptions {
        range: Some(GetRange::Bounded(range)),
        if_match: etag,
        ..GetOptions::default()
    };
    let answer = get
        .store
        .get_opts(&get.path, opts)
        .await
        .map_err(|e| get.names.err(&get.what, e))?;
    let mut body = answer.into_stream();
    let (mut chunks, mut got) = (Vec::new(), 0u64);
    while let Some(item) = body.next().await {
        let bytes = item.map_err(|e| get.names.err(&get.what, e))?;
        got += bytes.len() as u64;
        chunks.push(bytes);
    }
    if got != want {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "{}: the object store sent {got} of the {want} bytes of a segment",
                get.what
            ),
        ));
    }
    Ok(chunks)
}

async fn pump(get: Get, range: Option<Range<u64>>, out: Out) {
    let opts = GetOptions {
        range: range.map(GetRange::Bounded),
        ..GetOptions::default()
    };
    let first = match get.store.get_opts(&get.path, opts).await {
        Ok(r) => r,
        Err(e) => return out.fail(get.names.err(&get.what, e)),
    };
    let all = first.range.clone();
    let first_etag = first.meta.e_tag.clone();
    if out.tx.send(Chunk::Start(all.end - all.start)).is_err() {
        return;
    }
    // the first answer carries it all, unless a long read finds it slow:
    // then the rest comes in parallel segments
    let mut judge_at = if all.end - all.start >= PARALLEL_FROM {
        SEGMENT
    } else {
        u64::MAX
    };
    let (mut sent, mut waited) = (0u64, Duration::ZERO);
    let mut body = first.into_stream();
    let total = all.end - all.start;
    while sent < total {
        let asked = Instant::now();
        let item = body.next().await;
        waited += asked.elapsed();
        match item {
            Some(Ok(mut bytes)) => {
                bytes.truncate((total - sent).min(bytes.len() as u64) as usize);
                sent += bytes.len() as u64;
                if !out.send(bytes).await {
                    return;
                }
                if sent >= judge_at {
                    judge_at = u64::MAX;
                    if (sent as f64) < FAST_STREAM as f64 * waited.as_secs_f64() {
                        break;
                    }
                }
            }
            Some(Err(e)) => return out.fail(get.names.err(&get.what, e)),
            // the reader counts what is missing
            None => return,
        }
    }
    // hang up on the rest of a slow answer
    drop(body);
    let etag = first_etag;
    let get = Arc::new(get);
    let mut segments = (all.start + sent..all.end)
        .step_by(SEGMENT as usize)
        .map(|s| s..(s + SEGMENT).min(all.end));
    let start = |r: Range<u64>| Fetch(tokio::spawn(fetch(get.clone(), r, etag.clone())));
    let mut pending: VecDeque<Fetch> = segments
        .by_ref()
        .take(SEGMENTS_IN_FLIGHT)
        .map(start)
        .collect();
    while let Some(mut f) = pending.pop_front() {
        if let Some(r) = segments.next() {
            pending.push_back(start(r));
        }
        let chunks = match (&mut f.0).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return out.fail(e),
            Err(_) => {
                return out.fail(io::Error::other(format!(
                    "{}: a segment fetch stopped",
                    get.what
                )))
            }
        };
        for bytes in chunks {
            if !out.send(bytes).await {
                return;
            }
        }
    }
}

/// The reader end; see [`open`].
struct BodyReader {
    rx: mpsc::Receiver<Chunk>,
    ahead: Arc<Semaphore>,
    cur: Bytes,
    cur_permits: u32,
    want: u64,
    got: u64,
    what: String,
    failed: Option<(io::ErrorKind, String)>,
    ended: bool,
}

impl BodyReader {
    fn fail(&mut self, kind: io::ErrorKind, msg: String) -> io::Error {
        self.failed = Some((kind, msg.clone()));
        self.ahead.close();
        io::Error::new(kind, msg)
    }
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some((kind, msg)) = &self.failed {
            return Err(io::Error::new(*kind, msg.clone()));
        }
        if buf.is_empty() {
            return Ok(0);
        }
        while self.cur.is_empty() {
            if self.cur_permits > 0 {
                self.ahead.add_permits(self.cur_permits as usize);
                self.cur_permits = 0;
            }
            if self.ended {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Chunk::Data(bytes, permits)) => {
                    self.got += bytes.len() as u64;
                    self.cur = bytes;
                    self.cur_permits = permits;
                    if self.got > self.want {
                        let msg = format!(
                            "{}: the object store sent more than the announced {} bytes",
                            self.what, self.want
                        );
                        return Err(self.fail(io::ErrorKind::InvalidData, msg));
                    }
                }
                Ok(Chunk::Fail(e)) => {
                    let kind = e.kind();
                    return Err(self.fail(kind, e.to_string()));
                }
                Ok(Chunk::Start(_)) => {}
                Err(_) => {
                    self.ended = true;
                    if self.got < self.want {
                        let msg = format!(
                            "{}: the object store sent {} of the {} bytes announced",
                            self.what, self.got, self.want
                        );
                        return Err(self.fail(io::ErrorKind::UnexpectedEof, msg));
                    }
                }
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur.advance(n);
        Ok(n)
    }
}

impl Drop for BodyReader {
    fn drop(&mut self) {
        // the pumping task stops (and drops its connections)
        self.ahead.close();
    }
}
