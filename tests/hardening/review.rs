//! Findings of an attacker's review of the hardening, each reproduced as
//! it was reported and now refused.

use super::*;

/// A committed link to `/` named by an artifact glob made the service walk
/// the host (12 minutes of CPU in the pack step). Patterns now match the
/// tree only, never through links.
#[test]
fn an_artifact_glob_through_a_link_to_root_walks_nothing() {
    let mut repos = Repos::new(&[]);
    let s = Server::start_with(&build_config(""));
    repos.add_tree("walker", |d| {
        std::fs::write(
            d.join("config.yaml"),
            "build: \"true\"\nartifacts: [\"evil/usr/**/zz-not-there\"]\n",
        )
        .unwrap();
        std::os::unix::fs::symlink("/", d.join("evil")).unwrap();
    });
    repos.serve();
    let t = Instant::now();
    let (st, v) = build(&s, "walker", &repos.git_url("walker"));
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    assert_eq!(st, 422, "{v}");
    let msg = v["errorMessage"].as_str().unwrap();
    assert!(msg.contains("evil is a symbolic link"), "{msg}");
    // patterns cannot climb out with `..`-like globs either, nor name host paths
    let repos = Repos::new(&[]);
    repos.add_tree("dots", |d| {
        std::fs::write(
            d.join("config.yaml"),
            "build: \"true\"\nartifacts: [\".*/.*/.*/*.toml\"]\n",
        )
        .unwrap();
    });
    let (st, v) = build(&s, "dots", &repos.file_url("dots"));
    assert_eq!(st, 422, "{v}");
    let msg = v["errorMessage"].as_str().unwrap();
    assert!(
        msg.contains("was not produced") && !msg.contains("config.toml"),
        "{msg}"
    );
}

/// A build that left an unreadable directory stopped a non-root service
/// from starting (`data directory: Permission denied`).
#[test]
fn a_non_root_service_starts_over_an_unreadable_leftover() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("svc");
    let left = dir.join("data/tmp/work-left/d/sub");
    std::fs::create_dir_all(&left).unwrap();
    let st = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(&dir)
        .status()
        .expect("chown (this test needs root, as CI has)");
    assert!(
        st.success(),
        "this test needs root to run the service as uid 65534"
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        dir.join("data/tmp/work-left/d"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    std::fs::write(dir.join("config.toml"), "").unwrap();
    let s = Server::start_as(
        &dir,
        &config_with_keys(""),
        &[("HOME", "/nonexistent")],
        &[
            "setpriv",
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
        ],
    );
    let r = client().get(s.url("/readyz")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        !dir.join("data/tmp/work-left").exists(),
        "the leftover was cleared"
    );
}

/// Too many entries (each costs memory when packed) are refused.
#[test]
fn too_many_entries_are_413() {
    let s = Server::start_with(&config_with_keys("max_unpacked_entries = 100"));
    let files: Vec<(String, Vec<u8>)> = (0..300).map(|i| (format!("f{i}"), vec![])).collect();
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    let (st, v) = put(&s, "/v1/components/many/R1/rocky9", tar_gz("R1", &refs));
    assert_error_code(st, &v, 413, "too_large", "entries");
    let (st, _) = put(
        &s,
        "/v1/components/few/R1/rocky9",
        tar_gz("R1", &refs[..50]),
    );
    assert_eq!(st, 201);
}

/// The sandbox binds certificates, not `/etc/ssl/private`.
#[test]
fn the_sandbox_sees_certificates_not_private_keys() {
    let repos = Repos::new(&[]);
    repos.add_tree("ssl", |d| {
        std::fs::write(
            d.join("config.yaml"),
            "build: \"mkdir -p r && (ls /etc/ssl > r/ssl 2>&1; test -e /etc/ssl/private && echo VISIBLE >> r/ssl; true)\"\nartifacts: [r]\n",
        )
        .unwrap();
    });
    let s = Server::start_with(&build_config(""));
    let (st, v) = build(&s, "ssl", &repos.file_url("ssl"));
    assert_eq!(st, 200, "{v}");
    let body = client()
        .get(s.url("/v1/components/ssl/R1.0/rocky9"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    let files = read_tar(&body, false);
    let (_, listing) = files.iter().find(|(p, _)| p == "R1.0/r/ssl").unwrap();
    let listing = String::from_utf8_lossy(listing);
    assert!(
        !listing.contains("VISIBLE") && !listing.contains("private"),
        "{listing}"
    );
}

/// Below the free-space floor, chunked uploads and builds are refused too.
#[test]
fn the_floor_holds_for_chunked_uploads_and_builds() {
    let repos = Repos::new(&["base"]);
    let s = Server::start_with(&build_config("").replace(
        "min_free_bytes = 1048576",
        "min_free_bytes = 1000000000000000",
    ));
    let body = tar_gz("R1", &[("a", b"a")]);
    let chunked = reqwest::blocking::Body::new(std::io::Cursor::new(body));
    let (st, v) = json_of(
        client()
            .put(s.url("/v1/components/ch/R1/rocky9"))
            .header("Authorization", bearer(WRITE_KEY))
            .body(chunked)
            .send()
            .unwrap(),
    );
    assert_error_code(st, &v, 507, "insufficient_storage", "min_free_bytes");
    let (st, v) = build(&s, "base", &repos.file_url("base"));
    assert_eq!(st, 422, "{v}");
    assert!(
        v["errorMessage"]
            .as_str()
            .unwrap()
            .contains("min_free_bytes"),
        "{v}"
    );
}

/// A `Host` header cannot add a path or query to answer URLs.
#[test]
fn a_host_header_with_a_path_is_ignored() {
    let s = Server::start();
    let (st, _) = put(
        &s,
        "/v1/components/h/R1/rocky9",
        tar_gz("R1", &[("a", b"a")]),
    );
    assert_eq!(st, 201);
    let head = "GET /v1/components/h/R1/rocky9/info HTTP/1.1\r\nHost: evil.example/x?y=\r\nConnection: close\r\n\r\n";
    let (status, body) = raw_http(&s, head.as_bytes());
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("evil.example"), "{body}");
}

/// Entry names the file system cannot hold are the archive's fault: 400.
#[test]
fn names_the_file_system_refuses_are_400() {
    let s = Server::start();
    let long = "n".repeat(300);
    let (st, v) = put(
        &s,
        "/v1/components/long/R1/rocky9",
        tar_gz("R1", &[(long.as_str(), b"x")]),
    );
    assert_error_code(st, &v, 400, "bad_archive", "too long");
    let (status, body) = raw_http(
        &s,
        b"PUT /v1/components/a%00b/R1/rocky9 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert!(
        status == 400 || status == 401,
        "{status} {}",
        String::from_utf8_lossy(&body)
    );
}

/// A body trickling a byte just within the idle timeout is still dropped.
#[test]
fn a_trickle_is_dropped() {
    let s = Server::start_with(&config_with_keys("[http]\nbody_idle_secs = 1"));
    let addr = s.base.trim_start_matches("http://").to_owned();
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let head = format!(
        "PUT /v1/components/tr/R1/rocky9 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {WRITE_KEY}\r\n\
         Content-Length: 100000\r\nConnection: close\r\n\r\n"
    );
    c.write_all(head.as_bytes()).unwrap();
    let t = Instant::now();
    for _ in 0..12 {
        if c.write_all(b"x").is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(600));
    }
    let mut got = Vec::new();
    use std::io::Read;
    let _ = c.read_to_end(&mut got);
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(got.contains("bytes/s"), "{got}");
    assert!(t.elapsed() < Duration::from_secs(15));
}
