//! Test harness: the real `artifact-store` binary on an ephemeral loopback
//! port, with a data directory and config of the test's own, and a real
//! HTTP client.
#![allow(dead_code)]

pub mod building;
pub mod http;
pub mod pg;
#[cfg(feature = "s3")]
pub mod s3;
pub mod slurm;
pub mod tars;

#[allow(unused_imports)]
pub use http::*;
#[allow(unused_imports)]
pub use tars::*;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ADMIN_KEY: &str = "test-admin-key";
pub const WRITE_KEY: &str = "test-write-key";
pub const READ_KEY: &str = "test-read-key";

pub fn hash(k: &str) -> String {
    blake3::hash(k.as_bytes()).to_hex().to_string()
}

/// A config with three keys (admin, write, read) and `extra` TOML appended.
/// The disk floor and reserve are small (1 MiB) unless `extra` sets them,
/// so a nearly full CI disk does not refuse the tests' uploads.
pub fn config_with_keys(extra: &str) -> String {
    let mut small = String::new();
    if !extra.contains("min_free_bytes") {
        small.push_str("min_free_bytes = 1048576\n");
    }
    if !extra.contains("reserve_bytes") {
        small.push_str("reserve_bytes = 1048576\n");
    }
    format!(
        "max_upload_bytes = 67108864\n{small}{extra}\n\
         [[auth.keys]]\nname = \"admin\"\nrole = \"admin\"\nblake3 = \"{}\"\n\
         [[auth.keys]]\nname = \"ci\"\nrole = \"write\"\nblake3 = \"{}\"\n\
         [[auth.keys]]\nname = \"reader\"\nrole = \"read\"\nblake3 = \"{}\"\n",
        hash(ADMIN_KEY),
        hash(WRITE_KEY),
        hash(READ_KEY)
    )
}

pub struct Server {
    pub child: Child,
    pub base: String,
    pub dir: PathBuf,
    /// Lines the server printed on stdout before "listening on".
    pub banner: Vec<String>,
    /// The bucket holding its blobs, when it runs on S3 + PostgreSQL.
    #[cfg(feature = "s3")]
    pub bucket: Option<s3::S3Target>,
    _tmp: Option<tempfile::TempDir>,
}

/// Which storage the servers a test starts use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Local blobs + sled (the defaults).
    Default,
    /// Blobs in a real S3 server (SeaweedFS), the index in a real
    /// PostgreSQL: a fresh bucket and database per server directory.
    S3Postgres,
}

thread_local! {
    static BACKEND: std::cell::Cell<Backend> = const { std::cell::Cell::new(Backend::Default) };
}

/// Runs a test body with the servers it starts on `b` (one parameterised
/// suite: the same test, another storage).
pub fn on_backend(b: Backend, test: impl FnOnce()) {
    BACKEND.with(|c| c.set(b));
    test();
    BACKEND.with(|c| c.set(Backend::Default));
}

pub fn backend() -> Backend {
    BACKEND.with(|c| c.get())
}

/// Where the builds of the servers a test starts run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Executor {
    /// The service's own pool (the default).
    Local,
    /// `artifact-store worker` jobs on the tests' real one-node Slurm
    /// cluster (tests/common/slurm.rs).
    Slurm,
}

thread_local! {
    static EXECUTOR: std::cell::Cell<Executor> = const { std::cell::Cell::new(Executor::Local) };
}

/// Runs a test body with the servers it starts building on `e` (one
/// parameterised suite: the same test, another executor).
pub fn on_executor(e: Executor, test: impl FnOnce()) {
    EXECUTOR.with(|c| c.set(e));
    test();
    EXECUTOR.with(|c| c.set(Executor::Local));
}

pub fn executor() -> Executor {
    EXECUTOR.with(|c| c.get())
}

/// The environment that sends a server's builds to the tests' Slurm
/// cluster (`[build] executor = "slurm"`), the worker's own output kept
/// in `dir`.
pub fn slurm_env(dir: &Path) -> Vec<(String, String)> {
    let c = slurm::cluster();
    vec![
        ("ARTIFACT_STORE_BUILD__EXECUTOR".into(), "slurm".into()),
        (
            "ARTIFACT_STORE_BUILD__SLURM__CONF".into(),
            c.conf_path().display().to_string(),
        ),
        (
            "ARTIFACT_STORE_BUILD__SLURM__PARTITION".into(),
            c.partition().into(),
        ),
        (
            "ARTIFACT_STORE_BUILD__SLURM__OUTPUT".into(),
            dir.join("slurm-%j.out").display().to_string(),
        ),
    ]
}

/// The `[storage]`/`[index]` settings of a server directory on the
/// S3 + PostgreSQL backend: made once per directory (a fresh bucket and
/// database), kept in it so a restart finds the same data.
#[cfg(feature = "s3")]
fn shared_backend(dir: &Path) -> (String, s3::S3Target) {
    let saved = dir.join("backend.json");
    let (t, db) = match std::fs::read(&saved) {
        Ok(v) => {
            let v: serde_json::Value = serde_json::from_slice(&v).expect("backend.json");
            let t = s3::S3Target {
                endpoint: v["endpoint"].as_str().unwrap_or_default().into(),
                bucket: v["bucket"].as_str().unwrap_or_default().into(),
                access_key: v["access_key"].as_str().unwrap_or_default().into(),
                secret_key: v["secret_key"].as_str().unwrap_or_default().into(),
            };
            (t, v["db"].as_str().unwrap_or_default().to_owned())
        }
        Err(_) => {
            let t = s3::seaweedfs().bucket();
            let db = pg::database();
            let v = serde_json::json!({
                "endpoint": t.endpoint, "bucket": t.bucket, "access_key": t.access_key,
                "secret_key": t.secret_key, "db": db,
            });
            std::fs::write(&saved, v.to_string()).expect("write backend.json");
            (t, db)
        }
    };
    let toml = format!(
        "\n{}\n[index]\nkind = \"postgres\"\nurl = \"{db}\"\n",
        s3::seaweedfs().config_toml(&t)
    );
    (toml, t)
}

impl Server {
    /// A server with the standard keys in a fresh directory.
    pub fn start() -> Server {
        Self::start_with(&config_with_keys(""))
    }

    /// A server with this config (TOML) in a fresh directory.
    pub fn start_with(config: &str) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_owned();
        let mut s = Self::start_in(&dir, config);
        s._tmp = Some(tmp);
        s
    }

    /// A server on `dir/data` with `dir/config.toml` (written from `config`).
    /// Reusing `dir` restarts on the same data.
    pub fn start_in(dir: &Path, config: &str) -> Server {
        Self::start_in_env(dir, config, &[])
    }

    /// A server in a fresh directory with these extra environment variables.
    pub fn start_with_env(config: &str, env: &[(&str, &str)]) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_owned();
        let mut s = Self::start_in_env(&dir, config, env);
        s._tmp = Some(tmp);
        s
    }

    /// As [`Server::start_in`], with extra environment variables.
    pub fn start_in_env(dir: &Path, config: &str, env: &[(&str, &str)]) -> Server {
        Self::start_as(dir, config, env, &[])
    }

    /// As [`Server::start_in_env`], the binary run through `wrapper` (e.g.
    /// `setpriv --reuid 65534 ...` to run as another user).
    pub fn start_as(dir: &Path, config: &str, env: &[(&str, &str)], wrapper: &[&str]) -> Server {
        Self::start_full(dir, config, env, wrapper, "127.0.0.1:0")
    }

    /// As [`Server::start_in_env`], listening on `listen` (a restart on the
    /// port a worker knows).
    pub fn start_on(dir: &Path, config: &str, env: &[(&str, &str)], listen: &str) -> Server {
        Self::start_full(dir, config, env, &[], listen)
    }

    fn start_full(
        dir: &Path,
        config: &str,
        env: &[(&str, &str)],
        wrapper: &[&str],
        listen: &str,
    ) -> Server {
        let cluster_env = match executor() {
            Executor::Slurm => slurm_env(dir),
            Executor::Local => Vec::new(),
        };
        #[cfg(feature = "s3")]
        let (config, bucket) = match backend() {
            Backend::S3Postgres if !config.contains("[storage]") => {
                let (extra, t) = shared_backend(dir);
                (format!("{config}{extra}"), Some(t))
            }
            _ => (config.to_owned(), None),
        };
        std::fs::write(dir.join("config.toml"), &config).expect("write config");
        let bin = env!("CARGO_BIN_EXE_artifact-store");
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let mut child = cmd
            .envs(cluster_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(env.iter().copied())
            .arg("--config")
            .arg(dir.join("config.toml"))
            .arg("serve")
            .arg("--listen")
            .arg(listen)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .env("ARTIFACT_STORE_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start artifact-store");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut banner = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        let base = loop {
            assert!(Instant::now() < deadline, "server did not start");
            match lines.next() {
                Some(Ok(l)) => {
                    if let Some(addr) = l.strip_prefix("listening on ") {
                        break addr.trim().to_owned();
                    }
                    banner.push(l);
                }
                _ => panic!("server exited before listening: {banner:?}"),
            }
        };
        // keep draining stdout so the child never blocks on a full pipe
        std::thread::spawn(move || for _ in lines.by_ref() {});
        Server {
            child,
            base,
            dir: dir.to_owned(),
            banner,
            #[cfg(feature = "s3")]
            bucket,
            _tmp: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Stops with SIGKILL (as a crash would) and waits.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Takes the temp dir so that it outlives this server (for restarts).
    pub fn keep_dir(&mut self) -> Option<tempfile::TempDir> {
        self._tmp.take()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client")
}

pub fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

/// A plain tar holding `files` (path, content) under `top/` (or at the root if `top` is empty).
pub fn plain_tar(top: &str, files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (p, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        let path = if top.is_empty() {
            p.to_string()
        } else {
            format!("{top}/{p}")
        };
        b.append_data(&mut h, path, *data).expect("append");
    }
    b.into_inner().expect("tar")
}

/// The same, gzip-compressed.
pub fn tar_gz(top: &str, files: &[(&str, &[u8])]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&plain_tar(top, files)).expect("gzip");
    gz.finish().expect("gz")
}

/// Entry paths and contents of a tar.zst (or tar.gz when `gz`).
pub fn read_tar(bytes: &[u8], gz: bool) -> Vec<(String, Vec<u8>)> {
    use std::io::Read;
    let r: Box<dyn Read> = if gz {
        Box::new(flate2::read::GzDecoder::new(bytes))
    } else {
        Box::new(zstd::stream::read::Decoder::new(bytes).expect("zstd"))
    };
    let mut ar = tar::Archive::new(r);
    let mut out = Vec::new();
    for e in ar.entries().expect("entries") {
        let mut e = e.expect("entry");
        let p = e.path().expect("path").display().to_string();
        let mut v = Vec::new();
        e.read_to_end(&mut v).expect("read");
        out.push((p, v));
    }
    out
}

/// A JSON answer's status and body; panics (with the body) if the answer
/// is not JSON or does not say so in its content type.
pub fn json_of(r: reqwest::blocking::Response) -> (u16, serde_json::Value) {
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = r.text().expect("body");
    let v: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("answer {status} is not JSON ({e}): {text:?}"));
    assert!(
        ct.starts_with("application/json"),
        "answer {status} has content-type {ct:?}: {text}"
    );
    (status, v)
}

/// An error answer: the status, the JSON error shape, and a piece of its
/// message (case-insensitive).
pub fn assert_error(status: u16, v: &serde_json::Value, want: u16, needle: &str) {
    assert_eq!(status, want, "{v}");
    assert_eq!(v["status"], "error", "{v}");
    assert!(
        v["code"].as_str().is_some_and(|c| !c.is_empty()),
        "no code: {v}"
    );
    let msg = v["errorMessage"].as_str().unwrap_or_else(|| panic!("{v}"));
    assert!(
        msg.to_lowercase().contains(&needle.to_lowercase()),
        "errorMessage should name {needle:?}: {msg}"
    );
}

/// [`assert_error`], and the error's `code`.
pub fn assert_error_code(status: u16, v: &serde_json::Value, want: u16, code: &str, needle: &str) {
    assert_error(status, v, want, needle);
    assert_eq!(v["code"], code, "{v}");
}

/// Polls a job (anonymously) until it ends, five minutes at most; returns the job.
pub fn wait_job(s: &Server, id: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let (status, v) = json_of(
            client()
                .get(s.url(&format!("/v1/jobs/{id}")))
                .send()
                .expect("job"),
        );
        assert_eq!(status, 200, "{v}");
        let st = v["job"]["state"].as_str().unwrap_or_default().to_owned();
        if st != "queued" && st != "running" {
            return v["job"].clone();
        }
        assert!(Instant::now() < deadline, "job {id} did not end");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A job's log so far.
pub fn job_log(s: &Server, id: &str) -> String {
    let r = client()
        .get(s.url(&format!("/v1/jobs/{id}/log")))
        .send()
        .expect("log");
    assert_eq!(r.status(), 200);
    r.text().expect("text")
}

/// Waits for the job and asserts it succeeded (with its log if not).
pub fn assert_job_success(s: &Server, id: &str) -> serde_json::Value {
    let job = wait_job(s, id);
    if job["state"] != "success" {
        panic!(
            "job {id} did not succeed: {job}\n--- log ---\n{}",
            job_log(s, id)
        );
    }
    job
}

/// The names of a job's steps.
pub fn step_names(job: &serde_json::Value) -> Vec<String> {
    job["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// A metric's value from `/metrics` (the sum over its label sets that
/// contain every one of `labels`), 0 when absent.
pub fn metric(s: &Server, name: &str, labels: &[&str]) -> f64 {
    let text = client()
        .get(s.url("/metrics"))
        .send()
        .expect("metrics")
        .text()
        .expect("text");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            let n = l.split(['{', ' ']).next().unwrap_or_default();
            n == format!("artifact_store_{name}") && labels.iter().all(|x| l.contains(x))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
