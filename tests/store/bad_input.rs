//! Bad input: names, non-tarballs, hostile tarballs, limits, truncated bodies, unknown routes.

use super::*;

#[test]
pub fn bad_names_are_refused() {
    let s = Server::start();
    let body = tar_gz("1.0", &[("f", b"x")]);
    for path in [
        "a%20b/1.0/rocky9",
        "a..b/1.0/rocky9",
        "ok/a..b/rocky9",
        "ok/1.0/roc%24ky9",
        "ok/1.0/a..b",
        "-rf/1.0/rocky9",
        "ok/a%2Fb/rocky9",
        "ok/a%3Bb/rocky9",
        "ok/1.0/rocky9%00",
    ] {
        let r = put(&s, path, Some(WRITE_KEY), body.clone());
        let e = assert_error_answer(&r, 400);
        assert!(
            e["code"] == "invalid_name" || e["code"] == "bad_request",
            "{path}: {e}"
        );
        assert_error_answer(&get(&s, &format!("/v1/components/{path}")), 400);
    }
    let long = "x".repeat(129);
    assert_error_answer(
        &put(
            &s,
            &format!("{long}/1.0/rocky9"),
            Some(WRITE_KEY),
            body.clone(),
        ),
        400,
    );

    // `..` and `.` as whole segments, sent raw (a URL library would normalise them)
    for path in [
        "/v1/components/../1.0/rocky9",
        "/v1/components/ok/../rocky9",
        "/v1/components/ok/1.0/..",
        "/v1/components/./1.0/rocky9",
    ] {
        let req = format!(
            "PUT {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {WRITE_KEY}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            addr(&s),
            body.len()
        );
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(&body);
        let (status, rbody) = raw_http(&s, &bytes);
        assert_eq!(status, 400, "{path}: {}", String::from_utf8_lossy(&rbody));
        let v: Value = serde_json::from_slice(&rbody).expect("JSON error");
        assert_eq!(v["status"], "error", "{path}");
        assert!(v["errorMessage"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // the original API too
    assert_error_answer(&get(&s, "/component?component=..&tag=1.0"), 400);
    assert_error_answer(&get(&s, "/component?component=ok&tag=a%20b"), 400);
    assert!(blob_files(&s).is_empty());
    let v = get(&s, "/v1/components").json();
    assert_eq!(v["components"], json!([]));
}

#[test]
pub fn bodies_that_are_not_tarballs_are_refused() {
    let s = Server::start();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("text", b"hello, this is not a tarball at all".to_vec()),
        ("noise", noise(1, 4096)),
        ("gzip of text", gz(b"just some text, not a tar")),
        ("zstd of text", zst(&noise(2, 2048))),
        ("truncated tar.gz", {
            let t = tar_gz("1.0", &[("big", &noise(3, 100_000))]);
            t[..t.len() / 2].to_vec()
        }),
        ("empty tar", vec![0u8; 1024]),
    ];
    for (i, (what, body)) in cases.into_iter().enumerate() {
        let path = format!("junk{i}/1.0/rocky9");
        let r = put(&s, &path, Some(WRITE_KEY), body);
        assert_error_answer(&r, 400);
        assert_error_answer(&get(&s, &format!("/v1/components/{path}")), 404);
        assert!(blob_files(&s).is_empty(), "{what}: a blob was stored");
    }
    assert!(
        wait_for(5, || tmp_entries(&s.dir).is_empty()),
        "left in data/tmp: {:?}",
        tmp_entries(&s.dir)
    );
}

#[test]
pub fn hostile_tarballs_are_refused_and_nothing_stored() {
    let s = Server::start();
    use tar::EntryType as T;
    let outside = format!("/tmp/artifact-store-evil-{}.txt", std::process::id());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "absolute path",
            hostile_tar(outside.as_bytes(), T::Regular, None, b"evil"),
        ),
        (
            "dot-dot path",
            hostile_tar(b"1.0/../../evil.txt", T::Regular, None, b"evil"),
        ),
        (
            "leading dot-dot",
            hostile_tar(b"../evil.txt", T::Regular, None, b"evil"),
        ),
        (
            "symlink escaping up",
            hostile_tar(b"1.0/passwd", T::Symlink, Some(b"../../etc/passwd"), b""),
        ),
        (
            "symlink to an absolute path",
            hostile_tar(b"1.0/passwd", T::Symlink, Some(b"/etc/passwd"), b""),
        ),
        (
            "hard link outside",
            hostile_tar(b"1.0/hl", T::Link, Some(b"../../etc/passwd"), b""),
        ),
        (
            "hard link absolute",
            hostile_tar(b"1.0/hl", T::Link, Some(b"/etc/passwd"), b""),
        ),
        ("fifo", hostile_tar(b"1.0/fifo", T::Fifo, None, b"")),
        ("char device", hostile_tar(b"1.0/null", T::Char, None, b"")),
        ("block device", hostile_tar(b"1.0/sda", T::Block, None, b"")),
    ];
    for (i, (what, body)) in cases.into_iter().enumerate() {
        let path = format!("evil{i}/1.0/rocky9");
        let r = put(&s, &path, Some(WRITE_KEY), body);
        assert_eq!(r.status, 400, "{what}: {}", r.text());
        assert_error_answer(&r, 400);
        assert_error_answer(&get(&s, &format!("/v1/components/{path}")), 404);
        assert!(blob_files(&s).is_empty(), "{what}: a blob was stored");
    }
    assert!(!Path::new(&outside).exists(), "{outside} was written");
    assert!(!s.dir.join("evil.txt").exists());
    assert!(!data_dir(&s).join("evil.txt").exists());
    assert!(
        wait_for(5, || tmp_entries(&s.dir).is_empty()),
        "left in data/tmp: {:?}",
        tmp_entries(&s.dir)
    );
    let v = get(&s, "/v1/components").json();
    assert_eq!(v["components"], json!([]));

    // a symlink that stays inside is fine
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    b.append_data(&mut h, "1.0/lib/real.so", &b"x"[..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(T::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "1.0/lib/link.so", "real.so").unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(T::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "1.0/bin/up", "../lib/real.so")
        .unwrap();
    let rec = assert_created(&put(
        &s,
        "links/1.0/rocky9",
        Some(WRITE_KEY),
        gz(&b.into_inner().unwrap()),
    ));
    let dl = get(&s, "/v1/components/links/1.0/rocky9");
    assert_eq!(hex_of(&dl.body), rec["blake3"].as_str().unwrap());
    let es = entries(&dl.body, false);
    assert!(es
        .iter()
        .any(|e| e.path == "1.0/lib/link.so" && e.kind == T::Symlink));
}

#[test]
pub fn upload_limits_answer_413() {
    let s = Server::start_with(&config_full(
        "max_upload_bytes = 4096\nmax_unpacked_bytes = 20000",
        true,
    ));
    // declared length over the limit
    let big = tar_gz("1.0", &[("n", &noise(9, 8192))]);
    assert!(big.len() > 4096);
    let e = assert_error_answer(
        &put(&s, "big/1.0/rocky9", Some(WRITE_KEY), big.clone()),
        413,
    );
    assert_eq!(e["code"], "too_large");
    assert_error_answer(&get(&s, "/v1/components/big/1.0/rocky9"), 404);

    // no declared length (chunked): cut off while streaming
    let r = send(
        client()
            .put(s.url("/v1/components/big/1.0/rocky9"))
            .header("Authorization", bearer(WRITE_KEY))
            .body(reqwest::blocking::Body::new(std::io::Cursor::new(big))),
    );
    assert_error_answer(&r, 413);
    assert_error_answer(&get(&s, "/v1/components/big/1.0/rocky9"), 404);

    // small upload, unpacks to more than max_unpacked_bytes
    let bomb = tar_gz("1.0", &[("zeros", &vec![0u8; 200_000])]);
    assert!(bomb.len() < 4096, "{}", bomb.len());
    let e = assert_error_answer(&put(&s, "bomb/1.0/rocky9", Some(WRITE_KEY), bomb), 413);
    assert_eq!(e["code"], "too_large");
    assert_error_answer(&get(&s, "/v1/components/bomb/1.0/rocky9"), 404);
    assert!(blob_files(&s).is_empty());

    // under both limits: fine
    let ok = tar_gz("1.0", &[("small", &vec![7u8; 10_000])]);
    assert_created(&put(&s, "fits/1.0/rocky9", Some(WRITE_KEY), ok));
    assert!(
        wait_for(5, || tmp_entries(&s.dir).is_empty()),
        "left in data/tmp: {:?}",
        tmp_entries(&s.dir)
    );
}

#[test]
pub fn truncated_upload_stores_nothing() {
    let s = Server::start();
    let body = tar_gz("1.0", &[("big.bin", &noise(11, 600_000))]);
    let sent = &body[..200_000];
    let mut c = TcpStream::connect(addr(&s)).expect("connect");
    let head = format!(
        "PUT /v1/components/trunc/1.0/rocky9 HTTP/1.1\r\nHost: {}\r\n\
         Authorization: Bearer {WRITE_KEY}\r\nContent-Length: {}\r\n\r\n",
        addr(&s),
        body.len()
    );
    c.write_all(head.as_bytes()).unwrap();
    c.write_all(sent).unwrap();
    c.flush().unwrap();
    // the server is receiving (its temp file exists)...
    assert!(
        wait_for(10, || !tmp_entries(&s.dir).is_empty()),
        "the upload never reached data/tmp"
    );
    // ... when the client goes away
    c.shutdown(Shutdown::Write).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answer = Vec::new();
    let _ = c.read_to_end(&mut answer);
    drop(c);
    if let Some(status) = String::from_utf8_lossy(&answer)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
    {
        assert!(
            status >= 400,
            "a truncated upload was answered {status}: {}",
            String::from_utf8_lossy(&answer)
        );
    }
    assert_error_answer(&get(&s, "/v1/components/trunc/1.0/rocky9"), 404);
    assert!(
        wait_for(5, || tmp_entries(&s.dir).is_empty()),
        "left in data/tmp: {:?}",
        tmp_entries(&s.dir)
    );
    assert!(blob_files(&s).is_empty(), "{:?}", blob_files(&s));
    // the server is still fine, and the same key can be uploaded whole
    assert_created(&put(&s, "trunc/1.0/rocky9", Some(WRITE_KEY), body));
}

#[test]
pub fn unknown_routes_and_methods_answer_json() {
    let s = Server::start();
    for path in ["/nope", "/v1", "/v1/components/a/b/c/d/e", "/v1/blobs"] {
        let e = assert_error_answer(&get(&s, path), 404);
        assert_eq!(e["code"], "not_found", "{path}");
    }
    let r = send(
        client()
            .post(s.url("/v1/components/a/1.0/rocky9"))
            .body("x"),
    );
    let e = assert_error_answer(&r, 405);
    assert_eq!(e["code"], "method_not_allowed");
    assert_error_answer(&send(client().delete(s.url("/healthz"))), 405);
    assert_error_answer(&send(client().put(s.url("/v1/components")).body("x")), 405);
    assert_error_answer(&get(&s, "/v1/components/missing"), 405);
    assert_error_answer(
        &send(client().delete(s.url(&format!("/v1/blobs/{}", hex_of(b"x"))))),
        405,
    );
    assert_error_answer(&send(client().patch(s.url("/component")).body("{}")), 405);
}
