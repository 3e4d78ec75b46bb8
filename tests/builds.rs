//! Builds from real git repositories (git daemon and file:// URLs), in
//! real sandboxes (bubblewrap; podman for the podman test), through the
//! real HTTP API.

mod common;
#[path = "common/repos.rs"]
mod repos;

use std::time::{Duration, Instant};

use common::*;
use repos::Repos;
use serde_json::{json, Value};

fn build_config(extra: &str) -> String {
    config_with_keys(&format!(
        "[build]\nallow_local_urls = true\nsandbox = \"bwrap\"\n{extra}"
    ))
}

fn post_build(s: &Server, body: Value, wait: bool) -> (u16, Value) {
    let url = if wait {
        s.url("/v1/builds?wait=true")
    } else {
        s.url("/v1/builds")
    };
    let r = client()
        .post(url)
        .header("Authorization", bearer(WRITE_KEY))
        .header("linux_username", "builder")
        .json(&body)
        .send()
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap())
}

fn download(s: &Server, c: &str) -> Vec<(String, Vec<u8>)> {
    let r = client()
        .get(s.url(&format!("/v1/components/{c}/R1.0/rocky9")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{c} should be stored");
    read_tar(&r.bytes().unwrap(), false)
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

fn wait_job(s: &Server, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let v: Value = client()
            .get(s.url(&format!("/v1/jobs/{id}")))
            .send()
            .unwrap()
            .json()
            .unwrap();
        let st = v["job"]["state"].as_str().unwrap().to_owned();
        if st != "queued" && st != "running" {
            return v["job"].clone();
        }
        assert!(Instant::now() < deadline, "job {id} did not end");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
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
