//! Real git repositories for build tests: made from `fixtures/repos/<name>`
//! (one commit, tagged), served by `git daemon` on a loopback port or by
//! `file://` URL.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Repos {
    pub root: PathBuf,
    daemon: Option<Child>,
    pub port: u16,
    /// `git daemon --verbose`'s log, when started with [`Repos::serve_logged`].
    log: Option<PathBuf>,
    _tmp: tempfile::TempDir,
}

/// Runs git in `dir` with a fixed identity and date (panics on failure).
pub fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Fixture")
        .env("GIT_AUTHOR_EMAIL", "fixture@example.org")
        .env("GIT_COMMITTER_NAME", "Fixture")
        .env("GIT_COMMITTER_EMAIL", "fixture@example.org")
        .env("GIT_AUTHOR_DATE", "2024-01-02T03:04:05Z")
        .env("GIT_COMMITTER_DATE", "2024-01-02T03:04:05Z")
        .output()
        .expect("git must be installed");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
}

impl Repos {
    /// Makes a repo per fixture name, each tagged `R1.0`.
    pub fn new(names: &[&str]) -> Repos {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_owned();
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/repos");
        for n in names {
            let dir = root.join(n);
            copy_dir(&fixtures.join(n), &dir);
            git(&dir, &["init", "-q", "-b", "main"]);
            git(&dir, &["add", "-A"]);
            git(&dir, &["commit", "-q", "-m", &format!("{n} fixture")]);
            git(&dir, &["tag", "R1.0"]);
        }
        Repos {
            root,
            daemon: None,
            port: 0,
            log: None,
            _tmp: tmp,
        }
    }

    /// Adds a repo `name` whose files `fill` writes (one commit, tagged `R1.0`).
    pub fn add_tree(&self, name: &str, fill: impl FnOnce(&Path)) -> PathBuf {
        let dir = self.root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        fill(&dir);
        git(&dir, &["init", "-q", "-b", "main"]);
        git(&dir, &["add", "-A"]);
        git(
            &dir,
            &["commit", "-q", "-m", &format!("{name} made by the test")],
        );
        git(&dir, &["tag", "R1.0"]);
        dir
    }

    /// Runs git in the repo `name` (to add tags, commits, branches).
    pub fn git(&self, name: &str, args: &[&str]) {
        git(&self.root.join(name), args);
    }

    /// Starts `git daemon` exporting every repo, on a free loopback port.
    pub fn serve(&mut self) {
        self.start_daemon(false)
    }

    /// [`Repos::serve`], logging each request (see [`Repos::fetches`]).
    pub fn serve_logged(&mut self) {
        self.start_daemon(true)
    }

    /// How many fetches (`upload-pack`) of repo `name` the daemon served.
    pub fn fetches(&self, name: &str) -> usize {
        let log = self.log.as_ref().expect("call serve_logged() first");
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("upload-pack for") && l.contains(&format!("/{name}'")))
            .count()
    }

    /// Stops the daemon (repositories can no longer be fetched).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn start_daemon(&mut self, logged: bool) {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cmd = Command::new("git");
        cmd.arg("daemon")
            .arg("--reuseaddr")
            .arg("--export-all")
            .arg(format!("--base-path={}", self.root.display()))
            .arg("--listen=127.0.0.1")
            .arg(format!("--port={port}"));
        let stderr = if logged {
            cmd.arg("--verbose");
            let path = self._tmp.path().join("daemon.log");
            let f = std::fs::File::create(&path).unwrap();
            self.log = Some(path);
            Stdio::from(f)
        } else {
            Stdio::null()
        };
        let child = cmd
            .arg(&self.root)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("git daemon");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "git daemon did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        self.daemon = Some(child);
        self.port = port;
    }

    pub fn git_url(&self, name: &str) -> String {
        assert!(self.port != 0, "call serve() first");
        format!("git://127.0.0.1:{}/{name}", self.port)
    }

    pub fn file_url(&self, name: &str) -> String {
        format!("file://{}", self.root.join(name).display())
    }

    /// A `[build.catalog]` table mapping each name to its git:// URL.
    pub fn catalog(&self, names: &[&str]) -> String {
        let mut s = String::from("[build.catalog]\n");
        for n in names {
            s.push_str(&format!("{n:?} = {:?}\n", self.git_url(n)));
        }
        s
    }
}

impl Drop for Repos {
    fn drop(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
