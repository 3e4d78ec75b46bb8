//! The `artifact-store` binary: `serve` runs the service; `key` manages API
//! keys (`new`/`hash` offline for the config file, `create`/`list`/`revoke`
//! on a running service); `migrate` and `reindex` work on a store's storage directly; `get`,
//! `put`, `check`, `build`, `image`, `jobs`, `gc`, `verify` are the client,
//! talking to a running service.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use artifact_store::client::{self, Remote};
use artifact_store::config::{Config, IndexKind, StorageKind};
use artifact_store::model::JobState;

/// The `key` subcommands (offline for the config file, and on a service).
#[path = "main/key.rs"]
mod key;

use key::KeyCmd;

#[derive(Parser)]
#[command(
    name = "artifact-store",
    version,
    about = "Artifact storage for a build system"
)]
struct Cli {
    /// Configuration file (default: config/default.toml when present).
    #[arg(long, global = true, env = "ARTIFACT_STORE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the service (embedded defaults: ./data, 127.0.0.1:8080).
    Serve {
        /// Override `listen` (e.g. 0.0.0.0:8080; port 0 picks a free one).
        #[arg(long)]
        listen: Option<String>,
        /// Override `data_dir`.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Manage API keys.
    #[command(subcommand)]
    Key(KeyCmd),
    /// Download a component (blake3 checked as it streams).
    Get {
        #[command(flatten)]
        remote: RemoteArgs,
        component: String,
        tag: String,
        #[arg(long, default_value = "rocky9")]
        arch: String,
        /// Write the tarball here (default: <component>-<tag>-<arch>.tar.zst).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Extract into this directory (giving DIR/<tag>/...).
        #[arg(long)]
        extract: Option<PathBuf>,
    },
    /// Upload a tarball (tar.zst, tar.gz or tar).
    Put {
        #[command(flatten)]
        remote: RemoteArgs,
        component: String,
        tag: String,
        file: PathBuf,
        #[arg(long, default_value = "rocky9")]
        arch: String,
        /// Store a tarball whose only top directory is named like another
        /// tag (`R4.39/` uploaded as R4.40) under `<tag>/` anyway; without
        /// it the service refuses such an upload.
        #[arg(long)]
        wrap: bool,
    },
    /// Which of these components are missing? Exit 0: none; 1: some (listed).
    Check {
        #[command(flatten)]
        remote: RemoteArgs,
        /// `component:tag` items (or `component=tag`).
        #[arg(required = true)]
        items: Vec<String>,
        #[arg(long, default_value = "rocky9")]
        arch: String,
    },
    /// Build a component from git, following the live log; exits with the result.
    Build {
        #[command(flatten)]
        remote: RemoteArgs,
        component: String,
        tag: String,
        #[arg(long, default_value = "rocky9")]
        arch: String,
        /// Repository URL (default: the service's catalog or earlier builds).
        #[arg(long)]
        url: Option<String>,
    },
    /// A build script's dependency closure: resolve it, fetch it.
    #[command(subcommand)]
    Deps(DepsCmd),
    /// Container images.
    #[command(subcommand)]
    Image(ImageCmd),
    /// Recent jobs, or one job (with --log: its log).
    Jobs {
        #[command(flatten)]
        remote: RemoteArgs,
        id: Option<String>,
        #[arg(long)]
        log: bool,
    },
    /// Run a garbage collection pass on the server (admin key).
    Gc {
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Re-hash every blob on the server, quarantine corrupt ones (admin key).
    Verify {
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Copy a single-host store (local blobs + sled, the service stopped)
    /// into the storage and index the configuration names (S3, PostgreSQL).
    /// Safe to run again: what is there already is skipped.
    Migrate {
        /// The data directory of the store to copy.
        #[arg(long)]
        from: PathBuf,
    },
    /// Rebuild the configured index from the record copies kept beside the
    /// blobs in object storage (after losing the database).
    Reindex,
    /// Run a build the service handed over (what Slurm and Kubernetes
    /// start), or with `--poll` claim and run builds until stopped.
    Worker {
        /// The service's base URL, as this machine reaches it.
        #[arg(long, env = "ARTIFACT_STORE_URL")]
        server: String,
        /// The job to run (with its job token).
        #[arg(long, required_unless_present = "poll", conflicts_with = "poll")]
        job: Option<String>,
        /// The job token minted for `--job` (best passed in the environment).
        #[arg(long, env = "ARTIFACT_STORE_JOB_TOKEN", hide_env_values = true)]
        job_token: Option<String>,
        /// Claim builds waiting for a worker (executor `worker`), one at a time.
        #[arg(long)]
        poll: bool,
        /// `--poll`: an API key named in the service's `build.worker_keys`
        /// (or an admin key).
        #[arg(long, env = "ARTIFACT_STORE_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// `--poll`: this worker's name in the job log (default: the host name).
        #[arg(long)]
        name: Option<String>,
        /// `--poll`: the arches this machine builds (repeat; default: any).
        #[arg(long)]
        arch: Vec<String>,
        /// `--poll`: run at most one build, then exit.
        #[arg(long)]
        once: bool,
        /// Where builds are unpacked (default: $TMPDIR or /tmp).
        #[arg(long)]
        work_dir: Option<PathBuf>,
        /// Run builds whose arch uses the `process` sandbox (no isolation:
        /// the build could read the job token). Off: such builds fail.
        #[arg(long)]
        allow_process_sandbox: bool,
    },
}

#[derive(clap::Args)]
struct RemoteArgs {
    /// The service's base URL.
    #[arg(
        long,
        env = "ARTIFACT_STORE_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    server: String,
    /// API key (sent as `Authorization: Bearer`).
    #[arg(long, env = "ARTIFACT_STORE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Your GitHub user name, recorded with uploads and builds (sent as
    /// `github_username`; the Linux user name, from $USER or the password
    /// database, is always sent as `linux_username`).
    #[arg(long, env = "ARTIFACT_STORE_GITHUB_USER")]
    github_user: Option<String>,
}

#[derive(Subcommand)]
enum DepsCmd {
    /// Print the closure of a recipe's dependencies (or verify a lock).
    Resolve {
        #[command(flatten)]
        remote: RemoteArgs,
        /// The recipe (default: ./config.yaml).
        recipe: Option<PathBuf>,
        /// Verify this lock file instead of resolving a recipe.
        #[arg(long, conflicts_with = "recipe")]
        lock: Option<PathBuf>,
        /// Default: the lock's, else the service's default architecture.
        #[arg(long)]
        arch: Option<String>,
        /// Print the answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Download the closure into DIR/<component>/<tag>/ (blake3 checked,
    /// in parallel); writes DIR/deps.lock.json and DIR/env.sh.
    Fetch {
        #[command(flatten)]
        remote: RemoteArgs,
        /// The recipe (default: ./config.yaml).
        recipe: Option<PathBuf>,
        /// Fetch exactly this lock (verified by the service) instead.
        #[arg(long, conflicts_with = "recipe")]
        lock: Option<PathBuf>,
        #[arg(long)]
        arch: Option<String>,
        /// Where the dependencies go.
        #[arg(long, default_value = "deps")]
        into: PathBuf,
        /// Downloads at once.
        #[arg(long, default_value_t = 4)]
        jobs: usize,
        /// Build what is missing first (following the job's log), then fetch.
        #[arg(long)]
        build_missing: bool,
    },
}

#[derive(Subcommand)]
enum ImageCmd {
    /// Build (and push) an image from a Dockerfile; follows the log.
    Build {
        #[command(flatten)]
        remote: RemoteArgs,
        #[arg(long)]
        component: String,
        #[arg(long)]
        branch: String,
        #[arg(long, default_value = "rocky9")]
        arch: String,
        #[arg(long, default_value = "Dockerfile")]
        dockerfile: PathBuf,
        /// Build context: a directory or a tarball.
        #[arg(long)]
        context: Option<PathBuf>,
        #[arg(long)]
        no_cache: bool,
    },
    /// What to pull for (component, branch, arch).
    Get {
        #[command(flatten)]
        remote: RemoteArgs,
        component: String,
        branch: String,
        #[arg(default_value = "rocky9")]
        arch: String,
    },
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ARTIFACT_STORE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = std::env::var("ARTIFACT_STORE_LOG_FORMAT").is_ok_and(|v| v == "json");
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if json {
        b.json().init();
    } else {
        b.init();
    }
}

type Failure = Box<dyn std::error::Error>;

/// Runs an offline command on the configured store: exit 2 when it fails.
fn offline(
    config: Option<&std::path::Path>,
    f: impl FnOnce(&Config) -> Result<ExitCode, Failure>,
) -> ExitCode {
    with_config(Config::load(config), f)
}

/// As [`offline`] for the worker: the config file only when one is named
/// (`--config`, `ARTIFACT_STORE_CONFIG`), never `config/default.toml` of
/// the directory the cluster started it in.
fn worker_config(
    config: Option<&std::path::Path>,
    f: impl FnOnce(&Config) -> Result<ExitCode, Failure>,
) -> ExitCode {
    with_config(Config::load_explicit(config), f)
}

fn with_config(
    cfg: Result<Config, artifact_store::config::ConfigError>,
    f: impl FnOnce(&Config) -> Result<ExitCode, Failure>,
) -> ExitCode {
    init_tracing();
    match cfg.map_err(Failure::from).and_then(|cfg| f(&cfg)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("artifact-store: {e}");
            ExitCode::from(2)
        }
    }
}

fn same_dir(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Serve { listen, data_dir } => {
            init_tracing();
            let mut cfg = match Config::load(cli.config.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("artifact-store: {e}");
                    return ExitCode::from(2);
                }
            };
            if let Some(l) = listen {
                cfg.listen = l;
            }
            if let Some(d) = data_dir {
                cfg.data_dir = d;
            }
            let rt = actix_web::rt::System::new();
            match rt.block_on(artifact_store::app::serve(cfg)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("artifact-store: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Cmd::Migrate { from } => offline(cli.config.as_deref(), |cfg| {
            let (src_blobs, src_index) = artifact_store::app::open_local_store(&from)?;
            let same = cfg.storage.kind == StorageKind::Local
                && cfg.index.kind == IndexKind::Sled
                && same_dir(&cfg.data_dir, &from);
            if same {
                return Err("the configuration names the store being copied: set [storage] and [index] to the target".into());
            }
            let dst_blobs = artifact_store::app::open_blobs(cfg)?;
            let dst_index = artifact_store::app::open_index(cfg)?;
            let scratch = artifact_store::store::Scratch::open(&cfg.data_dir)?;
            let report = artifact_store::migrate::migrate(
                src_blobs.as_ref(),
                src_index.as_ref(),
                dst_blobs,
                dst_index.as_ref(),
                &scratch,
                &|line| eprintln!("migrate: {line}"),
            )?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(if report.blobs_corrupt.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }),
        Cmd::Reindex => offline(cli.config.as_deref(), |cfg| {
            let blobs = artifact_store::app::open_blobs(cfg)?;
            let index = artifact_store::app::open_index(cfg)?;
            let report = artifact_store::migrate::reindex(blobs, index.as_ref())?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(if report.unreadable.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }),
        Cmd::Worker {
            server,
            job,
            job_token,
            poll,
            token,
            name,
            arch,
            once,
            work_dir,
            allow_process_sandbox,
        } => worker_config(cli.config.as_deref(), |cfg| {
            use artifact_store::worker;
            let svc = worker::Service::new(&server)?;
            let opts = worker::Options {
                work_root: work_dir.unwrap_or_else(worker::default_work_root),
                allow_process_sandbox,
            };
            if poll {
                let key = token.ok_or("--poll needs a key: --token or ARTIFACT_STORE_TOKEN")?;
                let name = name.unwrap_or_else(artifact_store::app::host_name);
                worker::poll(&svc, &key, &name, &arch, cfg, &opts, once)?;
                return Ok(ExitCode::SUCCESS);
            }
            let job = job.ok_or("--job or --poll")?;
            let token =
                job_token.ok_or("the job token: ARTIFACT_STORE_JOB_TOKEN (or --job-token)")?;
            worker::run_one(&svc, &job, &token, cfg, &opts)?;
            Ok(ExitCode::SUCCESS)
        }),
        other => match run_client(other) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("artifact-store: {e}");
                ExitCode::from(e.exit_code())
            }
        },
    }
}

/// A recipe file (default `./config.yaml`), or a lock file.
fn deps_source<'a>(
    recipe: &'a Option<PathBuf>,
    lock: &'a Option<PathBuf>,
) -> client::deps::Source<'a> {
    match (lock, recipe) {
        (Some(l), _) => client::deps::Source::Lock(l),
        (None, Some(r)) => client::deps::Source::Recipe(r),
        (None, None) => client::deps::Source::Recipe(std::path::Path::new("config.yaml")),
    }
}

fn remote(a: &RemoteArgs) -> client::Result<Remote> {
    Ok(Remote::new(&a.server, a.token.clone())?.with_github_user(a.github_user.clone()))
}

fn print_json<T: serde::Serialize>(v: &T) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// The client subcommands: exit 0 on success, 1 for a "no" (not found,
/// missing components, a failed build, a verify that found damage), 2 for
/// errors (usage, refused requests, the service unreachable).
fn run_client(cmd: Cmd) -> client::Result<ExitCode> {
    let yes_no = |ok: bool| {
        if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        }
    };
    match cmd {
        Cmd::Get {
            remote: r,
            component,
            tag,
            arch,
            output,
            extract,
        } => {
            let p = client::get(
                &remote(&r)?,
                &component,
                &tag,
                &arch,
                output.as_deref(),
                extract.as_deref(),
            )?;
            println!("{}", p.display());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Put {
            remote: r,
            component,
            tag,
            file,
            arch,
            wrap,
        } => {
            print_json(&client::put(
                &remote(&r)?,
                &component,
                &tag,
                &arch,
                &file,
                wrap,
            )?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Check {
            remote: r,
            items,
            arch,
        } => {
            let parsed = items
                .iter()
                .map(|i| {
                    i.split_once(':')
                        .or_else(|| i.split_once('='))
                        .map(|(c, t)| (c.to_owned(), t.to_owned()))
                        .ok_or_else(|| {
                            client::ClientError::Other(format!("'{i}': expected component:tag"))
                        })
                })
                .collect::<client::Result<Vec<_>>>()?;
            let missing = client::check(&remote(&r)?, &parsed, &arch)?;
            for m in &missing {
                println!("missing {}:{} ({})", m.component, m.tag, m.arch);
            }
            Ok(yes_no(missing.is_empty()))
        }
        Cmd::Build {
            remote: r,
            component,
            tag,
            arch,
            url,
        } => {
            let ok = client::build(
                &remote(&r)?,
                &component,
                &tag,
                &arch,
                url.as_deref(),
                &mut std::io::stdout(),
            )?;
            Ok(yes_no(ok))
        }
        Cmd::Deps(DepsCmd::Resolve {
            remote: r,
            recipe,
            lock,
            arch,
            json,
        }) => {
            let rm = remote(&r)?;
            let answer =
                client::deps::resolve(&rm, deps_source(&recipe, &lock), arch.as_deref(), false)?;
            client::deps::print(&answer, json, &mut std::io::stdout())?;
            Ok(yes_no(answer.missing.is_empty()))
        }
        Cmd::Deps(DepsCmd::Fetch {
            remote: r,
            recipe,
            lock,
            arch,
            into,
            jobs,
            build_missing,
        }) => {
            let rm = remote(&r)?;
            let source = deps_source(&recipe, &lock);
            let mut answer = client::deps::resolve(&rm, source, arch.as_deref(), build_missing)?;
            if let Some(job) = answer.job.clone() {
                eprintln!("building the missing components: job {job}");
                let j = client::follow(&rm, &job, &mut std::io::stderr())?;
                if j.state != JobState::Success {
                    return Err(client::ClientError::Other(format!(
                        "the build of the missing components failed: {}",
                        j.error.unwrap_or_default()
                    )));
                }
                answer = client::deps::resolve(
                    &rm,
                    deps_source(&recipe, &lock),
                    arch.as_deref(),
                    false,
                )?;
            }
            let done = client::deps::fetch(&rm, &answer, &into, jobs)?;
            println!(
                "{} components for {} in {}: {} downloaded ({} bytes), {} already there; source {}/env.sh",
                done.components,
                answer.arch,
                into.display(),
                done.downloaded,
                done.bytes,
                done.kept,
                into.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Image(ImageCmd::Build {
            remote: r,
            component,
            branch,
            arch,
            dockerfile,
            context,
            no_cache,
        }) => {
            let b = client::ImageBuild {
                component: &component,
                branch: &branch,
                arch: &arch,
                dockerfile: &dockerfile,
                context: context.as_deref(),
                no_cache,
            };
            let ok = client::image_build(&remote(&r)?, &b, &mut std::io::stdout())?;
            Ok(yes_no(ok))
        }
        Cmd::Image(ImageCmd::Get {
            remote: r,
            component,
            branch,
            arch,
        }) => {
            print_json(&client::image_get(
                &remote(&r)?,
                &component,
                &branch,
                &arch,
            )?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Jobs { remote: r, id, log } => {
            let rm = remote(&r)?;
            match (id, log) {
                (Some(id), true) => {
                    let job = client::follow(&rm, &id, &mut std::io::stdout())?;
                    Ok(yes_no(job.state == JobState::Success))
                }
                (Some(id), false) => {
                    print_json(&client::job_of(&rm, &id)?);
                    Ok(ExitCode::SUCCESS)
                }
                (None, _) => {
                    print_json(&client::jobs(&rm)?);
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
        Cmd::Gc { remote: r } => {
            print_json(&client::gc(&remote(&r)?)?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Verify { remote: r } => {
            let v = client::verify(&remote(&r)?)?;
            print_json(&v);
            Ok(yes_no(
                v.report.corrupt.is_empty() && v.report.missing.is_empty(),
            ))
        }
        Cmd::Key(k) => key::run(k),
        Cmd::Serve { .. } | Cmd::Migrate { .. } | Cmd::Reindex | Cmd::Worker { .. } => {
            Ok(ExitCode::SUCCESS)
        }
    }
}
