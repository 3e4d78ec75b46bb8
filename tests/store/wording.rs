//! Error answers speak of the API (fields, JSON shapes, parameters, what to
//! send), never of the Rust types behind it; a JSON route asked without a
//! JSON content type answers 415 saying what to send; `/docs/` is `/docs`.

use super::*;

/// Words only a reader of the Rust source would understand.
const RUST_WORDS: [&str; 8] = [
    "untagged",
    "variant",
    "struct ",
    "invalid type: ",
    "Content type error",
    "::",
    "Option<",
    "Vec<",
];

/// Asserts an error answer with `status` whose message says nothing in
/// Rust's words and contains each of `needles`; returns the message.
fn api_words(r: &Resp, status: u16, needles: &[&str]) -> String {
    let v = assert_error_answer(r, status);
    let msg = v["errorMessage"].as_str().unwrap().to_owned();
    for w in RUST_WORDS {
        assert!(!msg.contains(w), "speaks Rust ({w:?}): {msg}");
    }
    for n in needles {
        assert!(msg.contains(n), "lacks {n:?}: {msg}");
    }
    msg
}

fn post_json(s: &Server, path: &str, key: Option<&str>, body: &str) -> Resp {
    send(
        with_key(client().post(s.url(path)), key)
            .header("Content-Type", "application/json")
            .body(body.to_owned()),
    )
}

#[test]
pub fn errors_speak_of_the_api_not_of_rust() {
    let s = Server::start();
    let missing = "/v1/components/missing";

    // bodies of the wrong shape: what is wrong, in JSON's words
    for (body, needles) in [
        ("5", &["the JSON body"][..]),
        ("\"asyn\"", &["the JSON body"]),
        ("{}", &["components"]),
        ("{\"components\": 5}", &["list"]),
        (
            "{\"components\": [{\"component\": \"asyn\"}]}",
            &["\"tag\""],
        ),
        (
            "{\"components\": [{\"component\": 5, \"tag\": \"R1\"}]}",
            &["the number 5", "a string"],
        ),
        (
            "[{\"component\": \"asyn\", \"arch\": \"rocky9\"}]",
            &["\"tag\""],
        ),
        ("[1, 2]", &["the JSON body"]),
        ("{\"components\": [", &["not valid JSON"]),
        ("not json", &["not valid JSON"]),
    ] {
        let r = post_json(&s, missing, None, body);
        api_words(&r, 400, needles);
    }
    // a body the route does not take says what the route takes
    let msg = api_words(&post_json(&s, missing, None, "5"), 400, &[]);
    assert!(msg.contains("component") && msg.contains("tag"), "{msg}");

    // no JSON content type: 415, saying what to send
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let mut rb = client().post(s.url(missing)).body("[]");
        if let Some(ct) = ct {
            rb = rb.header("Content-Type", ct);
        }
        let r = send(rb);
        let msg = api_words(&r, 415, &["Content-Type: application/json"]);
        assert_eq!(r.json()["code"], "unsupported_media_type");
        if let Some(ct) = ct {
            assert!(msg.contains(ct), "names what was sent: {msg}");
        }
    }
    // builds: the fields it needs
    let r = post_json(
        &s,
        "/v1/builds",
        Some(WRITE_KEY),
        "{\"component\": \"asyn\"}",
    );
    api_words(&r, 400, &["\"tag\""]);
    let r = post_json(&s, "/v1/builds", Some(WRITE_KEY), "[]");
    api_words(&r, 400, &["the JSON body", "an object"]);
    let r = send(
        client()
            .post(s.url("/v1/builds"))
            .header("Authorization", bearer(WRITE_KEY))
            .body("{}"),
    );
    api_words(&r, 415, &["Content-Type: application/json"]);

    // query strings: the parameter at fault, and what it takes
    let r = get(&s, "/v1/components?limit=many");
    api_words(&r, 400, &["limit", "whole number"]);
    let r = get(&s, "/v1/components?limit=-1");
    api_words(&r, 400, &["limit"]);
    let r = get(&s, "/v1/components?count=maybe");
    api_words(&r, 400, &["count", "true or false"]);
    let r = get(&s, "/v1/jobs?limit=x");
    api_words(&r, 400, &["limit"]);
    let r = get(&s, "/v1/components/asyn/R1/rocky9?format=zip");
    api_words(&r, 400, &["format"]);
    let r = put(&s, "asyn/R1/rocky9?wrap=perhaps", Some(WRITE_KEY), vec![1]);
    api_words(&r, 400, &["wrap"]);

    // the original API's JSON
    let r = send(
        client()
            .put(s.url("/component"))
            .header("Authorization", bearer(WRITE_KEY))
            .header("Content-Type", "application/json")
            .body("{\"component\": "),
    );
    api_words(&r, 400, &["not valid JSON"]);
}

#[test]
pub fn docs_with_a_trailing_slash() {
    let s = Server::start();
    for path in ["/docs", "/docs/", "/docs/index.html"] {
        let r = get(&s, path);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let ct = r.header("content-type").unwrap_or_default();
        assert!(ct.starts_with("text/html"), "{path}: {ct}");
        assert!(r.text().contains("swagger-ui-bundle.js"), "{path}");
    }
    // the page one level down finds its assets and the document above it
    let page = get(&s, "/docs/").text();
    assert!(page.contains("<base href=\"../\">"), "{page}");
    for asset in [
        "/docs/swagger-ui-bundle.js",
        "/docs/swagger-ui.css",
        "/openapi.json",
    ] {
        assert_eq!(get(&s, asset).status, 200, "{asset}");
    }
}
