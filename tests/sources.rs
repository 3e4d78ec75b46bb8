//! Real sources, over a real `git daemon`: submodules two levels deep (a
//! relative URL, and an absolute https:// URL reachable only through a
//! mirror rewrite) pinned to commits that are not their tips; `.gitmodules`
//! URLs the policy refuses; the clone cache fetching only new objects, and
//! shared by concurrent builds.

mod common;
#[path = "common/repos.rs"]
mod repos;

use common::*;
use repos::Repos;
use serde_json::{json, Value};

fn build(s: &Server, component: &str, tag: &str, url: &str) -> (u16, Value) {
    json_of(
        client()
            .post(s.url("/v1/builds?wait=true"))
            .header("Authorization", bearer(WRITE_KEY))
            .json(&json!({"component": component, "tag": tag, "arch": "rocky9", "url": url}))
            .send()
            .unwrap(),
    )
}

fn files(s: &Server, component: &str, tag: &str) -> Vec<(String, Vec<u8>)> {
    let body = client()
        .get(s.url(&format!("/v1/components/{component}/{tag}/rocky9")))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    read_tar(&body, false)
}

fn file(files: &[(String, Vec<u8>)], path: &str) -> String {
    let (_, d) = files.iter().find(|(p, _)| p == path).unwrap_or_else(|| {
        panic!(
            "no {path} in {:?}",
            files.iter().map(|f| &f.0).collect::<Vec<_>>()
        )
    });
    String::from_utf8_lossy(d).into_owned()
}

/// The commit HEAD names in repo `name`.
fn head(repos: &Repos, name: &str) -> String {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(repos.root.join(name))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Pins `sub` (at `commit`) at `path` in repo `parent`, with `url` in
/// `.gitmodules` (as git would record it), and commits.
fn pin(repos: &Repos, parent: &str, path: &str, url: &str, commit: &str) {
    let dir = repos.root.join(parent);
    let mut gm = std::fs::read_to_string(dir.join(".gitmodules")).unwrap_or_default();
    gm.push_str(&format!(
        "[submodule \"{path}\"]\n\tpath = {path}\n\turl = {url}\n"
    ));
    std::fs::write(dir.join(".gitmodules"), gm).unwrap();
    repos.git(parent, &["add", ".gitmodules"]);
    repos.git(
        parent,
        &[
            "update-index",
            "--add",
            "--cacheinfo",
            &format!("160000,{commit},{path}"),
        ],
    );
    repos.git(parent, &["commit", "-q", "-m", &format!("pin {path}")]);
}

/// Commits a new version of `file` in repo `name`.
fn change(repos: &Repos, name: &str, file: &str, text: &str) {
    std::fs::write(repos.root.join(name).join(file), text).unwrap();
    repos.git(name, &["add", file]);
    repos.git(name, &["commit", "-q", "-m", &format!("{file}: {text}")]);
}

#[test]
fn submodules_two_levels_deep_at_their_pinned_commits() {
    let mut repos = Repos::new(&[]);
    repos.serve();
    let port = repos.port;
    // sub2: pinned at v1, then moves on to v2
    repos.add_tree("sub2", |d| {
        std::fs::write(d.join("sub2.txt"), "sub2 v1\n").unwrap()
    });
    let sub2_v1 = head(&repos, "sub2");
    change(&repos, "sub2", "sub2.txt", "sub2 v2 (tip, not pinned)\n");
    // sub1 pins sub2 by an https URL that only a rewrite makes reachable
    repos.add_tree("sub1", |d| {
        std::fs::write(d.join("sub1.txt"), "sub1 v1\n").unwrap()
    });
    pin(
        &repos,
        "sub1",
        "sub2",
        "https://github.example/lab/sub2",
        &sub2_v1,
    );
    let sub1_pinned = head(&repos, "sub1");
    change(&repos, "sub1", "sub1.txt", "sub1 v2 (tip, not pinned)\n");
    // the parent pins sub1 by a relative URL
    repos.add_tree("parent", |d| {
        std::fs::write(
            d.join("config.yaml"),
            "build: \"cat sub1/sub1.txt sub1/sub2/sub2.txt > pins.txt; ls -a sub1 sub1/sub2 > tree.txt\"\n\
             artifacts: [pins.txt, tree.txt]\n",
        )
        .unwrap();
    });
    pin(&repos, "parent", "sub1", "../sub1", &sub1_pinned);
    repos.git("parent", &["tag", "-f", "R2.0"]);

    let s = Server::start_with(&config_with_keys(&format!(
        "[build]\nsandbox = \"bwrap\"\n[build.git.rewrites]\n\"https://github.example/lab/\" = \"git://127.0.0.1:{port}/\"\n"
    )));
    let (st, v) = build(&s, "parent", "R2.0", &repos.git_url("parent"));
    assert_eq!(st, 200, "{v}");
    let f = files(&s, "parent", "R2.0");
    assert_eq!(file(&f, "R2.0/pins.txt"), "sub1 v1\nsub2 v1\n");
    let tree = file(&f, "R2.0/tree.txt");
    assert!(
        tree.contains("sub2.txt") && tree.contains("sub1.txt"),
        "{tree}"
    );
    let src = &v["component"]["source"];
    let subs = src["submodules"].as_array().unwrap();
    assert_eq!(subs.len(), 2, "{src}");
    assert_eq!(subs[0]["path"], "sub1");
    assert_eq!(subs[0]["url"], format!("git://127.0.0.1:{port}/sub1"));
    assert_eq!(subs[0]["commit"], sub1_pinned.as_str());
    assert_eq!(subs[1]["path"], "sub1/sub2");
    assert_eq!(subs[1]["url"], "https://github.example/lab/sub2");
    assert_eq!(
        subs[1]["fetched_from"],
        format!("git://127.0.0.1:{port}/sub2")
    );
    assert_eq!(subs[1]["commit"], sub2_v1.as_str());
    let log = job_log(&s, v["job"].as_str().unwrap());
    assert!(log.contains("(fetched from git://127.0.0.1"), "{log}");
}

#[test]
fn gitmodules_urls_obey_the_url_policy() {
    let mut repos = Repos::new(&[]);
    repos.serve();
    repos.add_tree("inner", |d| std::fs::write(d.join("x"), "x").unwrap());
    let inner = head(&repos, "inner");
    for (name, url, _) in [
        (
            "evil-file",
            "file:///etc",
            "local repository URLs (file:///etc) are not allowed",
        ),
        (
            "evil-ext",
            "ext::sh -c touch% /tmp/pwned-by-ext",
            "unsupported repository URL",
        ),
    ] {
        repos.add_tree(name, |d| {
            std::fs::write(d.join("config.yaml"), "build: \"true\"\n").unwrap()
        });
        pin(&repos, name, "m", url, &inner);
        repos.git(name, &["tag", "-f", "R2.0"]);
    }
    let s = Server::start_with(&config_with_keys("[build]\nsandbox = \"bwrap\"\n"));
    for (name, needle) in [
        (
            "evil-file",
            "local repository URLs (file:///etc) are not allowed",
        ),
        ("evil-ext", "unsupported repository URL"),
    ] {
        let (st, v) = build(&s, name, "R2.0", &repos.git_url(name));
        assert_eq!(st, 422, "{v}");
        let msg = v["errorMessage"].as_str().unwrap();
        assert!(
            msg.contains("submodule m (m)") && msg.contains(needle),
            "{msg}"
        );
    }
    assert!(!std::path::Path::new("/tmp/pwned-by-ext").exists());
}

/// The byte count the clone cache logged for `url`'s fetch in a job.
fn received(log: &str) -> u64 {
    let line = log
        .lines()
        .find(|l| l.contains("mirror of") && l.contains("bytes received"))
        .unwrap_or_else(|| panic!("no fetch line in {log}"));
    let before = line.split(" bytes received").next().unwrap();
    before.rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn the_clone_cache_fetches_only_new_objects_and_is_shared() {
    let mut repos = Repos::new(&[]);
    repos.serve();
    // a repository with a large first commit, then a small one
    let big = noise(3, 8 << 20);
    repos.add_tree("large", |d| {
        std::fs::write(d.join("blob.bin"), &big).unwrap();
        std::fs::write(d.join("config.yaml"), "build: \"wc -c < blob.bin > size.txt; cat v.txt >> size.txt\"\nartifacts: [size.txt]\n").unwrap();
        std::fs::write(d.join("v.txt"), "one\n").unwrap();
    });
    change(&repos, "large", "v.txt", "two\n");
    repos.git("large", &["tag", "R2.0"]);
    change(&repos, "large", "v.txt", "three\n");
    repos.git("large", &["tag", "R3.0"]);
    change(&repos, "large", "v.txt", "four\n");
    repos.git("large", &["tag", "R4.0"]);
    let s = Server::start_with(&config_with_keys("[build]\nsandbox = \"bwrap\"\n"));
    let url = repos.git_url("large");
    let (st, v) = build(&s, "large", "R1.0", &url);
    assert_eq!(st, 200, "{v}");
    let first = received(&job_log(&s, v["job"].as_str().unwrap()));
    assert!(
        first > 4 << 20,
        "the first fetch brought the history: {first}"
    );
    let (st, v) = build(&s, "large", "R2.0", &url);
    assert_eq!(st, 200, "{v}");
    let second = received(&job_log(&s, v["job"].as_str().unwrap()));
    assert!(
        second < 64 << 10,
        "the second fetch must bring only new objects: {second} bytes"
    );
    assert!(s.dir.join("data/git").read_dir().unwrap().count() >= 1);

    // two builds of one repository at once share the cache
    let handles: Vec<_> = ["R3.0", "R4.0"]
        .into_iter()
        .map(|tag| {
            let (base, url) = (s.base.clone(), url.clone());
            std::thread::spawn(move || {
                let r = client()
                    .post(format!("{base}/v1/builds?wait=true"))
                    .header("Authorization", bearer(WRITE_KEY))
                    .json(&json!({"component": "large", "tag": tag, "arch": "rocky9", "url": url}))
                    .send()
                    .unwrap();
                (tag, r.status().as_u16(), r.text().unwrap())
            })
        })
        .collect();
    for h in handles {
        let (tag, st, body) = h.join().unwrap();
        assert_eq!(st, 200, "{tag}: {body}");
    }
    for (tag, word) in [
        ("R1.0", "one"),
        ("R2.0", "two"),
        ("R3.0", "three"),
        ("R4.0", "four"),
    ] {
        let f = files(&s, "large", tag);
        assert_eq!(
            file(&f, &format!("{tag}/size.txt")),
            format!("{}\n{word}\n", 8 << 20),
            "{tag}"
        );
    }
}
