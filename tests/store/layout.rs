//! The layout of uploads: a tarball whose only top directory is named like
//! another tag is refused (400 naming both) unless `wrap=true`, on the REST
//! upload and on the original `PUT /component` alike.

use super::*;

fn names(s: &Server, path: &str) -> Vec<String> {
    let dl = get(s, path);
    assert_eq!(dl.status, 200, "{}", dl.text());
    read_tar(&dl.body, false)
        .into_iter()
        .map(|(p, _)| p)
        .collect()
}

#[test]
pub fn another_tags_top_directory_is_refused_unless_wrapped() {
    let s = Server::start();
    let r439 = tar_gz("R4.39", &[("lib/libasyn.so", b"asyn 4.39")]);

    // R4.39/ uploaded as R4.40: refused, naming both, nothing stored
    let r = put(&s, "asyn/R4.40/rocky9", Some(WRITE_KEY), r439.clone());
    let v = assert_error_answer(&r, 400);
    assert_eq!(v["code"], "wrong_top_directory", "{v}");
    let msg = v["errorMessage"].as_str().unwrap();
    assert!(
        msg.contains("R4.39/") && msg.contains("R4.40") && msg.contains("wrap=true"),
        "{msg}"
    );
    assert_error_answer(&get(&s, "/v1/components/asyn/R4.40/rocky9"), 404);

    // with wrap=true: stored under R4.40/ as it is
    let r = put(
        &s,
        "asyn/R4.40/rocky9?wrap=true",
        Some(WRITE_KEY),
        r439.clone(),
    );
    assert_created(&r);
    let files = names(&s, "/v1/components/asyn/R4.40/rocky9");
    assert!(
        files.iter().any(|p| p == "R4.40/R4.39/lib/libasyn.so"),
        "{files:?}"
    );

    // its own tag's directory, and directories that are not tags, go in as before
    assert_created(&put(&s, "asyn/R4.39/rocky9", Some(WRITE_KEY), r439));
    assert_created(&put(
        &s,
        "asyn/R4.41/rocky9",
        Some(WRITE_KEY),
        tar_gz("lib64", &[("libasyn.so", b"asyn 4.41")]),
    ));
    let files = names(&s, "/v1/components/asyn/R4.41/rocky9");
    assert!(
        files.iter().any(|p| p == "R4.41/lib64/libasyn.so"),
        "{files:?}"
    );

    // a tag the component has stored, even one without digits (a branch)
    let main = tar_gz("main", &[("f", b"main")]);
    assert_created(&put(&s, "tool/main/rocky9", Some(WRITE_KEY), main.clone()));
    let r = put(&s, "tool/dev/rocky9", Some(WRITE_KEY), main.clone());
    let v = assert_error_answer(&r, 400);
    assert_eq!(v["code"], "wrong_top_directory", "{v}");
    // another component's "main" is not this one's tag
    assert_created(&put(&s, "other/dev/rocky9", Some(WRITE_KEY), main));

    // wrap must be true or false
    let r = put(&s, "asyn/R4.42/rocky9?wrap=maybe", Some(WRITE_KEY), vec![1]);
    let v = assert_error_answer(&r, 400);
    assert!(v["errorMessage"].as_str().unwrap().contains("wrap"), "{v}");
}

#[test]
pub fn the_original_put_refuses_another_tags_directory_too() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("imports");
    std::fs::create_dir_all(&root).unwrap();
    let tarball = root.join("asyn-R4.39.tar.gz");
    std::fs::write(&tarball, tar_gz("R4.39", &[("lib/libasyn.so", b"4.39")])).unwrap();
    let s = Server::start_with(&config_with_keys(&format!(
        "[compat]\nimport_roots = [{:?}]",
        root.display().to_string()
    )));
    let import = |body: Value| {
        send(
            client()
                .put(s.url("/component"))
                .header("Authorization", bearer(WRITE_KEY))
                .json(&body),
        )
    };
    let path = tarball.display().to_string();
    let r = import(json!({"component": "asyn", "tag": "R4.40", "results_tarball": path}));
    let v = assert_error_answer(&r, 400);
    assert_eq!(v["code"], "wrong_top_directory", "{v}");
    assert!(
        v["errorMessage"].as_str().unwrap().contains("R4.39/"),
        "{v}"
    );
    let r =
        import(json!({"component": "asyn", "tag": "R4.40", "results_tarball": path, "wrap": true}));
    assert_created(&r);
    let files = names(&s, "/v1/components/asyn/R4.40/rocky9");
    assert!(
        files.iter().any(|p| p == "R4.40/R4.39/lib/libasyn.so"),
        "{files:?}"
    );
    let r = import(json!({"component": "asyn", "tag": "R4.39", "results_tarball": path}));
    assert_created(&r);
}
