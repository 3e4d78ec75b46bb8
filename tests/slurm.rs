//! The Slurm harness itself (tests/common/slurm.rs) against its real
//! one-node cluster: jobs complete, fail with their exit code, time out,
//! are cancelled, share the node, survive a controller restart, and go
//! through slurmrestd. Each test prints its timings (to stderr, whether
//! or not the output is captured): what Slurm adds between a request and
//! the command starting.

mod common;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::slurm::{cluster, Slurm, FINAL_STATES, REST_API};
use serde_json::{json, Value};

/// Prints a test's timings, past the test harness's capture.
fn report(test: &str, timings: &[(&str, Duration)]) {
    let parts: Vec<String> = timings
        .iter()
        .map(|(what, d)| format!("{what} {:.3} s", d.as_secs_f64()))
        .collect();
    let _ = writeln!(
        std::io::stderr(),
        "slurm timings: {test}: {}",
        parts.join(", ")
    );
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
}

/// The time a job wrote with `date +%s.%N > <file>`.
fn stamp(path: &Path) -> f64 {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("the job wrote no {}: {e}", path.display()));
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{} holds no time: {text:?}", path.display()))
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

/// A working directory for a job (root runs the jobs: any directory does).
fn workdir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir")
}

#[test]
fn clients_use_the_tests_cluster() {
    let s = cluster();
    let out = s
        .command("scontrol")
        .args(["show", "config"])
        .output()
        .expect("scontrol");
    let config = String::from_utf8_lossy(&out.stdout);
    let line = |key: &str| {
        config
            .lines()
            .find(|l| l.split_whitespace().next() == Some(key))
            .map(|l| l.split_once('=').map(|x| x.1).unwrap_or_default().trim())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(line("ClusterName"), s.cluster, "{config}");
    assert_eq!(
        line("SLURM_CONF"),
        s.conf_path().display().to_string(),
        "{config}"
    );
    let nodes = s.run("sinfo", &["-h", "-o", "%N %T %P"]);
    // one node, up, in the default partition (idle, or running the other
    // tests' jobs)
    let fields: Vec<&str> = nodes.split_whitespace().collect();
    assert_eq!(fields.len(), 3, "{nodes}");
    assert_eq!(fields[0], s.node, "{nodes}");
    assert!(
        ["idle", "mixed", "allocated"].contains(&fields[1]),
        "{nodes}"
    );
    assert_eq!(fields[2], format!("{}*", s.partition()), "{nodes}");
}

#[test]
fn a_job_completes_in_its_directory_and_runs_a_binary_by_path() {
    let s = cluster();
    let dir = workdir();
    let bin = env!("CARGO_BIN_EXE_artifact-store");
    let t0 = now();
    let start = Instant::now();
    let id = s.sbatch(
        &["--chdir", &dir.path().display().to_string()],
        &format!(
            "date +%s.%N > started; pwd > pwd.txt; {bin} --version > version.txt; \
             echo built > out.txt"
        ),
    );
    let submitted = start.elapsed();
    let state = s.wait_state(id);
    let total = start.elapsed();
    let ended = now();
    assert_eq!(state, "COMPLETED", "{:?}\n{}", s.job(id), s.output(id));
    assert_eq!(s.job(id)["ExitCode"], "0:0");
    let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap_or_default();
    assert_eq!(read("out.txt"), "built\n");
    assert_eq!(read("pwd.txt").trim(), dir.path().display().to_string());
    assert!(
        read("version.txt").starts_with("artifact-store "),
        "{}",
        read("version.txt")
    );
    let started = stamp(&dir.path().join("started"));
    let latency = secs(started - t0);
    report(
        "trivial job",
        &[
            ("sbatch returned", submitted),
            ("submit -> command started", latency),
            ("command started -> COMPLETED seen", secs(ended - started)),
            ("submit -> COMPLETED seen", total),
        ],
    );
    // the goal is < 2 s (printed above, and measured against the local
    // executor in tests/cluster.rs); a loaded 2-core test machine gets slack
    assert!(
        latency < Duration::from_secs(10),
        "Slurm took {latency:?} to start the command"
    );
}

#[test]
fn a_failing_job_is_failed_with_its_exit_code() {
    let s = cluster();
    let start = Instant::now();
    let id = s.sbatch_wrap("echo about to fail; exit 3");
    let state = s.wait_state(id);
    let total = start.elapsed();
    assert_eq!(state, "FAILED", "{}", s.output(id));
    let job = s.job(id);
    assert_eq!(job["ExitCode"], "3:0", "{job:?}");
    assert_eq!(job["Reason"], "NonZeroExitCode", "{job:?}");
    assert_eq!(s.output(id), "about to fail\n");
    let id = s.sbatch_wrap("false");
    assert_eq!(s.wait_state(id), "FAILED");
    assert_eq!(s.job(id)["ExitCode"], "1:0");
    report("failing job", &[("submit -> FAILED seen", total)]);
}

#[test]
fn a_job_past_its_time_limit_times_out() {
    let s = cluster();
    let dir = workdir();
    let start = Instant::now();
    // the smallest limit: Slurm counts whole minutes, 5 s is rounded up
    let id = s.sbatch(
        &["--time=0:05", "--chdir", &dir.path().display().to_string()],
        "echo $$ > pid; exec sleep 600",
    );
    assert_eq!(s.job(id)["TimeLimit"], "00:01:00");
    let state = s.wait_for(id, Duration::from_secs(30), |st| st != "PENDING");
    assert_eq!(state, "RUNNING");
    let running = Instant::now();
    let state = s.wait_for(id, Duration::from_secs(150), |st| {
        FINAL_STATES.contains(&st)
    });
    let enforced = running.elapsed();
    assert_eq!(state, "TIMEOUT", "{:?}", s.job(id));
    assert_eq!(s.job(id)["Reason"], "TimeLimit");
    report(
        "1 minute time limit",
        &[
            ("RUNNING -> TIMEOUT seen", enforced),
            ("submit -> TIMEOUT seen", start.elapsed()),
        ],
    );
    // the limit (60 s) plus at most slurmctld's 30 s check period
    assert!(
        enforced < Duration::from_secs(95),
        "TIMEOUT came {enforced:?} after the job started"
    );
    assert_process_ends(&dir.path().join("pid"));
}

/// The process whose pid a job wrote ends within 10 s.
fn assert_process_ends(pid_file: &Path) {
    let pid = std::fs::read_to_string(pid_file).expect("the job's pid");
    let proc = format!("/proc/{}", pid.trim());
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&proc).exists() {
        let stat = std::fs::read_to_string(format!("{proc}/stat")).unwrap_or_default();
        // a zombie is dead
        if stat
            .rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the job's process {} still runs",
            pid.trim()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_cancelled_job_is_cancelled_and_its_command_killed() {
    let s = cluster();
    let dir = workdir();
    let id = s.sbatch(
        &["--chdir", &dir.path().display().to_string()],
        "echo $$ > pid; exec sleep 600",
    );
    s.wait_for(id, Duration::from_secs(30), |st| st == "RUNNING");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !dir.path().join("pid").exists() {
        assert!(Instant::now() < deadline, "the running job wrote no pid");
        std::thread::sleep(Duration::from_millis(20));
    }
    let start = Instant::now();
    s.scancel(id);
    let state = s.wait_state(id);
    let took = start.elapsed();
    assert_eq!(state, "CANCELLED", "{:?}", s.job(id));
    assert_process_ends(&dir.path().join("pid"));
    report("cancel", &[("scancel -> CANCELLED seen", took)]);
}

#[test]
fn two_jobs_run_at_once_on_the_node() {
    let s = cluster();
    let dirs = [workdir(), workdir()];
    let t0 = now();
    let ids: Vec<u32> = dirs
        .iter()
        .map(|d| {
            s.sbatch(
                &["--chdir", &d.path().display().to_string()],
                "date +%s.%N > started; sleep 4; date +%s.%N > ended",
            )
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let states: Vec<String> = ids.iter().map(|&id| s.state(id)).collect();
        if states.iter().all(|st| st == "RUNNING") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the two jobs never ran together: {states:?}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    for &id in &ids {
        assert_eq!(s.wait_state(id), "COMPLETED", "{}", s.output(id));
    }
    let started: Vec<f64> = dirs
        .iter()
        .map(|d| stamp(&d.path().join("started")))
        .collect();
    let ended: Vec<f64> = dirs
        .iter()
        .map(|d| stamp(&d.path().join("ended")))
        .collect();
    // they overlapped: each started before the other ended
    assert!(started[0] < ended[1] && started[1] < ended[0]);
    report(
        "two jobs at once",
        &[
            ("submit -> first started", secs(started[0] - t0)),
            ("submit -> second started", secs(started[1] - t0)),
        ],
    );
}

#[test]
fn a_running_job_survives_a_controller_restart() {
    // a cluster of its own: the restart would disturb the other tests
    let s = Slurm::start();
    let dir = workdir();
    let id = s.sbatch(
        &["--chdir", &dir.path().display().to_string()],
        "sleep 6; echo survived > out.txt",
    );
    s.wait_for(id, Duration::from_secs(30), |st| st == "RUNNING");
    let start = Instant::now();
    s.restart_controller();
    let restarted = start.elapsed();
    assert_eq!(s.state(id), "RUNNING");
    assert_eq!(s.wait_state(id), "COMPLETED", "{}", s.output(id));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.txt")).unwrap_or_default(),
        "survived\n"
    );
    // and it takes new jobs
    let id = s.sbatch_wrap("true");
    assert_eq!(s.wait_state(id), "COMPLETED");
    report("controller restart", &[("slurmctld down -> up", restarted)]);
}

/// A JSON request to slurmrestd as root: status and answer.
fn rest(s: &Slurm, token: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let url = format!("{}/slurm/{REST_API}/{path}", s.rest_url());
    let client = reqwest::blocking::Client::new();
    let mut req = match method {
        "POST" => client.post(&url),
        _ => client.get(&url),
    };
    req = req
        .header("X-SLURM-USER-NAME", "root")
        .header("X-SLURM-USER-TOKEN", token);
    if let Some(b) = body {
        req = req.json(b);
    }
    let r = req.send().unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = r.status().as_u16();
    let text = r.text().expect("body");
    let v = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{method} {url}: {status}, not JSON ({e}): {text}"));
    (status, v)
}

#[test]
fn slurmrestd_submits_a_job_and_reports_its_state() {
    let s = cluster();
    let token = s.rest_token("root");
    let (status, ping) = rest(s, &token, "GET", "ping", None);
    assert_eq!(status, 200, "{ping}");
    assert_eq!(ping["pings"][0]["ping"], "UP", "{ping}");
    // no token: refused
    let r =
        reqwest::blocking::get(format!("{}/slurm/{REST_API}/ping", s.rest_url())).expect("ping");
    assert_eq!(r.status().as_u16(), 401);

    let dir = workdir();
    let submit = json!({
        "job": {
            "name": "rest-test",
            "partition": s.partition(),
            "current_working_directory": dir.path(),
            "environment": {"PATH": "/usr/bin:/bin"},
            "standard_output": dir.path().join("out.txt"),
        },
        "script": "#!/bin/sh\ndate +%s.%N > started\nid -un\n",
    });
    let t0 = now();
    let start = Instant::now();
    let (status, answer) = rest(s, &token, "POST", "job/submit", Some(&submit));
    let submitted = start.elapsed();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["errors"], json!([]), "{answer}");
    let id = answer["job_id"]
        .as_u64()
        .unwrap_or_else(|| panic!("{answer}"));
    let (job, state) = loop {
        let (status, job) = rest(s, &token, "GET", &format!("job/{id}"), None);
        assert_eq!(status, 200, "{job}");
        let state = job["jobs"][0]["job_state"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if FINAL_STATES.contains(&state.as_str()) {
            break (job, state);
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{job}");
        std::thread::sleep(Duration::from_millis(25));
    };
    let total = start.elapsed();
    assert_eq!(state, "COMPLETED", "{job}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.txt")).unwrap_or_default(),
        "root\n"
    );
    let j = &job["jobs"][0];
    let _ = writeln!(
        std::io::stderr(),
        "slurmrestd: POST /slurm/{REST_API}/job/submit {submit}\n -> {answer}\n\
         GET /slurm/{REST_API}/job/{id} -> job_state {}, exit_code {}, user_name {}",
        j["job_state"],
        j["exit_code"],
        j["user_name"]
    );
    report(
        "slurmrestd",
        &[
            ("POST job/submit answered", submitted),
            (
                "submit -> command started",
                secs(stamp(&dir.path().join("started")) - t0),
            ),
            ("submit -> COMPLETED seen", total),
        ],
    );
}
