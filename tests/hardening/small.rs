//! Item 10: the small items.

use super::*;

// --- 10. the small items -------------------------------------------------------------------

#[test]
fn item10_forwarded_headers_are_ignored_unless_from_a_trusted_proxy() {
    let s = Server::start();
    let (st, _) = put(
        &s,
        "/v1/components/fw/R1/rocky9",
        tar_gz("R1", &[("a", b"a")]),
    );
    assert_eq!(st, 201);
    let info = |s: &Server| {
        json_of(
            client()
                .get(s.url("/v1/components/fw/R1/rocky9/info"))
                .header("X-Forwarded-Host", "evil.example")
                .header("X-Forwarded-Proto", "https")
                .header("Forwarded", "host=evil2.example;proto=https")
                .send()
                .unwrap(),
        )
        .1
    };
    let v = info(&s);
    let url = v["component"]["download_url"].as_str().unwrap();
    assert!(url.starts_with(&s.base), "{url}");
    drop(s);
    let s = Server::start_with(&config_with_keys(
        "[http]\ntrusted_proxies = [\"127.0.0.0/8\"]",
    ));
    let (st, _) = put(
        &s,
        "/v1/components/fw/R1/rocky9",
        tar_gz("R1", &[("a", b"a")]),
    );
    assert_eq!(st, 201);
    let v = info(&s);
    let url = v["component"]["download_url"].as_str().unwrap();
    assert!(url.starts_with("https://evil2.example/"), "{url}");
}

#[test]
fn item10_job_logs_and_errors_do_not_show_the_data_directory() {
    let repos = Repos::new(&["failing"]);
    let s = Server::start_with(&build_config(""));
    let (st, v) = build(&s, "failing", &repos.file_url("failing"));
    assert_eq!(st, 422, "{v}");
    let id = v["job"].as_str().unwrap();
    let data = s.dir.join("data").canonicalize().unwrap();
    let data = data.display().to_string();
    let log = client()
        .get(s.url(&format!("/v1/jobs/{id}/log")))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(!log.contains(&data), "{log}");
    assert!(log.contains("$DATA"), "{log}");
    let job = wait_job(&s, id);
    assert!(!job.to_string().contains(&data), "{job}");
    assert!(!v.to_string().contains(&data), "{v}");
}

#[test]
fn item10_import_refusals_do_not_tell_what_exists() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("imports");
    std::fs::create_dir_all(&root).unwrap();
    let s = Server::start_with(&config_with_keys(&format!(
        "[compat]\nimport_roots = [{:?}]",
        root.display().to_string()
    )));
    let try_import = |path: &str| {
        json_of(
            client()
                .put(s.url("/component"))
                .header("Authorization", bearer(WRITE_KEY))
                .json(&json!({"component": "imp", "tag": "R1", "results_tarball": path}))
                .send()
                .unwrap(),
        )
    };
    let (st1, v1) = try_import("/etc/passwd");
    let (st2, v2) = try_import("/etc/no-such-file-anywhere");
    assert_error_code(st1, &v1, 403, "forbidden", "import root");
    assert_error_code(st2, &v2, 403, "forbidden", "import root");
    let shape = |v: &Value| {
        v["errorMessage"]
            .as_str()
            .unwrap()
            .replace("/etc/passwd", "P")
            .replace("/etc/no-such-file-anywhere", "P")
    };
    assert_eq!(shape(&v1), shape(&v2));
    let (st, v) = try_import(&root.join("missing.tar.gz").display().to_string());
    assert_error_code(st, &v, 403, "forbidden", "import root");
}

#[test]
fn item10_oversized_bodies_are_413_json() {
    let s = Server::start();
    let big = format!("{{\"component\": \"{}\"}}", "a".repeat(300 << 10));
    let (st, v) = json_of(
        client()
            .get(s.url("/component"))
            .header("Content-Type", "application/json")
            .body(big)
            .send()
            .unwrap(),
    );
    assert_error_code(st, &v, 413, "too_large", "limit");
    // a JSON body whose declared length is over the limit: answered at once
    let head =
        "POST /v1/components/missing HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                Content-Length: 5000000\r\nConnection: close\r\n\r\n";
    let (status, body) = raw_http(&s, &[head.as_bytes(), b"{\"components\": ["].concat());
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("\"code\":\"too_large\""), "{body}");
    assert!(body.contains("JSON body"), "{body}");
}

/// A hostile server for the client: a real HTTP server (Python's) that
/// serves a tarball whose third entry escapes, with a matching ETag.
#[test]
fn item10_a_failed_extract_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let www = tmp.path().join("www/v1/components/evil/R1");
    std::fs::create_dir_all(&www).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    for (p, d) in [("R1/a", b"a".as_slice()), ("R1/b", b"b".as_slice())] {
        let mut h = tar::Header::new_gnu();
        h.set_size(d.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, p, d).unwrap();
    }
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    h.as_gnu_mut().unwrap().name[..12].copy_from_slice(b"../escape\0\0\0");
    h.set_cksum();
    let mut raw = b.into_inner().unwrap();
    raw.truncate(raw.len() - 1024); // drop the end-of-archive blocks
    raw.extend_from_slice(h.as_bytes());
    raw.extend_from_slice(&[b'x'; 512]);
    raw.extend_from_slice(&[0u8; 1024]);
    let zst = zstd::encode_all(&raw[..], 3).unwrap();
    std::fs::write(www.join("rocky9"), &zst).unwrap();
    let etag = blake3::hash(&zst).to_hex().to_string();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let script = format!(
        "import http.server, functools\n\
         class H(http.server.SimpleHTTPRequestHandler):\n\
         \x20   def end_headers(self):\n\
         \x20       self.send_header('ETag', '\"{etag}\"')\n\
         \x20       super().end_headers()\n\
         http.server.ThreadingHTTPServer(('127.0.0.1', {port}), functools.partial(H, directory={:?})).serve_forever()\n",
        tmp.path().join("www").display().to_string()
    );
    let mut py = Command::new("python3")
        .args(["-c", &script])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "python server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = tmp.path().join("deps");
    let res = Command::new(env!("CARGO_BIN_EXE_artifact-store"))
        .args(["get", "evil", "R1", "--extract"])
        .arg(&out)
        .args(["--server", &format!("http://127.0.0.1:{port}")])
        .output()
        .unwrap();
    let _ = py.kill();
    let _ = py.wait();
    assert!(!res.status.success());
    assert!(
        String::from_utf8_lossy(&res.stderr).contains(".."),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let left: Vec<_> = std::fs::read_dir(&out)
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "a partial tree was left: {left:?}");
    assert!(!tmp.path().join("escape").exists());
}
