//! Helpers for the container image tests: a real OCI registry (Debian's
//! `docker-registry`) on a loopback port, a TCP proxy in front of it that
//! can be broken on purpose, hand-built multipart bodies, tarballs with
//! hostile paths, and podman/buildah checks of built images.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// A free loopback port (bound once, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!("docker-registry exited before listening: {st}");
        }
        assert!(
            Instant::now() < deadline,
            "docker-registry did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A real OCI registry (plain HTTP) on 127.0.0.1, killed on drop.
pub struct Registry {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    pub fn start() -> Registry {
        Self::start_in(tempfile::tempdir().expect("tempdir"), "")
    }

    /// A registry that wants `user`'s password for everything (htpasswd,
    /// HTTP Basic; the bcrypt hash made by Python's `crypt`).
    pub fn start_with_password(user: &str, password: &str) -> Registry {
        let out = Command::new("python3")
            .args([
                "-W",
                "ignore",
                "-c",
                "import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH)))",
                password,
            ])
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let hash = String::from_utf8(out.stdout).unwrap();
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("htpasswd");
        std::fs::write(&file, format!("{user}:{}\n", hash.trim())).unwrap();
        let auth = format!(
            "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
            file.display()
        );
        Self::start_in(dir, &auth)
    }

    fn start_in(dir: tempfile::TempDir, extra: &str) -> Registry {
        let port = free_port();
        let cfg = dir.path().join("config.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n{extra}",
                dir.path().join("storage").display()
            ),
        )
        .unwrap();
        let mut child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry must be installed (Debian package docker-registry)");
        wait_for_port(port, &mut child);
        Registry {
            child,
            port,
            _dir: dir,
        }
    }

    /// `127.0.0.1:PORT`
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The repositories listed by `GET /v2/_catalog`.
    pub fn catalog(&self) -> Vec<String> {
        let v: serde_json::Value =
            reqwest::blocking::get(format!("http://{}/v2/_catalog", self.addr()))
                .expect("registry catalog")
                .json()
                .expect("catalog JSON");
        v["repositories"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|r| r.as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Stops the registry (SIGKILL) and waits until its port is closed.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(Instant::now() < deadline, "registry port still open");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Registry {
    /// Kills the registry and removes the local images tagged for it
    /// (their names hold its port, so no other test's images).
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        remove_local_images(&format!("{}/", self.addr()));
    }
}

/// Removes the local podman images whose names start with `prefix`
/// (e.g. `127.0.0.1:PORT/` or `localhost/img6-`). Best effort: retried,
/// and a failure is only reported on stderr.
pub fn remove_local_images(prefix: &str) {
    let mut last_error = String::new();
    for _ in 0..4 {
        let out = match Command::new("podman")
            .args(["images", "--format", "{{.Repository}} {{.Tag}} {{.Digest}}"])
            .output()
        {
            Ok(o) if o.status.success() => o,
            Ok(o) => {
                last_error = String::from_utf8_lossy(&o.stderr).into_owned();
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
            Err(_) => return,
        };
        // a tagged name, or repo@digest for an image pulled by digest only
        let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| match l.split(' ').collect::<Vec<_>>()[..] {
                [repo, "<none>", digest] => Some(format!("{repo}@{digest}")),
                [repo, tag, _] => Some(format!("{repo}:{tag}")),
                _ => None,
            })
            .collect();
        if names.is_empty() {
            return;
        }
        match Command::new("podman")
            .args(["rmi", "-f"])
            .args(&names)
            .output()
        {
            // again: untagging an image pulled by digest too leaves it
            // listed under its digest
            Ok(o) if o.status.success() => continue,
            Ok(o) => last_error = String::from_utf8_lossy(&o.stderr).into_owned(),
            Err(e) => last_error = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("could not remove the test images {prefix}*: {last_error}");
}

/// Removes the local images whose names start with its prefix when dropped
/// (also when the test panics).
pub struct LocalImages(pub &'static str);

impl Drop for LocalImages {
    fn drop(&mut self) {
        remove_local_images(self.0);
    }
}

/// A TCP proxy on 127.0.0.1 forwarding to `target`; once `break_it` is
/// called it still accepts connections but drops them at once (a registry
/// that is "up" for a connect check, yet every push fails).
pub struct Proxy {
    pub port: u16,
    broken: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    pub fn start(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let broken = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (b, s) = (broken.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = conn else { continue };
                if b.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(upstream) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let (c2, u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
                std::thread::spawn(move || pipe(client, upstream));
                std::thread::spawn(move || pipe(u2, c2));
            }
        });
        Proxy { port, broken, stop }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn break_it(&self) {
        self.broken.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    /// Stops accepting, and removes the local images tagged for it.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        remove_local_images(&format!("{}/", self.addr()));
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 64 << 10];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// A `multipart/form-data` body built by hand.
pub struct Multipart {
    boundary: String,
    body: Vec<u8>,
}

impl Default for Multipart {
    fn default() -> Self {
        Self::new()
    }
}

impl Multipart {
    pub fn new() -> Multipart {
        Multipart {
            boundary: format!("----as-test-{:016x}", rand_u64()),
            body: Vec::new(),
        }
    }

    pub fn text(mut self, name: &str, value: &str) -> Multipart {
        self.body.extend_from_slice(
            format!(
                "--{}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n",
                self.boundary
            )
            .as_bytes(),
        );
        self
    }

    pub fn file(mut self, name: &str, filename: &str, data: &[u8]) -> Multipart {
        self.body.extend_from_slice(
            format!(
                "--{}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n",
                self.boundary
            )
            .as_bytes(),
        );
        self.body.extend_from_slice(data);
        self.body.extend_from_slice(b"\r\n");
        self
    }

    /// (content type, body)
    pub fn finish(mut self) -> (String, Vec<u8>) {
        self.body
            .extend_from_slice(format!("--{}--\r\n", self.boundary).as_bytes());
        (
            format!("multipart/form-data; boundary={}", self.boundary),
            self.body,
        )
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish()
}

/// A plain tar of `files` (path, content) with this mtime.
pub fn tar_plain(files: &[(&str, &[u8])], mtime: u64) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (p, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(mtime);
        b.append_data(&mut h, p, *data).expect("append");
    }
    b.into_inner().expect("tar")
}

/// A gzip'd tar of `files` with this mtime and compression level.
pub fn tar_gz_with(files: &[(&str, &[u8])], mtime: u64, level: u32) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
    gz.write_all(&tar_plain(files, mtime)).unwrap();
    gz.finish().unwrap()
}

/// A gzip'd tar with one file whose stored path is `raw_path` verbatim
/// (the tar crate refuses to write `..` or absolute paths itself).
pub fn tar_gz_raw_path(raw_path: &str, data: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_old();
    {
        let name = &mut h.as_old_mut().name;
        name.fill(0);
        name[..raw_path.len()].copy_from_slice(raw_path.as_bytes());
    }
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(1_700_000_000);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    let mut b = tar::Builder::new(Vec::new());
    b.append(&h, data).expect("append raw");
    let tar = b.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    gz.finish().unwrap()
}

/// A gzip'd tar with one symlink `path -> target`.
pub fn tar_gz_symlink(path: &str, target: &str) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    h.set_mtime(1_700_000_000);
    let mut b = tar::Builder::new(Vec::new());
    b.append_link(&mut h, path, target).expect("append symlink");
    let tar = b.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    gz.finish().unwrap()
}

/// Runs a command; (success, stdout, stderr). Panics if it cannot start.
pub fn run(program: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program} must be installed: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The content of `file` inside `image` (local storage), read with
/// `buildah from` + `buildah run --isolation chroot` (podman run does not
/// work on every host).
pub fn cat_in_image(image: &str, file: &str) -> String {
    let (ok, ctr, err) = run("buildah", &["from", "--pull=never", image]);
    assert!(ok, "buildah from {image}: {err}");
    let ctr = ctr.trim().to_owned();
    let (ok, out, err) = run(
        "buildah",
        &["run", "--isolation", "chroot", &ctr, "cat", file],
    );
    let _ = run("buildah", &["rm", &ctr]);
    assert!(ok, "buildah run {image} cat {file}: {err}");
    out
}

/// A builder image made here: FROM scratch + Debian's busybox-static
/// (`localhost/as-test-busybox:latest`), built once per test process.
pub fn busybox_image() -> String {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE
        .get_or_init(|| {
            let name = "localhost/as-test-busybox:latest";
            let dir = tempfile::tempdir().unwrap();
            std::fs::copy("/bin/busybox", dir.path().join("busybox"))
                .expect("busybox-static must be installed");
            std::fs::write(
                dir.path().join("Containerfile"),
                "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nRUN echo busybox-image > /etc/builder-image\n",
            )
            .unwrap();
            let out = Command::new("podman")
                .args(["build", "--isolation", "chroot", "-t", name])
                .arg(dir.path())
                .output()
                .expect("podman must be installed");
            assert!(
                out.status.success(),
                "podman build: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            name.to_owned()
        })
        .clone()
}
