//! Where a build command runs: `bwrap` (read-only host root, writable work
//! tree, private /tmp, no network), `podman` (the architecture's builder
//! image, via `podman build` so no `podman run` is needed), or `process`
//! (no isolation, only when configured explicitly).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::Config;
use crate::jobs::JobLog;
use crate::process::{self, Outcome, RunSpec};

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
    log: &JobLog,
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
            let mut args: Vec<String> = [
                "--ro-bind",
                "/",
                "/",
                "--tmpfs",
                "/mnt",
                "--dev",
                "/dev",
                "--proc",
                "/proc",
                "--tmpfs",
                "/tmp",
            ]
            .map(String::from)
            .to_vec();
            args.extend(["--bind".into(), path_str(&src), SRC_IN.into()]);
            args.extend(["--ro-bind".into(), path_str(&deps), DEPS_IN.into()]);
            args.extend(
                [
                    "--chdir",
                    SRC_IN,
                    "--unshare-all",
                    "--die-with-parent",
                    "--new-session",
                    "--",
                    shell(),
                    "-c",
                ]
                .map(String::from),
            );
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
            let mut argv = cfg.build.podman_build.clone();
            if argv.is_empty() {
                return Err("build.podman_build is empty".into());
            }
            let program = argv.remove(0);
            argv.extend([
                "-f".into(),
                path_str(&containerfile),
                "--output".into(),
                format!("type=local,dest={}", out.display()),
                path_str(job.work),
            ]);
            let spec = RunSpec {
                program,
                args: argv,
                cwd: job.work.to_owned(),
                env: podman_env(),
                timeout: job.timeout,
            };
            (spec, out)
        }
    };
    match process::run(&spec, log).await {
        Ok(Outcome::Success) => Ok(out),
        Ok(o) => Err(format!("the build command {o}")),
        Err(e) => Err(e.to_string()),
    }
}

/// podman needs the service's own environment (XDG_RUNTIME_DIR, HOME, ...).
fn podman_env() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| !k.starts_with("ARTIFACT_STORE_"))
        .collect()
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
