//! Downloads: headers, HEAD, Range, ETag, gzip, info and blob routes.

use super::*;

#[test]
pub fn download_headers_head_range_and_etag() {
    let s = Server::start();
    let (rec, full) = store(&s, "dl", "1.0", "rocky9", 1);
    let b3 = rec["blake3"].as_str().unwrap().to_owned();
    let url = "/v1/components/dl/1.0/rocky9";

    let r = get(&s, url);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/zstd")
    );
    let cd = r
        .header("content-disposition")
        .expect("content-disposition");
    assert!(cd.starts_with("attachment"), "{cd}");
    assert!(cd.contains("dl-1.0-rocky9.tar.zst"), "{cd}");
    assert_eq!(r.header("etag"), Some(format!("\"{b3}\"")));
    assert_eq!(r.header("content-length"), Some(full.len().to_string()));
    assert_eq!(r.body, full);

    // HEAD: the same headers, no body
    let h = send(client().head(s.url(url)));
    assert_eq!(h.status, 200);
    assert!(h.body.is_empty());
    assert_eq!(h.header("etag"), Some(format!("\"{b3}\"")));
    assert_eq!(h.header("content-length"), Some(full.len().to_string()));
    assert_eq!(
        h.header("content-type").as_deref(),
        Some("application/zstd")
    );

    // a range
    let r = send(client().get(s.url(url)).header("Range", "bytes=0-9"));
    assert_eq!(r.status, 206);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 0-9/{}", full.len()))
    );
    assert_eq!(r.header("content-length").as_deref(), Some("10"));
    assert_eq!(r.body, &full[..10]);

    // a suffix range
    let r = send(client().get(s.url(url)).header("Range", "bytes=-5"));
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &full[full.len() - 5..]);

    // unsatisfiable
    let r = send(
        client()
            .get(s.url(url))
            .header("Range", format!("bytes={}-", full.len() + 10)),
    );
    assert_error_answer(&r, 416);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes */{}", full.len()))
    );

    // conditional
    let r = send(
        client()
            .get(s.url(url))
            .header("If-None-Match", format!("\"{b3}\"")),
    );
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    let r = send(
        client()
            .get(s.url(url))
            .header("If-None-Match", format!("\"{}\"", "0".repeat(64))),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body, full);

    // unknown format
    assert_error_answer(&get(&s, &format!("{url}?format=rar")), 400);
    // unknown component
    assert_error_answer(&get(&s, "/v1/components/dl/9.9/rocky9"), 404);
    let h = send(client().head(s.url("/v1/components/dl/9.9/rocky9")));
    assert_eq!(h.status, 404);
}

#[test]
pub fn download_as_gzip_has_the_same_files() {
    let s = Server::start();
    let body = tar_gz("2.5", &[("a.txt", b"A"), ("d/b.bin", &noise(7, 5000))]);
    let rec = assert_created(&put(&s, "gzc/2.5/rocky9", Some(WRITE_KEY), body));
    let zstd_dl = get(&s, "/v1/components/gzc/2.5/rocky9");
    let r = get(&s, "/v1/components/gzc/2.5/rocky9?format=tar.gz");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/gzip")
    );
    assert!(r
        .header("content-disposition")
        .unwrap_or_default()
        .contains("gzc-2.5-rocky9.tar.gz"));
    assert_eq!(&r.body[..2], &[0x1f, 0x8b], "gzip magic");
    assert_eq!(
        r.header("etag"),
        Some(format!("\"{}\"", hex_of(&r.body))),
        "the etag of the gzip form is its own blake3"
    );
    assert_ne!(hex_of(&r.body), rec["blake3"].as_str().unwrap());
    assert_eq!(files_of(&r.body, true), files_of(&zstd_dl.body, false));
    let paths: Vec<String> = entries(&r.body, true).into_iter().map(|e| e.path).collect();
    let zpaths: Vec<String> = entries(&zstd_dl.body, false)
        .into_iter()
        .map(|e| e.path)
        .collect();
    assert_eq!(paths, zpaths);
    // made once, then served the same
    let again = get(&s, "/v1/components/gzc/2.5/rocky9?format=tar.gz");
    assert_eq!(again.body, r.body);
    assert_eq!(again.header("etag"), r.header("etag"));
}

#[test]
pub fn info_and_blob_routes() {
    let s = Server::start();
    let (rec, full) = store(&s, "inf", "0.1", "rhel9", 3);
    let b3 = rec["blake3"].as_str().unwrap().to_owned();

    let r = get(&s, "/v1/components/inf/0.1/rhel9/info");
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["status"], "found");
    let c = &v["component"];
    assert_eq!(c["component"], "inf");
    assert_eq!(c["tag"], "0.1");
    assert_eq!(c["arch"], "rhel9");
    assert_eq!(c["blake3"], b3.as_str());
    assert_eq!(c["size"].as_u64(), Some(full.len() as u64));
    assert_eq!(c["created"], rec["created"]);
    assert_eq!(c["path"], "/v1/components/inf/0.1/rhel9");
    assert_error_answer(&get(&s, "/v1/components/inf/0.2/rhel9/info"), 404);

    let r = get(&s, &format!("/v1/blobs/{b3}"));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, full);
    let cc = r.header("cache-control").unwrap_or_default();
    assert!(cc.contains("immutable"), "cache-control: {cc}");
    assert_eq!(r.header("etag"), Some(format!("\"{b3}\"")));
    // upper-case hex names the same blob
    let r = get(&s, &format!("/v1/blobs/{}", b3.to_ascii_uppercase()));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, full);
    // HEAD
    let h = send(client().head(s.url(&format!("/v1/blobs/{b3}"))));
    assert_eq!(h.status, 200);
    assert!(h.body.is_empty());
    assert_eq!(h.header("content-length"), Some(full.len().to_string()));

    assert_error_answer(&get(&s, "/v1/blobs/not-a-hash"), 400);
    assert_error_answer(&get(&s, &format!("/v1/blobs/{}", "g".repeat(64))), 400);
    assert_error_answer(&get(&s, &format!("/v1/blobs/{}", "ab".repeat(31))), 400);
    let e = assert_error_answer(&get(&s, &format!("/v1/blobs/{}", hex_of(b"nothing"))), 404);
    assert_eq!(e["code"], "blob_not_found");
}
