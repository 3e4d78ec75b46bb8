//! Checksums: the body is checked; checksum deploy of stored blobs.

use super::*;

#[test]
pub fn checksum_header_checks_the_body_and_deploys_stored_blobs() {
    let s = Server::start();
    let body = tar_gz("5.0", &[("lib.so", &noise(5, 3000))]);

    // matching the body as sent
    let rec = assert_created(&put_with(
        &s,
        "ck/5.0/rocky9",
        Some(WRITE_KEY),
        body.clone(),
        &[("X-Checksum-Blake3", &hex_of(&body))],
    ));
    let b3 = rec["blake3"].as_str().unwrap().to_owned();
    let canonical = get(&s, "/v1/components/ck/5.0/rocky9").body;

    // mismatch: 400 and nothing stored
    let other = tar_gz("5.0", &[("lib.so", b"different")]);
    let e = assert_error_answer(
        &put_with(
            &s,
            "ck/5.0/rhel8",
            Some(WRITE_KEY),
            other.clone(),
            &[("X-Checksum-Blake3", &hex_of(&body))],
        ),
        400,
    );
    assert_eq!(e["code"], "checksum_mismatch");
    assert_error_answer(&get(&s, "/v1/components/ck/5.0/rhel8"), 404);
    assert_eq!(blob_files(&s).len(), 1, "nothing new stored");

    // not hex
    assert_error_answer(
        &put_with(
            &s,
            "ck/5.0/rhel8",
            Some(WRITE_KEY),
            other.clone(),
            &[("X-Checksum-Blake3", "xyz")],
        ),
        400,
    );
    assert_error_answer(
        &put_with(
            &s,
            "ck/5.0/rhel8",
            Some(WRITE_KEY),
            other,
            &[("X-Checksum-Blake3", &"z".repeat(64))],
        ),
        400,
    );
    assert_error_answer(&get(&s, "/v1/components/ck/5.0/rhel8"), 404);

    // checksum deploy: no body, the blob is stored (same tag, another arch)
    let r = put_with(
        &s,
        "ck/5.0/rhel9",
        Some(WRITE_KEY),
        Vec::new(),
        &[("X-Checksum-Blake3", &b3), ("linux_username", "deployer")],
    );
    let rec9 = assert_created(&r);
    assert_eq!(rec9["blake3"], b3.as_str());
    assert_eq!(rec9["arch"], "rhel9");
    assert_eq!(rec9["size"], rec["size"]);
    assert_eq!(rec9["uploaded_by"]["linux_username"], "deployer");
    let dl = get(&s, "/v1/components/ck/5.0/rhel9");
    assert_eq!(dl.status, 200);
    assert_eq!(dl.body, canonical);
    // again: unchanged
    let r = put_with(
        &s,
        "ck/5.0/rhel9",
        Some(WRITE_KEY),
        Vec::new(),
        &[("X-Checksum-Blake3", &b3)],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["status"], "unchanged");

    // the canonical tar.zst with its own checksum, to a third arch
    let rec7 = assert_created(&put_with(
        &s,
        "ck/5.0/centos7",
        Some(WRITE_KEY),
        canonical.clone(),
        &[("X-Checksum-Blake3", &b3)],
    ));
    assert_eq!(rec7["blake3"], b3.as_str());
    assert_eq!(blob_files(&s).len(), 1, "still one blob");

    // no body, blob not stored: 404
    let e = assert_error_answer(
        &put_with(
            &s,
            "ck/5.0/rhel8",
            Some(WRITE_KEY),
            Vec::new(),
            &[("X-Checksum-Blake3", &hex_of(b"never stored"))],
        ),
        404,
    );
    assert_eq!(e["code"], "blob_not_found");
    assert_error_answer(&get(&s, "/v1/components/ck/5.0/rhel8"), 404);

    // no body, stored blob of another tag (its top directory is 5.0/): refused
    let r = put_with(
        &s,
        "ck/6.0/rocky9",
        Some(WRITE_KEY),
        Vec::new(),
        &[("X-Checksum-Blake3", &b3)],
    );
    assert!(
        r.status == 400 || r.status == 409,
        "a 5.0/ blob under tag 6.0: {} {}",
        r.status,
        r.text()
    );
    assert_error_answer(&r, r.status);
    assert_error_answer(&get(&s, "/v1/components/ck/6.0/rocky9"), 404);

    // no body and no header: 400
    assert_error_answer(&put(&s, "ck/5.0/rhel8", Some(WRITE_KEY), Vec::new()), 400);
    assert_error_answer(&get(&s, "/v1/components/ck/5.0/rhel8"), 404);
}
