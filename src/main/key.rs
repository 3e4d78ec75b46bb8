//! `artifact-store key`: `new` and `hash` offline, for the config file;
//! `create`, `list` and `revoke` on a running service (an admin key), as
//! `POST /v1/keys`, `GET /v1/keys` and `DELETE /v1/keys/{name}`.

use std::process::ExitCode;

use clap::Subcommand;

use artifact_store::api::CreateKeyRequest;
use artifact_store::auth;
use artifact_store::client;
use artifact_store::model::Role;

use super::{print_json, remote, RemoteArgs};

#[derive(Subcommand)]
pub enum KeyCmd {
    /// Generate a key and print it with the config entry holding its hash.
    New {
        #[arg(long, default_value = "ci")]
        name: String,
        #[arg(long, default_value = "write")]
        role: Role,
    },
    /// Print the blake3 hash of a key, as the config stores it.
    Hash { key: String },
    /// Create a key on the service (admin key); prints its secret, once.
    Create {
        #[command(flatten)]
        remote: RemoteArgs,
        /// Unique among all keys: letters, digits and . _ + -
        name: String,
        /// read, write or admin.
        #[arg(long)]
        role: Role,
        /// The key stops working after this many days.
        #[arg(long, conflicts_with = "expires_at")]
        expires_in_days: Option<i64>,
        /// The key stops working at this time (RFC 3339).
        #[arg(long)]
        expires_at: Option<chrono::DateTime<chrono::Utc>>,
        /// A component-name pattern it may write (`*`: any run of
        /// characters); repeat for more. None: every component.
        #[arg(long = "component", value_name = "PATTERN")]
        components: Vec<String>,
        /// Print the answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the service's keys (admin key): never a secret.
    List {
        #[command(flatten)]
        remote: RemoteArgs,
        /// Print the answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key created on the service (admin key), on every replica.
    Revoke {
        #[command(flatten)]
        remote: RemoteArgs,
        name: String,
    },
}

/// Runs a `key` subcommand.
pub fn run(cmd: KeyCmd) -> client::Result<ExitCode> {
    match cmd {
        KeyCmd::New { name, role } => {
            let key = auth::generate_key();
            println!(
                "key: {key}\n\n# add to the config file:\n[[auth.keys]]\nname = \"{name}\"\n\
                 role = \"{role}\"\nblake3 = \"{}\"",
                auth::hash_key(&key)
            );
        }
        KeyCmd::Hash { key } => println!("{}", auth::hash_key(&key)),
        KeyCmd::Create {
            remote: r,
            name,
            role,
            expires_in_days,
            expires_at,
            components,
            json,
        } => {
            let req = CreateKeyRequest {
                name,
                role,
                expires_at,
                expires_in_days,
                components: (!components.is_empty()).then_some(components),
            };
            let made = client::key_create(&remote(&r)?, &req)?;
            if json {
                print_json(&made);
            } else {
                println!(
                    "key: {}\n\nShown this once: only its hash is kept. Send it as \
                     `Authorization: Bearer <key>`.\n",
                    made.secret
                );
                print!("{}", client::key_table(&[made.key]));
            }
        }
        KeyCmd::List { remote: r, json } => {
            let list = client::key_list(&remote(&r)?)?;
            if json {
                print_json(&list);
            } else {
                print!("{}", client::key_table(&list.keys));
            }
        }
        KeyCmd::Revoke { remote: r, name } => {
            let done = client::key_revoke(&remote(&r)?, &name)?;
            print!("{}", client::key_table(&[done.key]));
        }
    }
    Ok(ExitCode::SUCCESS)
}
