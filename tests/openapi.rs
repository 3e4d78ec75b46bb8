//! The OpenAPI document covers every route of the table, is valid, and the
//! docs page works offline.
mod common;
use common::*;

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::Value;

const METHODS: [&str; 6] = ["get", "head", "put", "post", "delete", "patch"];

/// `{name}` / `{name:regex}` / `{name}*` -> `{name}` (OpenAPI's form).
fn openapi_path(actix: &str) -> String {
    let mut out = String::new();
    let mut rest = actix;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = open + rest[open..].find('}').expect("unclosed { in a route");
        let name = rest[open + 1..close].split(':').next().unwrap();
        out.push_str(&format!("{{{name}}}"));
        rest = rest[close + 1..].trim_start_matches('*');
    }
    out.push_str(rest);
    out
}

/// The string literal at the start of `s` (after the opening quote).
fn literal(s: &str) -> &str {
    &s[..s.find('"').expect("unterminated string")]
}

/// (METHOD, path) of every route in the table of `src/http/mod.rs`, read
/// from its source: each `resource("PATH")` (or `.route("PATH", ...)`) and
/// the `web::get()`/`head()`/`put()`/`post()`/`delete()` calls that follow
/// it, up to the next one.
fn routes_in_source() -> BTreeSet<(String, String)> {
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/http/mod.rs"))
        .expect("read src/http/mod.rs");
    let code: String = src
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut routes = BTreeSet::new();
    let mut current: Option<String> = None;
    let mut i = 0;
    while i < code.len() {
        let rest = &code[i..];
        if let Some(r) = rest.strip_prefix("resource(\"") {
            current = Some(literal(r).to_owned());
            i += "resource(\"".len();
        } else if let Some(r) = rest.strip_prefix(".route(\"") {
            current = Some(literal(r).to_owned());
            i += ".route(\"".len();
        } else if let Some(m) = METHODS
            .iter()
            .find(|m| rest.starts_with(&format!("web::{m}()")))
        {
            let path = current.clone().unwrap_or_else(|| {
                panic!("web::{m}() before any resource(\"...\") in src/http/mod.rs")
            });
            routes.insert((m.to_uppercase(), openapi_path(&path)));
            i += format!("web::{m}()").len();
        } else {
            i += rest.chars().next().unwrap().len_utf8();
        }
    }
    routes
}

fn routes_in_document(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in METHODS {
            if item.get(m).is_some() {
                out.insert((m.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

fn fetch_document(s: &Server) -> Value {
    let r = client().get(s.url("/openapi.json")).send().unwrap();
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("application/json"), "{ct}");
    r.json().unwrap()
}

#[test]
fn the_route_parser_sees_the_table() {
    let routes = routes_in_source();
    for (m, p) in [
        ("GET", "/healthz"),
        ("HEAD", "/component"),
        ("POST", "/component"),
        ("PUT", "/v1/components/{component}/{tag}/{arch}"),
        ("DELETE", "/v1/components/{component}/{tag}/{arch}"),
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
    ] {
        assert!(
            routes.contains(&(m.to_owned(), p.to_owned())),
            "{m} {p} not found in {routes:?}"
        );
    }
    assert!(routes.len() >= 25, "{routes:?}");
    assert_eq!(openapi_path("/a/{x:[0-9]+}/{tail}*"), "/a/{x}/{tail}");
}

#[test]
fn every_route_is_documented() {
    let s = Server::start();
    let doc = fetch_document(&s);
    assert_eq!(doc["info"]["title"], "artifact-store");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    let routed = routes_in_source();
    let documented = routes_in_document(&doc);
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from /openapi.json (add #[utoipa::path] to the handler and list it in \
         src/http/openapi.rs): {undocumented:?}"
    );
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        unrouted.is_empty(),
        "documented but not in the route table: {unrouted:?}"
    );

    let tags = [
        "components",
        "original-api",
        "builds",
        "jobs",
        "images",
        "dependencies",
        "keys",
        "workers",
        "service",
        "workers",
    ];
    for (method, path) in &documented {
        let op = &doc["paths"][path][method.to_lowercase()];
        let t = op["tags"].as_array().expect("tags");
        assert!(
            !t.is_empty() && t.iter().all(|x| tags.contains(&x.as_str().unwrap())),
            "{method} {path}: tags {t:?}"
        );
        assert!(
            op["summary"].is_string() || op["description"].is_string(),
            "{method} {path}: no summary or description"
        );
        let responses = op["responses"].as_object().expect("responses");
        assert!(!responses.is_empty(), "{method} {path}: no responses");
        // every JSON error answer is described by the error schema
        for (code, r) in responses {
            if code.starts_with('4') || code.starts_with('5') {
                if let Some(schema) = r["content"]["application/json"]["schema"]["$ref"].as_str() {
                    assert!(
                        schema.ends_with("/ErrorBody") || schema.ends_with("/BuildFailed"),
                        "{method} {path} {code}: {schema}"
                    );
                }
            }
        }
        // writes take the identity headers
        // (a worker's routes take a job token: who asked is in the spec)
        let job_token = op["security"]
            .as_array()
            .is_some_and(|s| s.iter().any(|x| x.get("job_token").is_some()));
        let writes = matches!(method.as_str(), "PUT" | "POST" | "DELETE")
            && path != "/v1/components/missing"
            && !job_token;
        if writes {
            let names: BTreeSet<&str> = op["parameters"]
                .as_array()
                .map(|ps| ps.iter().filter_map(|p| p["name"].as_str()).collect())
                .unwrap_or_default();
            for h in [
                "linux_username",
                "github_username",
                "X-adbs-linux-user",
                "X-adbs-github-user",
            ] {
                assert!(names.contains(h), "{method} {path}: no {h} header");
            }
        }
    }
    let bearer = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(bearer["type"], "http");
    assert_eq!(bearer["scheme"], "bearer");
    for name in [
        "ErrorBody",
        "ComponentRecord",
        "MissingAnswer",
        "JobAccepted",
        "ImageAnswer",
    ] {
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "no schema {name}"
        );
    }
}

#[test]
fn the_document_is_valid_openapi() {
    let s = Server::start();
    let doc = fetch_document(&s);
    let have = Command::new("python3")
        .args(["-c", "import openapi_spec_validator"])
        .status()
        .map(|st| st.success())
        .unwrap_or(false);
    assert!(
        have,
        "the Python package openapi-spec-validator is missing \
         (python3 -m pip install openapi-spec-validator; .ci/test.sh installs it)"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let out = Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()
        .expect("run openapi_spec_validator");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "openapi-spec-validator refused the document:\n{text}"
    );
    assert!(text.contains("OK"), "{text}");
}

/// The `src="..."` and `href="..."` values of a page.
fn references(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["src=\"", "href=\""] {
        let mut rest = html;
        while let Some(i) = rest.find(attr) {
            rest = &rest[i + attr.len()..];
            out.push(literal(rest).to_owned());
        }
    }
    out
}

#[test]
fn the_docs_page_works_offline() {
    let s = Server::start();
    let r = client().get(s.url("/docs")).send().unwrap();
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/html"), "{ct}");
    let html = r.text().unwrap();
    assert!(html.contains("SwaggerUIBundle"), "{html}");
    assert!(html.contains("openapi.json"), "{html}");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "the page refers to another site:\n{html}"
    );
    let refs = references(&html);
    assert_eq!(refs.len(), 2, "{refs:?}");
    for (name, ctype, min) in [
        ("swagger-ui-bundle.js", "javascript", 500_000),
        ("swagger-ui.css", "text/css", 50_000),
    ] {
        let rel = refs
            .iter()
            .find(|r| r.split('?').next().unwrap().ends_with(name))
            .unwrap_or_else(|| panic!("the page does not load {name}: {refs:?}"));
        assert!(
            !rel.starts_with("//") && !rel.contains("://"),
            "{rel} is not local"
        );
        // relative to /docs
        let url = if rel.starts_with('/') {
            s.url(rel)
        } else {
            s.url(&format!("/{rel}"))
        };
        let r = client().get(&url).send().unwrap();
        assert_eq!(r.status(), 200, "{url}");
        let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(ct.contains(ctype), "{url}: {ct}");
        let cache = r.headers()["cache-control"].to_str().unwrap().to_owned();
        assert!(cache.contains("max-age=31536000"), "{url}: {cache}");
        let body = r.bytes().unwrap();
        assert!(body.len() > min, "{url}: only {} bytes", body.len());
    }
}
