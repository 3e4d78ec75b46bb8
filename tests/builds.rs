//! Builds from real git repositories (git daemon and file:// URLs), in
//! real sandboxes (bubblewrap; podman for the podman test), through the
//! real HTTP API.

mod common;
#[path = "common/registry.rs"]
mod registry;
#[path = "common/repos.rs"]
mod repos;

use std::time::{Duration, Instant};

use common::building::*;
use common::*;
use repos::Repos;
use serde_json::{json, Value};

/// A test run twice: with the service's own pool (`local`) and through the
/// tests' real Slurm cluster (`slurm`): one suite, both executors.
macro_rules! on_both_executors {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn local() {
                crate::common::on_executor(crate::common::Executor::Local, super::$name)
            }
            #[test]
            fn slurm() {
                crate::common::on_executor(crate::common::Executor::Slurm, super::$name)
            }
        }
    )*};
}

on_both_executors!(
    chain_of_three_with_a_diamond_over_git_daemon,
    failing_build_keeps_the_log_and_stores_nothing,
    timeout_kills_the_whole_process_tree,
    recipe_errors_are_clear,
    zlib_style_detected_build_and_a_program_linked_against_it,
);

/// As [`build_config`], with loopback a trusted network: the lab's scripts
/// send no key, and may start builds on a miss (`build.on_miss = "trusted"`).
fn trusted_build_config(extra: &str) -> String {
    config_with_keys(&format!(
        "[compat]\ntrusted_networks = [\"127.0.0.0/8\"]\n[build]\nallow_local_urls = true\nsandbox = \"bwrap\"\n{extra}"
    ))
}

fn file<'a>(entries: &'a [(String, Vec<u8>)], path: &str) -> &'a str {
    let e = entries.iter().find(|(p, _)| p == path).unwrap_or_else(|| {
        panic!(
            "{path} not in {:?}",
            entries.iter().map(|e| &e.0).collect::<Vec<_>>()
        )
    });
    std::str::from_utf8(&e.1).unwrap()
}

fn info(s: &Server, c: &str) -> Value {
    client()
        .get(s.url(&format!("/v1/components/{c}/R1.0/rocky9/info")))
        .send()
        .unwrap()
        .json::<Value>()
        .unwrap()["component"]
        .clone()
}

fn chain_of_three_with_a_diamond_over_git_daemon() {
    let names = ["base", "mid-a", "mid-b", "top"];
    let mut repos = Repos::new(&names);
    repos.serve();
    let s = Server::start_with(&build_config(&repos.catalog(&names)));

    let (status, v) = post_build(
        &s,
        json!({"component": "top", "tag": "R1.0", "arch": "ROCKY9"}),
        true,
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "success");

    let top = download(&s, "top");
    let combined = file(&top, "R1.0/out/combined.txt");
    assert_eq!(
        combined,
        "base R1.0 for rocky9\nbuilt mid-a\nbase R1.0 for rocky9\nbuilt mid-b\n"
    );
    assert_eq!(file(&top, "R1.0/out/deps.txt"), "base\nmid-a\nmid-b\n");
    assert_eq!(file(&top, "R1.0/out/whoami.txt"), "top R1.0 rocky9\n");
    assert_eq!(
        file(&top, "R1.0/out/net.txt"),
        "lo\n",
        "the sandbox must have no network"
    );
    assert!(top.iter().all(|(p, _)| !p.contains(".git")));

    // base was packed from its artifacts only
    let base = download(&s, "base");
    assert_eq!(
        file(&base, "R1.0/lib/libbase.txt"),
        "base R1.0 for rocky9\n"
    );
    assert!(base.iter().all(|(p, _)| !p.contains("not-an-artifact")));

    // the record lists the resolved closure with blake3s, and the source
    let ti = info(&s, "top");
    let deps = ti["dependencies"].as_array().unwrap();
    assert_eq!(deps.len(), 3);
    for d in deps {
        let c = d["component"].as_str().unwrap();
        assert_eq!(d["blake3"], info(&s, c)["blake3"], "{c}");
    }
    assert_eq!(ti["source"]["url"], repos.git_url("top"));
    assert_eq!(ti["source"]["commit"].as_str().unwrap().len(), 40);
    assert_eq!(ti["uploaded_by"]["linux_username"], "builder");
}

#[test]
fn original_api_post_component_from_file_url_as_a_job() {
    let repos = Repos::new(&["base"]);
    let s = Server::start_with(&build_config(""));
    let r = client()
        .post(s.url("/component"))
        .header("Authorization", bearer(WRITE_KEY))
        .header("X-adbs-github-user", "gh-builder")
        .json(&json!({"url": repos.file_url("base"), "component": "base", "tag": "R1.0", "architecture": "rocky9"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let v: Value = r.json().unwrap();
    assert_eq!(v["status"], "queued");
    let id = v["job"].as_str().unwrap().to_owned();
    assert_eq!(v["links"]["job"], format!("/v1/jobs/{id}"));
    let job = wait_job(&s, &id);
    assert_eq!(job["state"], "success", "{job}");
    let steps: Vec<&str> = job["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "clone base R1.0",
            "recipe base R1.0",
            "dependencies base R1.0",
            "build base R1.0",
            "pack base R1.0"
        ]
    );
    assert!(job["steps"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["state"] == "success"));
    let log = client()
        .get(s.url(&format!("/v1/jobs/{id}/log")))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(log.contains("$ bwrap"), "{log}");
    assert!(log.contains("==> success"), "{log}");
    assert_eq!(
        info(&s, "base")["uploaded_by"]["github_username"],
        "gh-builder"
    );

    // a build for a stored component is a cache hit: no job
    let r = client()
        .post(s.url("/component"))
        .header("Authorization", bearer(WRITE_KEY))
        .json(&json!({"url": repos.file_url("base"), "component": "base", "tag": "R1.0", "arch": "rocky9"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().unwrap()["cached"], true);

    // without a key: 401; local URLs refused when not allowed
    let r = client()
        .post(s.url("/v1/builds"))
        .json(&json!({"component": "x", "tag": "R1", "url": repos.file_url("base")}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    let strict = Server::start();
    let (status, v) = post_build(
        &strict,
        json!({"component": "base", "tag": "R1.0", "url": repos.file_url("base")}),
        true,
    );
    assert_eq!(status, 400);
    assert!(
        v["errorMessage"]
            .as_str()
            .unwrap()
            .contains("allow_local_urls"),
        "{v}"
    );
}

fn failing_build_keeps_the_log_and_stores_nothing() {
    let repos = Repos::new(&["failing"]);
    let s = Server::start_with(&build_config(""));
    let (status, v) = post_build(
        &s,
        json!({"component": "failing", "tag": "R1.0", "url": repos.file_url("failing")}),
        true,
    );
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["status"], "error");
    let msg = v["errorMessage"].as_str().unwrap();
    assert!(msg.contains("step 'build failing R1.0' failed"), "{msg}");
    assert!(msg.contains("exited with status 2"), "{msg}");
    assert!(msg.contains("the fixture fails on purpose"), "{msg}");
    let r = client()
        .get(s.url("/v1/components/failing/R1.0/rocky9"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    let id = v["job"].as_str().unwrap();
    let log = client()
        .get(s.url(&format!("/v1/jobs/{id}/log")))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(log.contains("compiling failing component"), "{log}");
    let job = wait_job(&s, id);
    assert_eq!(job["state"], "failed");
    assert!(
        std::fs::read_dir(s.dir.join("data/blobs"))
            .unwrap()
            .next()
            .is_none(),
        "no blob may be stored"
    );
}

fn timeout_kills_the_whole_process_tree() {
    let _slow = slow_lock();
    let repos = Repos::new(&["slow"]);
    let s = Server::start_with(&build_config("timeout_secs = 2"));
    let t = Instant::now();
    let (status, v) = post_build(
        &s,
        json!({"component": "slow", "tag": "R1.0", "url": repos.file_url("slow")}),
        true,
    );
    assert_eq!(status, 422, "{v}");
    assert!(t.elapsed() < Duration::from_secs(30));
    let msg = v["errorMessage"].as_str().unwrap();
    assert!(msg.contains("timed out"), "{msg}");
    assert!(msg.contains("starting slow build"), "{msg}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        sleepers(),
        0,
        "the build's background processes must be killed too"
    );
}

#[test]
fn cycle_and_unknown_url_fail_naming_the_chain() {
    let names = ["cycle-a", "cycle-b"];
    let mut repos = Repos::new(&["cycle-a", "cycle-b", "mid-a"]);
    repos.serve();
    let s = Server::start_with(&build_config(&repos.catalog(&names)));
    let (status, v) = post_build(&s, json!({"component": "cycle-a", "tag": "R1.0"}), true);
    assert_eq!(status, 422, "{v}");
    let msg = v["errorMessage"].as_str().unwrap();
    assert!(
        msg.contains("dependency cycle: cycle-a -> cycle-b -> cycle-a"),
        "{msg}"
    );

    // mid-a needs base, whose URL nobody knows
    let (status, v) = post_build(
        &s,
        json!({"component": "mid-a", "tag": "R1.0", "url": repos.git_url("mid-a")}),
        true,
    );
    assert_eq!(status, 422, "{v}");
    let msg = v["errorMessage"].as_str().unwrap();
    assert!(msg.contains("base R1.0 (rocky9) is not stored and its repository URL is unknown (chain: mid-a -> base)"), "{msg}");

    // a component whose URL is unknown cannot even be queued
    let (status, v) = post_build(&s, json!({"component": "nowhere", "tag": "R1.0"}), false);
    assert_eq!(status, 400, "{v}");
}

fn recipe_errors_are_clear() {
    let repos = Repos::new(&["norecipe", "base", "detect-make"]);
    let s = Server::start_with(&build_config(""));
    let (status, v) = post_build(
        &s,
        json!({"component": "norecipe", "tag": "R1.0", "url": repos.file_url("norecipe")}),
        true,
    );
    assert_eq!(status, 422, "{v}");
    assert!(
        v["errorMessage"].as_str().unwrap().contains("config.yaml"),
        "{v}"
    );
    // base lists rocky9 and rhel7 only
    let (status, v) = post_build(
        &s,
        json!({"component": "base", "tag": "R1.0", "arch": "rhel9", "url": repos.file_url("base")}),
        true,
    );
    assert_eq!(status, 422, "{v}");
    assert!(v["errorMessage"].as_str().unwrap().contains("rhel9"), "{v}");
    // no recipe, a Makefile: detected and built
    let (status, v) = post_build(
        &s,
        json!({"component": "detect-make", "tag": "R1.0", "url": repos.file_url("detect-make")}),
        true,
    );
    assert_eq!(status, 200, "{v}");
    let t = download(&s, "detect-make");
    assert_eq!(file(&t, "R1.0/detected.txt"), "detected\n");
}

/// A `./configure && make` tree with no recipe (as zlib's), then a recipe
/// build compiling a program against the library it depends on; the build
/// gets the job's CPUs (`ADBS_JOBS`, `MAKEFLAGS`).
fn zlib_style_detected_build_and_a_program_linked_against_it() {
    let names = ["zlibish", "pigzish"];
    let mut repos = Repos::new(&names);
    repos.serve();
    let s = Server::start_with(&build_config(&format!(
        "jobs = 2\n{}",
        repos.catalog(&names)
    )));
    let (status, v) = post_build(&s, json!({"component": "pigzish", "tag": "R1.0"}), true);
    assert_eq!(status, 200, "{v}");
    let z = download(&s, "zlibish");
    assert!(
        z.iter().any(|(p, _)| p == "R1.0/lib/libzlibish.a"),
        "{:?}",
        z.iter().map(|e| &e.0).collect::<Vec<_>>()
    );
    assert_eq!(file(&z, "R1.0/include/zlibish.h").lines().count(), 2);
    assert_eq!(
        file(&z, "R1.0/jobs.txt"),
        "2\n",
        "the build gets the job's CPUs"
    );
    let p = download(&s, "pigzish");
    // adler32("Wikipedia") = 0x11e60398, computed by the linked library
    assert_eq!(file(&p, "R1.0/out/adler.txt"), "11e60398\n");
    assert!(p.iter().any(|(f, _)| f == "R1.0/bin/pigzish"));
    let pi = info(&s, "pigzish");
    assert_eq!(pi["dependencies"][0]["component"], "zlibish");
    assert_eq!(
        pi["dependencies"][0]["blake3"],
        info(&s, "zlibish")["blake3"]
    );
}

#[test]
fn same_tree_twice_gives_the_same_blake3() {
    let repos = Repos::new(&["base"]);
    let a = Server::start_with(&build_config(""));
    let b = Server::start_with(&build_config(""));
    for s in [&a, &b] {
        let (status, v) = post_build(
            s,
            json!({"component": "base", "tag": "R1.0", "url": repos.file_url("base")}),
            true,
        );
        assert_eq!(status, 200, "{v}");
    }
    let (ha, hb) = (
        info(&a, "base")["blake3"].clone(),
        info(&b, "base")["blake3"].clone(),
    );
    assert!(ha.is_string());
    assert_eq!(ha, hb);
}

#[test]
fn build_on_miss_is_single_flight() {
    let names = ["base", "mid-b"];
    let mut repos = Repos::new(&names);
    repos.serve();
    let s = Server::start_with(&trusted_build_config(&repos.catalog(&names)));
    let url = s.url("/component?component=mid-b&tag=R1.0&arch=rocky9");
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let r = client().get(url).send().unwrap();
                (r.status().as_u16(), r.bytes().unwrap().to_vec())
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for (status, body) in &results {
        assert_eq!(*status, 200);
        assert_eq!(body, &results[0].1);
    }
    let files = read_tar(&results[0].1, true);
    assert!(file(&files, "R1.0/lib/libmid-b.txt").contains("built mid-b"));
    let jobs: Value = client()
        .get(s.url("/v1/jobs"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        jobs["jobs"].as_array().unwrap().len(),
        1,
        "one job for six requests: {jobs}"
    );
    // a cache hit never runs git or a build: no new job, same bytes
    let r = client().get(&url).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().unwrap().to_vec(), results[0].1);
    let jobs: Value = client()
        .get(s.url("/v1/jobs"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        jobs["jobs"].as_array().unwrap().len(),
        1,
        "a cache hit started a job: {jobs}"
    );

    // REST: a miss is 404 unless build=missing is asked for
    let r = client()
        .get(s.url("/v1/components/base/R9/rocky9"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = client()
        .get(s.url("/v1/components/base/R1.0/rhel7?build=missing"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        file(
            &read_tar(&r.bytes().unwrap(), false),
            "R1.0/lib/libbase.txt"
        ),
        "base R1.0 for rhel7\n"
    );
}

#[test]
fn build_on_miss_answers_202_past_the_wait() {
    let _slow = slow_lock();
    let mut repos = Repos::new(&["slow"]);
    repos.serve();
    let s = Server::start_with(&trusted_build_config(&format!(
        "timeout_secs = 4\non_miss_wait_secs = 1\n{}",
        repos.catalog(&["slow"])
    )));
    let r = client()
        .get(s.url("/component?component=slow&tag=R1.0"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let v: Value = r.json().unwrap();
    assert_eq!(v["status"], "queued");
    let id = v["job"].as_str().unwrap().to_owned();
    // the live log shows lines while the build runs
    let mut follow = client()
        .get(s.url(&format!("/v1/jobs/{id}/log?follow=true")))
        .send()
        .unwrap();
    let mut buf = [0u8; 4096];
    let mut seen = String::new();
    use std::io::Read;
    while !seen.contains("starting slow build") {
        let n = follow.read(&mut buf).unwrap();
        assert!(n > 0, "log ended early: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let job: Value = client()
        .get(s.url(&format!("/v1/jobs/{id}")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(job["job"]["state"], "running");
    let mut rest = String::new();
    follow.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("timed out"), "{rest}");
}

#[test]
fn podman_sandbox_builds_in_the_arch_image() {
    let image = registry::busybox_image();
    let repos = Repos::new(&["podman"]);
    let s = Server::start_with(&build_config(&format!(
        "[build.arch.busybox]\nsandbox = \"podman\"\nimage = \"{image}\"\n"
    )));
    let (status, v) = post_build(
        &s,
        json!({"component": "podman", "tag": "R1.0", "arch": "busybox", "url": repos.file_url("podman")}),
        true,
    );
    assert_eq!(status, 200, "{v}");
    let r = client()
        .get(s.url("/v1/components/podman/R1.0/busybox"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let t = read_tar(&r.bytes().unwrap(), false);
    assert_eq!(
        file(&t, "R1.0/out/result.txt"),
        "built in busybox-image for busybox\n"
    );
    assert!(
        t.iter().all(|(p, _)| !p.ends_with("build.sh")),
        "only the artifacts are packed"
    );
}

#[test]
fn job_cut_off_by_kill_9_is_interrupted_after_restart() {
    let _slow = slow_lock();
    let repos = Repos::new(&["slow"]);
    let tmp = tempfile::tempdir().unwrap();
    let cfg = build_config("timeout_secs = 600");
    let mut s = Server::start_in(tmp.path(), &cfg);
    let (status, v) = post_build(
        &s,
        json!({"component": "slow", "tag": "R1.0", "url": repos.file_url("slow")}),
        false,
    );
    assert_eq!(status, 202, "{v}");
    let id = v["job"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let j: Value = client()
            .get(s.url(&format!("/v1/jobs/{id}")))
            .send()
            .unwrap()
            .json()
            .unwrap();
        if j["job"]["state"] == "running" && j["job"]["steps"].as_array().unwrap().len() >= 4 {
            break;
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(100));
    }
    s.kill();
    // bwrap --die-with-parent takes the build down with the service
    let deadline = Instant::now() + Duration::from_secs(10);
    while sleepers() > 0 {
        assert!(
            Instant::now() < deadline,
            "the build outlived the killed service"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let s = Server::start_in(tmp.path(), &cfg);
    let j: Value = client()
        .get(s.url(&format!("/v1/jobs/{id}")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(j["job"]["state"], "interrupted", "{j}");
    assert!(j["job"]["error"]
        .as_str()
        .unwrap()
        .contains("nothing was stored"));
    let r = client()
        .get(s.url("/v1/components/slow/R1.0/rocky9"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        std::fs::read_dir(tmp.path().join("data/tmp"))
            .unwrap()
            .count(),
        0
    );
    // the service builds again after the restart
    let (status, _) = post_build(
        &s,
        json!({"component": "slow", "tag": "R1.0", "url": repos.file_url("slow")}),
        false,
    );
    assert_eq!(status, 202);
}
