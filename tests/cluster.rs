//! Builds handed to a cluster: what only the cluster executors have — the
//! tests' real one-node Slurm cluster (its time limit, a service restart
//! while a Slurm job runs, `scancel`), job tokens and polling workers
//! (`executor = "worker"`, the real `artifact-store worker`), and
//! cancelling jobs (`DELETE /v1/jobs/{id}`). The build suite itself runs
//! on both executors in tests/builds.rs.

mod common;
#[path = "common/repos.rs"]
mod repos;

use std::process::Command;
use std::time::{Duration, Instant};

use common::building::*;
use common::*;
use repos::Repos;
use serde_json::{json, Value};

/// Waits until the job's log holds `needle`; the log.
fn wait_log(s: &Server, id: &str, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let log = job_log(s, id);
        if log.contains(needle) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in the log of {id}:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The Slurm job id in a job's "handed to slurm as job N" line.
fn slurm_job(log: &str) -> u32 {
    let rest = log
        .split("handed to slurm as job ")
        .nth(1)
        .unwrap_or_else(|| panic!("not handed to slurm:\n{log}"));
    rest.split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no slurm job id in:\n{log}"))
}

/// How many Slurm jobs were submitted for the service's job `id`.
fn slurm_jobs_named(id: &str) -> usize {
    let out = slurm::cluster().run("scontrol", &["show", "job", "-o"]);
    out.lines()
        .filter(|l| l.contains(&format!("JobName=adbs-{id} ")))
        .count()
}

fn stored(s: &Server, c: &str) -> u16 {
    client()
        .get(s.url(&format!("/v1/components/{c}/R1.0/rocky9")))
        .send()
        .expect("get")
        .status()
        .as_u16()
}

fn wait_no_sleepers(within: Duration) {
    let deadline = Instant::now() + within;
    while sleepers() > 0 {
        assert!(
            Instant::now() < deadline,
            "the build's processes outlived it"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_build_killed_by_its_slurm_time_limit_fails_and_stores_nothing() {
    let _slow = slow_lock();
    let repos = Repos::new(&["slow"]);
    let cfg = build_config("timeout_secs = 3600\n[build.slurm]\ntime_limit_minutes = 1");
    let s = on_slurm(|| Server::start_with(&cfg));
    let t = Instant::now();
    let (status, v) = post_build(
        &s,
        json!({"component": "slow", "tag": "R1.0", "url": repos.file_url("slow")}),
        false,
    );
    assert_eq!(status, 202, "{v}");
    let id = v["job"].as_str().unwrap().to_owned();
    let log = wait_log(&s, &id, "handed to slurm as job");
    let sj = slurm_job(&log);
    let j = wait_job(&s, &id);
    assert_eq!(j["state"], "failed", "{j}");
    let err = j["error"].as_str().unwrap_or_default();
    assert!(err.contains("slurm time limit"), "{err}");
    assert!(
        t.elapsed() >= Duration::from_secs(55),
        "killed before its limit: {:?}",
        t.elapsed()
    );
    assert_eq!(slurm::cluster().wait_state(sj), "TIMEOUT");
    assert_eq!(stored(&s, "slow"), 404);
    wait_no_sleepers(Duration::from_secs(20));
}

fn on_slurm<T>(f: impl FnOnce() -> T) -> T {
    let mut out = None;
    on_executor(Executor::Slurm, || out = Some(f()));
    out.expect("ran")
}

/// A repo `name` whose recipe builds with `build` (one commit, `R1.0`).
fn recipe_repo(repos: &Repos, name: &str, build: &str, artifacts: &str) {
    repos.add_tree(name, |d| {
        std::fs::write(
            d.join("config.yaml"),
            format!("repo: {name}\nenvironments: [rocky9]\nbuild: {build}\n{artifacts}"),
        )
        .unwrap();
    });
}

/// A server building on Slurm in `dir`, the build of `name` started on
/// it and followed until `needle` is in its log: the server and job id.
fn slurm_build_until(
    dir: &std::path::Path,
    repos: &Repos,
    name: &str,
    needle: &str,
) -> (Server, String, String) {
    let s = on_slurm(|| Server::start_in(dir, &build_config("")));
    let (status, v) = post_build(
        &s,
        json!({"component": name, "tag": "R1.0", "url": repos.file_url(name)}),
        false,
    );
    assert_eq!(status, 202, "{v}");
    let id = v["job"].as_str().unwrap().to_owned();
    let log = wait_log(&s, &id, needle);
    (s, id, log)
}

/// Restarts `s` (killed) on its port: the workers know that address.
fn restart(mut s: Server, dir: &std::path::Path) -> Server {
    let port = s.base.rsplit(':').next().unwrap().to_owned();
    s.kill();
    on_slurm(|| Server::start_on(dir, &build_config(""), &[], &format!("127.0.0.1:{port}")))
}

#[test]
fn the_service_restarted_while_a_slurm_job_runs_still_gets_its_result_once() {
    let repos = Repos::new(&[]);
    let build = "sleep 8 && mkdir -p out && echo slept > out/done.txt";
    recipe_repo(&repos, "sleepy", build, "artifacts: [out]\n");
    let tmp = tempfile::tempdir().unwrap();
    let (s, id, _) = slurm_build_until(tmp.path(), &repos, "sleepy", "==> build sleepy R1.0");
    let s = restart(s, tmp.path());
    let j = wait_job(&s, &id);
    assert_eq!(j["state"], "success", "{j}\n{}", job_log(&s, &id));
    let t = download(&s, "sleepy");
    assert!(t
        .iter()
        .any(|(p, b)| p == "R1.0/out/done.txt" && b == b"slept\n"));
    assert_eq!(slurm_jobs_named(&id), 1, "the build ran twice");
    let log = job_log(&s, &id);
    assert_eq!(log.matches("handed to slurm as job").count(), 1, "{log}");
}

#[test]
fn a_slurm_job_that_failed_while_the_service_was_down_fails_the_job_without_a_rebuild() {
    let repos = Repos::new(&[]);
    recipe_repo(&repos, "late-fail", "sleep 3 && exit 3", "");
    let tmp = tempfile::tempdir().unwrap();
    let (s, id, log) = slurm_build_until(tmp.path(), &repos, "late-fail", "handed to slurm as job");
    let sj = slurm_job(&log);
    let port = s.base.rsplit(':').next().unwrap().to_owned();
    let mut s = s;
    s.kill();
    assert_eq!(slurm::cluster().wait_state(sj), "FAILED");
    let s = on_slurm(|| {
        Server::start_on(
            tmp.path(),
            &build_config(""),
            &[],
            &format!("127.0.0.1:{port}"),
        )
    });
    let j = wait_job(&s, &id);
    assert_eq!(j["state"], "failed", "{j}");
    let err = j["error"].as_str().unwrap_or_default();
    assert!(
        err.contains(&format!("slurm job {sj}")),
        "{err}\n{}",
        job_log(&s, &id)
    );
    assert_eq!(slurm_jobs_named(&id), 1, "the build ran twice");
    assert_eq!(stored(&s, "late-fail"), 404);
}

fn cancel(s: &Server, id: &str, key: &str) -> (u16, Value) {
    json_of(
        client()
            .delete(s.url(&format!("/v1/jobs/{id}")))
            .header("Authorization", bearer(key))
            .send()
            .expect("delete"),
    )
}

/// Starts the slow build and waits until its command runs; the job's id.
fn start_slow(s: &Server, repos: &Repos) -> String {
    let (status, v) = post_build(
        s,
        json!({"component": "slow", "tag": "R1.0", "url": repos.file_url("slow")}),
        false,
    );
    assert_eq!(status, 202, "{v}");
    let id = v["job"].as_str().unwrap().to_owned();
    // the command's own line, not the recipe's "build command: ..."
    wait_log(s, &id, "\nstarting slow build\n");
    id
}

#[test]
fn cancelling_a_running_local_build_kills_it_and_stores_nothing() {
    let _slow = slow_lock();
    let repos = Repos::new(&["slow"]);
    let s = Server::start_with(&build_config("timeout_secs = 600"));
    let id = start_slow(&s, &repos);
    let (status, v) = cancel(&s, &id, READ_KEY);
    assert_error(status, &v, 403, "write");
    let (status, v) = cancel(&s, "0123456789abcdef01", WRITE_KEY);
    assert_eq!(status, 404, "{v}");
    let (status, v) = cancel(&s, &id, WRITE_KEY);
    assert!(status == 202 || status == 200, "{status} {v}");
    let j = wait_job(&s, &id);
    assert_eq!(j["state"], "cancelled", "{j}");
    wait_no_sleepers(Duration::from_secs(10));
    assert_eq!(stored(&s, "slow"), 404);
    // a cancelled job stays cancelled; asking again answers it as it is
    let (status, v) = cancel(&s, &id, WRITE_KEY);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["job"]["state"], "cancelled");
}

#[test]
fn cancelling_a_slurm_build_cancels_the_slurm_job() {
    let _slow = slow_lock();
    let repos = Repos::new(&["slow"]);
    let s = on_slurm(|| Server::start_with(&build_config("timeout_secs = 600")));
    let id = start_slow(&s, &repos);
    let sj = slurm_job(&job_log(&s, &id));
    let t = Instant::now();
    let (status, v) = cancel(&s, &id, WRITE_KEY);
    assert!(status == 202 || status == 200, "{status} {v}");
    let j = wait_job(&s, &id);
    assert_eq!(j["state"], "cancelled", "{j}");
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    assert_eq!(slurm::cluster().wait_state(sj), "CANCELLED");
    wait_no_sleepers(Duration::from_secs(20));
    assert_eq!(stored(&s, "slow"), 404);
}

/// Builds wait for polling workers; the `ci` key (write) may claim them.
fn worker_server(extra: &str) -> Server {
    Server::start_with_env(
        &build_config(&format!("worker_keys = [\"ci\"]\n{extra}")),
        &[("ARTIFACT_STORE_BUILD__EXECUTOR", "worker")],
    )
}

fn claim(s: &Server, key: &str) -> (u16, Value) {
    let r = client()
        .post(s.url("/v1/workers/claim"))
        .header("Authorization", bearer(key))
        .json(&json!({"worker": "test-worker", "arch": ["rocky9"]}))
        .send()
        .expect("claim");
    if r.status() == 204 {
        return (204, Value::Null);
    }
    json_of(r)
}

/// Claims the build of `id` (the oldest waiting first).
fn claim_job(s: &Server, id: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, v) = claim(s, WRITE_KEY);
        if status == 200 {
            assert_eq!(v["job"], id, "{v}");
            return v["token"].as_str().unwrap().to_owned();
        }
        assert_eq!(status, 204, "{v}");
        assert!(
            Instant::now() < deadline,
            "the build of {id} was never offered"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn with_token(rb: reqwest::blocking::RequestBuilder, token: &str) -> (u16, Value) {
    let r = rb
        .header("Authorization", bearer(token))
        .send()
        .expect("send");
    let status = r.status().as_u16();
    let text = r.text().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn run_worker(s: &Server, job: &str, token: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_artifact-store"))
        .args(["worker", "--server", &s.base, "--job", job])
        .env("ARTIFACT_STORE_JOB_TOKEN", token)
        .env_remove("ARTIFACT_STORE_CONFIG")
        .output()
        .expect("run the worker")
}

#[test]
fn a_job_token_reads_and_serves_its_own_job_only_and_dies_with_it() {
    let repos = Repos::new(&["base", "detect-make"]);
    let s = worker_server("");
    let mut ids = Vec::new();
    for c in ["base", "detect-make"] {
        let (status, v) = post_build(
            &s,
            json!({"component": c, "tag": "R1.0", "url": repos.file_url(c)}),
            false,
        );
        assert_eq!(status, 202, "{v}");
        ids.push(v["job"].as_str().unwrap().to_owned());
        // one at a time: the oldest build is offered first
        wait_log(&s, ids.last().unwrap(), "waiting for a worker");
    }
    let (a, b) = (&ids[0], &ids[1]);
    // claiming needs a write key
    let (status, v) = claim(&s, READ_KEY);
    assert_error(status, &v, 403, "write");
    let ta = claim_job(&s, a);
    let tb = claim_job(&s, b);
    assert!(ta.starts_with("adbsjob_") && ta != tb);

    // its own job: the spec, the log
    let (status, v) = with_token(client().get(s.url(&format!("/v1/jobs/{a}/spec"))), &ta);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["spec"]["component"], "base", "{v}");
    let (status, v) = with_token(
        client()
            .post(s.url(&format!("/v1/jobs/{a}/log")))
            .header("content-type", "text/plain")
            .body("a line from the test\n"),
        &ta,
    );
    assert_eq!(status, 200, "{v}");
    // nothing else a read key reads
    for path in [
        "/v1/jobs".to_owned(),
        format!("/v1/jobs/{b}/log"),
        "/v1/components".into(),
    ] {
        let (status, v) = with_token(client().get(s.url(&path)), &ta);
        assert_error(status, &v, 403, "job token");
    }
    // another job: nothing
    let (status, v) = with_token(client().get(s.url(&format!("/v1/jobs/{b}/spec"))), &ta);
    assert_error(status, &v, 403, "job");
    let (status, v) = with_token(
        client()
            .post(s.url(&format!("/v1/jobs/{b}/log")))
            .header("content-type", "text/plain")
            .body("forged\n"),
        &ta,
    );
    assert_error(status, &v, 403, "job");
    let (status, v) = with_token(
        client()
            .put(s.url(&format!("/v1/jobs/{b}/result")))
            .header("content-type", "application/zstd")
            .body(Vec::<u8>::new()),
        &ta,
    );
    assert_error(status, &v, 403, "job");
    // not a write key either: no uploads, no builds, no cancelling
    let tar = plain_tar("R9", &[("f.txt", b"x")]);
    let (status, v) = with_token(
        client()
            .put(s.url("/v1/components/forged/R9/rocky9"))
            .header("content-type", "application/x-tar")
            .body(tar),
        &ta,
    );
    assert_error(status, &v, 403, "");
    let (status, v) = with_token(client().delete(s.url(&format!("/v1/jobs/{b}"))), &ta);
    assert_error(status, &v, 403, "");
    // a token that was tampered with
    let mut forged = ta.clone();
    forged.pop();
    forged.push(if ta.ends_with('0') { '1' } else { '0' });
    let (status, v) = with_token(client().get(s.url(&format!("/v1/jobs/{a}/spec"))), &forged);
    assert!(status == 401 || status == 403, "{status} {v}");

    // the real worker runs b with its token; a is cancelled
    let out = run_worker(&s, b, &tb);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let jb = wait_job(&s, b);
    assert_eq!(jb["state"], "success", "{jb}");
    assert_eq!(stored(&s, "detect-make"), 200);
    let log = job_log(&s, b);
    assert!(log.contains("claimed by worker test-worker"), "{log}");
    assert!(log.contains("echo detected > detected.txt"), "{log}");
    let (status, _) = cancel(&s, a, WRITE_KEY);
    assert!(status == 200 || status == 202);
    assert_eq!(wait_job(&s, a)["state"], "cancelled");

    // after its job: nothing
    for (id, t) in [(a, &ta), (b, &tb)] {
        let (status, v) = with_token(client().get(s.url(&format!("/v1/jobs/{id}/spec"))), t);
        assert_error(status, &v, 403, "");
        let (status, v) = with_token(
            client()
                .put(s.url(&format!("/v1/jobs/{id}/result")))
                .header("content-type", "application/zstd")
                .body(Vec::<u8>::new()),
            t,
        );
        assert_error(status, &v, 403, "");
    }
    assert_eq!(stored(&s, "base"), 404, "a cancelled job stores nothing");
    // the worker of an ended job is told so
    let out = run_worker(&s, b, &tb);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("403"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_polling_worker_claims_and_builds_a_chain() {
    let names = ["base", "mid-a"];
    let mut repos = Repos::new(&names);
    repos.serve();
    // nothing is readable without a key: the worker fetches base with its
    // job token
    let s = Server::start_with_env(
        &build_config(&format!(
            "worker_keys = [\"ci\"]\n{}",
            repos.catalog(&names)
        )),
        &[
            ("ARTIFACT_STORE_BUILD__EXECUTOR", "worker"),
            ("ARTIFACT_STORE_AUTH__ANONYMOUS_READ", "false"),
        ],
    );
    let mut worker = Command::new(env!("CARGO_BIN_EXE_artifact-store"))
        .args([
            "worker", "--poll", "--server", &s.base, "--name", "vm1", "--arch", "rocky9",
        ])
        .env("ARTIFACT_STORE_TOKEN", WRITE_KEY)
        .env_remove("ARTIFACT_STORE_CONFIG")
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the polling worker");
    let (status, v) = post_build(&s, json!({"component": "mid-a", "tag": "R1.0"}), true);
    let _ = worker.kill();
    let _ = worker.wait();
    assert_eq!(status, 200, "{v}");
    let id = v["job"].as_str().unwrap();
    let log = client()
        .get(s.url(&format!("/v1/jobs/{id}/log")))
        .header("Authorization", bearer(READ_KEY))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(log.contains("claimed by worker vm1"), "{log}");
    for c in ["base", "mid-a"] {
        let r = client()
            .get(s.url(&format!("/v1/components/{c}/R1.0/rocky9")))
            .header("Authorization", bearer(READ_KEY))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{c}");
    }
    // a polling worker needs a key
    let out = Command::new(env!("CARGO_BIN_EXE_artifact-store"))
        .args(["worker", "--poll", "--once", "--server", &s.base])
        .env_remove("ARTIFACT_STORE_TOKEN")
        .env_remove("ARTIFACT_STORE_CONFIG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--poll needs a key"));
    // a write key not named in build.worker_keys may not claim
    let other = Server::start_with_env(
        &build_config(""),
        &[("ARTIFACT_STORE_BUILD__EXECUTOR", "worker")],
    );
    let (status, v) = claim(&other, WRITE_KEY);
    assert_error(status, &v, 403, "build.worker_keys");
    let (status, _) = claim(&other, ADMIN_KEY);
    assert_eq!(status, 204);
}

#[test]
fn the_same_tree_gives_the_same_blake3_locally_and_through_slurm() {
    let repos = Repos::new(&["base"]);
    let a = Server::start_with(&build_config(""));
    let b = on_slurm(|| Server::start_with(&build_config("")));
    let mut hashes = Vec::new();
    for s in [&a, &b] {
        let (status, v) = post_build(
            s,
            json!({"component": "base", "tag": "R1.0", "url": repos.file_url("base")}),
            true,
        );
        assert_eq!(status, 200, "{v}");
        let (_, i) = json_of(
            client()
                .get(s.url("/v1/components/base/R1.0/rocky9/info"))
                .send()
                .unwrap(),
        );
        hashes.push(i["component"]["blake3"].as_str().unwrap().to_owned());
    }
    assert_eq!(hashes[0], hashes[1]);
    let log = job_log(&b, &wait_job_of(&b, "base"));
    assert!(log.contains("handed to slurm as job"), "{log}");
}

/// The id of the (one) job that built `c` on `s`.
fn wait_job_of(s: &Server, c: &str) -> String {
    let (_, v) = json_of(client().get(s.url("/v1/jobs")).send().unwrap());
    v["jobs"]
        .as_array()
        .and_then(|js| {
            js.iter()
                .find(|j| j["flight"] == format!("component:{c}/R1.0/rocky9"))
        })
        .and_then(|j| j["id"].as_str())
        .unwrap_or_else(|| panic!("no job for {c}: {v}"))
        .to_owned()
}

/// Seconds since the epoch, as the build's `date +%s.%N` writes them.
fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The time from a build request to its command starting, with the
/// service's own pool and through Slurm (printed for the notes; the issue's
/// goal is that Slurm adds under 2 s — asserted with slack for a loaded
/// 2-core test machine).
#[test]
fn dispatch_overhead_local_vs_slurm() {
    let repos = Repos::new(&[]);
    let runs = 3;
    for i in 0..runs * 2 {
        recipe_repo(&repos, &format!("clock-{i}"), "date +%s.%N > t.txt", "");
    }
    let local = Server::start_with(&build_config(""));
    let slurm = on_slurm(|| Server::start_with(&build_config("")));
    let mut med = Vec::new();
    for (k, s) in [("local", &local), ("slurm", &slurm)] {
        let mut took = Vec::new();
        for r in 0..runs {
            let name = format!("clock-{}", if k == "local" { r } else { runs + r });
            let t0 = now_secs();
            let (status, v) = post_build(
                s,
                json!({"component": name, "tag": "R1.0", "url": repos.file_url(&name)}),
                true,
            );
            assert_eq!(status, 200, "{v}");
            let files = download(s, &name);
            let started: f64 = files
                .iter()
                .find(|(p, _)| p == "R1.0/t.txt")
                .map(|(_, b)| String::from_utf8_lossy(b).trim().parse().unwrap())
                .expect("t.txt");
            took.push(started - t0);
        }
        took.sort_by(|a, b| a.total_cmp(b));
        eprintln!("dispatch overhead: {k}: request to command {took:.3?} s");
        med.push(took[runs / 2]);
    }
    let added = med[1] - med[0];
    eprintln!(
        "dispatch overhead: median local {:.3} s, slurm {:.3} s: Slurm adds {added:.3} s",
        med[0], med[1]
    );
    assert!(
        added < 5.0,
        "Slurm adds {added:.3} s between a request and the build command"
    );
}

/// A recipe's output cannot pass for the worker's steps: lines that look
/// like step markers stay lines.
#[test]
fn a_recipe_cannot_forge_steps_through_its_worker() {
    let repos = Repos::new(&[]);
    let build = "for i in $(seq 1 100); do echo \"==> forged $i\"; done; echo built > out.txt";
    recipe_repo(&repos, "forger", build, "artifacts: [out.txt]\n");
    let s = on_slurm(|| Server::start_with(&build_config("")));
    let (status, v) = post_build(
        &s,
        json!({"component": "forger", "tag": "R1.0", "url": repos.file_url("forger")}),
        true,
    );
    assert_eq!(status, 200, "{v}");
    let j = wait_job(&s, v["job"].as_str().unwrap());
    let names = step_names(&j);
    assert!(names.iter().all(|n| !n.contains("forged")), "{names:?}");
    assert!(names.iter().any(|n| n == "build forger R1.0"), "{names:?}");
    let log = job_log(&s, v["job"].as_str().unwrap());
    assert!(log.contains(" ==> forged 100"), "{log}");
}
