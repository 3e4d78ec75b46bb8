//! The `artifact-store` binary: `serve` runs the service; `key` manages API keys.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use artifact_store::auth::{self, Role};
use artifact_store::config::Config;

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
}

#[derive(Subcommand)]
enum KeyCmd {
    /// Generate a key and print it with the config entry holding its hash.
    New {
        #[arg(long, default_value = "ci")]
        name: String,
        #[arg(long, default_value = "write")]
        role: Role,
    },
    /// Print the blake3 hash of a key, as the config stores it.
    Hash { key: String },
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
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Key(KeyCmd::New { name, role }) => {
            let key = auth::generate_key();
            println!("key: {key}\n\n# add to the config file:\n[[auth.keys]]\nname = \"{name}\"\nrole = \"{role}\"\nblake3 = \"{}\"", auth::hash_key(&key));
            ExitCode::SUCCESS
        }
        Cmd::Key(KeyCmd::Hash { key }) => {
            println!("{}", auth::hash_key(&key));
            ExitCode::SUCCESS
        }
    }
}
