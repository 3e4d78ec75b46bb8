//! Start-up wiring: open the blob store and index under `data_dir`, build
//! the key ring (generating the first admin key if none is configured),
//! bind, and run the HTTP server.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::{self, KeyRing};
use crate::build::Builder;
use crate::components::{ComponentError, Components};
use crate::config::{Config, IndexKind, StorageKind};
use crate::http::{self, AppState};
use crate::image::Images;
use crate::index::sled::SledIndex;
use crate::index::Index;
use crate::jobs::{Jobs, JobsConfig};
use crate::model::Role;
use crate::store::local::LocalBlobs;
use crate::store::{BlobStore, Scratch};

/// The index meta key holding the hash of the generated admin key.
const BOOTSTRAP_KEY: &str = "bootstrap_admin_key_blake3";

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("data directory {path}: {err}")]
    Data { path: String, err: std::io::Error },
    #[error(transparent)]
    Index(#[from] crate::index::IndexError),
    #[error(transparent)]
    Jobs(#[from] crate::jobs::JobError),
    #[error("blob store: {0}")]
    Storage(std::io::Error),
    #[error("{0}")]
    Unsupported(&'static str),
    #[error("cannot listen on {addr}: {err}")]
    Bind { addr: String, err: std::io::Error },
}

/// Opens storage, keys and jobs (starting the build workers on the current
/// tokio runtime). Prints a generated admin key once, on the first start
/// with no key configured.
pub fn open(cfg: Config) -> Result<AppState, StartError> {
    let data = cfg.data_dir.clone();
    let data_err = |err| StartError::Data {
        path: data.display().to_string(),
        err,
    };
    std::fs::create_dir_all(&data).map_err(data_err)?;
    let reserve = crate::store::Reserve::new(&data, cfg.reserve_bytes);
    // on a full disk the index cannot open: the reserve gives it room
    let released = reserve.release_if_short();
    let scratch = Scratch::open(&data).map_err(data_err)?;
    let blobs = open_blobs(&cfg).map_err(|e| match e {
        StartError::Data { err, .. } => data_err(err),
        e => e,
    })?;
    let index = open_index(&cfg)?;
    if !released {
        reserve.refill(cfg.min_free_bytes);
    }

    let mut extra = Vec::new();
    if cfg.auth.keys.is_empty() {
        let hash = match index.meta(BOOTSTRAP_KEY)? {
            Some(h) => String::from_utf8_lossy(&h).into_owned(),
            None => {
                let key = auth::generate_key();
                let hash = auth::hash_key(&key);
                index.set_meta(BOOTSTRAP_KEY, hash.as_bytes())?;
                println!(
                    "artifact-store: no API key is configured, so an admin key was generated.\n\
                     It is shown this once; only its hash is kept:\n\n    admin key: {key}\n\n\
                     Send it as `Authorization: Bearer <key>`; configure your own keys with \
                     `artifact-store key new` (then this one stops working)."
                );
                hash
            }
        };
        extra.push(("bootstrap-admin".to_owned(), Role::Admin, hash));
    }
    let keys = KeyRing::new(&cfg.auth, extra).with_index(index.clone());
    // the data directory as the kernel spells it and as configured (absolute)
    let redact: Vec<String> = [data.canonicalize().ok(), std::path::absolute(&data).ok()]
        .into_iter()
        .flatten()
        .map(|p| p.display().to_string())
        .filter(|p| p.starts_with('/') && p.len() > 1)
        .collect();
    let jobs = Jobs::start(
        index.clone(),
        JobsConfig {
            logs: data.join("logs"),
            log_cap: cfg.build.log_max_bytes,
            workers: cfg.build.workers,
            redact,
            replica: replica_name(),
            lease: Duration::from_secs(cfg.index.job_lease_secs.max(1)),
            archive: (cfg.storage.kind != StorageKind::Local).then(|| blobs.clone()),
        },
    )?;
    tracing::info!(
        blobs = %blobs.describe(),
        index = ?cfg.index.kind,
        replica = %jobs.replica(),
        "storage opened"
    );
    let cfg = Arc::new(cfg);
    let components = Components::new(blobs, scratch.clone(), index.clone(), cfg.clone());
    let builder = Builder::new(components.clone(), jobs.clone(), cfg.clone());
    jobs.set_runner(Arc::new(builder.clone()));
    let images = Images::new(
        index,
        scratch,
        cfg.clone(),
        components.copies().clone(),
        builder.clone(),
    );
    Ok(AppState::new(
        components.clone(),
        builder,
        images,
        keys,
        cfg,
    ))
}

/// The blob store `[storage]` names.
pub fn open_blobs(cfg: &Config) -> Result<Arc<dyn BlobStore>, StartError> {
    match cfg.storage.kind {
        StorageKind::Local => Ok(Arc::new(LocalBlobs::open(&cfg.data_dir).map_err(
            |err| StartError::Data {
                path: cfg.data_dir.display().to_string(),
                err,
            },
        )?)),
        #[cfg(feature = "s3")]
        StorageKind::S3 => Ok(Arc::new(
            crate::store::s3::S3Blobs::open(&cfg.storage.s3).map_err(StartError::Storage)?,
        )),
        #[cfg(not(feature = "s3"))]
        StorageKind::S3 => Err(StartError::Unsupported(
            "storage.kind = \"s3\", but this binary was built without S3 support (cargo feature s3)",
        )),
    }
}

/// The index `[index]` names.
pub fn open_index(cfg: &Config) -> Result<Arc<dyn Index>, StartError> {
    match cfg.index.kind {
        IndexKind::Sled => Ok(Arc::new(SledIndex::open(&cfg.data_dir.join("index"))?)),
        #[cfg(feature = "postgres")]
        IndexKind::Postgres => Ok(Arc::new(crate::index::postgres::PgIndex::open(&cfg.index)?)),
        #[cfg(not(feature = "postgres"))]
        IndexKind::Postgres => Err(StartError::Unsupported(
            "index.kind = \"postgres\", but this binary was built without PostgreSQL support (cargo feature postgres)",
        )),
    }
}

/// A blob store and an index.
pub type Storage = (Arc<dyn BlobStore>, Arc<dyn Index>);

/// A single-host store (local blobs + sled) at `data_dir`, the source of
/// `migrate`. The service must not be running on it (sled locks it).
pub fn open_local_store(data_dir: &std::path::Path) -> Result<Storage, StartError> {
    if !data_dir.join("index").is_dir() {
        return Err(StartError::Data {
            path: data_dir.display().to_string(),
            err: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no store here (no index/ directory)",
            ),
        });
    }
    let blobs = LocalBlobs::open(data_dir).map_err(|err| StartError::Data {
        path: data_dir.display().to_string(),
        err,
    })?;
    let index = SledIndex::open(&data_dir.join("index")).map_err(|e| {
        crate::index::IndexError::Db(format!(
            "{e} (is a service still running on {}? stop it first)",
            data_dir.display()
        ))
    })?;
    Ok((Arc::new(blobs), Arc::new(index)))
}

/// This machine's host name (`host` when it cannot be read).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".into())
}

/// This process's name among replicas: host, process id and a random part
/// (a restarted process is a new replica).
fn replica_name() -> String {
    let host = host_name();
    format!(
        "{host}-{}-{:04x}",
        std::process::id(),
        rand::random::<u16>()
    )
}

/// Binds, prints the address (`listening on http://ADDR`), and serves until stopped.
pub async fn serve(cfg: Config) -> Result<(), Box<dyn std::error::Error>> {
    let addr = cfg.listen.clone();
    let state = open(cfg)?;
    let listener = TcpListener::bind(&addr).map_err(|err| StartError::Bind {
        addr: addr.clone(),
        err,
    })?;
    let local = listener.local_addr()?;
    tracing::info!(%local, data = %state.cfg.data_dir.display(), "artifact-store listening");
    println!("listening on http://{local}");
    // workers (Slurm, Kubernetes) reach the service here unless
    // `build.worker_url` or `public_url` says otherwise
    let reach = if local.ip().is_unspecified() {
        std::net::SocketAddr::from(([127, 0, 0, 1], local.port()))
    } else {
        local
    };
    state.builder.set_listen_url(format!("http://{reach}"));
    spawn_gc(&state);
    http::start(state, listener)?.await?;
    Ok(())
}

/// The periodic GC pass (`[gc] interval_secs`), on a blocking thread.
fn spawn_gc(state: &AppState) {
    let every = state.cfg.gc.interval_secs;
    if every == 0 {
        return;
    }
    let c = state.components.clone();
    let builder = state.builder.clone();
    let me = builder.jobs().replica().to_owned();
    let rules = state.cfg.retention.clone();
    let grace = std::time::Duration::from_secs(state.cfg.gc.grace_secs);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(every));
        tick.tick().await; // not at start-up
        loop {
            tick.tick().await;
            let (c, rules, b, me) = (c.clone(), rules.clone(), builder.clone(), me.clone());
            let pass = move || {
                b.evict_clone_cache();
                crate::gc::collect(&c, &rules, grace, &me)
            };
            match tokio::task::spawn_blocking(pass).await {
                Ok(Ok(r)) => tracing::info!(
                    removed = r.blobs_removed.len(),
                    freed = r.bytes_freed,
                    dropped = r.retention_dropped.len(),
                    "gc pass"
                ),
                Ok(Err(ComponentError::Busy(why))) => tracing::info!("gc pass skipped: {why}"),
                Ok(Err(e)) => tracing::error!("gc pass failed: {e}"),
                Err(e) => tracing::error!("gc pass panicked: {e}"),
            }
        }
    });
}
