//! Building, pushing and pulling back; cache hits, no_cache and changed Dockerfiles; names refused.

use super::*;

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
