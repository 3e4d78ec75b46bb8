//! Where a build command runs: `bwrap` (read-only host root, writable work
//! tree, private /tmp, no network), `podman` (the architecture's builder
//! image, via `podman build` so no `podman run` is needed), or `process`
//! (no isolation, only when configured explicitly).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::process::{self, LineSink, Outcome, RunSpec};

/// Paths inside the sandbox.
pub const SRC_IN: &str = "/mnt/build";
pub const DEPS_IN: &str = "/mnt/deps";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sandbox {
    Bwrap,
    Podman { image: String },
    Process,
}

impl Sandbox {
    pub fn name(&self) -> &'static str {
        match self {
            Sandbox::Bwrap => "bwrap",
            Sandbox::Podman { .. } => "podman",
            Sandbox::Process => "process",
        }
    }
}

/// The sandbox for `arch`: its own setting, else `build.sandbox`.
pub fn choose(cfg: &Config, arch: &str, recipe_image: Option<&str>) -> Result<Sandbox, String> {
    let ac = cfg.arch(arch);
    let kind = ac.sandbox.as_deref().unwrap_or(&cfg.build.sandbox);
    match kind {
        "process" => Ok(Sandbox::Process),
        "podman" => {
            let image = ac.image.or(recipe_image.map(str::to_owned)).ok_or_else(|| {
                format!("the podman sandbox for {arch} needs an image (build.arch.{arch}.image or the recipe's image)")
            })?;
            Ok(Sandbox::Podman { image })
        }
        "bwrap" => Ok(Sandbox::Bwrap),
        _ if process::on_path("bwrap") => Ok(Sandbox::Bwrap),
        _ => Err("no sandbox available: install bubblewrap (bwrap), or configure build.sandbox = \"podman\" (or \"process\" to build without isolation)".into()),
    }
}

/// One build to run.
pub struct Job<'a> {
    /// The work directory: `src/` (the checkout) and `deps/` live in it.
    pub work: &'a Path,
    pub command: &'a str,
    /// `ADBS_*` variables (with in-sandbox paths).
    pub vars: Vec<(String, String)>,
    pub timeout: Duration,
}

const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn shell() -> &'static str {
    if Path::new("/bin/bash").exists() {
        "/bin/bash"
    } else {
        "/bin/sh"
    }
}

/// Runs the build; returns the directory holding the built tree.
pub async fn run(
    sb: &Sandbox,
    cfg: &Config,
    job: Job<'_>,
    log: Arc<dyn LineSink>,
) -> Result<PathBuf, String> {
    let src = job.work.join("src");
    let deps = job.work.join("deps");
    let mut env = vec![
        ("PATH".to_owned(), PATH.to_owned()),
        ("HOME".to_owned(), "/tmp".to_owned()),
        ("LANG".to_owned(), "C.UTF-8".to_owned()),
    ];
    let (spec, out) = match sb {
        Sandbox::Process => {
            env.extend(
                job.vars
                    .iter()
                    .map(|(k, v)| (k.clone(), local_path(v, &src, &deps))),
            );
            let spec = RunSpec {
                program: shell().into(),
                args: vec!["-c".into(), job.command.into()],
                cwd: src.clone(),
                env,
                timeout: job.timeout,
            };
            (spec, src.clone())
        }
        Sandbox::Bwrap => {
            env.extend(job.vars.iter().cloned());
            let mut args = bwrap_args(cfg, job.work).map_err(|e| format!("sandbox: {e}"))?;
            args.push(job.command.into());
            let spec = RunSpec {
                program: "bwrap".into(),
                args,
                cwd: job.work.to_owned(),
                env,
                timeout: job.timeout,
            };
            (spec, src.clone())
        }
        Sandbox::Podman { image } => {
            let containerfile = job.work.join("Containerfile");
            std::fs::write(
                &containerfile,
                containerfile_text(image, job.command, &job.vars),
            )
            .map_err(|e| format!("cannot write the Containerfile: {e}"))?;
            let out = job.work.join("out");
            let args = vec![
                "-f".into(),
                path_str(&containerfile),
                "--output".into(),
                format!("type=local,dest={}", out.display()),
                path_str(job.work),
            ];
            let spec = process::podman(&cfg.build.podman_build, args, job.work, job.timeout);
            (spec, out)
        }
    };
    match process::run(&spec, log).await {
        Ok(Outcome::Success) => Ok(out),
        Ok(o) => Err(format!("the build command {o}")),
        Err(e) => Err(e.to_string()),
    }
}

/// The user a recipe runs as inside bwrap (in its own user namespace).
const BUILD_UID: u32 = 1000;

/// Host paths a build sees, read-only: the system's programs and libraries
/// and the few files under /etc they need. Nothing else of the host (no
/// /home, /root, /var, /srv, /etc as a whole) is mounted.
const SYSTEM_DIRS: [&str; 6] = ["/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32"];
const SYSTEM_ETC: [&str; 14] = [
    "/etc/alternatives",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/nsswitch.conf",
    // certificates only: /etc/ssl/private holds keys
    "/etc/ssl/certs",
    "/etc/ssl/openssl.cnf",
    "/etc/ca-certificates",
    "/etc/pki/tls/certs",
    "/etc/pki/ca-trust",
    "/etc/os-release",
    "/etc/debian_version",
    "/etc/redhat-release",
];

/// The bwrap command line up to (not including) the command string: a new
/// user namespace where the recipe is uid 1000 with no capabilities (and
/// may not make further user namespaces); new
/// pid, network (only `lo`), ipc and uts namespaces; the system directories
/// read-only; a synthetic /etc/passwd and /etc/group; private /tmp; the
/// work tree at `/mnt/build` (writable) and the dependencies at `/mnt/deps`
/// (read-only). The service's data directory, home and configuration are
/// not mounted, and are covered by an empty tmpfs should one of them lie
/// inside a mounted directory (or in `build.sandbox_binds`).
pub fn bwrap_args(cfg: &Config, work: &Path) -> std::io::Result<Vec<String>> {
    let etc = work.join("etc");
    std::fs::create_dir_all(&etc)?;
    std::fs::write(
        etc.join("passwd"),
        format!(
            "root:x:0:0:root:/root:/bin/sh\nbuilder:x:{BUILD_UID}:{BUILD_UID}:builder:/tmp:/bin/sh\n\
             nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        ),
    )?;
    std::fs::write(
        etc.join("group"),
        format!("root:x:0:\nbuilder:x:{BUILD_UID}:\nnogroup:x:65534:\n"),
    )?;
    let mut a: Vec<String> = Vec::new();
    let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| (*s).to_owned()));
    // fresh mounts first, so the binds below may land inside them
    push(&[
        "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", "--tmpfs", "/mnt",
    ]);
    let mut mounted: Vec<PathBuf> = Vec::new();
    for d in SYSTEM_DIRS {
        let p = Path::new(d);
        match std::fs::symlink_metadata(p) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = std::fs::read_link(p)?;
                push(&["--symlink", &target.to_string_lossy(), d]);
            }
            Ok(m) if m.is_dir() => {
                push(&["--ro-bind", d, d]);
                mounted.push(p.to_owned());
            }
            _ => {}
        }
    }
    for f in SYSTEM_ETC {
        push(&["--ro-bind-try", f, f]);
    }
    for extra in &cfg.build.sandbox_binds {
        let s = path_str(extra);
        push(&["--ro-bind-try", &s, &s]);
        mounted.push(extra.canonicalize().unwrap_or_else(|_| extra.clone()));
    }
    push(&["--ro-bind", &path_str(&etc.join("passwd")), "/etc/passwd"]);
    push(&["--ro-bind", &path_str(&etc.join("group")), "/etc/group"]);
    for hidden in hidden_paths(cfg) {
        if mounted.iter().any(|m| hidden.starts_with(m)) {
            push(&["--tmpfs", &path_str(&hidden)]);
        }
    }
    push(&["--bind", &path_str(&work.join("src")), SRC_IN]);
    push(&["--ro-bind", &path_str(&work.join("deps")), DEPS_IN]);
    let uid = BUILD_UID.to_string();
    push(&[
        "--chdir",
        SRC_IN,
        "--unshare-all",
        "--unshare-user",
        "--uid",
        &uid,
        "--gid",
        &uid,
        "--hostname",
        "builder",
        "--cap-drop",
        "ALL",
        "--disable-userns",
        // (no --new-session: process::run already gives the command its own
        // session, and bwrap must stay in its process group, which the
        // timeout kills: with --uid, --die-with-parent alone does not hold)
        "--die-with-parent",
        "--",
        shell(),
        "-c",
    ]);
    Ok(a)
}

/// What a build must not see: the data directory, the service's home (ssh
/// keys for clones), the configuration file's directory.
fn hidden_paths(cfg: &Config) -> Vec<PathBuf> {
    let mut v = Vec::new();
    let mut add = |p: &Path| {
        if let Ok(c) = p.canonicalize() {
            v.push(c);
        }
    };
    add(&cfg.data_dir);
    if let Some(h) = std::env::var_os("HOME") {
        add(Path::new(&h));
    }
    if let Some(c) = &cfg.config_file {
        if let Some(dir) = c.parent() {
            add(dir);
        }
    }
    v
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

/// In the `process` sandbox the in-sandbox paths are the real ones.
fn local_path(v: &str, src: &Path, deps: &Path) -> String {
    if let Some(rest) = v.strip_prefix(SRC_IN) {
        format!("{}{rest}", src.display())
    } else if let Some(rest) = v.strip_prefix(DEPS_IN) {
        format!("{}{rest}", deps.display())
    } else {
        v.to_owned()
    }
}

/// A two-stage Containerfile: build in the builder image, then keep only
/// the work tree, which `--output type=local` writes to `out/`.
pub fn containerfile_text(image: &str, command: &str, vars: &[(String, String)]) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    let mut t = format!("FROM {image}\nCOPY deps {DEPS_IN}\nCOPY src {SRC_IN}\nWORKDIR {SRC_IN}\n");
    for (k, v) in vars {
        t.push_str(&format!("ENV {k}={}\n", q(v)));
    }
    t.push_str(&format!("RUN [\"/bin/sh\", \"-c\", {}]\n", q(command)));
    t.push_str(&format!("FROM scratch\nCOPY --from=0 {SRC_IN} /\n"));
    t
}
