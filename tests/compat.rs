//! Drop-in compatibility with the lab's existing Python build scripts: the
//! real server (see `common`) driven by `tests/compat/client.py`, a client
//! written the way those scripts are (`requests` with a JSON body even on
//! GET, `tarfile` 'r:gz', `PUT /component` from a shared path without a key).
//!
//! These tests need `python3` with `requests` (installed by `.ci/test.sh`);
//! they fail, not skip, when it is missing.

mod common;
#[path = "common/registry.rs"]
mod registry;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Once;

use common::*;
use serde_json::{json, Value};

// ---------------------------------------------------------------- helpers

const CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/compat/client.py");

/// Panics (the test fails) unless `python3` can import `requests`.
fn require_python() {
    static CHECK: Once = Once::new();
    CHECK.call_once(|| {
        let out = Command::new("python3")
            .args([
                "-c",
                "import requests, tarfile; print(requests.__version__)",
            ])
            .output()
            .unwrap_or_else(|e| {
                panic!("python3 is required by the compat tests (run .ci/test.sh): {e}")
            });
        assert!(
            out.status.success(),
            "python3 with `requests` is required by the compat tests (run .ci/test.sh): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// The result of one run of the Python client.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// Everything the client printed (for assertion messages and searches).
    fn output(&self) -> String {
        format!(
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }

    fn assert_ok(&self, what: &str) {
        assert!(self.ok(), "{what}: the client failed\n{}", self.output());
    }

    /// The HTTP status `publish` printed on its first line.
    fn published_status(&self) -> u16 {
        self.stdout
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or_else(|| panic!("publish printed no status code\n{}", self.output()))
    }
}

fn python_client(args: &[&str]) -> Run {
    require_python();
    let out: Output = Command::new("python3")
        .arg(CLIENT)
        .args(args)
        .env("LINUX_USERNAME", "jdoe")
        .env("GITHUB_USERNAME", "jdoe-gh")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("run python3 tests/compat/client.py");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The base URL the scripts use (`base + 'component'`).
fn base(s: &Server) -> String {
    format!("{}/", s.base)
}

fn download(s: &Server, component: &str, tag: &str, arch: &str, dir: &Path) -> Run {
    python_client(&[
        "download",
        &base(s),
        component,
        tag,
        arch,
        dir.to_str().expect("utf-8 path"),
    ])
}

fn publish(s: &Server, component: &str, tag: &str, path: &Path) -> Run {
    python_client(&[
        "publish",
        &base(s),
        component,
        tag,
        path.to_str().expect("utf-8 path"),
    ])
}

/// A server whose `[compat]` section imports from `<tmp>/shared` and, when
/// `trusted`, trusts 127.0.0.0/8 for `PUT /component` without a key. The
/// directory `<tmp>/outside` is not an import root.
struct Lab {
    server: Server,
    shared: PathBuf,
    outside: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Lab {
    fn start(trusted: bool) -> Lab {
        let tmp = tempfile::tempdir().expect("tempdir");
        let shared = tmp.path().join("shared");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(&shared).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        let roots = toml_str(&shared);
        let trusted = if trusted {
            "trusted_networks = [\"127.0.0.0/8\"]\n"
        } else {
            ""
        };
        // config_with_keys puts this before the [[auth.keys]] tables: every
        // top-level key is already above, so a [compat] header is fine here.
        let config = config_with_keys(&format!("[compat]\nimport_roots = [{roots}]\n{trusted}"));
        let server = Server::start_with(&config);
        Lab {
            server,
            shared,
            outside,
            _tmp: tmp,
        }
    }

    fn out_dir(&self, name: &str) -> PathBuf {
        let d = self._tmp.path().join("out").join(name);
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}

/// A TOML literal string holding `p`.
fn toml_str(p: &Path) -> String {
    let s = p.to_str().expect("utf-8 temp path");
    assert!(!s.contains('\''), "temp path with a quote: {s}");
    format!("'{s}'")
}

fn write(path: &Path, bytes: &[u8]) {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(path, bytes).unwrap();
}

/// Asserts that `dir/<tag>/` holds exactly `files` (path, content).
fn assert_extracted(dir: &Path, tag: &str, files: &[(&str, &[u8])]) {
    let root = dir.join(tag);
    assert!(root.is_dir(), "{} was not extracted", root.display());
    let mut found: Vec<String> = walkdir::WalkDir::new(&root)
        .into_iter()
        .map(|e| e.expect("walk"))
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            e.path()
                .strip_prefix(&root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    found.sort();
    let mut want: Vec<String> = files.iter().map(|(p, _)| p.to_string()).collect();
    want.sort();
    assert_eq!(found, want, "files extracted under {}", root.display());
    for (p, data) in files {
        let got = std::fs::read(root.join(p)).unwrap();
        assert_eq!(&got, data, "content of {tag}/{p}");
    }
}

/// The downloaded `<dir>/<tag>.tar.gz`, checked to be gzip.
fn downloaded_gz(dir: &Path, tag: &str) -> Vec<u8> {
    let p = dir.join(format!("{tag}.tar.gz"));
    let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert!(
        bytes.starts_with(&[0x1f, 0x8b]),
        "{} is not gzip: {:?}",
        p.display(),
        String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
    );
    bytes
}

/// `PUT /component` as the scripts send it, straight from Rust (no key).
fn put_component(s: &Server, component: &str, tag: &str, path: &Path) -> (u16, Value) {
    json_of(
        client()
            .put(s.url("/component"))
            .json(&json!({"component": component, "results_tarball": path, "tag": tag}))
            .send()
            .expect("PUT /component"),
    )
}

/// Asserts that nothing at all is stored under `component`.
fn assert_nothing_stored(s: &Server, component: &str, tag: &str) {
    let (status, v) = json_of(
        client()
            .get(s.url(&format!("/v1/components/{component}/{tag}/rocky9/info")))
            .send()
            .unwrap(),
    );
    assert_eq!(status, 404, "{component} {tag} was stored: {v}");
    let (status, v) = json_of(
        client()
            .get(s.url(&format!("/v1/components/{component}")))
            .send()
            .unwrap(),
    );
    assert_eq!(status, 404, "{component} has stored versions: {v}");
}

fn assert_refused_403(run: &Run, direct: &(u16, Value), what: &str) {
    assert!(!run.ok(), "{what}: the publish succeeded\n{}", run.output());
    assert_eq!(run.published_status(), 403, "{what}\n{}", run.output());
    let (status, v) = direct;
    assert_eq!(*status, 403, "{what}: {v}");
    assert_eq!(v["status"], "error", "{what}: {v}");
    assert_eq!(v["code"], "forbidden", "{what}: {v}");
    let msg = v["errorMessage"].as_str().unwrap_or_default();
    assert!(
        msg.contains("import root"),
        "{what}: the error does not say the path is outside the import roots: {v}"
    );
}

const FILES: &[(&str, &[u8])] = &[
    ("bin/linux-x86_64/asynTool", b"#!/bin/sh\necho asyn\n"),
    (
        "lib/linux-x86_64/libasyn.so",
        b"\x7fELF not really a library",
    ),
    ("configure/RELEASE", b"EPICS_BASE=/opt/epics/base\n"),
];

// ---------------------------------------------------------------- tests

#[test]
fn python_client_publishes_from_the_shared_mount_and_downloads_gzip() {
    let lab = Lab::start(true);
    let s = &lab.server;
    let big = noise(7, 3 << 20);
    let mut files = FILES.to_vec();
    files.push(("lib/linux-x86_64/libasyn.a", &big));
    let files = &files[..];
    let tarball = lab.shared.join("asyn/R4.39.tar.gz");
    write(&tarball, &tar_gz("R4.39", files));

    // publish: no key, the client is on a trusted network
    let run = publish(s, "asyn", "R4.39", &tarball);
    run.assert_ok("publish from the shared mount");
    assert_eq!(run.published_status(), 201, "{}", run.output());

    // stored for the default arch, with the identity headers recorded
    let (status, info) = json_of(
        client()
            .get(s.url("/v1/components/asyn/R4.39/rocky9/info"))
            .send()
            .unwrap(),
    );
    assert_eq!(status, 200, "{info}");
    let rec = &info["component"];
    assert_eq!(rec["uploaded_by"]["linux_username"], "jdoe", "{info}");
    assert_eq!(rec["uploaded_by"]["github_username"], "jdoe-gh", "{info}");
    let zst_hash = rec["blake3"].as_str().expect("blake3").to_owned();

    // the same publish again: unchanged, still 2xx
    let again = publish(s, "asyn", "R4.39", &tarball);
    again.assert_ok("publishing the same tarball again");
    assert_eq!(again.published_status(), 200, "{}", again.output());

    // download for an explicit arch
    let d1 = lab.out_dir("rocky9");
    download(s, "asyn", "R4.39", "rocky9", &d1).assert_ok("download arch rocky9");
    assert_extracted(&d1, "R4.39", files);
    let gz1 = downloaded_gz(&d1, "R4.39");
    assert!(
        gz1.len() > 2 << 20,
        "the download spans several 1 MiB chunks"
    );

    // download with arch "null": the default arch
    let d2 = lab.out_dir("null");
    download(s, "asyn", "R4.39", "null", &d2).assert_ok("download arch \"null\"");
    assert_extracted(&d2, "R4.39", files);
    let gz2 = downloaded_gz(&d2, "R4.39");

    // the gzip form is made once and stored: the same bytes every time,
    // served from the store by content under its own hash
    assert!(
        gz1 == gz2,
        "the second gzip download differs from the first"
    );
    let rest = client()
        .get(s.url("/v1/components/asyn/R4.39/rocky9?format=tar.gz"))
        .send()
        .unwrap();
    assert_eq!(rest.status(), 200);
    let etag = rest
        .headers()
        .get("etag")
        .expect("etag")
        .to_str()
        .unwrap()
        .trim_matches('"')
        .to_owned();
    assert_eq!(rest.bytes().unwrap().as_ref(), &gz1[..]);
    assert_eq!(etag, blake3::hash(&gz1).to_hex().to_string());
    assert_ne!(etag, zst_hash, "the gzip form has its own hash");
    let blob = client()
        .get(s.url(&format!("/v1/blobs/{etag}")))
        .send()
        .unwrap();
    assert_eq!(blob.status(), 200, "the gzip form is not stored as a blob");
    assert_eq!(blob.bytes().unwrap().as_ref(), &gz1[..]);

    // their documented curl sends accept: application/json and wants the file
    python_client(&["check-json-accept", &base(s), "asyn", "R4.39"])
        .assert_ok("download with accept: application/json");
}

#[test]
fn zstd_and_plain_tar_from_the_shared_mount_download_as_gzip() {
    let lab = Lab::start(true);
    let s = &lab.server;
    let files: &[(&str, &[u8])] = &[
        ("db/motor.db", b"record(motor, \"$(P)$(M)\") {}\n"),
        ("README", b"motor module\n"),
    ];

    let plain = lab.shared.join("motor/R7-3.tar");
    write(&plain, &plain_tar("R7-3", files));
    let zst = lab.shared.join("motor/R7-4.tar.zst");
    let zst_bytes = zstd::encode_all(&plain_tar("R7-4", files)[..], 3).unwrap();
    write(&zst, &zst_bytes);

    for (tag, path) in [("R7-3", &plain), ("R7-4", &zst)] {
        let run = publish(s, "motor", tag, path);
        run.assert_ok(&format!("publish {}", path.display()));
        assert_eq!(run.published_status(), 201, "{}", run.output());

        let d = lab.out_dir(tag);
        download(s, "motor", tag, "rocky9", &d).assert_ok(&format!("download motor {tag}"));
        downloaded_gz(&d, tag);
        assert_extracted(&d, tag, files);
    }

    // build output without the tag's directory on top: put under <tag>/,
    // where the scripts look for it after extractall
    let flat = lab.shared.join("motor/R7-5-flat.tar.gz");
    write(&flat, &tar_gz("", files));
    let run = publish(s, "motor", "R7-5", &flat);
    run.assert_ok("publish a tarball without the tag directory");
    let d = lab.out_dir("R7-5");
    download(s, "motor", "R7-5", "null", &d).assert_ok("download motor R7-5");
    downloaded_gz(&d, "R7-5");
    assert_extracted(&d, "R7-5", files);
}

#[test]
fn results_tarball_outside_the_import_roots_is_refused() {
    let lab = Lab::start(true);
    let s = &lab.server;
    let outside = lab.outside.join("asyn.tar.gz");
    write(&outside, &tar_gz("R4.39", FILES));

    let run = publish(s, "asyn", "R4.39", &outside);
    let direct = put_component(s, "asyn", "R4.39", &outside);
    assert_refused_403(&run, &direct, "a path outside the import roots");
    assert_nothing_stored(s, "asyn", "R4.39");

    // `..` out of the shared mount
    let dotdot = lab.shared.join("../outside/asyn.tar.gz");
    let run = publish(s, "asyn", "R4.39", &dotdot);
    let direct = put_component(s, "asyn", "R4.39", &dotdot);
    assert_refused_403(&run, &direct, "a path leaving the import root with ..");
    assert_nothing_stored(s, "asyn", "R4.39");
}

#[test]
fn symlink_in_the_import_root_pointing_outside_is_refused() {
    let lab = Lab::start(true);
    let s = &lab.server;
    let target = lab.outside.join("secret.tar.gz");
    write(&target, &tar_gz("R1", &[("secret", b"not for the store")]));

    // a symlinked file
    let link = lab.shared.join("link.tar.gz");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let run = publish(s, "leak", "R1", &link);
    let direct = put_component(s, "leak", "R1", &link);
    assert_refused_403(&run, &direct, "a symlink to a file outside");
    assert_nothing_stored(s, "leak", "R1");

    // a symlinked directory
    let dir_link = lab.shared.join("elsewhere");
    std::os::unix::fs::symlink(&lab.outside, &dir_link).unwrap();
    let through = dir_link.join("secret.tar.gz");
    let run = publish(s, "leak", "R1", &through);
    let direct = put_component(s, "leak", "R1", &through);
    assert_refused_403(&run, &direct, "a path through a symlinked directory");
    assert_nothing_stored(s, "leak", "R1");
}

#[test]
fn a_miss_prints_the_servers_error_message() {
    let lab = Lab::start(true);
    let s = &lab.server;

    let d = lab.out_dir("miss");
    let run = download(s, "nosuch", "R0.1", "rocky9", &d);
    assert!(
        !run.ok(),
        "a missing component downloaded\n{}",
        run.output()
    );
    assert!(
        !d.join("R0.1.tar.gz").exists(),
        "a file was written for a miss"
    );

    let (status, v) = json_of(
        client()
            .get(s.url("/component"))
            .json(&json!({"component": "nosuch", "tag": "R0.1", "arch": "rocky9"}))
            .send()
            .unwrap(),
    );
    assert_eq!(status, 404, "{v}");
    assert_eq!(v["status"], "error", "{v}");
    let msg = v["errorMessage"].as_str().expect("errorMessage");
    assert!(msg.contains("does not exist"), "{v}");
    assert!(
        run.stdout.contains(msg),
        "the client did not print the server's errorMessage {msg:?}\n{}",
        run.output()
    );
}

#[test]
fn without_trusted_networks_a_publish_without_key_is_401() {
    let lab = Lab::start(false);
    let s = &lab.server;
    let tarball = lab.shared.join("asyn/R4.39.tar.gz");
    write(&tarball, &tar_gz("R4.39", FILES));

    let run = publish(s, "asyn", "R4.39", &tarball);
    assert!(
        !run.ok(),
        "an untrusted publish succeeded\n{}",
        run.output()
    );
    assert_eq!(run.published_status(), 401, "{}", run.output());
    let (status, v) = put_component(s, "asyn", "R4.39", &tarball);
    assert_eq!(status, 401, "{v}");
    assert_eq!(v["status"], "error", "{v}");
    assert_nothing_stored(s, "asyn", "R4.39");

    // with a write key the same request is accepted
    let r = client()
        .put(s.url("/component"))
        .header("Authorization", bearer(WRITE_KEY))
        .json(&json!({"component": "asyn", "results_tarball": tarball, "tag": "R4.39"}))
        .send()
        .unwrap();
    let (status, v) = json_of(r);
    assert_eq!(status, 201, "{v}");
}

/// The scripts' image call: `POST /image {"dockerfile": name, "arch"}` with a
/// Dockerfile from the shared `dockerfiles/` folder, built with podman and
/// pushed to a real registry; they log `response.json()`.
#[test]
fn python_client_builds_an_image_from_a_named_dockerfile() {
    let base_image = registry::busybox_image();
    let reg = registry::Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let dockerfiles = tmp.path().join("dockerfiles");
    std::fs::create_dir_all(&dockerfiles).unwrap();
    let name = "compat-ioc-dev-jdoe-rocky9";
    std::fs::write(
        dockerfiles.join(name),
        format!("FROM {base_image}\nRUN echo from-the-shared-folder > /compat.txt\n"),
    )
    .unwrap();
    let s = Server::start_with(&config_with_keys(&format!(
        "[compat]\ntrusted_networks = [\"127.0.0.0/8\"]\n[image]\nregistry = \"{}\"\ntls_verify = false\ndockerfiles_dir = {}\n",
        reg.addr(),
        toml_str(&dockerfiles)
    )));
    let run = python_client(&["image", &base(&s), name, "rocky9"]);
    run.assert_ok("image");
    let v: Value = serde_json::from_str(run.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(v["status"], "success", "{v}");
    let image = format!("{}/{name}:rocky9", reg.addr());
    assert_eq!(v["imageName"], image.as_str());
    assert!(
        reg.catalog().contains(&name.to_owned()),
        "{:?}",
        reg.catalog()
    );
    assert_eq!(
        registry::cat_in_image(&image, "/compat.txt"),
        "from-the-shared-folder\n"
    );

    // a name that leaves the folder: refused, and the answer is JSON too
    let run = python_client(&["image", &base(&s), "../etc/passwd", "rocky9"]);
    assert!(!run.ok());
    let v: Value = serde_json::from_str(run.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(v["status"], "error", "{v}");
    assert!(
        v["errorMessage"].as_str().unwrap().contains("dockerfile"),
        "{v}"
    );
}
