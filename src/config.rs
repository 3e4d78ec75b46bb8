//! Typed configuration: embedded defaults, then `config/default.toml` (or the
//! file given with `--config`), then `ARTIFACT_STORE_*` environment variables
//! (nested keys with `__`, e.g. `ARTIFACT_STORE_AUTH__ANONYMOUS_READ=false`).
//!
//! The defaults run with no setup: data under `./data`, listening on
//! `127.0.0.1:8080`, anonymous reads, writes only with a key.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::model::Role;

mod executors;
mod image;
pub use executors::{Executor, KubernetesConfig, SlurmConfig};
pub use image::ImageConfig;

/// The file read when `--config` is not given (if it exists).
pub const DEFAULT_CONFIG_FILE: &str = "config/default.toml";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address and port to listen on.
    pub listen: String,
    /// Where blobs, temp files and the sled index live.
    pub data_dir: PathBuf,
    /// HTTP worker threads; 0 means one per core.
    pub workers: usize,
    /// Largest request body accepted for an upload (413 above it).
    pub max_upload_bytes: u64,
    /// Largest total of file sizes an uploaded tarball (or a build's output)
    /// may unpack to, counted as written (plus 512 bytes per entry).
    pub max_unpacked_bytes: u64,
    /// Most entries (files, directories, links) a tarball or a build's
    /// output may hold: each is listed in memory when packed.
    pub max_unpacked_entries: u64,
    /// Uploads and builds normalised (packed) at once; 0: one per core.
    pub max_concurrent_packs: usize,
    /// Architecture used when a client sends none (or the string "null").
    pub default_arch: String,
    /// zstd level for canonical tarballs.
    pub zstd_level: i32,
    /// Base URL put in `download_url` fields; derived from the request when unset.
    pub public_url: Option<String>,
    /// Log one line per HTTP request.
    pub log_requests: bool,
    /// Free space to keep on the data directory's disk: below it `/readyz`
    /// says not ready, and uploads that would go below it get 507.
    pub min_free_bytes: u64,
    /// Space held in `data/reserve` while the disk has room, released at
    /// start-up when the disk is full, so the index can still open and
    /// reads go on. 0: no reserve.
    pub reserve_bytes: u64,
    pub http: HttpConfig,
    pub auth: AuthConfig,
    pub compat: CompatConfig,
    pub build: BuildConfig,
    pub image: ImageConfig,
    pub gc: GcConfig,
    pub retention: RetentionConfig,
    pub storage: StorageConfig,
    pub index: IndexConfig,
    /// The file the configuration was read from (set at load; not a setting).
    #[serde(skip)]
    pub config_file: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./data"),
            workers: 0,
            max_upload_bytes: 16 << 30,
            max_unpacked_bytes: 64 << 30,
            max_unpacked_entries: 250_000,
            max_concurrent_packs: 0,
            default_arch: "rocky9".into(),
            zstd_level: 3,
            public_url: None,
            log_requests: true,
            min_free_bytes: 1 << 30,
            reserve_bytes: 64 << 20,
            http: HttpConfig::default(),
            auth: AuthConfig::default(),
            compat: CompatConfig::default(),
            build: BuildConfig::default(),
            image: ImageConfig::default(),
            gc: GcConfig::default(),
            retention: RetentionConfig::default(),
            storage: StorageConfig::default(),
            index: IndexConfig::default(),
            config_file: None,
        }
    }
}

/// Where blobs live: `local` (under `data_dir/blobs`, the default) or `s3`
/// (S3-compatible object storage, shared by replicas).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    Local,
    S3,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    pub kind: StorageKind,
    /// Answer downloads with a 307 to a presigned URL of the object store
    /// (clients fetch from it directly) instead of streaming through the
    /// service. `s3` only.
    pub redirect: bool,
    pub s3: S3Config,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            kind: StorageKind::Local,
            redirect: false,
            s3: S3Config::default(),
        }
    }
}

/// An S3-compatible bucket. Credentials come from here or from
/// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    /// e.g. `http://127.0.0.1:8333`; unset: AWS for `region`.
    pub endpoint: Option<String>,
    pub bucket: String,
    pub region: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// `http://endpoint/bucket/key` (most self-hosted servers) rather than
    /// `http://bucket.endpoint/key`.
    pub path_style: bool,
    /// Keys start with this (e.g. `artifact-store/`), so one bucket can
    /// hold several stores.
    pub prefix: String,
    /// How long a presigned download URL stays valid.
    pub presign_secs: u64,
    /// Blobs larger than this are uploaded in parts (multipart upload).
    pub multipart_threshold_bytes: u64,
    /// The size of each part of a multipart upload (S3's minimum is 5 MiB).
    pub part_bytes: u64,
}

impl Default for S3Config {
    fn default() -> Self {
        Self {
            endpoint: None,
            bucket: String::new(),
            region: "us-east-1".into(),
            access_key_id: None,
            secret_access_key: None,
            path_style: true,
            prefix: String::new(),
            presign_secs: 300,
            multipart_threshold_bytes: 64 << 20,
            part_bytes: 16 << 20,
        }
    }
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "***"),
            )
            .field("path_style", &self.path_style)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Where metadata lives: `sled` (embedded, under `data_dir/index`, the
/// default) or `postgres` (shared by replicas).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IndexKind {
    Sled,
    Postgres,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IndexConfig {
    pub kind: IndexKind,
    /// `postgres://user:password@host:port/database` (`postgres` only).
    pub url: Option<String>,
    /// Connections in the pool (`postgres` only).
    pub max_connections: u32,
    /// How long a replica holds a job it runs without renewing its lease;
    /// a job whose replica died is taken up again after this.
    pub job_lease_secs: u64,
    /// How long a replica may answer from a record it read (`postgres`
    /// only; 0: every lookup asks the database). A record replaced or
    /// removed on another replica is seen at most this late; this
    /// replica's own writes, at once.
    pub record_cache_ms: u64,
}

impl Default for IndexConfig {
    fn default() -> Self {
        Self {
            kind: IndexKind::Sled,
            url: None,
            max_connections: 16,
            job_lease_secs: 30,
            record_cache_ms: 1000,
        }
    }
}

impl std::fmt::Debug for IndexConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // the URL may carry a password
        let url = self.url.as_deref().map(|u| match url::Url::parse(u) {
            Ok(mut p) if p.password().is_some() => {
                let _ = p.set_password(Some("***"));
                p.to_string()
            }
            Ok(p) => p.to_string(),
            Err(_) => "(unparsable)".into(),
        });
        f.debug_struct("IndexConfig")
            .field("kind", &self.kind)
            .field("url", &url)
            .field("max_connections", &self.max_connections)
            .field("job_lease_secs", &self.job_lease_secs)
            .finish()
    }
}

/// HTTP behaviour towards clients.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// A request body that sends nothing for this long is dropped (408),
    /// and whatever it had sent is removed.
    pub body_idle_secs: u64,
    /// A request body slower than this on average (after its first
    /// `body_idle_secs`) is dropped too (408): a trickle holds nothing long.
    pub body_min_bytes_per_sec: u64,
    /// Peers (reverse proxies) whose `Forwarded` / `X-Forwarded-*` headers
    /// are believed when `public_url` is unset; from anyone else they are
    /// ignored, so a client cannot choose the host in answer URLs.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            body_idle_secs: 30,
            body_min_bytes_per_sec: 1024,
            trusted_proxies: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Allow reads without a key.
    pub anonymous_read: bool,
    /// API keys, stored as the blake3 (hex) of the key; see `artifact-store key new`.
    pub keys: Vec<KeyConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            anonymous_read: true,
            keys: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// A label for logs (who owns the key).
    pub name: String,
    pub role: Role,
    /// blake3 (hex) of the key itself.
    pub blake3: String,
}

/// Settings for the lab's existing build scripts (the original API).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompatConfig {
    /// `PUT /component` imports `results_tarball` only from below these directories.
    pub import_roots: Vec<PathBuf>,
    /// Client networks trusted to `PUT /component` without a key (today's
    /// scripts send none), e.g. `["10.0.0.0/8"]`.
    pub trusted_networks: Vec<ipnet::IpNet>,
}

/// How components are built from git.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BuildConfig {
    /// Builds running at once (the worker pool).
    pub workers: usize,
    /// CPUs one build may use (`ADBS_JOBS`, `MAKEFLAGS=-jN`); 0: all cores.
    pub jobs: usize,
    /// Wall-clock limit of one build command; the process tree is killed after it.
    pub timeout_secs: u64,
    /// A job log stops growing past this many bytes.
    pub log_max_bytes: u64,
    /// `GET /component` for a missing component whose URL is known builds it
    /// and waits this long before answering 202 with the job.
    pub on_miss_wait_secs: u64,
    /// Who may trigger a build by downloading a missing component:
    /// `keys` (a key with the write role), `trusted` (such a key, or a client
    /// in `compat.trusted_networks`), or `anyone`.
    pub on_miss: OnMiss,
    /// Allow `file://` URLs and local paths as repositories.
    pub allow_local_urls: bool,
    /// `auto` (bwrap where installed), `bwrap`, `podman`, or `process` (no sandbox).
    pub sandbox: String,
    /// Component -> git URL, for dependencies never built before.
    pub catalog: std::collections::BTreeMap<String, String>,
    /// Else a URL made from the name, e.g. `https://git.example.org/{component}.git`.
    pub url_template: Option<String>,
    /// Per-architecture settings (sandbox, builder image).
    pub arch: std::collections::BTreeMap<String, ArchConfig>,
    /// How podman is invoked for podman-sandbox builds; the default works
    /// rootless and on hosts where only chroot isolation works.
    pub podman_build: Vec<String>,
    /// Fetching sources: mirror rewrites, the clone cache, submodules.
    pub git: GitConfig,
    /// Reuse the output of a build of the same commit under another tag
    /// (the inputs key then leaves the tag out). Off by default: a build
    /// sees its tag (`ADBS_TAG`, the tags in `.git`) and may write it into
    /// its output, which would then carry the first tag's name.
    pub reuse_across_tags: bool,
    /// Extra host directories the bwrap sandbox mounts read-only (toolchains
    /// outside /usr, e.g. `/opt/rh`). The data directory, the service's home
    /// and its config directory stay hidden even inside these.
    pub sandbox_binds: Vec<PathBuf>,
    /// Where builds run: `local` (the service's pool), `slurm`,
    /// `kubernetes`, or `worker` (polling workers); per arch with
    /// `build.arch.<arch>.executor`.
    pub executor: Executor,
    /// The service's URL as workers reach it; unset: `public_url`, else the
    /// address it listens on.
    pub worker_url: Option<String>,
    /// The `artifact-store` binary a worker runs (on the cluster's nodes);
    /// unset: this binary's own path.
    pub worker_command: Option<String>,
    /// A dispatched build whose worker sent nothing for this long is
    /// given up (the cluster's own state is checked too).
    pub worker_silence_secs: u64,
    /// The API keys (by name) that may claim builds as polling workers
    /// (`artifact-store worker --poll`), besides admin keys. A claimed
    /// build is stored as the service's own: give this to worker machines
    /// only, never to a pipeline's key.
    pub worker_keys: Vec<String>,
    pub slurm: SlurmConfig,
    pub kubernetes: KubernetesConfig,
}

impl Default for BuildConfig {
    fn default() -> Self {
        Self {
            workers: 2,
            jobs: 0,
            timeout_secs: 3600,
            log_max_bytes: 16 << 20,
            on_miss_wait_secs: 60,
            on_miss: OnMiss::Trusted,
            allow_local_urls: false,
            sandbox: "auto".into(),
            catalog: Default::default(),
            url_template: None,
            arch: Default::default(),
            podman_build: ["podman", "build", "--isolation", "chroot"]
                .map(String::from)
                .to_vec(),
            sandbox_binds: Vec::new(),
            git: GitConfig::default(),
            reuse_across_tags: false,
            executor: Executor::Local,
            worker_url: None,
            worker_command: None,
            worker_silence_secs: 600,
            worker_keys: Vec::new(),
            slurm: SlurmConfig::default(),
            kubernetes: KubernetesConfig::default(),
        }
    }
}

/// How sources are fetched.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GitConfig {
    /// URL prefixes fetched from elsewhere (a mirror), as git's
    /// `url.<base>.insteadOf`; the longest matching prefix wins. Applied to
    /// repository, catalog and submodule URLs alike.
    pub rewrites: std::collections::BTreeMap<String, String>,
    /// Keep a bare mirror of every repository under `data/git/`, fetched
    /// incrementally and shared by builds.
    pub cache: bool,
    /// The clone cache's size; least recently used mirrors go first.
    pub cache_max_bytes: u64,
    /// How deep submodules of submodules are followed.
    pub submodule_depth: u32,
    /// Most submodules one checkout may hold, at every depth together.
    pub max_submodules: usize,
    /// Hosts a submodule may be fetched from besides its parent's host and
    /// port (and URLs a rewrite sends to a mirror): `host` (any port),
    /// `host:port`, `*.example.org`, or `*` (any host on a public address;
    /// loopback, private and link-local addresses only when named).
    pub allowed_hosts: Vec<String>,
    /// Seconds to wait for a git server to accept a connection.
    pub connect_timeout_secs: u64,
    /// Seconds a git server may stay silent during a fetch.
    pub timeout_secs: u64,
    /// Longest one fetch may take, start to end.
    pub fetch_max_secs: u64,
    /// Longest a fetch or checkout waits for another's lock on a mirror.
    pub lock_wait_secs: u64,
    /// Resolving reads missing components' recipes from their repositories:
    /// this many at once; the rest wait.
    pub max_concurrent_fetches: usize,
    /// Resolves waiting for one of those slots; past it, 503 and `Retry-After`.
    pub max_waiting_fetches: usize,
}

impl Default for GitConfig {
    fn default() -> Self {
        Self {
            rewrites: Default::default(),
            cache: true,
            cache_max_bytes: 20 << 30,
            submodule_depth: 4,
            max_submodules: 64,
            allowed_hosts: Vec::new(),
            connect_timeout_secs: 30,
            timeout_secs: 120,
            fetch_max_secs: 3600,
            lock_wait_secs: 900,
            max_concurrent_fetches: 4,
            max_waiting_fetches: 32,
        }
    }
}

/// Who may start a build by asking for a missing component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnMiss {
    Keys,
    Trusted,
    Anyone,
}

/// Garbage collection of unreferenced blobs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GcConfig {
    /// Seconds between passes; 0 turns the periodic pass off.
    pub interval_secs: u64,
    /// An unreferenced blob is removed only once older than this.
    pub grace_secs: u64,
}

impl Default for GcConfig {
    fn default() -> Self {
        Self {
            interval_secs: 3600,
            grace_secs: 3600,
        }
    }
}

/// Which index entries the GC pass drops (before collecting blobs).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Keep the newest N tags per (component, arch); 0 keeps everything.
    pub keep_newest: usize,
    /// Also keep older tags downloaded within this many days; 0: off.
    pub keep_downloaded_within_days: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArchConfig {
    /// Overrides `build.sandbox` for this architecture.
    pub sandbox: Option<String>,
    /// The builder image (podman sandbox), e.g. `ghcr.io/ad-build-test/rocky9-env`.
    pub image: Option<String>,
    /// Overrides `build.executor` for this architecture.
    pub executor: Option<Executor>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist")]
    Missing(PathBuf),
    #[error("invalid configuration: {0}")]
    Invalid(#[from] Box<figment::Error>),
    #[error("invalid configuration: {0}")]
    Check(String),
}

impl Config {
    /// Loads defaults, then the file (the explicit one must exist), then env.
    pub fn load(explicit: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with(explicit, true)
    }

    /// As [`Config::load`], but without an explicit file only the defaults
    /// and the environment: never `config/default.toml` of whatever
    /// directory it runs in (a worker on a shared node, started in a
    /// directory others may write to).
    pub fn load_explicit(explicit: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with(explicit, false)
    }

    fn load_with(explicit: Option<&Path>, default_file: bool) -> Result<Self, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        match explicit {
            Some(p) if !p.exists() => return Err(ConfigError::Missing(p.to_owned())),
            Some(p) => fig = fig.merge(Toml::file(p)),
            None if default_file => fig = fig.merge(Toml::file(DEFAULT_CONFIG_FILE)),
            None => {}
        }
        // These belong to the CLI (client URL/token, a worker's job token,
        // config path, log filter).
        fig = fig.merge(
            Env::prefixed("ARTIFACT_STORE_")
                .ignore(&["url", "token", "job_token", "config", "log", "log_format"])
                .split("__"),
        );
        let mut cfg: Config = fig.extract().map_err(Box::new)?;
        cfg.config_file = match explicit {
            Some(p) => Some(p.to_owned()),
            None if default_file => Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|p| p.exists()),
            None => None,
        };
        cfg.check()?;
        Ok(cfg)
    }

    fn check(&self) -> Result<(), ConfigError> {
        crate::model::validate_name("default_arch", &self.default_arch)
            .map_err(|e| ConfigError::Check(e.to_string()))?;
        for k in &self.auth.keys {
            if blake3::Hash::from_hex(&k.blake3).is_err() {
                return Err(ConfigError::Check(format!(
                    "auth.keys '{}': blake3 must be 64 hex characters (see `artifact-store key hash`)",
                    k.name
                )));
            }
        }
        for (arch, a) in &self.build.arch {
            if let Some(s) = &a.sandbox {
                check_sandbox(&format!("build.arch.{arch}.sandbox"), s)?;
            }
        }
        check_sandbox("build.sandbox", &self.build.sandbox)?;
        if self.build.git.max_concurrent_fetches == 0 {
            return Err(ConfigError::Check(
                "build.git.max_concurrent_fetches must be at least 1".into(),
            ));
        }
        if self.image.executor != Executor::Local && self.image.registry.is_none() {
            return Err(ConfigError::Check(format!(
                "image.executor = \"{}\" needs image.registry: a worker pushes the image there \
                 (its own podman storage is of no use to anyone)",
                self.image.executor.name()
            )));
        }
        if self.image.executor == Executor::Kubernetes
            && self.image.worker_image.is_none()
            && self.build.kubernetes.image.is_none()
        {
            return Err(ConfigError::Check(
                "image.executor = \"kubernetes\" needs an image with the worker and podman: \
                 set image.worker_image (or build.kubernetes.image)"
                    .into(),
            ));
        }
        if !(1..=19).contains(&self.zstd_level) {
            return Err(ConfigError::Check("zstd_level must be 1..=19".into()));
        }
        Ok(())
    }

    /// The arch settings for `arch` (keys are matched case-insensitively).
    pub fn arch(&self, arch: &str) -> ArchConfig {
        self.build
            .arch
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(arch))
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    /// `arch` as sent, or the default architecture when a client sent none
    /// (or `""`, `"null"`, `"None"`, as today's scripts do).
    pub fn arch_or_default(&self, arch: Option<&str>) -> String {
        match arch.map(str::trim) {
            None | Some("") | Some("null") | Some("None") => self.default_arch(),
            Some(a) => a.to_owned(),
        }
    }

    /// CPUs one build may use.
    /// Where builds for `arch` run.
    pub fn executor(&self, arch: &str) -> Executor {
        self.arch(arch).executor.unwrap_or(self.build.executor)
    }

    pub fn build_jobs(&self) -> usize {
        match self.build.jobs {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// What an upload (or a build's output) may unpack to.
    pub fn unpack_limits(&self) -> crate::store::unpack::Limits {
        crate::store::unpack::Limits {
            bytes: self.max_unpacked_bytes,
            entries: self.max_unpacked_entries,
        }
    }

    /// The default architecture, lower case.
    pub fn default_arch(&self) -> String {
        self.default_arch.to_ascii_lowercase()
    }
}

fn check_sandbox(key: &str, v: &str) -> Result<(), ConfigError> {
    match v {
        "auto" | "bwrap" | "podman" | "process" => Ok(()),
        other => Err(ConfigError::Check(format!(
            "{key} = '{other}': expected auto, bwrap, podman or process"
        ))),
    }
}
