//! Persistence, concurrency and crashes: kill -9, concurrent uploads, a crash mid-upload.

use super::*;

#[test]
pub fn data_survives_sigkill_and_restart() {
    let cfg = config_with_keys("");
    let mut s = Server::start_with(&cfg);
    let (rec, full) = store(&s, "keep", "1.0", "rocky9", 42);
    let (rec2, full2) = store(&s, "keep", "2.0", "rhel9", 43);
    let gzip = get(&s, "/v1/components/keep/1.0/rocky9?format=tar.gz").body;
    let tmp = s.keep_dir().expect("temp dir");
    s.kill();
    assert!(s.child.try_wait().unwrap().is_some(), "killed");

    let s = Server::start_in(tmp.path(), &cfg);
    let r = get(&s, "/v1/components/keep/1.0/rocky9");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, full);
    assert_eq!(
        r.header("etag"),
        Some(format!("\"{}\"", rec["blake3"].as_str().unwrap()))
    );
    assert_eq!(get(&s, "/v1/components/keep/2.0/rhel9").body, full2);
    let info = get(&s, "/v1/components/keep/2.0/rhel9/info").json();
    assert_eq!(info["component"]["blake3"], rec2["blake3"]);
    assert_eq!(info["component"]["created"], rec2["created"]);
    assert_eq!(
        get(&s, "/v1/components/keep/1.0/rocky9?format=tar.gz").body,
        gzip
    );
    let v = get(&s, "/v1/components?prefix=keep").json();
    assert_eq!(v["components"].as_array().unwrap().len(), 2);
    // still immutable after the restart
    let r = put(
        &s,
        "keep/1.0/rocky9",
        Some(WRITE_KEY),
        tar_gz("1.0", &[("file.txt", b"something else")]),
    );
    assert_error_answer(&r, 409);
    drop(s);
    drop(tmp);
}

#[test]
pub fn concurrent_uploads_of_the_same_content_create_once() {
    let s = Server::start();
    let body = tar_gz("1.0", &[("a", &noise(21, 300_000)), ("b/c", b"c")]);
    let barrier = Arc::new(Barrier::new(8));
    let url = s.url("/v1/components/race/1.0/rocky9");
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (b, body, url) = (barrier.clone(), body.clone(), url.clone());
            std::thread::spawn(move || {
                let c = client();
                b.wait();
                send(
                    c.put(url)
                        .header("Authorization", bearer(WRITE_KEY))
                        .body(body),
                )
            })
        })
        .collect();
    let answers: Vec<Resp> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut created = 0;
    let mut hashes = std::collections::BTreeSet::new();
    for r in &answers {
        assert!(
            r.status == 200 || r.status == 201,
            "{} {}",
            r.status,
            r.text()
        );
        let v = r.json();
        match r.status {
            201 => {
                assert_eq!(v["status"], "created");
                created += 1;
            }
            _ => assert_eq!(v["status"], "unchanged"),
        }
        hashes.insert(v["component"]["blake3"].as_str().unwrap().to_owned());
    }
    assert_eq!(created, 1, "exactly one upload creates the entry");
    assert_eq!(hashes.len(), 1, "{hashes:?}");
    let dl = get(&s, "/v1/components/race/1.0/rocky9");
    assert_eq!(hex_of(&dl.body), *hashes.iter().next().unwrap());
    assert_eq!(blob_files(&s).len(), 1, "{:?}", blob_files(&s));
    assert!(
        wait_for(5, || tmp_entries(&s.dir).is_empty()),
        "left in data/tmp: {:?}",
        tmp_entries(&s.dir)
    );
}

#[test]
pub fn concurrent_uploads_of_different_keys_all_succeed() {
    let s = Server::start();
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8u64)
        .map(|i| {
            let b = barrier.clone();
            let url = s.url(&format!("/v1/components/par{i}/1.{i}/rocky9"));
            std::thread::spawn(move || {
                let tag = format!("1.{i}");
                let content = noise(100 + i, 200_000);
                let body = tar_gz(&tag, &[("data.bin", &content)]);
                let c = client();
                b.wait();
                let r = send(
                    c.put(&url)
                        .header("Authorization", bearer(WRITE_KEY))
                        .body(body),
                );
                (i, content, r)
            })
        })
        .collect();
    for h in handles {
        let (i, content, r) = h.join().unwrap();
        let rec = assert_created(&r);
        let dl = get(&s, &format!("/v1/components/par{i}/1.{i}/rocky9"));
        assert_eq!(dl.status, 200);
        assert_eq!(hex_of(&dl.body), rec["blake3"].as_str().unwrap());
        assert_eq!(
            files_of(&dl.body, false),
            [(format!("1.{i}/data.bin"), content)]
        );
    }
    assert_eq!(blob_files(&s).len(), 8);
    let v = get(&s, "/v1/components?prefix=par").json();
    assert_eq!(v["components"].as_array().unwrap().len(), 8);
}

#[test]
pub fn crash_mid_upload_leaves_nothing_behind() {
    let cfg = config_with_keys("");
    let mut s = Server::start_with(&cfg);
    let body = tar_gz("1.0", &[("huge.bin", &noise(77, 8 << 20))]);
    let mut c = TcpStream::connect(addr(&s)).expect("connect");
    let head = format!(
        "PUT /v1/components/crash/1.0/rocky9 HTTP/1.1\r\nHost: {}\r\n\
         Authorization: Bearer {WRITE_KEY}\r\nContent-Length: 50000000\r\n\r\n",
        addr(&s)
    );
    c.write_all(head.as_bytes()).unwrap();
    c.write_all(&body[..4 << 20]).unwrap();
    c.flush().unwrap();
    // the upload is in flight: its temp file is filling up
    let tmp_dir = s.dir.clone();
    assert!(
        wait_for(10, || {
            files_under(&tmp_dir.join("data/tmp"))
                .iter()
                .any(|f| f.metadata().map(|m| m.len() >= 1 << 20).unwrap_or(false))
        }),
        "the upload never reached data/tmp"
    );
    let tmp = s.keep_dir().expect("temp dir");
    s.kill(); // SIGKILL, mid-upload
    drop(c);

    let s = Server::start_in(tmp.path(), &cfg);
    assert_error_answer(&get(&s, "/v1/components/crash/1.0/rocky9"), 404);
    assert_eq!(
        tmp_entries(&s.dir),
        Vec::<PathBuf>::new(),
        "data/tmp after restart"
    );
    assert_eq!(
        blob_files(&s),
        Vec::<PathBuf>::new(),
        "data/blobs after restart"
    );
    let v = get(&s, "/v1/components").json();
    assert_eq!(v["components"], json!([]));
    // and the key can be uploaded normally now
    let small = tar_gz("1.0", &[("ok", b"ok")]);
    assert_created(&put(&s, "crash/1.0/rocky9", Some(WRITE_KEY), small));
    drop(s);
    drop(tmp);
}
