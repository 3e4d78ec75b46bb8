mod common;
use common::*;

#[test]
fn healthz_answers_json() {
    let s = Server::start();
    let r = client().get(s.url("/healthz")).send().unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["status"], "ok");
}
