//! Operability: the CLI client against the real server, metrics, readiness,
//! garbage collection with retention, and verification.

mod common;
#[path = "common/registry.rs"]
mod registry;
#[path = "common/repos.rs"]
mod repos;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::*;
use serde_json::Value;

fn cli(s: &Server, token: Option<&str>, args: &[&str], cwd: &Path) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_artifact-store"));
    c.args(args)
        .current_dir(cwd)
        .env("ARTIFACT_STORE_URL", &s.base)
        .env_remove("ARTIFACT_STORE_TOKEN");
    if let Some(t) = token {
        c.env("ARTIFACT_STORE_TOKEN", t);
    }
    c.output().expect("run the cli")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn put(s: &Server, c: &str, t: &str, body: Vec<u8>) -> Value {
    let r = client()
        .put(s.url(&format!("/v1/components/{c}/{t}/rocky9")))
        .header("Authorization", bearer(WRITE_KEY))
        .body(body)
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    r.json::<Value>().unwrap()["component"].clone()
}

#[test]
fn cli_put_get_extract_check() {
    let s = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let tgz = dir.path().join("asyn.tar.gz");
    std::fs::write(
        &tgz,
        tar_gz(
            "R4.39",
            &[("lib/libasyn.a", b"asyn-bytes"), ("db/asyn.db", b"record")],
        ),
    )
    .unwrap();

    // put without a key: refused, exit 2 with the server's message
    let o = cli(
        &s,
        None,
        &["put", "asyn", "R4.39", tgz.to_str().unwrap()],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("API key is required"), "{}", text(&o));
    let o = cli(
        &s,
        Some(WRITE_KEY),
        &["put", "asyn", "R4.39", tgz.to_str().unwrap()],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["status"], "created");

    // get: file written, blake3 checked
    let o = cli(
        &s,
        None,
        &["get", "asyn", "R4.39", "-o", "a.tar.zst"],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let bytes = std::fs::read(dir.path().join("a.tar.zst")).unwrap();
    assert_eq!(
        blake3::hash(&bytes).to_hex().as_str(),
        v["component"]["blake3"].as_str().unwrap()
    );
    // get --extract DIR gives DIR/<tag>/...
    let o = cli(
        &s,
        None,
        &["get", "asyn", "R4.39", "--extract", "deps/asyn"],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        std::fs::read(dir.path().join("deps/asyn/R4.39/lib/libasyn.a")).unwrap(),
        b"asyn-bytes"
    );

    // check: exit 1 and the missing ones listed; exit 0 when all are there
    let o = cli(
        &s,
        None,
        &["check", "asyn:R4.39", "epics-base:R7.0.8", "motor:R7"],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("missing epics-base:R7.0.8 (rocky9)") && out.contains("missing motor:R7"),
        "{out}"
    );
    assert!(!out.contains("asyn"), "{out}");
    let o = cli(&s, None, &["check", "asyn:R4.39"], dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // a download whose bytes do not match the blake3 is refused, nothing written
    let blob = s
        .dir
        .join("data/blobs")
        .join(&v["component"]["blake3"].as_str().unwrap()[..2])
        .join(v["component"]["blake3"].as_str().unwrap());
    let mut corrupt = std::fs::read(&blob).unwrap();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    std::fs::write(&blob, &corrupt).unwrap();
    let o = cli(
        &s,
        None,
        &["get", "asyn", "R4.39", "-o", "b.tar.zst"],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("blake3 mismatch"), "{}", text(&o));
    assert!(!dir.path().join("b.tar.zst").exists());
}

#[test]
fn cli_build_follows_the_log_and_exits_with_the_result() {
    let repos = repos::Repos::new(&["base", "failing"]);
    let s = Server::start_with(&config_with_keys(
        "[build]\nallow_local_urls = true\nsandbox = \"bwrap\"\n",
    ));
    let dir = tempfile::tempdir().unwrap();
    let url = repos.file_url("base");
    let o = cli(
        &s,
        Some(WRITE_KEY),
        &["build", "base", "R1.0", "--url", &url],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("==> build base R1.0") && out.contains("==> success"),
        "{out}"
    );
    let url = repos.file_url("failing");
    let o = cli(
        &s,
        Some(WRITE_KEY),
        &["build", "failing", "R1.0", "--url", &url],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("fails on purpose"));
    let o = cli(&s, None, &["jobs"], dir.path());
    assert!(o.status.success());
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["jobs"].as_array().unwrap().len(), 2);
}

#[test]
fn metrics_and_readiness() {
    let s = Server::start();
    put(&s, "m", "R1", tar_gz("R1", &[("f", b"0123456789")]));
    let c = client();
    assert_eq!(
        c.get(s.url("/v1/components/m/R1/rocky9"))
            .send()
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.get(s.url("/v1/components/m/R2/rocky9/info"))
            .send()
            .unwrap()
            .status(),
        404
    );
    let r = c.get(s.url("/readyz")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().unwrap()["status"], "ready");
    let m = c.get(s.url("/metrics")).send().unwrap().text().unwrap();
    for needle in [
        r#"artifact_store_http_requests_total{method="GET",route="/v1/components/{component}/{tag}/{arch}",status="200"} 1"#,
        r#"artifact_store_http_requests_total{method="PUT",route="/v1/components/{component}/{tag}/{arch}",status="201"} 1"#,
        r#"artifact_store_cache_requests_total{kind="component",result="hit"} 1"#,
        r#"artifact_store_cache_requests_total{kind="component",result="miss"} 1"#,
        "artifact_store_blobs 1",
        "artifact_store_components 1",
    ] {
        assert!(m.contains(needle), "{needle} not in:\n{m}");
    }
    let served: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("artifact_store_bytes_served_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(served > 0);
    let store: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("artifact_store_store_bytes "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(store > 0);
}

fn gc(s: &Server) -> Value {
    let r = client()
        .post(s.url("/v1/admin/gc"))
        .header("Authorization", bearer(ADMIN_KEY))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().unwrap()
}

fn blob_count(s: &Server) -> usize {
    walk(&s.dir.join("data/blobs"))
}

fn walk(p: &Path) -> usize {
    std::fs::read_dir(p)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                walk(&e.path())
            } else {
                1
            }
        })
        .sum()
}

#[test]
fn gc_removes_only_old_unreferenced_blobs() {
    let s = Server::start_with(&config_with_keys(
        "[gc]\ninterval_secs = 0\ngrace_secs = 0\n",
    ));
    let a = put(&s, "a", "R1", tar_gz("R1", &[("f", b"a")]));
    put(&s, "b", "R1", tar_gz("R1", &[("f", b"b")]));
    // the gzip form of a is derived and referenced through a
    assert_eq!(
        client()
            .get(s.url("/component?component=a&tag=R1"))
            .send()
            .unwrap()
            .status(),
        200
    );
    assert_eq!(blob_count(&s), 3);
    let r = client()
        .post(s.url("/v1/admin/gc"))
        .header("Authorization", bearer(WRITE_KEY))
        .send()
        .unwrap();
    assert_eq!(r.status(), 403, "gc needs the admin role");
    let v = gc(&s);
    assert_eq!(v["blobs_removed"].as_array().unwrap().len(), 0, "{v}");
    // delete b: only its index entry goes; the blob stays until GC
    let r = client()
        .delete(s.url("/v1/components/b/R1/rocky9"))
        .header("Authorization", bearer(ADMIN_KEY))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(blob_count(&s), 3);
    let v = gc(&s);
    assert_eq!(v["blobs_removed"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(blob_count(&s), 2);
    assert_eq!(
        client()
            .get(s.url("/v1/components/a/R1/rocky9"))
            .send()
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        client()
            .get(s.url(&format!("/v1/blobs/{}", a["blake3"].as_str().unwrap())))
            .send()
            .unwrap()
            .status(),
        200
    );

    // a young unreferenced blob is kept (grace period)
    let young = Server::start_with(&config_with_keys(
        "[gc]\ninterval_secs = 0\ngrace_secs = 3600\n",
    ));
    put(&young, "c", "R1", tar_gz("R1", &[("f", b"c")]));
    client()
        .delete(young.url("/v1/components/c/R1/rocky9"))
        .header("Authorization", bearer(ADMIN_KEY))
        .send()
        .unwrap();
    let v = gc(&young);
    assert_eq!(v["blobs_young"], 1, "{v}");
    assert_eq!(blob_count(&young), 1);
}

#[test]
fn gc_never_removes_a_blob_an_upload_is_writing() {
    use std::io::Write;
    let s = Server::start_with(&config_with_keys(
        "[gc]\ninterval_secs = 0\ngrace_secs = 0\n",
    ));
    let body = tar_gz("R1", &[("big", &vec![7u8; 2 << 20])]);
    let addr = s.base.trim_start_matches("http://").to_owned();
    let mut sock = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        sock,
        "PUT /v1/components/inflight/R1/rocky9 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {WRITE_KEY}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    sock.write_all(&body[..body.len() / 2]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    gc(&s);
    sock.write_all(&body[body.len() / 2..]).unwrap();
    let mut resp = String::new();
    use std::io::Read;
    let mut buf = [0u8; 4096];
    while !resp.contains("\r\n\r\n") {
        let n = sock.read(&mut buf).unwrap();
        assert!(n > 0);
        resp.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(resp.starts_with("HTTP/1.1 201"), "{resp}");
    gc(&s);
    let r = client()
        .get(s.url("/v1/components/inflight/R1/rocky9"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let files = read_tar(&r.bytes().unwrap(), false);
    assert_eq!(
        files.iter().find(|(p, _)| p == "R1/big").unwrap().1.len(),
        2 << 20
    );
}

#[test]
fn retention_keeps_newest_and_recently_downloaded() {
    let s = Server::start_with(&config_with_keys(
        "[gc]\ninterval_secs = 0\ngrace_secs = 0\n[retention]\nkeep_newest = 1\nkeep_downloaded_within_days = 30\n",
    ));
    for t in ["R1", "R2", "R3"] {
        put(&s, "ret", t, tar_gz(t, &[("f", t.as_bytes())]));
        std::thread::sleep(Duration::from_millis(20));
    }
    // R1 was downloaded recently: kept despite being old
    assert_eq!(
        client()
            .get(s.url("/v1/components/ret/R1/rocky9"))
            .send()
            .unwrap()
            .status(),
        200
    );
    let v = gc(&s);
    assert_eq!(
        v["retention_dropped"],
        serde_json::json!(["ret/R2/rocky9"]),
        "{v}"
    );
    let status = |t: &str| {
        client()
            .get(s.url(&format!("/v1/components/ret/{t}/rocky9/info")))
            .send()
            .unwrap()
            .status()
    };
    assert_eq!(status("R1"), 200);
    assert_eq!(status("R2"), 404);
    assert_eq!(status("R3"), 200);
    assert_eq!(v["blobs_removed"].as_array().unwrap().len(), 1, "{v}");
}

#[test]
fn verify_quarantines_corrupt_blobs_which_are_never_served() {
    let s = Server::start();
    let good = put(&s, "good", "R1", tar_gz("R1", &[("f", b"good")]));
    let bad = put(&s, "bad", "R1", tar_gz("R1", &[("f", b"bad")]));
    let h = bad["blake3"].as_str().unwrap();
    let path = s.dir.join("data/blobs").join(&h[..2]).join(h);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[0] ^= 0x55;
    std::fs::write(&path, bytes).unwrap();
    let r = client()
        .post(s.url("/v1/admin/verify"))
        .header("Authorization", bearer(ADMIN_KEY))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().unwrap();
    assert_eq!(v["blobs_checked"], 2);
    assert_eq!(v["corrupt"], serde_json::json!([h]));
    assert_eq!(
        v["missing"],
        serde_json::json!([format!("bad/R1/rocky9 -> {h}")])
    );
    assert!(s.dir.join("data/quarantine").join(h).is_file());
    for url in [
        "/v1/components/bad/R1/rocky9",
        "/component?component=bad&tag=R1&format=tar.zst",
    ] {
        // the index names a blob the store lost: 503, never a short 200
        let r = client().get(s.url(url)).send().unwrap();
        let status = r.status().as_u16();
        let v: Value = r.json().unwrap();
        assert_error_code(status, &v, 503, "blob_lost", "missing from the blob store");
    }
    let r = client()
        .get(s.url(&format!("/v1/blobs/{h}")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        client()
            .get(s.url("/v1/components/good/R1/rocky9"))
            .send()
            .unwrap()
            .status(),
        200
    );
    let _ = good;
    // the CLI: exit 1 while something is missing
    let dir = tempfile::tempdir().unwrap();
    let o = cli(&s, Some(ADMIN_KEY), &["verify"], dir.path());
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
}

#[test]
fn deploy_manifests_are_complete() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("deploy/k8s/artifact-store.yaml")).unwrap();
    let mut kinds = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let v = <serde_yaml_ng::Value as serde::Deserialize>::deserialize(doc).expect("valid YAML");
        kinds.push(v["kind"].as_str().unwrap().to_owned());
        if v["kind"] == "Secret" {
            // the embedded config must load
            let cfg = v["stringData"]["config.toml"].as_str().unwrap();
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("c.toml"), cfg).unwrap();
            let o = Command::new(env!("CARGO_BIN_EXE_artifact-store"))
                .args([
                    "--config",
                    "c.toml",
                    "serve",
                    "--listen",
                    "127.0.0.1:0",
                    "--data-dir",
                    "d",
                ])
                .current_dir(dir.path())
                .env("ARTIFACT_STORE_LOG", "off")
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(500));
            let mut o = o;
            assert!(
                o.try_wait().unwrap().is_none(),
                "the deploy config must start the service"
            );
            let _ = o.kill();
        }
    }
    for k in [
        "Secret",
        "PersistentVolumeClaim",
        "Deployment",
        "Service",
        "Ingress",
    ] {
        assert!(kinds.iter().any(|x| x == k), "{k} missing: {kinds:?}");
    }
    let cf = std::fs::read_to_string(root.join("deploy/Containerfile")).unwrap();
    for line in cf.lines().filter(|l| l.starts_with("COPY deploy/")) {
        let f = line.split_whitespace().nth(1).unwrap();
        assert!(
            root.join(f).is_file(),
            "{f} is copied by the Containerfile but missing"
        );
    }
    assert!(
        cf.contains("USER artifacts"),
        "the service must not run as root"
    );
}

#[test]
fn cli_image_build_and_get() {
    let base = registry::busybox_image();
    let reg = registry::Registry::start();
    let s = Server::start_with(&config_with_keys(&format!(
        "[image]\nregistry = \"{}\"\ntls_verify = false\n",
        reg.addr()
    )));
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("ctx")).unwrap();
    std::fs::write(dir.path().join("ctx/motd"), "hello from the context\n").unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!("FROM {base}\nCOPY motd /motd\n"),
    )
    .unwrap();
    let args = [
        "image",
        "build",
        "--component",
        "cli-ioc",
        "--branch",
        "main",
        "--context",
        "ctx",
    ];
    let o = cli(&s, Some(WRITE_KEY), &args, dir.path());
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(&format!(
            "podman pull {}/cli-ioc-main-image@sha256:",
            reg.addr()
        )),
        "{out}"
    );
    // unchanged: answered from the cache, no job
    let o = cli(&s, Some(WRITE_KEY), &args, dir.path());
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with("unchanged: podman pull"),
        "{}",
        text(&o)
    );
    let o = cli(
        &s,
        None,
        &["image", "get", "cli-ioc", "main", "rocky9"],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["status"], "found");
    let image = v["imageName"].as_str().unwrap().to_owned();
    assert_eq!(
        registry::cat_in_image(&image, "/motd"),
        "hello from the context\n"
    );
    let _ = registry::run(
        "podman",
        &["rmi", "-f", &image, v["immutableName"].as_str().unwrap()],
    );
    // a failing Dockerfile: exit 1
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!("FROM {base}\nRUN exit 3\n"),
    )
    .unwrap();
    let o = cli(&s, Some(WRITE_KEY), &args, dir.path());
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
}
