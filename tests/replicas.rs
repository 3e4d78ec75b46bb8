//! Several replicas of the real binary sharing a real S3 server (SeaweedFS)
//! and a real PostgreSQL, each started by the tests on loopback: what one
//! replica stores the other serves (streamed and redirected), tags stay
//! immutable across them, one build runs for a component asked of both, a
//! replica killed mid-upload or mid-build leaves nothing partial and its
//! build finishes elsewhere, a blob lost behind the service's back is a
//! 503 that `verify` reports, GC on one replica while the other serves,
//! and a single-host store moved over with `migrate`, rebuilt with
//! `reindex`.

mod common;
#[path = "common/repos.rs"]
mod repos;

use std::io::Write;
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use artifact_store::store::s3::S3Blobs;
use artifact_store::store::BlobStore;
use common::s3::S3Target;
use common::*;
use repos::Repos;
use serde_json::{json, Value};

/// A bucket and a database the replicas share.
struct Shared {
    s3: S3Target,
    db: String,
}

impl Shared {
    fn new() -> Shared {
        Shared {
            s3: common::s3::seaweedfs().bucket(),
            db: common::pg::database(),
        }
    }

    /// A replica's config: the standard keys, `extra`, and the shared
    /// storage (short job leases, so a dead replica is noticed quickly).
    fn config(&self, extra: &str) -> String {
        self.config_as(extra, false)
    }

    /// As [`Shared::config`]; `redirect`: downloads answer 307.
    fn config_as(&self, extra: &str, redirect: bool) -> String {
        let storage = common::s3::seaweedfs().config_toml(&self.s3).replace(
            "kind = \"s3\"\n",
            &format!("kind = \"s3\"\nredirect = {redirect}\n"),
        );
        config_with_keys(&format!(
            "{extra}\n{storage}\n[index]\nkind = \"postgres\"\nurl = \"{}\"\njob_lease_secs = 2\n",
            self.db
        ))
    }

    fn replica(&self, extra: &str) -> Server {
        Server::start_with(&self.config(extra))
    }

    fn redirecting_replica(&self) -> Server {
        Server::start_with(&self.config_as("", true))
    }

    /// The bucket, as the service sees it.
    fn blobs(&self) -> S3Blobs {
        S3Blobs::open(&self.s3.config("")).expect("open the bucket")
    }
}

fn upload(s: &Server, path: &str, body: Vec<u8>) -> Resp {
    send(
        client()
            .put(s.url(&format!("/v1/components/{path}")))
            .header("Authorization", bearer(WRITE_KEY))
            .body(body),
    )
}

fn no_redirects() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

fn b3(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

#[test]
fn what_one_replica_stores_the_other_serves_streamed_and_redirected() {
    let shared = Shared::new();
    let a = shared.replica("");
    let b = shared.replica("");
    let c = shared.redirecting_replica();
    let body = tar_gz("R1", &[("data.bin", &noise(3, 300_000)), ("x", b"x")]);
    let r = upload(&a, "shared/R1/rocky9", body);
    assert_eq!(r.status, 201, "{}", r.text());
    let h = r.json()["component"]["blake3"].as_str().unwrap().to_owned();

    // streamed through b: the whole blob, our ETag, a range, a 304
    let r = get(&b, "/v1/components/shared/R1/rocky9");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(b3(&r.body), h);
    assert_eq!(
        r.header("etag").as_deref(),
        Some(format!("\"{h}\"").as_str())
    );
    assert!(r
        .header("content-disposition")
        .is_some_and(|d| d.contains("shared-R1-rocky9")));
    let whole = r.body;
    let r = send(
        client()
            .get(b.url("/v1/components/shared/R1/rocky9"))
            .header("Range", "bytes=100-199"),
    );
    assert_eq!(r.status, 206);
    assert_eq!(r.body, whole[100..200]);
    let r = send(
        client()
            .get(b.url("/v1/components/shared/R1/rocky9"))
            .header("If-None-Match", format!("\"{h}\"")),
    );
    assert_eq!(r.status, 304);

    // redirected by c: a 307 with our ETag to a presigned URL of the bucket
    let r = no_redirects()
        .get(c.url("/v1/components/shared/R1/rocky9"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 307);
    assert_eq!(
        r.headers()["etag"].to_str().unwrap(),
        format!("\"{h}\"").as_str()
    );
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with(&shared.s3.endpoint),
        "{location} is not on the object store"
    );
    let direct = send(client().get(&location));
    assert_eq!(direct.status, 200);
    assert_eq!(direct.body, whole);
    assert!(direct
        .header("content-disposition")
        .is_some_and(|d| d.contains("shared-R1-rocky9")));
    let part = send(client().get(&location).header("Range", "bytes=100-199"));
    assert_eq!(part.status, 206);
    assert_eq!(part.body, whole[100..200]);
    // HEAD is answered by the service; a matching ETag is a 304, no redirect
    let r = send(client().head(c.url("/v1/components/shared/R1/rocky9")));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some(whole.len().to_string()));
    let r = no_redirects()
        .get(c.url("/v1/components/shared/R1/rocky9"))
        .header("If-None-Match", format!("\"{h}\""))
        .send()
        .unwrap();
    assert_eq!(r.status(), 304);
    // the CLI follows the redirect and still checks the blake3
    let dir = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_artifact-store"))
        .args([
            "get",
            "shared",
            "R1",
            "--server",
            &c.base,
            "-o",
            "got.tar.zst",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::read(dir.path().join("got.tar.zst")).unwrap(),
        whole
    );

    // the gzip form derived on b is found by a (one derivation, shared)
    let gz_b = get(&b, "/component?component=shared&tag=R1");
    assert_eq!(gz_b.status, 200);
    let gz_a = get(&a, "/component?component=shared&tag=R1");
    assert_eq!(gz_a.status, 200);
    assert_eq!(gz_a.body, gz_b.body);
    assert_eq!(
        metric(&a, "derived_blobs_made_total", &[]) + metric(&b, "derived_blobs_made_total", &[]),
        1.0
    );
}

#[test]
fn twenty_concurrent_puts_of_different_content_to_one_tag_one_wins() {
    let shared = Shared::new();
    let servers = Arc::new([shared.replica(""), shared.replica("")]);
    let barrier = Arc::new(Barrier::new(20));
    let threads: Vec<_> = (0..20)
        .map(|i| {
            let (servers, barrier) = (servers.clone(), barrier.clone());
            std::thread::spawn(move || {
                let body = tar_gz("R1", &[("who", format!("writer {i}").as_bytes())]);
                barrier.wait();
                let r = upload(&servers[i % 2], "race/R1/rocky9", body);
                (r.status, r.json())
            })
        })
        .collect();
    let results: Vec<(u16, Value)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let created: Vec<_> = results.iter().filter(|(s, _)| *s == 201).collect();
    let conflicts = results.iter().filter(|(s, _)| *s == 409).count();
    assert_eq!(created.len(), 1, "{results:?}");
    assert_eq!(conflicts, 19, "{results:?}");
    let winner = created[0].1["component"]["blake3"].as_str().unwrap();
    for s in servers.iter() {
        let r = get(s, "/v1/components/race/R1/rocky9/info");
        assert_eq!(r.json()["component"]["blake3"], winner);
    }
}

fn build_config(repos: &Repos, names: &[&str]) -> String {
    build_config_with(repos, names, "")
}

/// As [`build_config`], with more `[build]` keys.
fn build_config_with(repos: &Repos, names: &[&str], keys: &str) -> String {
    format!(
        "[build]\nallow_local_urls = true\nsandbox = \"bwrap\"\n{keys}\n{}",
        repos.catalog(names)
    )
}

fn job(s: &Server, id: &str) -> Value {
    get(s, &format!("/v1/jobs/{id}")).json()["job"].clone()
}

fn wait_final(s: &Server, id: &str, secs: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let j = job(s, id);
        if ["success", "failed", "interrupted"].contains(&j["state"].as_str().unwrap_or("")) {
            return j;
        }
        assert!(Instant::now() < deadline, "job {id} did not end: {j}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn post_build(s: &Server, component: &str) -> (u16, Value) {
    let r = send(
        client()
            .post(s.url("/v1/builds"))
            .header("Authorization", bearer(WRITE_KEY))
            .json(&json!({"component": component, "tag": "R1.0", "arch": "rocky9"})),
    );
    (r.status, r.json())
}

#[test]
fn the_same_missing_component_asked_of_both_replicas_builds_once() {
    let mut repos = Repos::new(&["base"]);
    repos.serve();
    let shared = Shared::new();
    let extra = build_config(&repos, &["base"]);
    let servers = Arc::new([shared.replica(&extra), shared.replica(&extra)]);
    let barrier = Arc::new(Barrier::new(2));
    let answers: Vec<(u16, Value)> = (0..2)
        .map(|i| {
            let (servers, barrier) = (servers.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                post_build(&servers[i], "base")
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    for (st, v) in &answers {
        assert_eq!(*st, 202, "{v}");
    }
    let id = answers[0].1["job"].as_str().unwrap().to_owned();
    assert_eq!(
        answers[1].1["job"], id,
        "both replicas joined one job: {answers:?}"
    );
    let j = wait_final(&servers[1], &id, 120);
    assert_eq!(j["state"], "success", "{j}");
    // one build job in the shared list, the same bytes from both replicas
    let jobs = get(&servers[0], "/v1/jobs").json()["jobs"].clone();
    assert_eq!(jobs.as_array().unwrap().len(), 1, "{jobs}");
    let a = get(&servers[0], "/v1/components/base/R1.0/rocky9");
    let b = get(&servers[1], "/v1/components/base/R1.0/rocky9");
    assert_eq!(a.status, 200);
    assert_eq!(a.body, b.body);
    // the log is served by either replica
    for s in servers.iter() {
        let log = get(s, &format!("/v1/jobs/{id}/log")).text();
        assert!(log.contains("==> success"), "{log}");
    }
}

#[test]
fn a_replica_killed_mid_build_the_build_finishes_on_the_other() {
    let mut repos = Repos::new(&[]);
    repos.add_tree("sleepy", |d| {
        std::fs::write(
            d.join("config.yaml"),
            "build: \"sleep 4 && mkdir -p out && echo built > out/done.txt\"\nartifacts: [out]\n",
        )
        .unwrap();
    });
    repos.serve();
    let shared = Shared::new();
    let extra = build_config(&repos, &["sleepy"]);
    let mut servers = [shared.replica(&extra), shared.replica(&extra)];
    let (st, v) = post_build(&servers[0], "sleepy");
    assert_eq!(st, 202, "{v}");
    let id = v["job"].as_str().unwrap().to_owned();
    // wait until a replica runs it (inside the build step), then kill that one
    let deadline = Instant::now() + Duration::from_secs(60);
    let runner = loop {
        let j = job(&servers[0], &id);
        let in_build = j["steps"].as_array().is_some_and(|s| {
            s.iter()
                .any(|s| s["name"].as_str().unwrap_or("").starts_with("build"))
        });
        if j["state"] == "running" && in_build {
            break j["replica"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "the job never ran: {j}");
        std::thread::sleep(Duration::from_millis(100));
    };
    // which replica holds it: its /v1/jobs entry names the replica; the
    // replicas' names carry their process ids
    let victim = servers
        .iter()
        .position(|s| runner.contains(&format!("-{}-", s.child.id())))
        .unwrap_or_else(|| panic!("no replica named {runner}"));
    servers[victim].kill();
    let survivor = &servers[1 - victim];
    let j = wait_final(survivor, &id, 120);
    assert_eq!(j["state"], "success", "{j}");
    assert_eq!(j["attempts"], 2, "{j}");
    assert_ne!(j["replica"].as_str().unwrap(), runner, "{j}");
    let r = get(survivor, "/v1/components/sleepy/R1.0/rocky9");
    assert_eq!(r.status, 200);
    let files = read_tar(&r.body, false);
    assert!(
        files
            .iter()
            .any(|(p, c)| p == "R1.0/out/done.txt" && c == b"built\n"),
        "{files:?}"
    );
    let log = get(survivor, &format!("/v1/jobs/{id}/log")).text();
    assert!(log.contains("started again (attempt 2)"), "{log}");
}

#[test]
fn a_job_pinned_to_a_replica_that_died_is_interrupted_and_frees_its_key() {
    let mut repos = Repos::new(&[]);
    repos.add_tree("sleepy", |d| {
        std::fs::write(
            d.join("config.yaml"),
            "build: \"sleep 5 && mkdir -p out && echo built > out/done.txt\"\nartifacts: [out]\n",
        )
        .unwrap();
    });
    repos.serve();
    let shared = Shared::new();
    let extra = build_config(&repos, &["sleepy"]);
    // a has one worker, busy with a build: an image build waits behind it
    let mut a = shared.replica(&build_config_with(&repos, &["sleepy"], "workers = 1"));
    let (st, v) = post_build(&a, "sleepy");
    assert_eq!(st, 202, "{v}");
    let build = v["job"].as_str().unwrap().to_owned();
    assert!(
        wait_for(60, || job(&a, &build)["state"] == "running"),
        "the build never ran"
    );
    let b = shared.replica(&extra);
    let image = || {
        reqwest::blocking::multipart::Form::new()
            .text("component", "pinned")
            .text("branch", "main")
            .text("arch", "rocky9")
            .part(
                "dockerfile",
                reqwest::blocking::multipart::Part::bytes(b"FROM scratch\nLABEL x=1\n".to_vec())
                    .file_name("Dockerfile"),
            )
    };
    let r = send(
        client()
            .post(a.url("/v1/images"))
            .header("Authorization", bearer(WRITE_KEY))
            .multipart(image()),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let pinned = r.json()["job"].as_str().unwrap().to_owned();
    let j = job(&b, &pinned);
    assert_eq!(j["state"], "queued", "{j}");
    assert!(j["pinned"].is_string(), "{j}");
    a.kill();
    // b: the build is taken up and finishes; the image job (its context was
    // on a's disk) ends as interrupted
    let j = wait_final(&b, &pinned, 60);
    assert_eq!(j["state"], "interrupted", "{j}");
    assert!(j["error"].as_str().unwrap_or("").contains("stopped"), "{j}");
    let j = wait_final(&b, &build, 120);
    assert_eq!(j["state"], "success", "{j}");
    // the key is free again: a new request is a new job, not the dead one
    let r = send(
        client()
            .post(b.url("/v1/images"))
            .header("Authorization", bearer(WRITE_KEY))
            .multipart(image()),
    );
    assert!(r.status == 202 || r.status == 200, "{}", r.text());
    assert_ne!(r.json()["job"].as_str(), Some(pinned.as_str()));
}

#[test]
fn a_replica_killed_mid_upload_leaves_nothing_visible() {
    let shared = Shared::new();
    let mut a = shared.replica("");
    let b = shared.replica("");
    let body = tar_gz("1.0", &[("big.bin", &noise(5, 6 << 20))]);
    let mut c = TcpStream::connect(addr(&a)).unwrap();
    let head = format!(
        "PUT /v1/components/crash/1.0/rocky9 HTTP/1.1\r\nHost: {}\r\n\
         Authorization: Bearer {WRITE_KEY}\r\nContent-Length: {}\r\n\r\n",
        addr(&a),
        body.len()
    );
    c.write_all(head.as_bytes()).unwrap();
    c.write_all(&body[..body.len() / 2]).unwrap();
    c.flush().unwrap();
    let tmp = a.dir.join("data/tmp");
    assert!(
        wait_for(10, || files_under(&tmp)
            .iter()
            .any(|f| f.metadata().is_ok_and(|m| m.len() > 0))),
        "the upload never reached the replica's scratch space"
    );
    a.kill();
    drop(c);
    assert_error_answer(&get(&b, "/v1/components/crash/1.0/rocky9"), 404);
    assert_eq!(get(&b, "/v1/components").json()["components"], json!([]));
    assert!(
        shared.blobs().list().unwrap().is_empty(),
        "a blob reached the bucket"
    );
    // the tag is free: the upload goes through the other replica
    let r = upload(&b, "crash/1.0/rocky9", body);
    assert_eq!(r.status, 201, "{}", r.text());
}

#[test]
fn a_blob_lost_behind_the_service_is_a_503_and_verify_reports_it() {
    let shared = Shared::new();
    let a = shared.replica("");
    let b = shared.redirecting_replica();
    let r = upload(&a, "lost/R1/rocky9", tar_gz("R1", &[("f", b"soon gone")]));
    assert_eq!(r.status, 201);
    let h = r.json()["component"]["blake3"].as_str().unwrap().to_owned();
    shared
        .blobs()
        .delete(&blake3::Hash::from_hex(&h).unwrap())
        .unwrap();
    for (s, path) in [
        (&a, "/v1/components/lost/R1/rocky9"),
        (&b, "/v1/components/lost/R1/rocky9"),
        (&a, "/component?component=lost&tag=R1&format=tar.zst"),
    ] {
        let r = no_redirects().get(s.url(path)).send().unwrap();
        let (st, v) = json_of(r);
        assert_error_code(st, &v, 503, "blob_lost", "missing from the blob store");
    }
    let r = send(
        client()
            .post(a.url("/v1/admin/verify"))
            .header("Authorization", bearer(ADMIN_KEY)),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["missing"],
        json!([format!("lost/R1/rocky9 -> {h}")])
    );
}

#[test]
fn gc_on_one_replica_while_the_other_serves_reads_and_writes() {
    let shared = Shared::new();
    let extra = "[gc]\ninterval_secs = 0\ngrace_secs = 3\n";
    let a = shared.replica(extra);
    let b = Arc::new(shared.replica(extra));
    let mut hashes = Vec::new();
    for i in 0..10 {
        let r = upload(
            &a,
            &format!("gc{i}/R1/rocky9"),
            tar_gz("R1", &[("i", format!("{i}").as_bytes())]),
        );
        assert_eq!(r.status, 201);
        hashes.push(r.json()["component"]["blake3"].as_str().unwrap().to_owned());
    }
    for i in 0..5 {
        let r = send(
            client()
                .delete(a.url(&format!("/v1/components/gc{i}/R1/rocky9")))
                .header("Authorization", bearer(ADMIN_KEY)),
        );
        assert_eq!(r.status, 200);
    }
    std::thread::sleep(Duration::from_millis(3500)); // past the grace period
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let (b, stop) = (b.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            let mut bad = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) || n < 20 {
                let i = 5 + n % 5;
                let r = get(&b, &format!("/v1/components/gc{i}/R1/rocky9"));
                if r.status != 200 {
                    bad.push(format!("read gc{i}: {}", r.status));
                }
                let r = upload(
                    &b,
                    &format!("new{n}/R1/rocky9"),
                    tar_gz("R1", &[("n", format!("new {n}").as_bytes())]),
                );
                if r.status != 201 {
                    bad.push(format!("write new{n}: {} {}", r.status, r.text()));
                }
                n += 1;
            }
            (n, bad)
        })
    };
    let r = send(
        client()
            .post(a.url("/v1/admin/gc"))
            .header("Authorization", bearer(ADMIN_KEY)),
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (n, bad) = traffic.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let report = r.json();
    let mut removed: Vec<String> = report["blobs_removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    removed.sort();
    let mut want = hashes[..5].to_vec();
    want.sort();
    assert_eq!(removed, want, "{report}");
    assert!(bad.is_empty(), "while GC ran on a: {bad:?}");
    // everything written during the pass is still there, on both replicas
    for i in 0..n {
        for s in [&a, b.as_ref()] {
            assert_eq!(
                get(s, &format!("/v1/components/new{i}/R1/rocky9")).status,
                200,
                "new{i}"
            );
        }
    }
    for i in 5..10 {
        assert_eq!(
            get(&a, &format!("/v1/components/gc{i}/R1/rocky9")).status,
            200
        );
    }
}

#[test]
fn a_single_host_store_is_migrated_then_reindexed_from_the_bucket() {
    // a single host with some content
    let single = Server::start();
    let mut stored = Vec::new();
    for i in 0..5 {
        let r = upload(
            &single,
            &format!("m{i}/R1/rocky9"),
            tar_gz("R1", &[("i", format!("{i}").as_bytes())]),
        );
        assert_eq!(r.status, 201);
        stored.push(r.json()["component"]["blake3"].as_str().unwrap().to_owned());
    }
    assert_eq!(get(&single, "/component?component=m0&tag=R1").status, 200); // a derived gzip
    let data = single.dir.join("data");
    let mut single = single;
    let keep = single.keep_dir();
    single.kill();

    let shared = Shared::new();
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = cfg_dir.path().join("replica.toml");
    std::fs::write(&cfg, shared.config("")).unwrap();
    let migrate = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_artifact-store"))
            .arg("--config")
            .arg(&cfg)
            .args(["migrate", "--from"])
            .arg(&data)
            .env("ARTIFACT_STORE_DATA_DIR", cfg_dir.path().join("scratch"))
            .output()
            .unwrap()
    };
    let o = migrate();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["blobs_copied"], 6, "{report}"); // five tar.zst + one gzip
    assert_eq!(report["components"], 5, "{report}");
    // again: nothing to copy
    let o = migrate();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let again: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(again["blobs_copied"], 0, "{again}");
    assert_eq!(again["blobs_present"], 6, "{again}");

    let r = shared.replica("");
    for (i, h) in stored.iter().enumerate() {
        let got = get(&r, &format!("/v1/components/m{i}/R1/rocky9"));
        assert_eq!(got.status, 200);
        assert_eq!(&b3(&got.body), h);
    }
    drop(r);

    // the database is lost: a fresh one, rebuilt from the record copies
    let fresh = Shared {
        s3: shared.s3.clone(),
        db: common::pg::database(),
    };
    std::fs::write(&cfg, fresh.config("")).unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_artifact-store"))
        .arg("--config")
        .arg(&cfg)
        .arg("reindex")
        .env("ARTIFACT_STORE_DATA_DIR", cfg_dir.path().join("scratch"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["components_restored"], 5, "{report}");
    let r = fresh.replica("");
    for (i, h) in stored.iter().enumerate() {
        let info = get(&r, &format!("/v1/components/m{i}/R1/rocky9/info")).json();
        assert_eq!(info["component"]["blake3"].as_str(), Some(h.as_str()));
    }
    drop(keep);
}

#[test]
fn the_replicated_deploy_manifest_runs_on_real_s3_and_postgres() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let text =
        std::fs::read_to_string(root.join("deploy/k8s/artifact-store-replicated.yaml")).unwrap();
    let mut kinds = Vec::new();
    let mut config = None;
    let mut replicas = 0;
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let v = <serde_yaml_ng::Value as serde::Deserialize>::deserialize(doc).expect("valid YAML");
        let kind = v["kind"].as_str().unwrap().to_owned();
        if kind == "Secret" {
            if let Some(c) = v["stringData"]["config.toml"].as_str() {
                config = Some(c.to_owned());
            }
        }
        if kind == "Deployment" {
            replicas = v["spec"]["replicas"].as_u64().unwrap();
        }
        kinds.push(kind);
    }
    for k in ["Secret", "Deployment", "Service", "PodDisruptionBudget"] {
        assert!(kinds.iter().any(|x| x == k), "{k} missing: {kinds:?}");
    }
    assert!(replicas >= 2, "a replicated Deployment");
    // the manifest's config, pointed at this run's servers, starts and is ready
    let shared = Shared::new();
    let mut cfg: toml::Table = toml::from_str(&config.expect("config.toml in a Secret")).unwrap();
    let s3 = cfg["storage"]["s3"].as_table().unwrap().clone();
    assert_eq!(cfg["storage"]["kind"].as_str(), Some("s3"));
    assert_eq!(cfg["index"]["kind"].as_str(), Some("postgres"));
    let mut s3 = s3;
    s3.insert("endpoint".into(), shared.s3.endpoint.clone().into());
    s3.insert("bucket".into(), shared.s3.bucket.clone().into());
    cfg["storage"]
        .as_table_mut()
        .unwrap()
        .insert("s3".into(), s3.into());
    cfg["index"]
        .as_table_mut()
        .unwrap()
        .insert("url".into(), shared.db.clone().into());
    cfg.remove("listen");
    cfg.remove("data_dir");
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_as(
        dir.path(),
        &toml::to_string(&cfg).unwrap(),
        &[
            ("AWS_ACCESS_KEY_ID", shared.s3.access_key.as_str()),
            ("AWS_SECRET_ACCESS_KEY", shared.s3.secret_key.as_str()),
        ],
        &[],
    );
    let r = get(&s, "/readyz");
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Incompressible bytes, so a body stays large on the wire.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}
