//! Slurm: each build is an `sbatch` job running `artifact-store worker`.
//!
//! Why the command line and not `slurmrestd`: the service host is a Slurm
//! submit host like any other (munge does the authentication, no JWT keys
//! to set up), and `sbatch`/`scontrol`/`scancel` keep their interface
//! across Slurm releases, while the REST API's versions come and go
//! (22.05 serves v0.0.36–v0.0.38 only). The worker's token travels in the
//! job's environment (`--export=NAME`, taken from `sbatch`'s own
//! environment), never on a command line.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::{Engine, RemoteState, WorkerRun};
use crate::config::SlurmConfig;
use crate::process;

/// How long a Slurm command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Slurm {
    cfg: SlurmConfig,
}

/// `s` quoted for `/bin/sh`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `KEY=value` pairs of one `scontrol show job -o` line.
fn fields(line: &str) -> HashMap<&str, &str> {
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .collect()
}

/// The state `scontrol show job -o` reports, mapped onto ours.
pub fn state_of(line: &str) -> RemoteState {
    let f = fields(line);
    let state = f.get("JobState").copied().unwrap_or("UNKNOWN");
    let reason = f.get("Reason").copied().unwrap_or("None");
    let exit = f.get("ExitCode").copied().unwrap_or("");
    let why = |what: &str| {
        let mut s = what.to_owned();
        if !exit.is_empty() && exit != "0:0" {
            s.push_str(&format!(", exit code {exit}"));
        }
        if reason != "None" {
            s.push_str(&format!(", reason {reason}"));
        }
        s
    };
    match state {
        "PENDING" | "CONFIGURING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED"
        | "RESV_DEL_HOLD" | "SUSPENDED" | "STOPPED" => RemoteState::Pending,
        "RUNNING" | "COMPLETING" | "STAGE_OUT" | "SIGNALING" | "RESIZING" => RemoteState::Running,
        "COMPLETED" => RemoteState::Completed,
        "TIMEOUT" | "DEADLINE" => RemoteState::TimedOut,
        "CANCELLED" => RemoteState::Cancelled,
        "NODE_FAIL" | "BOOT_FAIL" => RemoteState::Lost(why(&format!("Slurm reports {state}"))),
        "FAILED" | "OUT_OF_MEMORY" | "PREEMPTED" | "SPECIAL_EXIT" => {
            RemoteState::Failed(why(&format!("Slurm reports {state}")))
        }
        other => RemoteState::Lost(format!("Slurm reports an unknown state {other:?}")),
    }
}

impl Slurm {
    pub fn new(cfg: SlurmConfig) -> Self {
        Self { cfg }
    }

    fn program(&self, name: &str) -> String {
        match &self.cfg.bin_dir {
            Some(d) => d.join(name).display().to_string(),
            None => name.to_owned(),
        }
    }

    /// The environment of the Slurm commands: where the cluster's config
    /// is, and a PATH.
    fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![(
            "PATH".to_owned(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
        )];
        if let Some(c) = &self.cfg.conf {
            env.push(("SLURM_CONF".into(), c.display().to_string()));
        } else if let Ok(c) = std::env::var("SLURM_CONF") {
            env.push(("SLURM_CONF".into(), c));
        }
        env
    }

    /// `sbatch`'s arguments for `run`.
    pub fn sbatch_args(&self, run: &WorkerRun) -> Vec<String> {
        let minutes = match self.cfg.time_limit_minutes {
            0 => run.timeout.as_secs().div_ceil(60) + 5,
            m => m,
        };
        let mut a = vec![
            "--parsable".to_owned(),
            format!("--job-name=adbs-{}", run.job),
            format!("--output={}", self.cfg.output),
            // not a shared, writable directory (nothing is read from it)
            "--chdir=/".to_owned(),
            format!("--time={minutes}"),
            format!("--cpus-per-task={}", run.cpus.max(1)),
            "--export=PATH,ARTIFACT_STORE_JOB_TOKEN".to_owned(),
        ];
        if self.cfg.memory_mb > 0 {
            a.push(format!("--mem={}", self.cfg.memory_mb));
        }
        if let Some(p) = &self.cfg.partition {
            a.push(format!("--partition={p}"));
        }
        if let Some(acc) = &self.cfg.account {
            a.push(format!("--account={acc}"));
        }
        a.extend(self.cfg.extra_args.iter().cloned());
        let mut cmd = vec![sh_quote(&run.command)];
        cmd.extend(run.args().iter().map(|s| sh_quote(s)));
        a.push(format!("--wrap=exec {}", cmd.join(" ")));
        a
    }

    async fn run(
        &self,
        name: &str,
        args: Vec<String>,
        extra_env: Vec<(String, String)>,
    ) -> Result<process::Captured, String> {
        let mut env = self.env();
        env.extend(extra_env);
        process::capture(&self.program(name), &args, &env, COMMAND_TIMEOUT)
            .await
            .map_err(|e| e.to_string())
    }
}

impl Engine for Slurm {
    fn name(&self) -> &'static str {
        "slurm"
    }

    fn submit<'a>(&'a self, run: &'a WorkerRun) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let out = self
                .run(
                    "sbatch",
                    self.sbatch_args(run),
                    vec![("ARTIFACT_STORE_JOB_TOKEN".into(), run.token.clone())],
                )
                .await?;
            if !out.ok() {
                return Err(format!("sbatch refused the job: {}", out.stderr.trim()));
            }
            let id = out.stdout.trim().split(';').next().unwrap_or("").to_owned();
            if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
                return Err(format!(
                    "sbatch answered {:?}, not a job id",
                    out.stdout.trim()
                ));
            }
            Ok(id)
        })
    }

    fn state<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<RemoteState, String>> {
        Box::pin(async move {
            let out = self
                .run(
                    "scontrol",
                    vec!["show".into(), "job".into(), "-o".into(), id.into()],
                    Vec::new(),
                )
                .await?;
            if out.ok() {
                let line = out.stdout.lines().next().unwrap_or("");
                return Ok(state_of(line));
            }
            if out.stderr.contains("Invalid job id") {
                return Ok(RemoteState::Lost(format!(
                    "Slurm no longer knows job {id} (it ended too long ago, or the cluster lost it)"
                )));
            }
            Err(format!("scontrol: {}", out.stderr.trim()))
        })
    }

    fn cancel<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let out = self.run("scancel", vec![id.into()], Vec::new()).await?;
            if out.ok() {
                Ok(())
            } else {
                Err(format!("scancel: {}", out.stderr.trim()))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_map_onto_ours() {
        let l = |s: &str| format!("JobId=7 JobName=adbs-x JobState={s} Reason=None ExitCode=0:0");
        assert_eq!(state_of(&l("PENDING")), RemoteState::Pending);
        assert_eq!(state_of(&l("RUNNING")), RemoteState::Running);
        assert_eq!(state_of(&l("COMPLETING")), RemoteState::Running);
        assert_eq!(state_of(&l("COMPLETED")), RemoteState::Completed);
        assert_eq!(state_of(&l("TIMEOUT")), RemoteState::TimedOut);
        assert_eq!(state_of(&l("CANCELLED")), RemoteState::Cancelled);
        assert!(
            matches!(state_of(&l("NODE_FAIL")), RemoteState::Lost(m) if m.contains("NODE_FAIL"))
        );
        let failed = state_of("JobId=7 JobState=FAILED Reason=NonZeroExitCode ExitCode=2:0");
        assert_eq!(
            failed,
            RemoteState::Failed(
                "Slurm reports FAILED, exit code 2:0, reason NonZeroExitCode".into()
            )
        );
    }

    #[test]
    fn the_token_is_not_on_the_command_line() {
        let s = Slurm::new(SlurmConfig {
            partition: Some("debug".into()),
            ..SlurmConfig::default()
        });
        let run = WorkerRun {
            job: "j1".into(),
            dispatch: "d1".into(),
            token: "adbsjob_secret".into(),
            server: "http://10.0.0.1:8080".into(),
            command: "/usr/local/bin/artifact-store".into(),
            component: "zlib".into(),
            tag: "v1.3.1".into(),
            arch: "rocky9".into(),
            cpus: 4,
            timeout: Duration::from_secs(3600),
            image: None,
        };
        let args = s.sbatch_args(&run);
        assert!(args.iter().all(|a| !a.contains("secret")), "{args:?}");
        assert!(args.contains(&"--cpus-per-task=4".to_owned()));
        assert!(args.contains(&"--partition=debug".to_owned()));
        assert!(args.contains(&"--time=65".to_owned()));
        assert!(args
            .last()
            .unwrap()
            .contains("'worker' '--server' 'http://10.0.0.1:8080' '--job' 'j1'"));
    }
}
