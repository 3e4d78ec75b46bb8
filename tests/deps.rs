//! Dependency resolution for build scripts, over real git repositories
//! served by `git daemon`, real builds in bubblewrap, the real CLI: one call
//! for a closure, conflicts and cycles, building what is missing, `deps
//! fetch` with its local cache and lock, inputs-keyed reuse, branches, and
//! rebuild checks.

mod common;
#[path = "common/repos.rs"]
mod repos;

use std::path::Path;
use std::process::{Command, Output};

use common::*;
use repos::Repos;
use serde_json::{json, Value};

fn config(repos: &Repos, names: &[&str], extra: &str) -> String {
    config_with_keys(&format!(
        "[build]\nallow_local_urls = true\nsandbox = \"bwrap\"\n{extra}\n{}",
        repos.catalog(names)
    ))
}

fn resolve(s: &Server, body: Value, query: &str) -> (u16, Value) {
    json_of(
        client()
            .post(s.url(&format!("/v1/resolve{query}")))
            .header("Authorization", bearer(WRITE_KEY))
            .json(&body)
            .send()
            .unwrap(),
    )
}

fn build(s: &Server, component: &str, tag: &str) -> Value {
    let (st, v) = json_of(
        client()
            .post(s.url("/v1/builds?wait=true"))
            .header("Authorization", bearer(WRITE_KEY))
            .json(&json!({"component": component, "tag": tag, "arch": "rocky9"}))
            .send()
            .unwrap(),
    );
    assert_eq!(st, 200, "{v}");
    v
}

fn names(v: &Value) -> Vec<String> {
    v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{}@{}",
                e["component"].as_str().unwrap(),
                e["tag"].as_str().unwrap()
            )
        })
        .collect()
}

fn cli(s: &Server, args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_artifact-store"))
        .args(args)
        .args(["--server", &s.base, "--token", WRITE_KEY])
        .current_dir(cwd)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

const ALL: [&str; 4] = ["base", "mid-a", "mid-b", "top"];

#[test]
fn a_chain_and_a_diamond_in_one_call_before_and_after_building() {
    let mut repos = Repos::new(&ALL);
    repos.serve();
    let s = Server::start_with(&config(&repos, &ALL, ""));
    let recipe = "dependencies:\n  - top: R1.0\n";
    // nothing stored yet: the recipes are read from the repositories
    let (st, v) = resolve(&s, json!({"recipe": recipe, "arch": "rocky9"}), "");
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["status"], "incomplete");
    let order = names(&v);
    assert_eq!(order.len(), 4, "{order:?}");
    let pos = |n: &str| order.iter().position(|x| x == n).unwrap();
    assert!(pos("base@R1.0") < pos("mid-a@R1.0") && pos("mid-a@R1.0") < pos("top@R1.0"));
    assert!(pos("mid-b@R1.0") < pos("top@R1.0"));
    let top = &v["entries"][3];
    assert_eq!(top["state"], "missing");
    assert_eq!(
        top["dependencies"],
        json!([{"component": "mid-a", "tag": "R1.0"}, {"component": "mid-b", "tag": "R1.0"}])
    );
    assert_eq!(top["source"]["url"], repos.git_url("top"));
    assert_eq!(top["source"]["commit"].as_str().unwrap().len(), 40);
    assert!(v["lock"].is_null());

    build(&s, "top", "R1.0");
    let (st, v) = resolve(&s, json!({"recipe": recipe}), "");
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["status"], "complete");
    assert_eq!(v["stored"], 4);
    assert_eq!(names(&v), order, "the same order once stored");
    for e in v["entries"].as_array().unwrap() {
        let rec = &e["stored"];
        assert_eq!(rec["blake3"].as_str().unwrap().len(), 64, "{e}");
        assert!(rec["download_url"].as_str().unwrap().starts_with(&s.base));
        assert!(rec["blob_url"]
            .as_str()
            .unwrap()
            .ends_with(rec["blake3"].as_str().unwrap()));
        assert_eq!(rec["source"]["commit"].as_str().unwrap().len(), 40);
    }
    let lock = &v["lock"];
    assert_eq!(lock["lockVersion"], 1);
    assert_eq!(lock["components"].as_array().unwrap().len(), 4);
    // a lock given back is verified
    let (st, again) = resolve(&s, json!({"lock": lock}), "");
    assert_eq!(st, 200, "{again}");
    assert_eq!(again["lock"], *lock);
    // the original API offers the closure too
    let (st, c) = json_of(
        client()
            .get(s.url("/component?component=top&tag=R1.0&view=closure"))
            .send()
            .unwrap(),
    );
    assert_eq!(st, 200, "{c}");
    assert_eq!(names(&c), order);
}

#[test]
fn conflicts_and_cycles_answer_409_naming_the_chains() {
    let mut repos = Repos::new(&["base", "cycle-a", "cycle-b"]);
    repos.git("base", &["tag", "R2.0"]);
    for (name, tag) in [("c1", "R1.0"), ("c2", "R2.0")] {
        repos.add_tree(name, |d| {
            std::fs::write(
                d.join("config.yaml"),
                format!("dependencies:\n  - base: {tag}\nbuild: \"true\"\n"),
            )
            .unwrap();
        });
    }
    repos.serve();
    let s = Server::start_with(&config(
        &repos,
        &["base", "cycle-a", "cycle-b", "c1", "c2"],
        "",
    ));
    let (st, v) = resolve(
        &s,
        json!({"recipe": "dependencies:\n  - c1: R1.0\n  - c2: R1.0\n"}),
        "",
    );
    assert_error_code(st, &v, 409, "dependency_conflict", "two tags of base");
    let msg = v["errorMessage"].as_str().unwrap();
    assert!(msg.contains("config.yaml -> c1@R1.0 -> base@R1.0"), "{msg}");
    assert!(msg.contains("config.yaml -> c2@R1.0 -> base@R2.0"), "{msg}");
    let (st, v) = resolve(
        &s,
        json!({"components": [{"component": "cycle-a", "tag": "R1.0"}]}),
        "",
    );
    assert_error_code(
        st,
        &v,
        409,
        "dependency_cycle",
        "cycle-a@R1.0 -> cycle-b@R1.0 -> cycle-a@R1.0",
    );
}

#[test]
fn build_missing_builds_the_missing_in_order() {
    let mut repos = Repos::new(&["base", "mid-a"]);
    repos.add_tree("top-a", |d| {
        std::fs::write(
            d.join("config.yaml"),
            "dependencies:\n  - mid-a: R1.0\nbuild: \"echo top-a > made\"\n",
        )
        .unwrap();
    });
    repos.serve();
    let s = Server::start_with(&config(&repos, &["base", "mid-a", "top-a"], ""));
    build(&s, "base", "R1.0");
    let body = json!({"recipe": "dependencies:\n  - top-a: R1.0\n", "arch": "rocky9"});
    // anonymous readers may not start builds (build.on_miss)
    let (st, v) = json_of(
        client()
            .post(s.url("/v1/resolve?build_missing=true"))
            .json(&body)
            .send()
            .unwrap(),
    );
    assert_error(st, &v, 404, "build.on_miss");
    let (st, v) = resolve(&s, body.clone(), "?build_missing=true");
    assert_eq!(st, 202, "{v}");
    assert_eq!(
        v["missing"],
        json!([{"component": "mid-a", "tag": "R1.0"}, {"component": "top-a", "tag": "R1.0"}])
    );
    let id = v["job"].as_str().unwrap().to_owned();
    let job = assert_job_success(&s, &id);
    let log = job_log(&s, &id);
    let (a, b) = (
        log.find("==> mid-a R1.0").unwrap(),
        log.find("==> top-a R1.0").unwrap(),
    );
    assert!(a < b, "{log}");
    assert_eq!(job["kind"], "closure");
    let (st, v) = resolve(&s, body, "");
    assert_eq!(st, 200);
    assert_eq!(v["status"], "complete", "{v}");
}

#[test]
fn deps_fetch_downloads_once_and_a_lock_replay_names_a_deleted_tag() {
    let mut repos = Repos::new(&ALL);
    repos.serve();
    let s = Server::start_with(&config(&repos, &ALL, ""));
    build(&s, "top", "R1.0");
    let work = tempfile::tempdir().unwrap();
    std::fs::write(
        work.path().join("config.yaml"),
        "dependencies:\n  - top: R1.0\n",
    )
    .unwrap();
    let blobs = |s: &Server| metric(s, "http_requests_total", &["route=\"/v1/blobs/{blake3}\""]);
    let before = blobs(&s);
    let o = cli(
        &s,
        &["deps", "fetch", "--arch", "rocky9", "--into", "deps"],
        work.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(blobs(&s) - before, 4.0, "four downloads");
    let deps = work.path().join("deps");
    assert_eq!(
        std::fs::read_to_string(deps.join("base/R1.0/lib/libbase.txt")).unwrap(),
        "base R1.0 for rocky9\n"
    );
    assert!(deps.join("top/R1.0").is_dir());
    // env.sh exports what builds get
    let env = Command::new("sh")
        .arg("-c")
        .arg(". ./env.sh && echo \"$ADBS_DEP_MID_A|$ADBS_DEPS\"")
        .current_dir(&deps)
        .output()
        .unwrap();
    let real = deps.canonicalize().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&env.stdout).trim(),
        format!("{}/mid-a/R1.0|{}", real.display(), real.display())
    );
    // again: nothing is downloaded
    let mid = blobs(&s);
    let o = cli(
        &s,
        &["deps", "fetch", "--arch", "rocky9", "--into", "deps"],
        work.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("0 downloaded"),
        "{}",
        text(&o)
    );
    assert_eq!(blobs(&s), mid, "the second fetch downloaded something");
    // resolve prints the table
    let o = cli(&s, &["deps", "resolve", "--arch", "rocky9"], work.path());
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("4 components for rocky9: 4 stored, 0 missing")
    );
    // a lock replayed after a tag was deleted
    let r = client()
        .delete(s.url("/v1/components/base/R1.0/rocky9"))
        .header("Authorization", bearer(ADMIN_KEY))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let lock = deps.join("deps.lock.json");
    let o = cli(
        &s,
        &[
            "deps",
            "fetch",
            "--lock",
            lock.to_str().unwrap(),
            "--into",
            "other",
        ],
        work.path(),
    );
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("base R1.0 (rocky9) is no longer stored"),
        "{err}"
    );
}

#[test]
fn identical_inputs_are_reused_across_tags_and_branches_follow_their_commits() {
    let mut repos = Repos::new(&["base"]);
    repos.git("base", &["tag", "R1.0-rc1"]);
    repos.serve();
    // reuse across tags is on request (see inputs_keys_name_the_repository_component_and_tag)
    let s = Server::start_with(&config(&repos, &["base"], "reuse_across_tags = true"));
    let first = build(&s, "base", "R1.0");
    let inputs = first["component"]["inputs"].as_str().unwrap().to_owned();
    // the other tag on the same commit: no build, the same files under its tag
    let second = build(&s, "base", "R1.0-rc1");
    let rec = &second["component"];
    assert_eq!(rec["inputs"], inputs.as_str());
    assert_eq!(rec["reused_from"]["tag"], "R1.0");
    let log = job_log(&s, second["job"].as_str().unwrap());
    assert!(log.contains("reusing that output"), "{log}");
    assert!(!log.contains("==> build base"), "it built anyway: {log}");
    let body = client()
        .get(s.url("/v1/components/base/R1.0-rc1/rocky9"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    let files = read_tar(&body, false);
    assert!(
        files.iter().any(|(p, _)| p == "R1.0-rc1/lib/libbase.txt"),
        "{files:?}"
    );
    let (st, v) = json_of(
        client()
            .get(s.url(&format!("/v1/inputs/{inputs}")))
            .send()
            .unwrap(),
    );
    assert_eq!(st, 200);
    assert_eq!(v["found"], true);
    assert_eq!(v["components"].as_array().unwrap().len(), 2);
    let (_, v) = json_of(
        client()
            .get(s.url(&format!("/v1/inputs/{}", "0".repeat(64))))
            .send()
            .unwrap(),
    );
    assert_eq!(v["found"], false);
    // the missing-check says so too
    let (_, v) = json_of(
        client()
            .post(s.url("/v1/components/missing"))
            .json(&json!([{"component": "base", "tag": "R1.0-rc2", "arch": "rocky9", "inputs": inputs}]))
            .send()
            .unwrap(),
    );
    assert_eq!(v["same_inputs"][0]["built_as"]["tag"], "R1.0", "{v}");

    // a branch: unchanged is a hit, a new commit is built again
    let b1 = build(&s, "base", "main");
    assert_eq!(b1["component"]["source"]["kind"], "branch");
    let again = build(&s, "base", "main");
    assert_eq!(again["cached"], true, "{again}");
    std::fs::write(repos.root.join("base/NEWS"), "a change\n").unwrap();
    repos.git("base", &["add", "NEWS"]);
    repos.git("base", &["commit", "-q", "-m", "news"]);
    let b2 = build(&s, "base", "main");
    assert!(b2["cached"].is_null(), "{b2}");
    assert_ne!(
        b2["component"]["source"]["commit"],
        b1["component"]["source"]["commit"]
    );
    assert_ne!(b2["component"]["inputs"], b1["component"]["inputs"]);
}

#[test]
fn rebuild_marks_deterministic_builds_reproducible_and_clocks_not() {
    let mut repos = Repos::new(&["base"]);
    repos.add_tree("clock", |d| {
        std::fs::write(d.join("config.yaml"), "build: \"date +%s%N > stamp\"\n").unwrap();
    });
    repos.serve();
    let s = Server::start_with(&config(&repos, &["base", "clock"], ""));
    for (name, want) in [("base", true), ("clock", false)] {
        build(&s, name, "R1.0");
        let (st, v) = json_of(
            client()
                .post(s.url(&format!(
                    "/v1/components/{name}/R1.0/rocky9/rebuild?wait=true"
                )))
                .header("Authorization", bearer(ADMIN_KEY))
                .send()
                .unwrap(),
        );
        assert_eq!(st, 200, "{v}");
        let (_, info) = json_of(
            client()
                .get(s.url(&format!("/v1/components/{name}/R1.0/rocky9/info")))
                .send()
                .unwrap(),
        );
        let r = &info["component"]["reproducible"];
        assert_eq!(r["matched"], want, "{name}: {info}");
        assert_eq!(r["job"], v["job"]);
    }
    // writers may not ask for it
    let r = client()
        .post(s.url("/v1/components/base/R1.0/rocky9/rebuild"))
        .header("Authorization", bearer(WRITE_KEY))
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[test]
fn inputs_keys_name_the_repository_component_and_tag() {
    let mut repos = Repos::new(&[]);
    // the build writes what it was told it builds
    repos.add_tree("who", |d| {
        std::fs::write(
            d.join("config.yaml"),
            "build: \"echo comp=$ADBS_COMPONENT tag=$ADBS_TAG > who.txt\"\nartifacts: [who.txt]\n",
        )
        .unwrap();
    });
    repos.git("who", &["tag", "R1.0-rc1"]);
    // a fork: the same commits, another repository, a tag of its own
    repos::git(&repos.root, &["clone", "-q", "who", "whofork"]);
    repos.git("whofork", &["tag", "EVIL-TAG-from-fork"]);
    repos.serve();
    let s = Server::start_with(&config(&repos, &["who"], ""));
    let who_txt = |component: &str, tag: &str| {
        let body = client()
            .get(s.url(&format!("/v1/components/{component}/{tag}/rocky9")))
            .send()
            .unwrap()
            .bytes()
            .unwrap();
        let files = read_tar(&body, false);
        let (_, d) = files
            .iter()
            .find(|(p, _)| p == &format!("{tag}/who.txt"))
            .unwrap_or_else(|| panic!("{files:?}"));
        String::from_utf8_lossy(d).trim().to_owned()
    };
    // a writer builds the fork under another name first
    let (st, fork) = json_of(
        client()
            .post(s.url("/v1/builds?wait=true"))
            .header("Authorization", bearer(WRITE_KEY))
            .json(
                &json!({"component": "who2", "tag": "R1.0", "arch": "rocky9",
                          "url": repos.git_url("whofork")}),
            )
            .send()
            .unwrap(),
    );
    assert_eq!(st, 200, "{fork}");
    let who = build(&s, "who", "R1.0");
    let rec = &who["component"];
    assert!(
        rec["reused_from"].is_null(),
        "reused the fork's build: {rec}"
    );
    assert_ne!(rec["inputs"], fork["component"]["inputs"]);
    assert_eq!(who_txt("who", "R1.0"), "comp=who tag=R1.0");
    // another tag of the same commit is built, not given R1.0's output
    let rc = build(&s, "who", "R1.0-rc1");
    assert!(rc["component"]["reused_from"].is_null(), "{rc}");
    assert_ne!(rc["component"]["inputs"], rec["inputs"]);
    assert_eq!(who_txt("who", "R1.0-rc1"), "comp=who tag=R1.0-rc1");
}

#[test]
fn lock_names_are_checked_and_the_arch_is_matched_in_any_case() {
    let s = Server::start();
    let (st, v) = json_of(
        client()
            .put(s.url("/v1/components/base/R1.0/rocky9"))
            .header("Authorization", bearer(WRITE_KEY))
            .body(tar_gz("R1.0", &[("lib/x.txt", b"x\n")]))
            .send()
            .unwrap(),
    );
    assert_eq!(st, 201, "{v}");
    let hash = v["component"]["blake3"].as_str().unwrap().to_owned();
    let base =
        json!({"component": "base", "tag": "R1.0", "blake3": hash, "size": 1, "dependencies": []});
    let lock = |arch: &str, roots: Value, comps: Value| json!({"lock": {"lockVersion": 1, "arch": arch, "roots": roots, "components": comps}});
    let root = json!([{"component": "base", "tag": "R1.0"}]);
    for (body, needle) in [
        (
            lock(
                "rocky9",
                json!([{"component": "evil", "tag": "../../x"}]),
                json!([base.clone()]),
            ),
            "lock.roots[0].tag",
        ),
        (
            lock("rocky9", root.clone(), json!([base.clone(), base.clone()])),
            "lock.components[1]: base is listed twice",
        ),
        (
            lock(
                "rocky9",
                root.clone(),
                json!([{"component": "../x", "tag": "R1.0", "blake3": hash, "size": 1}]),
            ),
            "lock.components[0].component",
        ),
        (
            lock(
                "rocky9",
                json!([{"component": "other", "tag": "R1.0"}]),
                json!([base.clone()]),
            ),
            "lock.roots[0]: other R1.0 is not among the lock's components",
        ),
        (
            lock(
                "rocky9",
                root.clone(),
                json!([{"component": "base", "tag": "R1.0", "blake3": "x", "size": 1}]),
            ),
            "lock.components[0].blake3",
        ),
        (
            lock("../x", root.clone(), json!([base.clone()])),
            "architecture",
        ),
    ] {
        let (st, v) = resolve(&s, body, "");
        assert_error(st, &v, 400, needle);
    }
    for arch in ["ROCKY9", "Rocky9", "rocky9"] {
        let (st, v) = resolve(&s, lock(arch, root.clone(), json!([base.clone()])), "");
        assert_eq!(st, 200, "{arch}: {v}");
        assert_eq!(v["status"], "complete");
        assert_eq!(v["arch"], "rocky9");
    }
    let (st, v) = resolve(
        &s,
        json!({"arch": "ROCKY9", "lock": {"lockVersion": 1, "arch": "rocky9", "roots": root, "components": [base.clone()]}}),
        "",
    );
    assert_eq!(st, 200, "{v}");
}
