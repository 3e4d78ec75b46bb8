//! The original API (GET /component).

use super::*;

#[test]
pub fn original_get_component_api() {
    let s = Server::start();
    let body = tar_gz(
        "R4.39",
        &[("lib/libasyn.so", &noise(4, 2000)), ("README", b"asyn")],
    );
    let rec = assert_created(&put(&s, "asyn/R4.39/rocky9", Some(WRITE_KEY), body));
    let zstd_bytes = get(&s, "/v1/components/asyn/R4.39/rocky9").body;
    let expect_files = files_of(&zstd_bytes, false);
    assert!(expect_files.iter().all(|(p, _)| p.starts_with("R4.39/")));
    let comp = s.url("/component");

    // the build scripts: GET with a JSON body and accept: application/json
    let r = send(
        client()
            .get(&comp)
            .header("accept", "application/json")
            .json(&json!({"component": "asyn", "tag": "R4.39", "arch": "rocky9"})),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/gzip")
    );
    assert_eq!(&r.body[..2], &[0x1f, 0x8b]);
    assert_eq!(files_of(&r.body, true), expect_files);
    let etag = r.header("etag").expect("etag");
    assert_eq!(etag, format!("\"{}\"", hex_of(&r.body)));
    let cd = r.header("content-disposition").unwrap_or_default();
    assert!(cd.contains("R4.39.tar.gz"), "{cd}");

    // without accept, and again: the same bytes, the same etag
    let r2 = send(
        client()
            .get(&comp)
            .json(&json!({"component": "asyn", "tag": "R4.39", "arch": "rocky9"})),
    );
    assert_eq!(r2.status, 200);
    assert_eq!(r2.body, r.body);
    assert_eq!(r2.header("etag").as_deref(), Some(etag.as_str()));
    // conditional
    let r3 = send(
        client()
            .get(&comp)
            .header("If-None-Match", &etag)
            .json(&json!({"component": "asyn", "tag": "R4.39"})),
    );
    assert_eq!(r3.status, 304);

    // zstd on request
    let r = send(client().get(&comp).json(
        &json!({"component": "asyn", "tag": "R4.39", "arch": "rocky9", "format": "tar.zst"}),
    ));
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/zstd")
    );
    assert_eq!(r.body, zstd_bytes);
    let r = get(&s, "/component?component=asyn&tag=R4.39&format=tar.zst");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, zstd_bytes);
    let r = send(
        client()
            .get(s.url("/component?component=asyn&tag=R4.39"))
            .header("Accept", "application/zstd"),
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/zstd")
    );
    assert_eq!(r.body, zstd_bytes);

    // the record
    let r = get(&s, "/component?component=asyn&tag=R4.39&view=info");
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["status"], "found");
    assert_eq!(v["component"]["blake3"], rec["blake3"]);
    assert_eq!(v["component"]["arch"], "rocky9");
    let v = send(
        client()
            .get(&comp)
            .json(&json!({"component": "asyn", "tag": "R4.39", "view": "info"})),
    )
    .json();
    assert_eq!(v["component"]["tag"], "R4.39");

    // absent arch, "null", null, the `architecture` alias, any case: all rocky9
    for b in [
        json!({"component": "asyn", "tag": "R4.39"}),
        json!({"component": "asyn", "tag": "R4.39", "arch": "null"}),
        json!({"component": "asyn", "tag": "R4.39", "arch": null}),
        json!({"component": "asyn", "tag": "R4.39", "architecture": "ROCKY9"}),
    ] {
        let r = send(client().get(&comp).json(&b));
        assert_eq!(r.status, 200, "{b}: {}", r.text());
        assert_eq!(r.body, r2.body, "{b}");
    }
    let r = get(
        &s,
        "/component?component=asyn&tag=R4.39&arch=null&format=zst",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body, zstd_bytes);

    // a miss
    for b in [
        json!({"component": "asyn", "tag": "R9.99", "arch": "rocky9"}),
        json!({"component": "asyn", "tag": "R4.39", "arch": "rhel7"}),
        json!({"component": "nope", "tag": "R4.39"}),
    ] {
        let r = send(
            client()
                .get(&comp)
                .header("accept", "application/json")
                .json(&b),
        );
        let e = assert_error_answer(&r, 404);
        assert!(
            e["errorMessage"]
                .as_str()
                .unwrap()
                .contains("does not exist"),
            "{e}"
        );
    }
    // missing fields, bad JSON
    assert_error_answer(
        &send(client().get(&comp).json(&json!({"component": "asyn"}))),
        400,
    );
    assert_error_answer(
        &send(
            client()
                .get(&comp)
                .header("content-type", "application/json")
                .body("{oops"),
        ),
        400,
    );
    assert_error_answer(&get(&s, "/component"), 400);
}
