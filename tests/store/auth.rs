//! Keys and roles; anonymous reads; the first-start admin key.

use super::*;

#[test]
pub fn writes_need_a_key_and_role() {
    let s = Server::start();
    let body = tar_gz("1.0", &[("f", b"auth")]);

    let r = put(&s, "au/1.0/rocky9", None, body.clone());
    let e = assert_error_answer(&r, 401);
    assert_eq!(e["code"], "unauthorized");
    assert_eq!(r.header("www-authenticate").as_deref(), Some("Bearer"));

    let e = assert_error_answer(&put(&s, "au/1.0/rocky9", Some(READ_KEY), body.clone()), 403);
    assert_eq!(e["code"], "forbidden");
    assert_error_answer(
        &put(&s, "au/1.0/rocky9", Some("not-a-key"), body.clone()),
        401,
    );
    assert_error_answer(&get(&s, "/v1/components/au/1.0/rocky9"), 404);
    // "Bearer" is case-insensitive; other schemes are not keys
    let r = send(
        client()
            .put(s.url("/v1/components/au/1.0/rocky9"))
            .header("Authorization", format!("Basic {WRITE_KEY}"))
            .body(body.clone()),
    );
    assert_error_answer(&r, 401);

    let (rec, full) = store(&s, "au", "1.0", "rocky9", 0);

    // anonymous reads
    let r = get(&s, "/v1/components/au/1.0/rocky9");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, full);
    assert_eq!(get(&s, "/v1/components/au/1.0/rocky9/info").status, 200);
    assert_eq!(get(&s, "/v1/components?prefix=au").status, 200);
    // keyed reads
    for k in [READ_KEY, WRITE_KEY, ADMIN_KEY] {
        let r = get_key(&s, "/v1/components/au/1.0/rocky9", k);
        assert_eq!(r.status, 200, "{k}");
        assert_eq!(r.body, full);
    }
    // a wrong key is refused even for reads
    for path in [
        "/v1/components/au/1.0/rocky9".to_owned(),
        "/v1/components/au/1.0/rocky9/info".to_owned(),
        "/v1/components".to_owned(),
        "/v1/components/au".to_owned(),
        format!("/v1/blobs/{}", rec["blake3"].as_str().unwrap()),
        "/component?component=au&tag=1.0".to_owned(),
    ] {
        let e = assert_error_answer(&get_key(&s, &path, "test-wrong-key"), 401);
        assert_eq!(e["code"], "unauthorized", "{path}");
    }
    assert_error_answer(
        &send(
            client()
                .post(s.url("/v1/components/missing"))
                .header("Authorization", bearer("test-wrong-key"))
                .json(&json!([])),
        ),
        401,
    );

    // delete: admin only
    let del = |key: Option<&str>| {
        send(with_key(
            client().delete(s.url("/v1/components/au/1.0/rocky9")),
            key,
        ))
    };
    assert_error_answer(&del(None), 401);
    assert_error_answer(&del(Some(READ_KEY)), 403);
    assert_error_answer(&del(Some(WRITE_KEY)), 403);
    assert_eq!(get(&s, "/v1/components/au/1.0/rocky9").status, 200);
    let r = del(Some(ADMIN_KEY));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["status"], "deleted");
    assert_eq!(v["component"]["blake3"], rec["blake3"]);
    assert_error_answer(&get(&s, "/v1/components/au/1.0/rocky9"), 404);
    assert_error_answer(&del(Some(ADMIN_KEY)), 404);
    // the blob stays until garbage collection
    let r = get(
        &s,
        &format!("/v1/blobs/{}", rec["blake3"].as_str().unwrap()),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body, full);
}

#[test]
pub fn anonymous_read_can_be_disabled() {
    let s = Server::start_with(&config_full("max_upload_bytes = 67108864", false));
    let body = tar_gz("1.0", &[("f", b"private")]);
    let rec = assert_created(&put(&s, "priv/1.0/rocky9", Some(WRITE_KEY), body));
    let r = get_key(&s, "/v1/components/priv/1.0/rocky9", READ_KEY);
    assert_eq!(r.status, 200);
    assert_eq!(hex_of(&r.body), rec["blake3"].as_str().unwrap());
    for path in [
        "/v1/components/priv/1.0/rocky9",
        "/v1/components/priv/1.0/rocky9/info",
        "/v1/components",
        "/v1/components/priv",
        "/component?component=priv&tag=1.0",
    ] {
        let e = assert_error_answer(&get(&s, path), 401);
        assert_eq!(e["code"], "unauthorized", "{path}");
        let r = get_key(&s, path, READ_KEY);
        assert_eq!(r.status, 200, "{path} with the read key: {}", r.text());
    }
    assert_error_answer(
        &send(
            client()
                .post(s.url("/v1/components/missing"))
                .json(&json!([])),
        ),
        401,
    );
    // health checks stay open
    assert_eq!(get(&s, "/healthz").status, 200);
}

fn admin_key_in(banner: &[String]) -> Option<String> {
    banner
        .iter()
        .find_map(|l| l.split_once("admin key:").map(|(_, k)| k.trim().to_owned()))
}

#[test]
pub fn first_start_without_keys_generates_an_admin_key_once() {
    let cfg = "max_upload_bytes = 67108864\n";
    let mut s = Server::start_with(cfg);
    let key = admin_key_in(&s.banner)
        .unwrap_or_else(|| panic!("no admin key in the banner: {:?}", s.banner));
    assert!(key.starts_with("as_"), "{key}");
    assert_eq!(key.len(), 3 + 64, "{key}");
    assert!(key[3..].chars().all(|c| c.is_ascii_hexdigit()), "{key}");
    // only its hash is kept on disk
    for f in files_under(&data_dir(&s)) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !bytes.windows(key.len()).any(|w| w == key.as_bytes()),
            "the key is stored in clear in {}",
            f.display()
        );
    }

    let body = tar_gz("1.0", &[("f", b"boot")]);
    assert_error_answer(&put(&s, "boot/1.0/rocky9", None, body.clone()), 401);
    assert_created(&put(&s, "boot/1.0/rocky9", Some(&key), body.clone()));
    let r = send(
        client()
            .delete(s.url("/v1/components/boot/1.0/rocky9"))
            .header("Authorization", bearer(&key)),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["status"], "deleted");
    assert_error_answer(&get(&s, "/v1/components/boot/1.0/rocky9"), 404);
    assert_error_answer(
        &put(&s, "boot/1.0/rocky9", Some("as_wrong"), body.clone()),
        401,
    );

    // restart on the same data: no new key, the old one still works
    let tmp = s.keep_dir().expect("temp dir");
    s.kill();
    let mut s2 = Server::start_in(tmp.path(), cfg);
    assert_eq!(
        admin_key_in(&s2.banner),
        None,
        "a second key was printed: {:?}",
        s2.banner
    );
    assert!(
        !s2.banner.iter().any(|l| l.contains("as_")),
        "{:?}",
        s2.banner
    );
    assert_created(&put(
        &s2,
        "boot/2.0/rocky9",
        Some(&key),
        tar_gz("2.0", &[("f", b"2")]),
    ));

    // once keys are configured, the generated key stops working
    s2.kill();
    let s3 = Server::start_in(tmp.path(), &config_with_keys(""));
    assert_eq!(admin_key_in(&s3.banner), None);
    assert_error_answer(
        &put(
            &s3,
            "boot/3.0/rocky9",
            Some(&key),
            tar_gz("3.0", &[("f", b"3")]),
        ),
        401,
    );
    assert_created(&put(
        &s3,
        "boot/3.0/rocky9",
        Some(ADMIN_KEY),
        tar_gz("3.0", &[("f", b"3")]),
    ));
    assert_eq!(get(&s3, "/v1/components/boot/2.0/rocky9").status, 200);
    drop(s3);
    drop(s2);
    drop(tmp);
}
