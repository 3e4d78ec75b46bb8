//! Refused requests, a missing podman, and images without a registry.

use super::*;

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
