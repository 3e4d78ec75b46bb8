//! A throwaway PostgreSQL server for the tests: one per test binary, with
//! Debian's binaries (`apt-get install postgresql`), listening on
//! 127.0.0.1 on a free port, its data in a temp dir, fsync off. It dies
//! with the test process; each test takes a fresh database.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

pub struct Postgres {
    bin: PathBuf,
    pub port: u16,
    pub dir: PathBuf,
}

static SERVER: OnceLock<Postgres> = OnceLock::new();
static DATABASES: AtomicUsize = AtomicUsize::new(0);
static SERVER_PID: AtomicU32 = AtomicU32::new(0);

/// At exit: stops the server and removes its directory (a server whose test
/// process was killed dies by its death signal; its directory is removed
/// by the next run).
extern "C" fn stop_at_exit() {
    let pid = SERVER_PID.load(Ordering::Relaxed);
    if pid != 0 {
        // SAFETY: a signal to the server this process started
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    }
    if let Some(s) = SERVER.get() {
        std::thread::sleep(Duration::from_millis(100));
        let _ = std::fs::remove_dir_all(&s.dir);
    }
}

/// The test binary's server, started on first use.
pub fn server() -> &'static Postgres {
    SERVER.get_or_init(Postgres::start)
}

/// A fresh, empty database on the test binary's server: its URL.
pub fn database() -> String {
    server().database()
}

/// The newest `/usr/lib/postgresql/<version>/bin` with `initdb`.
fn bin_dir() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "these tests need a PostgreSQL server: no /usr/lib/postgresql/*/bin/initdb \
             (install it with `apt-get install postgresql`)"
        ),
    }
}

/// The user the server runs as: `nobody` when the tests run as root
/// (PostgreSQL refuses root), else the tests' own.
fn run_as() -> Option<(u32, u32)> {
    // SAFETY: getuid has no preconditions
    if unsafe { libc::getuid() } != 0 {
        return None;
    }
    // SAFETY: getpwnam with a NUL-terminated name; the result is read at once
    let pw = unsafe { libc::getpwnam(c"nobody".as_ptr()) };
    if pw.is_null() {
        return Some((65534, 65534));
    }
    // SAFETY: not null, as checked
    unsafe { Some(((*pw).pw_uid, (*pw).pw_gid)) }
}

fn command(bin: &Path, name: &str, user: Option<(u32, u32)>) -> Command {
    let mut c = Command::new(bin.join(name));
    if let Some((uid, gid)) = user {
        c.uid(uid).gid(gid);
    }
    c.env_remove("PGDATA").env("LC_ALL", "C.UTF-8");
    c
}

/// Removes the directories of servers whose test process is gone.
fn remove_stale(tmp: &Path) {
    for e in std::fs::read_dir(tmp).into_iter().flatten().flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("artifact-store-pg-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("find a free port")
        .port()
}

impl Postgres {
    fn start() -> Postgres {
        let bin = bin_dir();
        let user = run_as();
        let tmp = std::env::temp_dir();
        remove_stale(&tmp);
        let dir = tmp.join(format!("artifact-store-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("socket")).expect("create the server's directory");
        if let Some((uid, gid)) = user {
            for d in [dir.clone(), dir.join("socket")] {
                std::os::unix::fs::chown(&d, Some(uid), Some(gid)).expect("chown");
            }
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let out = command(&bin, "initdb", user)
            .args([
                "--auth=trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(dir.join("data"))
            .current_dir(&dir)
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // a port taken between finding and binding: try another
        for _ in 0..5 {
            let port = free_port();
            if Self::serve(&bin, &dir, port, user) {
                // SAFETY: registers a plain function
                unsafe { libc::atexit(stop_at_exit) };
                return Postgres { bin, port, dir };
            }
        }
        panic!(
            "the test PostgreSQL server did not start; its log: {}",
            std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
        );
    }

    /// Starts the server on `port` from a thread that never ends (the
    /// server is killed when the thread that started it exits: with the
    /// test process); whether it accepts connections.
    fn serve(bin: &Path, dir: &Path, port: u16, user: Option<(u32, u32)>) -> bool {
        let mut cmd = command(bin, "postgres", user);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("server.log"))
            .expect("server log");
        if let Some((uid, gid)) = user {
            let _ = std::os::unix::fs::chown(dir.join("server.log"), Some(uid), Some(gid));
        }
        cmd.arg("-D")
            .arg(dir.join("data"))
            .args(["-p", &port.to_string(), "-k"])
            .arg(dir.join("socket"))
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=400",
                "-c",
                "shared_buffers=64MB",
            ])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        // SAFETY: prctl only, between fork and exec
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let (started, exited) = (mpsc::channel(), mpsc::channel());
        let (started_tx, started_rx) = started;
        let (exited_tx, exited_rx) = exited;
        std::thread::Builder::new()
            .name(format!("postgres-{port}"))
            .spawn(move || {
                match cmd.spawn() {
                    Ok(mut child) => {
                        SERVER_PID.store(child.id(), Ordering::Relaxed);
                        let _ = started_tx.send(Ok(()));
                        let _ = child.wait();
                        let _ = exited_tx.send(());
                    }
                    Err(e) => {
                        let _ = started_tx.send(Err(e.to_string()));
                    }
                }
                // never exit: the server's death signal is tied to this thread
                loop {
                    std::thread::park();
                }
            })
            .expect("start the server's thread");
        if let Ok(Err(e)) = started_rx.recv() {
            panic!("cannot start {}: {e}", bin.join("postgres").display());
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if exited_rx.try_recv().is_ok() {
                return false;
            }
            let ready = Command::new(bin.join("pg_isready"))
                .args([
                    "-q",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "-U",
                    "postgres",
                ])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the test PostgreSQL server did not accept connections within 60 s");
    }

    /// Runs one SQL statement as the superuser (in database `postgres`).
    pub fn psql(&self, sql: &str) -> String {
        self.psql_db("postgres", sql)
    }

    /// Runs one SQL statement in the database of `url` (from [`database`]).
    pub fn psql_in(&self, url: &str, sql: &str) -> String {
        let name = url.rsplit('/').next().expect("a database URL");
        self.psql_db(name, sql)
    }

    fn psql_db(&self, database: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-t",
                "-A",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
            ])
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                database,
                "-c",
                sql,
            ])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql {sql:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A fresh, empty database: its URL.
    pub fn database(&self) -> String {
        let n = DATABASES.fetch_add(1, Ordering::Relaxed);
        let name = format!("test_{}_{n}", std::process::id());
        self.psql(&format!("CREATE DATABASE {name}"));
        self.url(&name)
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}
