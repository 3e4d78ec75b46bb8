//! The original API (a named Dockerfile) and concurrent requests.

use super::*;

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
