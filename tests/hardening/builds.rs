//! Items 1, 4 and 6: what a recipe builds or leaves cannot reach outside its tree or see the service.

use super::*;

// --- 1. artifacts never follow symlinks out of the work tree -------------------------------

#[test]
fn item1_artifacts_through_a_symlink_cannot_take_the_store() {
    let mut repos = Repos::new(&[]);
    let s = Server::start_with(&build_config(""));
    let victim = store_victim(&s);
    let blobs_before = files_under(&s.dir.join("data/blobs"));
    let blobs_dir = s.dir.join("data/blobs");
    // an absolute link to the store's blobs, named through a glob
    repos.add_tree("evil-abs", |d| {
        std::fs::write(
            d.join("config.yaml"),
            "build: \"true\"\nartifacts: [\"store/*\"]\n",
        )
        .unwrap();
        std::os::unix::fs::symlink(&blobs_dir, d.join("store")).unwrap();
    });
    // a relative link climbing out of the work tree (data/tmp/work-*/src)
    repos.add_tree("evil-rel", |d| {
        std::fs::write(
            d.join("config.yaml"),
            "build: \"true\"\nartifacts: [\"up/*/*\"]\n",
        )
        .unwrap();
        std::os::unix::fs::symlink("../../../blobs", d.join("up")).unwrap();
    });
    repos.serve();
    for name in ["evil-abs", "evil-rel"] {
        let (st, v) = build(&s, name, &repos.git_url(name));
        assert_eq!(st, 422, "{name}: {v}");
        let msg = v["errorMessage"].as_str().unwrap();
        assert!(msg.contains("symbolic link"), "{name}: {msg}");
        assert_eq!(
            files_under(&s.dir.join("data/blobs")),
            blobs_before,
            "{name} moved blobs"
        );
        victim_intact(&s, &victim);
    }
}

#[test]
fn item1_a_matched_link_to_a_host_file_is_not_packed() {
    let mut repos = Repos::new(&[]);
    let s = Server::start_with(&build_config(""));
    repos.add_tree("link-out", |d| {
        std::fs::write(
            d.join("config.yaml"),
            "build: \"true\"\nartifacts: [\"passwd\"]\n",
        )
        .unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.join("passwd")).unwrap();
    });
    repos.serve();
    let (st, v) = build(&s, "link-out", &repos.git_url("link-out"));
    assert_eq!(st, 422, "{v}");
    let msg = v["errorMessage"].as_str().unwrap();
    assert!(msg.contains("points outside"), "{msg}");
    assert!(
        std::path::Path::new("/etc/passwd").is_file(),
        "host file untouched"
    );
    let r = client()
        .get(s.url("/v1/components/link-out/R1.0/rocky9"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[test]
fn item4_build_output_links_out_of_the_tree_are_refused() {
    let mut repos = Repos::new(&[]);
    let s = Server::start_with(&build_config(""));
    repos.add_tree("mklink", |d| {
        std::fs::write(
            d.join("config.yaml"),
            "build: \"ln -s /etc/passwd passwd && mkdir -p x && ln -s ../../.. x/up\"\n",
        )
        .unwrap();
    });
    repos.serve();
    let (st, v) = build(&s, "mklink", &repos.git_url("mklink"));
    assert_eq!(st, 422, "{v}");
    assert!(
        v["errorMessage"]
            .as_str()
            .unwrap()
            .contains("points outside"),
        "{v}"
    );
}

// --- 6. the sandbox shows the recipe nothing of the service --------------------------------

#[test]
fn item6_the_bwrap_sandbox_hides_keys_config_and_data() {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".ssh")).unwrap();
    std::fs::write(home.path().join(".ssh/id_ed25519"), "PRIVATE KEY").unwrap();
    // a toolchain directory the sandbox mounts (build.sandbox_binds), with
    // the service's own directory (data and config) inside it
    let tmp = tempfile::tempdir().unwrap();
    let tools = tmp.path().join("tools");
    let dir = tools.join("svc");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(tools.join("marker"), "a tool").unwrap();
    let data = dir.join("data");
    let config = dir.join("config.toml");
    let key = home.path().join(".ssh/id_ed25519");
    let probes = [
        data.join("index").display().to_string(),
        data.join("blobs").display().to_string(),
        config.display().to_string(),
        key.display().to_string(),
        "/root".into(),
        "/home".into(),
        "/etc/shadow".into(),
        "/var".into(),
    ];
    let marker = tools.join("marker").display().to_string();
    let mut repos = Repos::new(&[]);
    repos.add_tree("probe", |d| {
        let mut script = String::from("set -u\nmkdir -p report\n: > report/visible\n");
        for p in &probes {
            script.push_str(&format!("[ -e '{p}' ] && echo '{p}' >> report/visible\n"));
        }
        script.push_str(&format!("cat '{marker}' > report/tool\n"));
        script.push_str(
            "id -u > report/uid\nls / > report/root\nenv | cut -d= -f1 | sort > report/env\n",
        );
        std::fs::write(d.join("build.sh"), script).unwrap();
        std::fs::write(
            d.join("config.yaml"),
            "build: build.sh\nartifacts: [report]\n",
        )
        .unwrap();
    });
    repos.serve();
    let s = Server::start_in_env(
        &dir,
        &build_config(&format!(
            "sandbox_binds = [{:?}]",
            tools.display().to_string()
        )),
        &[
            ("HOME", home.path().to_str().unwrap()),
            ("LAB_SECRET_TOKEN", "leaked"),
        ],
    );
    let (st, v) = build(&s, "probe", &repos.git_url("probe"));
    assert_eq!(st, 200, "{v}");
    let body = client()
        .get(s.url("/v1/components/probe/R1.0/rocky9"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    let files = read_tar(&body, false);
    let get = |name: &str| {
        let e = files
            .iter()
            .find(|(p, _)| p == &format!("R1.0/report/{name}"))
            .unwrap_or_else(|| panic!("no {name}"));
        String::from_utf8_lossy(&e.1).into_owned()
    };
    assert_eq!(
        get("tool"),
        "a tool",
        "the configured toolchain directory is mounted"
    );
    assert_eq!(get("visible"), "", "the sandbox saw these host paths");
    assert_eq!(
        get("uid").trim(),
        "1000",
        "the recipe runs as an unprivileged user"
    );
    let root = get("root");
    for hidden in ["home", "root", "srv", "var"] {
        assert!(
            !root.lines().any(|l| l == hidden),
            "/{hidden} visible: {root}"
        );
    }
    assert!(!get("env").contains("LAB_SECRET_TOKEN"), "{}", get("env"));
}

#[test]
fn item6_podman_gets_no_service_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let rec = tmp.path().join("podman-env");
    let wrapper = tmp.path().join("podman");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\nenv > '{}'\nexit 3\n", rec.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let w = wrapper.display().to_string();
    let repos = Repos::new(&[]);
    repos.add_tree("pm", |d| {
        std::fs::write(
            d.join("config.yaml"),
            "build: make\nimage: localhost/none\n",
        )
        .unwrap();
    });
    let s = Server::start_with_env(
        &config_with_keys(&format!(
            "[build]\nallow_local_urls = true\nsandbox = \"podman\"\npodman_build = [{w:?}]\n\
             [image]\npodman_build = [{w:?}]\n"
        )),
        &[
            ("LAB_SECRET_TOKEN", "leaked"),
            ("AWS_SECRET_ACCESS_KEY", "leaked"),
        ],
    );
    let (st, v) = build(&s, "pm", &repos.file_url("pm"));
    assert_eq!(st, 422, "{v}");
    let env = std::fs::read_to_string(&rec).expect("the wrapper ran");
    assert!(
        !env.contains("leaked"),
        "podman saw the service's secrets:\n{env}"
    );
    assert!(env.contains("PATH="), "{env}");
    std::fs::remove_file(&rec).unwrap();
    // an image build: the same policy
    let form = reqwest::blocking::multipart::Form::new()
        .text("component", "img")
        .text("branch", "main")
        .part(
            "dockerfile",
            reqwest::blocking::multipart::Part::bytes(b"FROM scratch\n".to_vec())
                .file_name("Dockerfile"),
        );
    let (st, v) = json_of(
        client()
            .post(s.url("/v1/images?wait=true"))
            .header("Authorization", bearer(WRITE_KEY))
            .multipart(form)
            .send()
            .unwrap(),
    );
    assert_eq!(st, 422, "{v}");
    let env = std::fs::read_to_string(&rec).expect("the wrapper ran");
    assert!(
        !env.contains("leaked"),
        "podman saw the service's secrets:\n{env}"
    );
}
