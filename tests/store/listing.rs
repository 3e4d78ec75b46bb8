//! Listing, paging, versions, and the missing-check.

use super::*;

#[test]
pub fn listing_paging_versions_and_missing() {
    let s = Server::start();
    let keys = [
        ("alpha", "1.0", "rocky9"),
        ("alpha", "2.0", "rocky9"),
        ("alpha", "1.0", "rhel9"),
        ("alpine", "1", "rocky9"),
        ("beta", "1", "rocky9"),
    ];
    for (i, (c, t, a)) in keys.iter().enumerate() {
        store(&s, c, t, a, i as u64);
    }
    let paths = |v: &Value| -> Vec<String> {
        v["components"]
            .as_array()
            .expect("components")
            .iter()
            .map(|r| {
                format!(
                    "{}/{}/{}",
                    r["component"].as_str().unwrap(),
                    r["tag"].as_str().unwrap(),
                    r["arch"].as_str().unwrap()
                )
            })
            .collect()
    };

    // everything
    let v = get(&s, "/v1/components").json();
    assert_eq!(v["status"], "ok");
    assert_eq!(
        paths(&v),
        [
            "alpha/1.0/rhel9",
            "alpha/1.0/rocky9",
            "alpha/2.0/rocky9",
            "alpine/1/rocky9",
            "beta/1/rocky9"
        ]
    );
    assert!(v["next"].is_null(), "{v}");
    assert!(v["components"][0]["blake3"].is_string());

    // paged by prefix
    let v = get(&s, "/v1/components?prefix=al&limit=2").json();
    assert_eq!(paths(&v), ["alpha/1.0/rhel9", "alpha/1.0/rocky9"]);
    let next = v["next"].as_str().expect("next").to_owned();
    assert_eq!(next, "alpha/1.0/rocky9");
    let v = get(
        &s,
        &format!("/v1/components?prefix=al&limit=2&after={next}"),
    )
    .json();
    assert_eq!(paths(&v), ["alpha/2.0/rocky9", "alpine/1/rocky9"]);
    let mut seen = paths(&v).len() + 2;
    let mut next = v["next"].clone();
    while let Some(n) = next.as_str() {
        let v = get(&s, &format!("/v1/components?prefix=al&limit=2&after={n}")).json();
        for p in paths(&v) {
            assert!(p.starts_with("al"), "{p}");
        }
        seen += paths(&v).len();
        next = v["next"].clone();
    }
    assert_eq!(seen, 4, "every 'al' component exactly once");

    let v = get(&s, "/v1/components?prefix=beta").json();
    assert_eq!(paths(&v), ["beta/1/rocky9"]);
    let v = get(&s, "/v1/components?prefix=zzz").json();
    assert_eq!(paths(&v), Vec::<String>::new());
    assert_error_answer(&get(&s, "/v1/components?after=only-two/parts"), 400);
    assert_error_answer(&get(&s, "/v1/components?limit=lots"), 400);

    // one component
    let r = get(&s, "/v1/components/alpha");
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["component"], "alpha");
    let mut vs: Vec<String> = v["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{}/{}",
                r["tag"].as_str().unwrap(),
                r["arch"].as_str().unwrap()
            )
        })
        .collect();
    vs.sort();
    assert_eq!(vs, ["1.0/rhel9", "1.0/rocky9", "2.0/rocky9"]);
    // "alp" is a prefix of alpha and alpine, but not a component
    assert_error_answer(&get(&s, "/v1/components/alp"), 404);
    assert_error_answer(&get(&s, "/v1/components/nothere"), 404);

    // missing: a bare list
    let r = send(client().post(s.url("/v1/components/missing")).json(&json!([
        {"component": "alpha", "tag": "1.0", "arch": "rocky9"},
        {"component": "zzz", "tag": "1", "arch": "rocky9"},
        {"component": "alpha", "tag": "1.0", "arch": "centos7"}
    ])));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["checked"], 3);
    assert_eq!(
        v["missing"],
        json!([
            {"component": "zzz", "tag": "1", "arch": "rocky9"},
            {"component": "alpha", "tag": "1.0", "arch": "centos7"}
        ])
    );
    // wrapped, arch optional (default rocky9), "architecture" alias, any case
    let r = send(client().post(s.url("/v1/components/missing")).json(&json!({
        "components": [
            {"component": "alpha", "tag": "2.0"},
            {"component": "alpha", "tag": "1.0", "architecture": "RHEL9"},
            {"component": "alpha", "tag": "3.0"},
            {"component": "beta", "tag": "1", "arch": "null"}
        ]
    })));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["checked"], 4);
    assert_eq!(
        v["missing"],
        json!([{"component": "alpha", "tag": "3.0", "arch": "rocky9"}])
    );
    // nothing missing
    let v = send(
        client()
            .post(s.url("/v1/components/missing"))
            .json(&json!([{"component": "beta", "tag": "1"}])),
    )
    .json();
    assert_eq!(v["missing"], json!([]));
    // bad input
    assert_error_answer(
        &send(
            client()
                .post(s.url("/v1/components/missing"))
                .json(&json!([{"component": "a b", "tag": "1"}])),
        ),
        400,
    );
    assert_error_answer(
        &send(
            client()
                .post(s.url("/v1/components/missing"))
                .header("content-type", "application/json")
                .body("{not json"),
        ),
        400,
    );
}

#[test]
pub fn listing_searches_and_counts() {
    let s = Server::start();
    for (i, (c, t, a)) in [
        ("asyn", "R4.39", "rocky9"),
        ("asyn", "R4.39", "rhel9"),
        ("asyn", "R4.40", "rocky9"),
        ("motor", "R7.3.1", "rocky9"),
        ("motor-asyn-glue", "R1.0", "rhel9"),
    ]
    .iter()
    .enumerate()
    {
        store(&s, c, t, a, i as u64);
    }
    let paths = |v: &Value| -> Vec<String> {
        v["components"]
            .as_array()
            .expect("components")
            .iter()
            .map(|r| {
                r["path"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("/v1/components/")
                    .to_owned()
            })
            .collect()
    };
    // everything, counted: records and distinct components apart
    let v = get(&s, "/v1/components?count=true").json();
    assert_eq!(v["count"], json!({"records": 5, "components": 3}), "{v}");
    // no count unless asked
    assert!(get(&s, "/v1/components").json().get("count").is_none());

    // words anywhere in component/tag/arch, all of them, case aside
    let v = get(&s, "/v1/components?q=ASYN%20rocky&count=true").json();
    assert_eq!(paths(&v), ["asyn/R4.39/rocky9", "asyn/R4.40/rocky9"]);
    assert_eq!(v["count"], json!({"records": 2, "components": 1}), "{v}");
    let v = get(&s, "/v1/components?q=asyn&count=true").json();
    assert_eq!(v["count"], json!({"records": 4, "components": 2}), "{v}");
    let v = get(&s, "/v1/components?q=r4.39/").json();
    assert_eq!(paths(&v), ["asyn/R4.39/rhel9", "asyn/R4.39/rocky9"]);
    // with a prefix, and paged with after
    let v = get(&s, "/v1/components?prefix=motor&q=asyn").json();
    assert_eq!(paths(&v), ["motor-asyn-glue/R1.0/rhel9"]);
    let v = get(&s, "/v1/components?q=asyn&limit=2").json();
    assert_eq!(paths(&v), ["asyn/R4.39/rhel9", "asyn/R4.39/rocky9"]);
    let next = v["next"].as_str().expect("next").to_owned();
    let v = get(&s, &format!("/v1/components?q=asyn&limit=2&after={next}")).json();
    assert_eq!(
        paths(&v),
        ["asyn/R4.40/rocky9", "motor-asyn-glue/R1.0/rhel9"]
    );
    // nothing matches; characters that mean something to SQL mean nothing here
    for q in ["zzz", "%25", "_", "%27%3B", "a%5C"] {
        let v = get(&s, &format!("/v1/components?q={q}&count=true")).json();
        assert_eq!(paths(&v), Vec::<String>::new(), "{q}");
        assert_eq!(v["count"], json!({"records": 0, "components": 0}), "{q}");
    }
    // too many words
    let many = ["a"; 9].join("%20");
    let e = assert_error_answer(&get(&s, &format!("/v1/components?q={many}")), 400);
    assert!(e["errorMessage"].as_str().unwrap().contains("words"), "{e}");
    let e = assert_error_answer(&get(&s, "/v1/components?count=maybe"), 400);
    assert!(e["errorMessage"].as_str().unwrap().contains("count"), "{e}");
}
