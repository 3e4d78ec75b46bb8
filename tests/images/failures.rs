//! Failures leave the previous image: a failing Dockerfile, an unreachable registry, failed pushes.

use super::*;

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
