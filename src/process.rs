//! The one place that spawns child processes: a command runs in its own
//! session and process group with a cleared environment (only what its [`RunSpec`]
//! gives), its stdout and stderr lines go to a [`LineSink`] (a job's log),
//! and a wall-clock timeout kills the whole process tree. The podman policy
//! (which binary, which environment) is here too, for component builds in
//! the podman sandbox and for image builds alike.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;

/// Where a child's output lines go.
pub trait LineSink: Send + Sync + 'static {
    fn line(&self, s: &str);
}

/// What to run.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub program: String,
    pub args: Vec<String>,
    pub cwd: PathBuf,
    /// The whole environment of the child (nothing is inherited).
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Exit code, or `None` when killed by a signal.
    Failed(Option<i32>),
    TimedOut,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Success => f.write_str("succeeded"),
            Outcome::Failed(Some(c)) => write!(f, "exited with status {c}"),
            Outcome::Failed(None) => f.write_str("was killed by a signal"),
            Outcome::TimedOut => f.write_str("timed out (the process tree was killed)"),
        }
    }
}

async fn pump<R: AsyncRead + Unpin>(r: R, log: Arc<dyn LineSink>) {
    let mut lines = BufReader::new(r).split(b'\n');
    while let Ok(Some(line)) = lines.next_segment().await {
        log.line(&String::from_utf8_lossy(&line));
    }
}

/// Runs `spec` to the end (or the timeout), logging its output.
pub async fn run(spec: &RunSpec, log: Arc<dyn LineSink>) -> std::io::Result<Outcome> {
    log.line(&format!("$ {} {}", spec.program, spec.args.join(" ")));
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .current_dir(&spec.cwd)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // its own session (and so its own process group, and no controlling
    // terminal to inject keystrokes into): the timeout kills the group
    // SAFETY: setsid is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    for (k, v) in &spec.env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().map_err(|e| {
        std::io::Error::new(e.kind(), format!("cannot start {}: {e}", spec.program))
    })?;
    let pgid = child.id().map(|p| p as i32);
    let out = child
        .stdout
        .take()
        .map(|o| tokio::spawn(pump(o, log.clone())));
    let err = child
        .stderr
        .take()
        .map(|e| tokio::spawn(pump(e, log.clone())));
    let outcome = match tokio::time::timeout(spec.timeout, child.wait()).await {
        Ok(status) => {
            let status = status?;
            if status.success() {
                Outcome::Success
            } else {
                Outcome::Failed(status.code())
            }
        }
        Err(_) => {
            if let Some(pg) = pgid {
                kill_group(pg);
            }
            let _ = child.kill().await;
            Outcome::TimedOut
        }
    };
    // Whatever is left in the process group (daemons a build started) goes too.
    if let Some(pg) = pgid {
        kill_group(pg);
    }
    for h in [out, err].into_iter().flatten() {
        let _ = tokio::time::timeout(Duration::from_secs(5), h).await;
    }
    Ok(outcome)
}

/// Variables of the service's environment that podman and buildah need to
/// find their storage, runtime directory and registry credentials; nothing
/// else of the service's environment (keys, config overrides) is passed.
const PODMAN_ENV: [&str; 16] = [
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "TMPDIR",
    "XDG_RUNTIME_DIR",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "DBUS_SESSION_BUS_ADDRESS",
    "CONTAINERS_CONF",
    "CONTAINERS_STORAGE_CONF",
    "CONTAINERS_REGISTRIES_CONF",
    "REGISTRY_AUTH_FILE",
    "BUILDAH_ISOLATION",
    "STORAGE_DRIVER",
];

/// The environment for podman (component builds in the podman sandbox and
/// image builds): [`PODMAN_ENV`] taken from the service's environment.
pub fn podman_env() -> Vec<(String, String)> {
    PODMAN_ENV
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| ((*k).to_owned(), v)))
        .collect()
}

/// The program of a configured podman command line (`build.podman_build`,
/// `image.podman_build`, `image.podman_push`): its first word, `podman`
/// when the setting is empty.
pub fn podman_program(configured: &[String]) -> &str {
    configured
        .first()
        .map(String::as_str)
        .filter(|p| !p.is_empty())
        .unwrap_or("podman")
}

/// A podman invocation: the configured command line, then `args`, run in
/// `cwd` with [`podman_env`] and the timeout.
pub fn podman(configured: &[String], args: Vec<String>, cwd: &Path, timeout: Duration) -> RunSpec {
    let mut all: Vec<String> = configured.iter().skip(1).cloned().collect();
    all.extend(args);
    RunSpec {
        program: podman_program(configured).to_owned(),
        args: all,
        cwd: cwd.to_owned(),
        env: podman_env(),
        timeout,
    }
}

/// Whether `prog` can be started: an existing path, or a name on `PATH`.
pub fn on_path(prog: &str) -> bool {
    std::path::Path::new(prog).is_file()
        || std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()))
            .unwrap_or(false)
}

/// Runs a short query command and returns its trimmed stdout, or `None`
/// when it cannot start or fails.
pub async fn output(program: &str, args: &[&str], cwd: &Path) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .current_dir(cwd)
        .env_clear()
        .envs(podman_env())
        .stdin(Stdio::null())
        .output()
        .await
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// What a short command said.
#[derive(Debug, Clone)]
pub struct Captured {
    /// Exit code (`None`: killed by a signal or by the timeout).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Captured {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
}

/// Runs a short command (a cluster's client: `sbatch`, `squeue`, ...) with
/// exactly `env`, no stdin, and a timeout; its output captured.
pub async fn capture(
    program: &str,
    args: &[String],
    env: &[(String, String)],
    timeout: Duration,
) -> std::io::Result<Captured> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(timeout, cmd.output())
        .await
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("{program} did not answer within {} s", timeout.as_secs()),
            )
        })?
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot run {program}: {e}")))?;
    Ok(Captured {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

fn kill_group(pgid: i32) {
    // SAFETY: killpg only sends a signal; a stale group id fails with ESRCH.
    unsafe {
        libc::killpg(pgid, libc::SIGKILL);
    }
}
