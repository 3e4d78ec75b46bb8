//! Uploads: normalised records, re-uploads, conflicts, dedup; architectures are case-insensitive.

use super::*;

#[test]
pub fn put_targz_creates_record_and_canonical_tarball() {
    let s = Server::start();
    let body = tar_gz(
        "R4.39",
        &[
            ("zeta.txt", b"zeta"),
            ("bin/tool", b"#!/bin/sh\necho hi\n"),
            ("alpha.txt", b"alpha"),
            ("lib/x/a.txt", b"aaa"),
        ],
    );
    let r = put_with(
        &s,
        "asyn/R4.39/rocky9",
        Some(WRITE_KEY),
        body,
        &[("linux_username", "jdoe"), ("github_username", "jdoe-gh")],
    );
    let rec = assert_created(&r);
    assert_eq!(rec["component"], "asyn");
    assert_eq!(rec["tag"], "R4.39");
    assert_eq!(rec["arch"], "rocky9");
    assert_eq!(rec["uploaded_by"]["linux_username"], "jdoe");
    assert_eq!(rec["uploaded_by"]["github_username"], "jdoe-gh");
    assert_eq!(rec["path"], "/v1/components/asyn/R4.39/rocky9");
    let b3 = rec["blake3"].as_str().expect("blake3").to_owned();
    assert_eq!(b3.len(), 64);
    assert!(b3
        .chars()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    assert_eq!(
        rec["download_url"],
        s.url("/v1/components/asyn/R4.39/rocky9")
    );
    assert_eq!(rec["blob_url"], s.url(&format!("/v1/blobs/{b3}")));
    assert_eq!(
        rec["info_url"],
        s.url("/v1/components/asyn/R4.39/rocky9/info")
    );
    let created = rec["created"].as_str().expect("created");
    chrono::DateTime::parse_from_rfc3339(created).expect("created is RFC 3339");

    let dl = get(&s, "/v1/components/asyn/R4.39/rocky9");
    assert_eq!(dl.status, 200);
    assert_eq!(&dl.body[..4], &[0x28, 0xb5, 0x2f, 0xfd], "zstd magic");
    assert_eq!(hex_of(&dl.body), b3, "blake3 of the download");
    assert_eq!(rec["size"].as_u64(), Some(dl.body.len() as u64));

    let es = entries(&dl.body, false);
    let paths: Vec<&str> = es.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "R4.39",
            "R4.39/alpha.txt",
            "R4.39/bin",
            "R4.39/bin/tool",
            "R4.39/lib",
            "R4.39/lib/x",
            "R4.39/lib/x/a.txt",
            "R4.39/zeta.txt"
        ]
    );
    assert!(es[0].kind.is_dir());
    for e in &es {
        assert_eq!((e.uid, e.gid), (0, 0), "{e:?}");
        assert_eq!(e.username, None, "{e:?}");
        assert_eq!(e.mode & !0o777, 0, "permission bits only: {e:?}");
    }
    let files = files_of(&dl.body, false);
    assert!(files.contains(&("R4.39/bin/tool".into(), b"#!/bin/sh\necho hi\n".to_vec())));
    assert!(files.contains(&("R4.39/lib/x/a.txt".into(), b"aaa".to_vec())));

    // the upload's temp file is gone
    assert!(
        wait_for(5, || tmp_entries(&s.dir).is_empty()),
        "left in data/tmp: {:?}",
        tmp_entries(&s.dir)
    );
}

#[test]
pub fn put_plain_tar_and_tar_zst_with_x_adbs_identity() {
    let s = Server::start();

    // plain tar without a top-level directory: put under <tag>/
    let body = plain_tar("", &[("b.txt", b"bee"), ("a.txt", b"ay")]);
    let r = put_with(
        &s,
        "plain/1.0/rocky9",
        Some(WRITE_KEY),
        body,
        &[
            ("X-adbs-linux-user", "alice"),
            ("X-adbs-github-user", "alice-gh"),
        ],
    );
    let rec = assert_created(&r);
    assert_eq!(rec["uploaded_by"]["linux_username"], "alice");
    assert_eq!(rec["uploaded_by"]["github_username"], "alice-gh");
    let dl = get(&s, "/v1/components/plain/1.0/rocky9");
    assert_eq!(dl.status, 200);
    assert_eq!(hex_of(&dl.body), rec["blake3"].as_str().unwrap());
    let paths: Vec<String> = entries(&dl.body, false)
        .into_iter()
        .map(|e| e.path)
        .collect();
    assert_eq!(paths, ["1.0", "1.0/a.txt", "1.0/b.txt"]);
    assert_eq!(
        files_of(&dl.body, false),
        [
            ("1.0/a.txt".to_owned(), b"ay".to_vec()),
            ("1.0/b.txt".to_owned(), b"bee".to_vec())
        ]
    );

    // tar.zst whose top directory is not the tag: put under <tag>/ too
    let body = zst(&plain_tar("other", &[("c.txt", b"see")]));
    let r = put(&s, "zsty/2.0/rocky9", Some(WRITE_KEY), body);
    let rec = assert_created(&r);
    // no identity headers sent: only the name of the key that wrote it
    assert_eq!(rec["uploaded_by"], json!({"key": "ci"}));
    let dl = get(&s, "/v1/components/zsty/2.0/rocky9");
    assert_eq!(dl.status, 200);
    let paths: Vec<String> = entries(&dl.body, false)
        .into_iter()
        .map(|e| e.path)
        .collect();
    assert_eq!(paths, ["2.0", "2.0/other", "2.0/other/c.txt"]);

    // tar.zst whose only top directory is the tag: kept as is (no 2.0/2.0/)
    let body = zst(&plain_tar("2.0", &[("d.txt", b"dee")]));
    let rec = assert_created(&put(&s, "zsty2/2.0/rocky9", Some(WRITE_KEY), body));
    let dl = get(&s, "/v1/components/zsty2/2.0/rocky9");
    assert_eq!(hex_of(&dl.body), rec["blake3"].as_str().unwrap());
    assert_eq!(
        files_of(&dl.body, false),
        [("2.0/d.txt".to_owned(), b"dee".to_vec())]
    );
}

#[test]
pub fn reupload_of_the_same_content_is_unchanged() {
    let s = Server::start();
    let v1 = tar_gz("1.0", &[("a.txt", b"version one"), ("sub/b.txt", b"b")]);
    let rec = assert_created(&put_with(
        &s,
        "same/1.0/rocky9",
        Some(WRITE_KEY),
        v1.clone(),
        &[("linux_username", "first")],
    ));
    let original = get(&s, "/v1/components/same/1.0/rocky9").body;

    // A client re-uploads the same tarball later (a rebuild, a retry): the
    // second upload is on purpose in another second than the first.
    std::thread::sleep(Duration::from_millis(1100));
    let r = put_with(
        &s,
        "same/1.0/rocky9",
        Some(WRITE_KEY),
        v1,
        &[("linux_username", "second")],
    );
    assert_eq!(r.status, 200, "same content again: {}", r.text());
    let v = r.json();
    assert_eq!(v["status"], "unchanged");
    assert_eq!(v["component"]["blake3"], rec["blake3"]);
    assert_eq!(v["component"]["created"], rec["created"], "the kept record");
    assert_eq!(v["component"]["uploaded_by"]["linux_username"], "first");
    assert_eq!(get(&s, "/v1/components/same/1.0/rocky9").body, original);
    assert_eq!(blob_files(&s).len(), 1, "{:?}", blob_files(&s));
}

#[test]
pub fn other_content_for_a_tag_conflicts_and_only_admins_overwrite() {
    let s = Server::start();
    let v1 = tar_gz("1.0", &[("a.txt", b"version one")]);
    let v2 = tar_gz("1.0", &[("a.txt", b"version two")]);
    let rec = assert_created(&put(&s, "imm/1.0/rocky9", Some(WRITE_KEY), v1));
    let original = get(&s, "/v1/components/imm/1.0/rocky9").body;

    // other content for the same tag: 409, stored content unchanged
    let r = put(&s, "imm/1.0/rocky9", Some(WRITE_KEY), v2.clone());
    let e = assert_error_answer(&r, 409);
    assert_eq!(e["code"], "conflict");
    assert_eq!(get(&s, "/v1/components/imm/1.0/rocky9").body, original);
    let info = get(&s, "/v1/components/imm/1.0/rocky9/info").json();
    assert_eq!(info["component"]["blake3"], rec["blake3"]);

    // overwrite needs the admin role
    let r = put(
        &s,
        "imm/1.0/rocky9?overwrite=true",
        Some(WRITE_KEY),
        v2.clone(),
    );
    assert_error_answer(&r, 403);
    assert_eq!(get(&s, "/v1/components/imm/1.0/rocky9").body, original);

    let r = put(&s, "imm/1.0/rocky9?overwrite=true", Some(ADMIN_KEY), v2);
    let rec2 = assert_created(&r);
    assert_ne!(rec2["blake3"], rec["blake3"]);
    let now = get(&s, "/v1/components/imm/1.0/rocky9");
    assert_eq!(hex_of(&now.body), rec2["blake3"].as_str().unwrap());
    assert_eq!(
        files_of(&now.body, false),
        [("1.0/a.txt".to_owned(), b"version two".to_vec())]
    );
    let info = get(&s, "/v1/components/imm/1.0/rocky9/info").json();
    assert_eq!(info["component"]["blake3"], rec2["blake3"]);

    // overwrite with the content already stored: unchanged
    let r = put(
        &s,
        "imm/1.0/rocky9?overwrite=true",
        Some(ADMIN_KEY),
        now.body,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["status"], "unchanged");
}

#[test]
pub fn identical_content_under_two_keys_is_stored_once() {
    let s = Server::start();
    let body = tar_gz("3.1", &[("x.txt", b"shared"), ("y/z.txt", b"zzz")]);
    let a = assert_created(&put(&s, "one/3.1/rocky9", Some(WRITE_KEY), body.clone()));
    // uploaded later, as a second build of the same content would be
    std::thread::sleep(Duration::from_millis(1100));
    let b = assert_created(&put(&s, "two/3.1/rocky9", Some(WRITE_KEY), body));
    assert_eq!(a["blake3"], b["blake3"]);
    let blobs = blob_files(&s);
    assert_eq!(blobs.len(), 1, "blobs: {blobs:?}");
    assert_eq!(
        blobs[0].file_name().unwrap().to_str().unwrap(),
        a["blake3"].as_str().unwrap()
    );
}

#[test]
pub fn architecture_is_case_insensitive() {
    let s = Server::start();
    let body = tar_gz("1.0", &[("f", b"case")]);
    let rec = assert_created(&put(&s, "casey/1.0/ROCKY9", Some(WRITE_KEY), body.clone()));
    assert_eq!(rec["arch"], "rocky9");
    assert_eq!(rec["path"], "/v1/components/casey/1.0/rocky9");
    let dl = get(&s, "/v1/components/casey/1.0/rocky9");
    assert_eq!(dl.status, 200);
    assert_eq!(hex_of(&dl.body), rec["blake3"].as_str().unwrap());
    assert_eq!(get(&s, "/v1/components/casey/1.0/Rocky9").body, dl.body);
    let info = get(&s, "/v1/components/casey/1.0/rOcKy9/info").json();
    assert_eq!(info["component"]["arch"], "rocky9");
    // the same key, whatever its case: 200 unchanged, not a second entry
    let r = put(&s, "casey/1.0/rocky9", Some(WRITE_KEY), dl.body.clone());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["status"], "unchanged");
    let v = get(&s, "/v1/components/casey").json();
    assert_eq!(v["versions"].as_array().unwrap().len(), 1, "{v}");
}
