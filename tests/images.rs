//! Container images through the real HTTP API: real rootless podman builds
//! (`--isolation chroot`), pushes to a real OCI registry (Debian's
//! `docker-registry`) on a loopback port, pulls back by digest, the content
//! cache, failures, and the original `POST /image` / `GET /image` API.
//!
//! Tests that need podman fail (they do not skip) when it is missing. Each
//! test starts its own registry and server and uses component names of its
//! own, since the local podman storage is shared.

mod common;
#[path = "common/registry.rs"]
mod registry;

use std::time::{Duration, Instant};

use common::*;
use registry::*;
use serde_json::{json, Value};

fn image_config(image_toml: &str) -> String {
    config_with_keys(&format!("[image]\n{image_toml}"))
}

fn registry_config(registry: &str) -> String {
    image_config(&format!("registry = \"{registry}\"\ntls_verify = false\n"))
}

/// A Dockerfile on the test busybox image.
fn dockerfile(body: &str) -> String {
    format!("FROM {}\n{body}", busybox_image())
}

/// The multipart form of `POST /v1/images`.
fn form(
    component: &str,
    branch: &str,
    arch: &str,
    dockerfile: &str,
    context: Option<(&str, &[u8])>,
) -> Multipart {
    let mut m = Multipart::new()
        .text("component", component)
        .text("branch", branch)
        .text("arch", arch)
        .file("dockerfile", "Dockerfile", dockerfile.as_bytes());
    if let Some((name, data)) = context {
        m = m.file("context", name, data);
    }
    m
}

/// POSTs a multipart form to `path` (with its query), with `key` if any;
/// (status, JSON answer, time to the whole answer).
fn post_form_with(
    c: &reqwest::blocking::Client,
    s: &Server,
    path: &str,
    m: Multipart,
    key: Option<&str>,
) -> (u16, Value, Duration) {
    let (ct, body) = m.finish();
    let mut rb = c
        .post(s.url(path))
        .header("content-type", ct)
        .header("linux_username", "imager")
        .body(body);
    if let Some(k) = key {
        rb = rb.header("Authorization", bearer(k));
    }
    let t = Instant::now();
    let r = rb.send().unwrap();
    let (status, v) = json_of(r);
    (status, v, t.elapsed())
}

fn post_form(s: &Server, path: &str, m: Multipart) -> (u16, Value, Duration) {
    post_form_with(&client(), s, path, m, Some(WRITE_KEY))
}

fn get_json(s: &Server, path: &str) -> (u16, Value) {
    json_of(client().get(s.url(path)).send().unwrap())
}

/// A successful `?wait=true` build answer; checks the fields every
/// registry build answer has.
fn assert_pushed(v: &Value, registry: &str, repo: &str, arch: &str) {
    assert_eq!(v["status"], "success", "{v}");
    assert_eq!(v["location"], "registry", "{v}");
    let key = v["key"].as_str().unwrap();
    assert_eq!(key.len(), 64, "{v}");
    assert_eq!(v["imageName"], format!("{registry}/{repo}:{arch}"), "{v}");
    assert_eq!(
        v["immutableName"],
        format!("{registry}/{repo}:{arch}-{}", &key[..12]),
        "the immutable tag ends with the first 12 hex of the key: {v}"
    );
    let digest = v["digest"].as_str().unwrap();
    assert!(
        digest.starts_with("sha256:")
            && digest.len() == 71
            && digest[7..].bytes().all(|b| b.is_ascii_hexdigit()),
        "{v}"
    );
    assert_eq!(
        v["pullCommand"],
        format!("podman pull {registry}/{repo}@{digest}"),
        "{v}"
    );
}

fn podman_ok(args: &[&str]) {
    let (ok, _, err) = run("podman", args);
    assert!(ok, "podman {args:?}: {err}");
}

#[test]
fn build_push_pull_back_by_digest_with_a_context() {
    let reg = Registry::start();
    let s = Server::start_with(&registry_config(&reg.addr()));
    let df = dockerfile(
        "COPY greeting.txt /greeting.txt\nRUN echo 'appended by RUN (t1)' >> /greeting.txt\n",
    );
    let ctx = tar_gz(
        "",
        &[
            ("greeting.txt", b"hello from the context (t1)\n"),
            ("unused/other.txt", b"not copied\n"),
        ],
    );
    let (status, v, _) = post_form(
        &s,
        "/v1/images?wait=true",
        form(
            "Img1_IOC",
            "feature/New._Thing",
            "ROCKY9",
            &df,
            Some(("context.tar.gz", &ctx)),
        ),
    );
    assert_eq!(status, 200, "{v}");
    let repo = "img1-ioc-feature-new-thing-image";
    assert_pushed(&v, &reg.addr(), repo, "rocky9");
    assert!(v["job"].is_string(), "{v}");
    assert_eq!(v["component"], "Img1_IOC");
    assert_eq!(v["branch"], "feature/New._Thing");
    assert_eq!(v["arch"], "rocky9");
    assert!(v["size"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["built_by"]["linux_username"], "imager", "{v}");
    assert_eq!(
        reg.catalog(),
        vec![repo.to_owned()],
        "the registry holds the repository"
    );

    // the job ran build, push, index
    let job = assert_job_success(&s, v["job"].as_str().unwrap());
    assert_eq!(job["kind"], "image");
    assert_eq!(step_names(&job), ["build", "push", "index"]);

    // drop the local tags, pull back from the registry by digest
    let (image, immutable) = (
        v["imageName"].as_str().unwrap(),
        v["immutableName"].as_str().unwrap(),
    );
    podman_ok(&["rmi", "-f", image, immutable]);
    let (exists, _, _) = run("podman", &["image", "exists", image]);
    assert!(!exists, "the local tag {image} should be gone");
    let by_digest = format!("{}/{repo}@{}", reg.addr(), v["digest"].as_str().unwrap());
    podman_ok(&["pull", "--tls-verify=false", &by_digest]);
    assert_eq!(
        cat_in_image(&by_digest, "/greeting.txt"),
        "hello from the context (t1)\nappended by RUN (t1)\n"
    );
    // and by the tags
    podman_ok(&["pull", "--tls-verify=false", immutable]);
    podman_ok(&["pull", "--tls-verify=false", image]);
    let (ok, out, err) = run(
        "podman",
        &["image", "inspect", "--format", "{{.Digest}}", image],
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim(), v["digest"].as_str().unwrap());
    // (dropping the registry removes the local images tagged for it)
}

#[test]
fn a_branch_with_dot_dot_is_refused() {
    // names are `[A-Za-z0-9._+-]` without `..` (README), and git refuses
    // `..` in branch names too: 400 before anything is built
    let s = Server::start_with(&registry_config("127.0.0.1:9"));
    let (status, v, _) = post_form(
        &s,
        "/v1/images?wait=true",
        form(
            "Test_IOC",
            "feature/New..Thing",
            "rocky9",
            "FROM scratch\n",
            None,
        ),
    );
    assert_error(status, &v, 400, "branch");
    let (_, jobs) = get_json(&s, "/v1/jobs");
    assert_eq!(jobs["jobs"], json!([]), "nothing was queued: {jobs}");
}

#[test]
fn cache_hits_no_cache_and_a_changed_dockerfile() {
    let reg = Registry::start();
    let s = Server::start_with(&registry_config(&reg.addr()));
    let df = dockerfile("COPY a.txt /a.txt\nRUN echo built-t2 >> /a.txt\n");
    let files: [(&str, &[u8]); 2] = [("a.txt", b"context a (t2)\n"), ("dir/b.txt", b"b\n")];
    let first_ctx = tar_gz_with(&files, 1_600_000_000, 9);
    let (status, first, _) = post_form(
        &s,
        "/v1/images?wait=true",
        form(
            "Img2_IOC",
            "dev/pat",
            "rocky9",
            &df,
            Some(("ctx.tar.gz", &first_ctx)),
        ),
    );
    assert_eq!(status, 200, "{first}");
    let repo = "img2-ioc-dev-pat-image";
    assert_pushed(&first, &reg.addr(), repo, "rocky9");
    assert!(first.get("cached").is_none_or(|c| c == false), "{first}");

    // same Dockerfile, same content: re-tarred as plain tar with other
    // mtimes and in another order -> a cache hit, answered at once
    let mut reordered = files;
    reordered.reverse();
    let second_ctx = tar_plain(&reordered, 1_750_000_000);
    let (status, hit, took) = post_form(
        &s,
        "/v1/images?wait=true",
        form(
            "Img2_IOC",
            "dev/pat",
            "ROCKY9",
            &df,
            Some(("ctx.tar", &second_ctx)),
        ),
    );
    assert_eq!(status, 200, "{hit}");
    assert_eq!(hit["status"], "success", "{hit}");
    assert_eq!(hit["cached"], true, "{hit}");
    assert_eq!(hit["digest"], first["digest"]);
    assert_eq!(hit["key"], first["key"]);
    assert_eq!(hit["imageName"], first["imageName"]);
    assert!(hit.get("job").is_none_or(Value::is_null), "{hit}");
    assert!(took < Duration::from_secs(2), "a cache hit took {took:?}");

    // p99 of 50 cache hits on one connection
    let c = client();
    let mut times = Vec::new();
    for i in 0..50 {
        let ctx = if i % 2 == 0 { &first_ctx } else { &second_ctx };
        let (status, v, took) = post_form_with(
            &c,
            &s,
            "/v1/images",
            form("Img2_IOC", "dev/pat", "rocky9", &df, Some(("ctx", ctx))),
            Some(WRITE_KEY),
        );
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["cached"], true, "{v}");
        times.push(took);
    }
    times.sort();
    let p99 = times[(times.len() * 99).div_ceil(100) - 1];
    let p50 = times[times.len() / 2];
    println!("cache-hit POST /v1/images: p50 {p50:?}, p99 {p99:?} over 50");
    // The 50 ms target is measured by benches/peers.sh on a quiet machine;
    // here, beside parallel podman builds, only a gross regression fails.
    assert!(p99 < Duration::from_millis(500), "cache-hit p99 {p99:?}");

    // no_cache: a new job runs
    let (status, again, _) = post_form(
        &s,
        "/v1/images?wait=true&no_cache=true",
        form(
            "Img2_IOC",
            "dev/pat",
            "rocky9",
            &df,
            Some(("ctx.tar", &second_ctx)),
        ),
    );
    assert_eq!(status, 200, "{again}");
    assert!(again["job"].is_string(), "no_cache runs a job: {again}");
    assert_ne!(again["job"], first["job"]);
    assert!(again.get("cached").is_none_or(|c| c == false), "{again}");
    assert_eq!(again["key"], first["key"]);
    assert_pushed(&again, &reg.addr(), repo, "rocky9");

    // a changed Dockerfile: a new build and key, the index follows
    let df2 = dockerfile("COPY a.txt /a.txt\nRUN echo built-t2-changed >> /a.txt\n");
    let (status, changed, _) = post_form(
        &s,
        "/v1/images?wait=true",
        form(
            "Img2_IOC",
            "dev/pat",
            "rocky9",
            &df2,
            Some(("ctx.tar.gz", &first_ctx)),
        ),
    );
    assert_eq!(status, 200, "{changed}");
    assert_pushed(&changed, &reg.addr(), repo, "rocky9");
    assert!(changed["job"].is_string());
    assert_ne!(changed["key"], first["key"]);
    assert_ne!(changed["digest"], first["digest"]);
    assert_ne!(changed["immutableName"], first["immutableName"]);

    let (status, got) = get_json(&s, "/v1/images/Img2_IOC/dev%2Fpat/rocky9");
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["status"], "found");
    assert_eq!(got["digest"], changed["digest"]);
    assert_eq!(got["key"], changed["key"]);
    let (status, got) = get_json(&s, "/image?component=Img2_IOC&branch=dev/pat&arch=ROCKY9");
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["digest"], changed["digest"]);

    let (status, list) = get_json(&s, "/v1/images");
    assert_eq!(status, 200, "{list}");
    let images = list["images"].as_array().unwrap();
    assert_eq!(images.len(), 1, "{list}");
    assert_eq!(images[0]["component"], "Img2_IOC");
    assert_eq!(images[0]["digest"], changed["digest"]);
    assert_eq!(images[0]["key"], changed["key"]);

    // the old immutable tag is still pullable, and holds the old content
    podman_ok(&[
        "pull",
        "--tls-verify=false",
        first["immutableName"].as_str().unwrap(),
    ]);
    assert_eq!(
        cat_in_image(first["immutableName"].as_str().unwrap(), "/a.txt"),
        "context a (t2)\nbuilt-t2\n"
    );
    assert_eq!(
        cat_in_image(changed["imageName"].as_str().unwrap(), "/a.txt"),
        "context a (t2)\nbuilt-t2-changed\n"
    );
}

#[test]
fn a_failing_dockerfile_keeps_the_previous_image() {
    let reg = Registry::start();
    let s = Server::start_with(&registry_config(&reg.addr()));
    let good = dockerfile("RUN echo good-t3 > /good.txt\n");
    let (status, ok, _) = post_form(
        &s,
        "/v1/images?wait=true",
        form("Img3_IOC", "main", "rocky9", &good, None),
    );
    assert_eq!(status, 200, "{ok}");
    assert_pushed(&ok, &reg.addr(), "img3-ioc-main-image", "rocky9");

    let bad = dockerfile("RUN echo about-to-fail-t3 && exit 3\n");
    let (status, v, _) = post_form(
        &s,
        "/v1/images?wait=true",
        form("Img3_IOC", "main", "rocky9", &bad, None),
    );
    assert_error(status, &v, 422, "step 'build' failed");
    let msg = v["errorMessage"].as_str().unwrap();
    assert!(msg.contains("about-to-fail-t3"), "the log tail: {msg}");
    assert!(msg.contains("exit 3"), "the log tail: {msg}");
    assert!(v["job"].is_string(), "{v}");

    let (status, got) = get_json(&s, "/v1/images/Img3_IOC/main/rocky9");
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["digest"], ok["digest"], "the previous entry stays");
    assert_eq!(got["key"], ok["key"]);

    // without wait: 202, then the job fails with podman's output in its log
    let bad2 = dockerfile("RUN echo second-failure-t3 && exit 3\n");
    let (status, q, _) = post_form(
        &s,
        "/v1/images",
        form("Img3_IOC", "main", "rocky9", &bad2, None),
    );
    assert_eq!(status, 202, "{q}");
    assert_eq!(q["status"], "queued");
    let id = q["job"].as_str().unwrap().to_owned();
    assert_eq!(q["links"]["job"], format!("/v1/jobs/{id}"));
    let job = wait_job(&s, &id);
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(step_names(&job), ["build"]);
    assert_eq!(job["steps"][0]["state"], "failed", "{job}");
    assert!(
        job["error"]
            .as_str()
            .unwrap()
            .contains("step 'build' failed"),
        "{job}"
    );
    let log = job_log(&s, &id);
    assert!(log.contains("second-failure-t3"), "{log}");
    assert!(log.contains("STEP 2/2"), "podman's own output: {log}");
    assert!(log.contains("exit status 3"), "{log}");

    let (status, got) = get_json(&s, "/v1/images/Img3_IOC/main/rocky9");
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["digest"], ok["digest"], "the previous entry stays");
}

#[test]
fn an_unreachable_registry_is_refused_before_queuing() {
    let mut reg = Registry::start();
    let s = Server::start_with(&registry_config(&reg.addr()));
    let (status, ok, _) = post_form(
        &s,
        "/v1/images?wait=true",
        form(
            "Img4a_IOC",
            "main",
            "rocky9",
            &dockerfile("RUN echo t4a > /t.txt\n"),
            None,
        ),
    );
    assert_eq!(status, 200, "{ok}");
    reg.kill();

    let (status, v, took) = post_form(
        &s,
        "/v1/images?wait=true",
        form(
            "Img4a_IOC",
            "main",
            "rocky9",
            &dockerfile("RUN echo t4a-changed > /t.txt\n"),
            None,
        ),
    );
    assert_error(status, &v, 503, &reg.addr());
    assert!(v.get("job").is_none_or(Value::is_null), "not queued: {v}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    let (_, jobs) = get_json(&s, "/v1/jobs");
    assert_eq!(
        jobs["jobs"].as_array().map(Vec::len),
        Some(1),
        "only the first build ran: {jobs}"
    );

    // a cache hit needs no registry
    let (status, hit, _) = post_form(
        &s,
        "/v1/images",
        form(
            "Img4a_IOC",
            "main",
            "rocky9",
            &dockerfile("RUN echo t4a > /t.txt\n"),
            None,
        ),
    );
    assert_eq!(status, 200, "{hit}");
    assert_eq!(hit["cached"], true);

    let (status, got) = get_json(&s, "/v1/images/Img4a_IOC/main/rocky9");
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["digest"], ok["digest"]);
}

#[test]
fn a_failed_push_keeps_the_previous_image() {
    // the registry behind a proxy: reachable for the connect check, then
    // every connection dropped, so that podman push itself fails
    let reg = Registry::start();
    let proxy = Proxy::start(reg.port);
    let s = Server::start_with(&registry_config(&proxy.addr()));
    let (status, ok, _) = post_form(
        &s,
        "/v1/images?wait=true",
        form(
            "Img4b_IOC",
            "main",
            "rocky9",
            &dockerfile("RUN echo t4b > /t.txt\n"),
            None,
        ),
    );
    assert_eq!(status, 200, "{ok}");
    assert_pushed(&ok, &proxy.addr(), "img4b-ioc-main-image", "rocky9");

    proxy.break_it();
    let (status, v, _) = post_form(
        &s,
        "/v1/images?wait=true",
        form(
            "Img4b_IOC",
            "main",
            "rocky9",
            &dockerfile("RUN echo t4b-changed > /t.txt\n"),
            None,
        ),
    );
    assert_error(status, &v, 422, "step 'push' failed");
    let job = wait_job(&s, v["job"].as_str().unwrap());
    assert_eq!(step_names(&job), ["build", "push"], "{job}");
    assert_eq!(job["steps"][0]["state"], "success", "{job}");
    assert_eq!(job["steps"][1]["state"], "failed", "{job}");

    let (status, got) = get_json(&s, "/v1/images/Img4b_IOC/main/rocky9");
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["digest"], ok["digest"], "the previous entry stays");
    assert_eq!(got["key"], ok["key"]);
}

#[test]
fn a_push_command_that_fails_indexes_nothing() {
    let reg = Registry::start();
    let s = Server::start_with(&image_config(&format!(
        "registry = \"{}\"\ntls_verify = false\npodman_push = [\"false\"]\n",
        reg.addr()
    )));
    let (status, v, _) = post_form(
        &s,
        "/v1/images?wait=true",
        form(
            "Img4c_IOC",
            "main",
            "rocky9",
            &dockerfile("RUN echo t4c > /t.txt\n"),
            None,
        ),
    );
    assert_error(status, &v, 422, "step 'push' failed");
    let id = v["job"].as_str().unwrap();
    let job = wait_job(&s, id);
    assert_eq!(job["state"], "failed");
    assert_eq!(step_names(&job), ["build", "push"], "{job}");

    let (status, got) = get_json(&s, "/v1/images/Img4c_IOC/main/rocky9");
    assert_error(status, &got, 404, "Img4c_IOC");
    let (_, list) = get_json(&s, "/v1/images");
    assert_eq!(list["images"], json!([]), "{list}");
    assert!(reg.catalog().is_empty());
}

#[test]
fn refused_requests() {
    // a registry nobody listens on; small limits
    let dead = free_port();
    let s = Server::start_with(&image_config(&format!(
        "registry = \"127.0.0.1:{dead}\"\ntls_verify = false\nmax_dockerfile_bytes = 100\nmax_context_bytes = 2000\n"
    )));
    let small_df = "FROM scratch\nCOPY x /x\n";
    let small_ctx = tar_gz_with(&[("x", b"x\n")], 1_700_000_000, 6);
    assert!(small_ctx.len() < 2000);

    let (status, v, _) = post_form(
        &s,
        "/v1/images?wait=true",
        form(
            "Img5_IOC",
            "main",
            "rocky9",
            small_df,
            Some(("c", &small_ctx)),
        ),
    );
    assert_error(status, &v, 503, &format!("127.0.0.1:{dead}"));
    assert!(
        v["errorMessage"].as_str().unwrap().contains("registry"),
        "{v}"
    );

    // too large: the Dockerfile, the context
    let big_df = format!("FROM scratch\n{}", "# padding\n".repeat(20));
    let (status, v, _) = post_form(
        &s,
        "/v1/images",
        form("Img5_IOC", "main", "rocky9", &big_df, None),
    );
    assert_error(status, &v, 413, "dockerfile");
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let noise: Vec<u8> = (0..8000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let big_ctx = tar_gz_with(&[("noise.bin", &noise)], 1_700_000_000, 9);
    assert!(big_ctx.len() > 2000, "{}", big_ctx.len());
    let (status, v, _) = post_form(
        &s,
        "/v1/images",
        form(
            "Img5_IOC",
            "main",
            "rocky9",
            small_df,
            Some(("c", &big_ctx)),
        ),
    );
    assert_error(status, &v, 413, "context");

    // contexts with paths that escape
    for bad in ["../escape", "/etc/escape", "a/../../escape"] {
        let ctx = tar_gz_raw_path(bad, b"evil\n");
        let (status, v, _) = post_form(
            &s,
            "/v1/images",
            form("Img5_IOC", "main", "rocky9", small_df, Some(("c", &ctx))),
        );
        assert_error(status, &v, 400, bad);
    }
    let ctx = tar_gz_symlink("passwd", "../../../../etc/passwd");
    let (status, v, _) = post_form(
        &s,
        "/v1/images",
        form("Img5_IOC", "main", "rocky9", small_df, Some(("c", &ctx))),
    );
    assert_error(status, &v, 400, "outside");
    // a context that is not a tarball
    let (status, v, _) = post_form(
        &s,
        "/v1/images",
        form(
            "Img5_IOC",
            "main",
            "rocky9",
            small_df,
            Some(("c", b"this is not a tarball at all")),
        ),
    );
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["status"], "error");

    // missing parts
    let m = Multipart::new()
        .text("component", "Img5_IOC")
        .text("branch", "main")
        .text("arch", "rocky9");
    let (status, v, _) = post_form(&s, "/v1/images", m);
    assert_error(status, &v, 400, "dockerfile");
    let m = Multipart::new()
        .text("component", "Img5_IOC")
        .text("arch", "rocky9")
        .file("dockerfile", "Dockerfile", small_df.as_bytes());
    let (status, v, _) = post_form(&s, "/v1/images", m);
    assert_error(status, &v, 400, "branch");
    let m = Multipart::new().text("branch", "main").file(
        "dockerfile",
        "Dockerfile",
        small_df.as_bytes(),
    );
    let (status, v, _) = post_form(&s, "/v1/images", m);
    assert_error(status, &v, 400, "component");
    // invalid names
    let (status, v, _) = post_form(
        &s,
        "/v1/images",
        form("Img5 IOC;rm", "main", "rocky9", small_df, None),
    );
    assert_eq!(status, 400, "{v}");
    let (status, v, _) = post_form(
        &s,
        "/v1/images",
        form("Img5_IOC", "main", "../rocky9", small_df, None),
    );
    assert_eq!(status, 400, "{v}");

    // keys
    let c = client();
    let (status, v, _) = post_form_with(
        &c,
        &s,
        "/v1/images",
        form("Img5_IOC", "main", "rocky9", small_df, None),
        None,
    );
    assert_eq!(status, 401, "{v}");
    assert_eq!(v["status"], "error");
    let (status, v, _) = post_form_with(
        &c,
        &s,
        "/v1/images",
        form("Img5_IOC", "main", "rocky9", small_df, None),
        Some("not-a-key"),
    );
    assert_eq!(status, 401, "{v}");
    let (status, v, _) = post_form_with(
        &c,
        &s,
        "/v1/images",
        form("Img5_IOC", "main", "rocky9", small_df, None),
        Some(READ_KEY),
    );
    assert_eq!(status, 403, "{v}");
    assert_eq!(v["status"], "error");

    // unknown images
    let (status, v) = get_json(&s, "/v1/images/Img5_IOC/main/rocky9");
    assert_error(status, &v, 404, "Img5_IOC");
    let (status, v) = get_json(&s, "/image?component=Img5_IOC&branch=main&arch=rocky9");
    assert_error(status, &v, 404, "Img5_IOC");
    let (status, v) = json_of(
        client()
            .get(s.url("/image"))
            .json(&json!({"component": "nothing-here", "architecture": "rocky9"}))
            .send()
            .unwrap(),
    );
    assert_error(status, &v, 404, "nothing-here");
    let (status, v) = get_json(&s, "/v1/images");
    assert_eq!(status, 200);
    assert_eq!(v["images"], json!([]));
    let (_, jobs) = get_json(&s, "/v1/jobs");
    assert_eq!(jobs["jobs"], json!([]), "nothing was queued: {jobs}");
}

#[test]
fn a_missing_podman_is_a_503() {
    let s = Server::start_with(&image_config(
        "podman_build = [\"/nonexistent/podman\", \"build\"]\n",
    ));
    let (status, v, _) = post_form(
        &s,
        "/v1/images?wait=true",
        form("Img5b_IOC", "main", "rocky9", "FROM scratch\n", None),
    );
    assert_error(status, &v, 503, "podman");
    assert!(
        v["errorMessage"]
            .as_str()
            .unwrap()
            .contains("/nonexistent/podman"),
        "{v}"
    );
    let (_, jobs) = get_json(&s, "/v1/jobs");
    assert_eq!(jobs["jobs"], json!([]), "nothing was queued: {jobs}");
}

#[test]
fn without_a_registry_the_image_stays_local() {
    let _cleanup = LocalImages("localhost/img6-ioc-");
    let s = Server::start_with(&config_with_keys(""));
    let (status, v, _) = post_form(
        &s,
        "/v1/images?wait=true",
        form(
            "Img6_IOC",
            "dev/local",
            "rocky9",
            &dockerfile("RUN echo local-t6 > /where.txt\n"),
            None,
        ),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "success", "{v}");
    assert_eq!(v["location"], "local", "{v}");
    assert!(v["pullCommand"].is_null(), "{v}");
    assert!(
        v["note"].as_str().is_some_and(|n| n.contains("registry")),
        "{v}"
    );
    let image = v["imageName"].as_str().unwrap();
    assert_eq!(image, "localhost/img6-ioc-dev-local-image:rocky9");
    let key = v["key"].as_str().unwrap();
    assert_eq!(
        v["immutableName"],
        format!("localhost/img6-ioc-dev-local-image:rocky9-{}", &key[..12])
    );
    podman_ok(&["image", "exists", image]);
    podman_ok(&["image", "exists", v["immutableName"].as_str().unwrap()]);
    assert_eq!(cat_in_image(image, "/where.txt"), "local-t6\n");
    let job = wait_job(&s, v["job"].as_str().unwrap());
    assert_eq!(step_names(&job), ["build", "index"], "{job}");
    assert!(job_log(&s, v["job"].as_str().unwrap()).contains("no registry is configured"));

    let (status, got) = get_json(&s, "/image?component=Img6_IOC&branch=dev/local");
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["status"], "found");
    assert_eq!(got["location"], "local");
    assert_eq!(got["digest"], v["digest"]);
}

#[test]
fn original_api_post_image_with_a_named_dockerfile() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dockerfiles");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("test-ioc-dev-patrick-rocky9"),
        dockerfile("RUN echo patrick-t7 > /who.txt\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("other-ioc-main-rocky9"),
        dockerfile("RUN echo other-t7 > /who.txt\n"),
    )
    .unwrap();
    std::fs::write(tmp.path().join("secret"), "FROM scratch\n").unwrap();
    let s = Server::start_with(&image_config(&format!(
        "registry = \"{}\"\ntls_verify = false\ndockerfiles_dir = \"{}\"\n",
        reg.addr(),
        dir.display()
    )));
    let post = |query: &str, body: Value, key: Option<&str>| {
        let mut rb = client().post(s.url(&format!("/image{query}"))).json(&body);
        if let Some(k) = key {
            rb = rb.header("Authorization", bearer(k));
        }
        json_of(rb.send().unwrap())
    };

    let (status, v) = post(
        "?wait=true",
        json!({"dockerfile": "test-ioc-dev-patrick-rocky9", "arch": "rocky9"}),
        Some(WRITE_KEY),
    );
    assert_eq!(status, 200, "{v}");
    assert_pushed(&v, &reg.addr(), "test-ioc-dev-patrick-rocky9", "rocky9");
    assert_eq!(
        v["imageName"],
        format!("{}/test-ioc-dev-patrick-rocky9:rocky9", reg.addr())
    );
    assert!(reg
        .catalog()
        .contains(&"test-ioc-dev-patrick-rocky9".to_owned()));
    podman_ok(&[
        "pull",
        "--tls-verify=false",
        v["immutableName"].as_str().unwrap(),
    ]);
    assert_eq!(
        cat_in_image(v["immutableName"].as_str().unwrap(), "/who.txt"),
        "patrick-t7\n"
    );

    // GET /image with a JSON body
    let (status, got) = json_of(
        client()
            .get(s.url("/image"))
            .json(&json!({"component": "test-ioc-dev-patrick-rocky9", "architecture": "rocky9"}))
            .send()
            .unwrap(),
    );
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["status"], "found");
    assert_eq!(got["digest"], v["digest"]);
    assert_eq!(got["imageName"], v["imageName"]);

    // the same again: a cache hit
    let (status, hit) = post(
        "",
        json!({"dockerfile": "test-ioc-dev-patrick-rocky9", "architecture": "rocky9"}),
        Some(WRITE_KEY),
    );
    assert_eq!(status, 200, "{hit}");
    assert_eq!(hit["cached"], true, "{hit}");
    assert_eq!(hit["digest"], v["digest"]);

    // without wait: 202 with the job
    let (status, q) = post(
        "",
        json!({"dockerfile": "other-ioc-main-rocky9", "arch": "rocky9"}),
        Some(WRITE_KEY),
    );
    assert_eq!(status, 202, "{q}");
    assert_eq!(q["status"], "queued");
    assert_job_success(&s, q["job"].as_str().unwrap());
    let (status, got) = get_json(
        &s,
        "/image?component=other-ioc-main-rocky9&architecture=rocky9",
    );
    assert_eq!(status, 200, "{got}");
    assert_eq!(
        got["imageName"],
        format!("{}/other-ioc-main-rocky9:rocky9", reg.addr())
    );

    // refused names: JSON errors, nothing read outside the directory
    for bad in ["../secret", "sub/file", "..", ".hidden", ""] {
        let (status, v) = post(
            "?wait=true",
            json!({"dockerfile": bad, "arch": "rocky9"}),
            Some(WRITE_KEY),
        );
        assert_eq!(status, 400, "{bad:?}: {v}");
        assert_eq!(v["status"], "error", "{v}");
    }
    let (status, v) = post(
        "?wait=true",
        json!({"dockerfile": "no-such-dockerfile", "arch": "rocky9"}),
        Some(WRITE_KEY),
    );
    assert_error(status, &v, 400, "no-such-dockerfile");
    let (status, v) = post("", json!({"arch": "rocky9"}), Some(WRITE_KEY));
    assert_error(status, &v, 400, "dockerfile");
    let (status, v) = post(
        "",
        json!({"dockerfile": "test-ioc-dev-patrick-rocky9"}),
        None,
    );
    assert_eq!(status, 401, "{v}");
    assert_eq!(v["status"], "error");
    let (status, v) = post(
        "",
        json!({"dockerfile": "test-ioc-dev-patrick-rocky9"}),
        Some(READ_KEY),
    );
    assert_eq!(status, 403, "{v}");
    assert_eq!(v["status"], "error");
    let (status, v) = json_of(
        client()
            .post(s.url("/image"))
            .header("Authorization", bearer(WRITE_KEY))
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .unwrap(),
    );
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["status"], "error");
}

#[test]
fn concurrent_requests_join_only_when_they_build_the_same_thing() {
    let reg = Registry::start();
    let s = Server::start_with(&registry_config(&reg.addr()));
    let a = dockerfile("RUN sleep 3 && echo version-a-t8 > /v.txt\n");
    let b = dockerfile("RUN echo version-b-t8 > /v.txt\n");

    // the same request twice while the first is running: one job
    let (status, qa, _) = post_form(
        &s,
        "/v1/images",
        form("Img8_IOC", "main", "rocky9", &a, None),
    );
    assert_eq!(status, 202, "{qa}");
    assert_eq!(qa["joined"], false, "{qa}");
    let (status, qa2, _) = post_form(
        &s,
        "/v1/images",
        form("Img8_IOC", "main", "rocky9", &a, None),
    );
    assert_eq!(status, 202, "{qa2}");
    assert_eq!(
        qa2["job"], qa["job"],
        "an identical request joins the running job"
    );
    assert_eq!(qa2["joined"], true, "{qa2}");

    // another Dockerfile for the same (component, branch, arch) while A
    // runs: its answer must be an image built from *its* Dockerfile
    let (status, vb, _) = post_form(
        &s,
        "/v1/images?wait=true",
        form("Img8_IOC", "main", "rocky9", &b, None),
    );
    assert_eq!(status, 200, "{vb}");
    assert_eq!(vb["status"], "success", "{vb}");
    assert_ne!(
        vb["job"], qa["job"],
        "a request with another Dockerfile must not join the running build of A: {vb}"
    );
    let ja = wait_job(&s, qa["job"].as_str().unwrap());
    assert_eq!(ja["state"], "success", "{ja}");
    assert_ne!(vb["key"], ja["result"]["image"]["key"], "{vb}");
    let immutable = vb["immutableName"].as_str().unwrap();
    podman_ok(&["pull", "--tls-verify=false", immutable]);
    assert_eq!(cat_in_image(immutable, "/v.txt"), "version-b-t8\n");
}
