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

/// Runs git in `dir` with `input` on stdin; its trimmed stdout.
fn git_out(dir: &std::path::Path, args: &[&str], input: &[u8]) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Fixture")
        .env("GIT_AUTHOR_EMAIL", "fixture@example.org")
        .env("GIT_COMMITTER_NAME", "Fixture")
        .env("GIT_COMMITTER_EMAIL", "fixture@example.org")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Writes a tree object exactly as given (no sorting, duplicates kept, as
/// `git mktree` would refuse): entries are (mode, name, object id).
fn raw_tree(dir: &std::path::Path, entries: &[(&str, &str, &str)]) -> String {
    let mut bytes = Vec::new();
    for (mode, name, id) in entries {
        bytes.extend_from_slice(format!("{mode} {name}\0").as_bytes());
        bytes.extend_from_slice(&hex_bytes(id));
    }
    git_out(
        dir,
        &["hash-object", "-t", "tree", "-w", "--literally", "--stdin"],
        &bytes,
    )
}

fn hex_bytes(h: &str) -> Vec<u8> {
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
        .collect()
}

fn resolve_anonymously(s: &Server, component: &str, tag: &str) -> (u16, Value) {
    json_of(
        client()
            .post(s.url("/v1/resolve"))
            .json(&json!({"components": [{"component": component, "tag": tag}], "arch": "rocky9"}))
            .send()
            .unwrap(),
    )
}

#[test]
fn submodule_fan_out_is_bounded_and_resolving_reads_only_the_recipe() {
    let mut repos = Repos::new(&[]);
    repos.serve_logged();
    repos.add_tree("leaf", |d| {
        std::fs::write(d.join("config.yaml"), "build: \"true\"\n").unwrap()
    });
    let leaf = head(&repos, "leaf");
    repos.add_tree("fan", |d| {
        std::fs::write(
            d.join("config.yaml"),
            "dependencies:\n  - leaf: R1.0\nbuild: \"true\"\n",
        )
        .unwrap()
    });
    for i in 0..5 {
        pin(&repos, "fan", &format!("m{i}"), "../leaf", &leaf);
    }
    repos.git("fan", &["tag", "R2.0"]);
    let fan = head(&repos, "fan");
    let s = Server::start_with(&config_with_keys(&format!(
        "[build]\nsandbox = \"bwrap\"\n[build.git]\nmax_submodules = 3\n{}",
        repos.catalog(&["fan", "leaf"])
    )));
    // anonymous: the recipe is read from the tree, no submodule is fetched
    let (st, v) = resolve_anonymously(&s, "fan", "R2.0");
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["status"], "incomplete");
    assert_eq!(v["missing"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(repos.fetches("fan"), 1);
    assert_eq!(
        repos.fetches("leaf"),
        1,
        "leaf is fetched once, as a dependency"
    );
    let mirrors = std::fs::read_dir(s.dir.join("data/git"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "git"))
        .count();
    assert_eq!(mirrors, 2, "no mirror made for submodules");
    // the commit in any abbreviation or case, a missing tag twice: no fetch
    for r in [
        &fan[..7],
        &fan[..9],
        &fan[..12].to_uppercase(),
        fan.as_str(),
    ] {
        let (st, v) = resolve_anonymously(&s, "fan", r);
        assert_eq!(st, 200, "{r}: {v}");
        assert_eq!(v["entries"][1]["source"]["commit"], fan.as_str(), "{v}");
    }
    for _ in 0..2 {
        let (st, v) = resolve_anonymously(&s, "fan", "nope");
        assert_error(st, &v, 422, "no tag, branch or commit named 'nope'");
    }
    assert_eq!(
        repos.fetches("fan"),
        1,
        "lookups fetched the repository again"
    );
    // a build checks submodules out: at most max_submodules of them
    let (st, v) = build(&s, "fan", "R2.0", &repos.git_url("fan"));
    assert_error(
        st,
        &v,
        422,
        "more than 3 submodules in one checkout (build.git.max_submodules)",
    );
    assert!(repos.fetches("leaf") <= 4, "{}", repos.fetches("leaf"));
}

#[test]
fn a_silent_git_server_neither_hangs_resolves_nor_stalls_downloads() {
    use std::net::TcpListener;
    use std::time::{Duration, Instant};
    // accepts connections and never says a word
    let hole = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = hole.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in hole.incoming() {
            held.push(c);
        }
    });
    let s = Server::start_with(&config_with_keys(&format!(
        "[build]\nsandbox = \"bwrap\"\n[build.git]\ntimeout_secs = 2\nconnect_timeout_secs = 2\n\
         max_concurrent_fetches = 1\nmax_waiting_fetches = 2\n\
         [build.catalog]\nhang = \"git://127.0.0.1:{port}/hang\"\n"
    )));
    let (st, v) = json_of(
        client()
            .put(s.url("/v1/components/base/R1.0/rocky9"))
            .header("Authorization", bearer(WRITE_KEY))
            .body(tar_gz("R1.0", &[("lib/x.txt", b"x\n")]))
            .send()
            .unwrap(),
    );
    assert_eq!(st, 201, "{v}");
    let t0 = Instant::now();
    let askers: Vec<_> = (0..40)
        .map(|_| {
            let base = s.base.clone();
            std::thread::spawn(move || {
                let r = client()
                    .post(format!("{base}/v1/resolve"))
                    .json(&json!({"components": [{"component": "hang", "tag": "R1.0"}]}))
                    .send()
                    .unwrap();
                let retry = r.headers().get("retry-after").is_some();
                let (st, v) = json_of(r);
                (st, retry, v)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..5 {
        let t = Instant::now();
        let r = client()
            .get(s.url("/v1/components/base/R1.0/rocky9"))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().unwrap();
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "a download took {:?} while resolves hung",
            t.elapsed()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (mut busy, mut failed) = (0, 0);
    for a in askers {
        let (st, retry, v) = a.join().unwrap();
        match st {
            503 => {
                assert!(retry, "503 without Retry-After: {v}");
                assert_error_code(st, &v, 503, "busy", "retry later");
                busy += 1;
            }
            _ => {
                assert_error(st, &v, 422, "cannot fetch");
                let msg = v["errorMessage"].as_str().unwrap().to_lowercase();
                for leak in ["timed out", "timeout", "refused", "os error", "errno"] {
                    assert!(!msg.contains(leak), "the answer tells {leak:?}: {msg}");
                }
                failed += 1;
            }
        }
    }
    assert!(busy >= 30, "{busy} busy, {failed} failed");
    assert!(failed >= 1, "{busy} busy, {failed} failed");
    assert!(
        t0.elapsed() < Duration::from_secs(30),
        "resolves took {:?}",
        t0.elapsed()
    );
}

#[test]
fn submodules_on_other_hosts_are_refused_and_errors_tell_nothing_of_the_network() {
    use std::net::TcpListener;
    let mut repos = Repos::new(&[]);
    repos.serve();
    let port = repos.port;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let lport = listener.local_addr().unwrap().port();
    repos.add_tree("inner", |d| std::fs::write(d.join("x"), "x").unwrap());
    let inner = head(&repos, "inner");
    for (name, url) in [
        (
            "ssrf",
            format!("http://127.0.0.1:{lport}/internal/secret-admin?x=1"),
        ),
        ("ssrf-ssh", format!("ssh://git@127.0.0.1:{lport}/x")),
        ("gone", "../nothere".to_owned()),
    ] {
        repos.add_tree(name, |d| {
            std::fs::write(d.join("config.yaml"), "build: \"true\"\n").unwrap()
        });
        pin(&repos, name, "m", &url, &inner);
        repos.git(name, &["tag", "R2.0"]);
    }
    let s = Server::start_with(&config_with_keys("[build]\nsandbox = \"bwrap\"\n"));
    for name in ["ssrf", "ssrf-ssh"] {
        let (st, v) = build(&s, name, "R2.0", &repos.git_url(name));
        assert_error(
            st,
            &v,
            422,
            &format!("is on 127.0.0.1:{lport}, not on its parent's host (127.0.0.1:{port})"),
        );
        assert!(v["errorMessage"]
            .as_str()
            .unwrap()
            .contains("submodule m (m)"));
    }
    assert!(
        listener.accept().is_err(),
        "the service connected to a port the policy refuses"
    );
    // the parent's own host: allowed, but the repository is not there
    let (st, v) = build(&s, "gone", "R2.0", &repos.git_url("gone"));
    assert_error(
        st,
        &v,
        422,
        &format!(
            "cannot fetch submodule m (m) from git://127.0.0.1:{port}/nothere (as written in .gitmodules)"
        ),
    );
    let log = job_log(&s, v["job"].as_str().unwrap()).to_lowercase();
    let msg = v["errorMessage"].as_str().unwrap().to_lowercase();
    for leak in ["denied", "exported", "early eof", "unexpected", "os error"] {
        assert!(!msg.contains(leak), "the answer tells {leak:?}: {msg}");
        assert!(!log.contains(leak), "the job log tells {leak:?}: {log}");
    }
}

#[test]
fn a_tree_naming_one_entry_twice_is_refused_before_checkout() {
    let mut repos = Repos::new(&[]);
    repos.serve();
    let outside = tempfile::tempdir().unwrap();
    repos.add_tree("evil", |d| {
        std::fs::write(d.join("config.yaml"), "build: \"true\"\n").unwrap()
    });
    let dir = repos.root.join("evil");
    let commit = head(&repos, "evil");
    let cfg = git_out(&dir, &["hash-object", "-w", "config.yaml"], b"");
    // `lnk` a symlink out of the work tree, and `lnk/` a directory whose
    // gitlink libgit2 would make directories for, through the symlink
    let link = git_out(
        &dir,
        &["hash-object", "-w", "--stdin"],
        outside.path().to_str().unwrap().as_bytes(),
    );
    let c = raw_tree(&dir, &[("160000", "c", &commit)]);
    let b = raw_tree(&dir, &[("40000", "b", &c)]);
    let a = raw_tree(&dir, &[("40000", "mkdir-outside-a", &b)]);
    let top = raw_tree(
        &dir,
        &[
            ("100644", "config.yaml", &cfg),
            ("120000", "lnk", &link),
            ("40000", "lnk", &a),
        ],
    );
    let evil = git_out(&dir, &["commit-tree", &top, "-m", "one name twice"], b"");
    repos.git("evil", &["tag", "P6", &evil]);
    let s = Server::start_with(&config_with_keys("[build]\nsandbox = \"bwrap\"\n"));
    let url = repos.git_url("evil");
    // a lock file's name taken by a directory (as such a tree once made)
    let lock = format!(
        "{}.lock",
        &blake3::hash(url.as_bytes()).to_hex().as_str()[..32]
    );
    std::fs::create_dir_all(s.dir.join("data/git").join(&lock).join("x")).unwrap();
    let (st, v) = build(&s, "evil", "R1.0", &url);
    assert_eq!(
        st, 200,
        "a directory under a lock's name is cleaned up: {v}"
    );
    let (st, v) = build(&s, "evil", "P6", &url);
    assert_error(st, &v, 422, "the tree has 'lnk' twice");
    let msg = v["errorMessage"].as_str().unwrap();
    assert!(
        !msg.contains(s.dir.to_str().unwrap()),
        "the answer shows the data directory: {msg}"
    );
    assert!(
        std::fs::read_dir(outside.path()).unwrap().next().is_none(),
        "the checkout wrote outside the work tree"
    );
    assert!(s.dir.join("data/git").join(&lock).is_file());
}

#[test]
fn the_clone_cache_keeps_its_cap_and_the_disk_floor() {
    let mut repos = Repos::new(&[]);
    repos.serve();
    repos.add_tree("small", |d| {
        std::fs::write(d.join("config.yaml"), "build: \"true\"\n").unwrap()
    });
    let big = noise(7, 6 << 20);
    repos.add_tree("large", |d| {
        std::fs::write(d.join("config.yaml"), "build: \"true\"\n").unwrap();
        std::fs::write(d.join("blob.bin"), &big).unwrap();
    });
    let mirrors = |s: &Server| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(s.dir.join("data/git"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "git"))
                    .collect()
            })
            .unwrap_or_default()
    };
    let s = Server::start_with(&config_with_keys(&format!(
        "[build]\nsandbox = \"bwrap\"\n[build.git]\ncache_max_bytes = 3000000\n{}",
        repos.catalog(&["small", "large"])
    )));
    let (st, v) = build(&s, "small", "R1.0", &repos.git_url("small"));
    assert_eq!(st, 200, "{v}");
    let warm = mirrors(&s);
    assert_eq!(warm.len(), 1);
    let (st, v) = resolve_anonymously(&s, "large", "R1.0");
    assert_error(
        st,
        &v,
        422,
        "is larger than the clone cache may hold (build.git.cache_max_bytes = 3000000 bytes)",
    );
    assert_eq!(
        mirrors(&s),
        warm,
        "the warm mirror stays, the large one goes"
    );

    // below the free-space floor nothing is fetched
    let s = Server::start_with(&config_with_keys(&format!(
        "min_free_bytes = 1000000000000000000\n[build]\nsandbox = \"bwrap\"\n{}",
        repos.catalog(&["small"])
    )));
    let (st, v) = resolve_anonymously(&s, "small", "R1.0");
    assert_error(st, &v, 422, "below min_free_bytes");
    assert!(mirrors(&s).is_empty(), "{:?}", mirrors(&s));
}
