//! API keys as data, on the real binary: created by an admin (the secret
//! shown once), used (writes only within the key's scope, on every write
//! route that names a component; reads anywhere), listed (never a secret
//! nor a hash; last use noted), revoked (401 at once), expired (401);
//! bad input; the original API's routes; the CLI; and two replicas on one
//! PostgreSQL: a key made on one works on the other, and a revocation on
//! one holds on the other from the very next request.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// `POST /v1/keys` as `admin_key` with identity headers: status and body.
fn create(s: &Server, admin_key: &str, body: Value) -> (u16, Value) {
    json_of(
        client()
            .post(s.url("/v1/keys"))
            .header("Authorization", bearer(admin_key))
            .header("X-adbs-linux-user", "jdoe")
            .header("X-adbs-github-user", "jdoe-gh")
            .json(&body)
            .send()
            .expect("request"),
    )
}

/// A new key's secret (201 asserted).
fn secret_of(s: &Server, body: Value) -> String {
    let (status, v) = create(s, ADMIN_KEY, body);
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["status"], "created", "{v}");
    v["secret"].as_str().expect("secret").to_owned()
}

fn list(s: &Server, key: &str) -> (u16, Value, String) {
    let r = send(
        client()
            .get(s.url("/v1/keys"))
            .header("Authorization", bearer(key)),
    );
    let text = r.text();
    (r.status, r.json(), text)
}

fn listed(s: &Server, name: &str) -> Value {
    let (status, v, _) = list(s, ADMIN_KEY);
    assert_eq!(status, 200, "{v}");
    v["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["name"] == name)
        .unwrap_or_else(|| panic!("{name} is not listed: {v}"))
        .clone()
}

fn revoke(s: &Server, key: &str, name: &str) -> (u16, Value) {
    json_of(
        client()
            .delete(s.url(&format!("/v1/keys/{name}")))
            .header("Authorization", bearer(key))
            .send()
            .expect("request"),
    )
}

fn upload(s: &Server, path: &str, key: &str) -> Resp {
    send(
        client()
            .put(s.url(&format!("/v1/components/{path}")))
            .header("Authorization", bearer(key))
            .header("X-adbs-linux-user", "builder")
            .body(tar_gz(
                path.split('/').nth(1).unwrap_or("x"),
                &[("f", path.as_bytes())],
            )),
    )
}

fn info(s: &Server, path: &str, key: &str) -> Resp {
    get_key(s, &format!("/v1/components/{path}/info"), key)
}

/// An error answer in the API's words: no Rust type names.
fn assert_plain_error(status: u16, v: &Value, want: u16, needle: &str) {
    assert_error(status, v, want, needle);
    let msg = v["errorMessage"].as_str().unwrap_or_default();
    for word in ["Error", "::", "Some(", "None", "Principal", "KeyError"] {
        assert!(!msg.contains(word), "a Rust word ({word}) in: {msg}");
    }
}

#[test]
fn lifecycle_create_use_list_revoke() {
    let s = Server::start();
    let (status, made) = create(
        &s,
        ADMIN_KEY,
        json!({"name": "ci-asyn", "role": "write", "components": ["asyn*"]}),
    );
    assert_eq!(status, 201, "{made}");
    let secret = made["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("as_") && secret.len() == 67, "{secret}");
    let k = &made["key"];
    assert_eq!(k["name"], "ci-asyn");
    assert_eq!(k["role"], "write");
    assert_eq!(k["source"], "api");
    assert_eq!(k["state"], "active");
    assert_eq!(k["components"], json!(["asyn*"]));
    assert_eq!(k["created_by"]["key"], "admin");
    assert_eq!(k["created_by"]["linux_username"], "jdoe");
    assert_eq!(k["created_by"]["github_username"], "jdoe-gh");
    assert!(
        k.get("blake3").is_none() && k.get("secret").is_none(),
        "{k}"
    );

    // use: a write within the scope, recorded with the key's name
    let r = upload(&s, "asyn/R4-45/rocky9", &secret);
    assert_eq!(r.status, 201, "{}", r.text());
    let by = &r.json()["component"]["uploaded_by"];
    assert_eq!(by["key"], "ci-asyn", "{by}");
    assert_eq!(by["linux_username"], "builder", "{by}");
    let r = upload(&s, "asynDriver/1/rocky9", &secret);
    assert_eq!(r.status, 201, "{}", r.text());
    // outside the scope: 403 naming the scope, nothing stored
    let r = upload(&s, "motor/R7/rocky9", &secret);
    let e = assert_error_answer(&r, 403);
    assert_eq!(e["code"], "forbidden");
    let msg = e["errorMessage"].as_str().unwrap();
    assert!(msg.contains("asyn*") && msg.contains("motor"), "{msg}");
    assert_eq!(info(&s, "motor/R7/rocky9", ADMIN_KEY).status, 404);
    // a config-file key records its name too
    let r = upload(&s, "motor/R7/rocky9", WRITE_KEY);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["component"]["uploaded_by"]["key"], "ci");
    // reads are not scoped
    let r = info(&s, "motor/R7/rocky9", &secret);
    assert_eq!(r.status, 200, "{}", r.text());
    let r = get_key(&s, "/v1/components/motor/R7/rocky9", &secret);
    assert_eq!(r.status, 200);
    // a build outside the scope: 403 before anything is looked up
    let (status, v) = json_of(
        client()
            .post(s.url("/v1/builds"))
            .header("Authorization", bearer(&secret))
            .json(&json!({"component": "motor", "tag": "R8", "arch": "rocky9",
                          "url": "https://git.example.org/motor.git"}))
            .send()
            .unwrap(),
    );
    assert_plain_error(status, &v, 403, "asyn*");
    // and an image
    let form = reqwest::blocking::multipart::Form::new()
        .text("component", "motor-ioc")
        .text("branch", "main")
        .text("architecture", "rocky9")
        .part(
            "dockerfile",
            reqwest::blocking::multipart::Part::bytes(b"FROM scratch\n".to_vec())
                .file_name("Dockerfile"),
        );
    let (status, v) = json_of(
        client()
            .post(s.url("/v1/images"))
            .header("Authorization", bearer(&secret))
            .multipart(form)
            .send()
            .unwrap(),
    );
    assert_plain_error(status, &v, 403, "motor-ioc");

    // list: no secret, no hash; last use noted; config keys marked
    let (status, v, text) = list(&s, ADMIN_KEY);
    assert_eq!(status, 200, "{v}");
    assert!(!text.contains(&secret), "the secret is listed: {text}");
    assert!(!text.contains(&hash(&secret)), "a hash is listed: {text}");
    assert!(!text.contains(&hash(ADMIN_KEY)), "a hash is listed: {text}");
    let names: Vec<(&str, &str)> = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["name"].as_str().unwrap(), k["source"].as_str().unwrap()))
        .collect();
    assert_eq!(
        names,
        [
            ("admin", "config"),
            ("ci", "config"),
            ("reader", "config"),
            ("ci-asyn", "api")
        ]
    );
    let k = listed(&s, "ci-asyn");
    let used = k["last_used"].as_str().expect("last_used");
    let used = chrono::DateTime::parse_from_rfc3339(used).unwrap();
    assert!(
        (chrono::Utc::now() - used.to_utc()).num_seconds() < 120,
        "{k}"
    );
    assert_eq!(k["state"], "active");

    // revoke: at once
    let (status, v) = revoke(&s, ADMIN_KEY, "ci-asyn");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "revoked");
    assert_eq!(v["key"]["state"], "revoked");
    assert_eq!(v["key"]["revoked"]["by"]["key"], "admin");
    let r = upload(&s, "asyn/R4-46/rocky9", &secret);
    let e = assert_error_answer(&r, 401);
    assert!(
        e["errorMessage"].as_str().unwrap().contains("revoked"),
        "{e}"
    );
    assert_eq!(r.header("www-authenticate").as_deref(), Some("Bearer"));
    // reads too: a key that stopped working is noticed
    let r = info(&s, "asyn/R4-45/rocky9", &secret);
    let e = assert_error_answer(&r, 401);
    assert!(e["errorMessage"].as_str().unwrap().contains("revoked"));
    assert_eq!(listed(&s, "ci-asyn")["state"], "revoked");
    // revoking again changes nothing; the name stays taken
    let (status, again) = revoke(&s, ADMIN_KEY, "ci-asyn");
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["key"]["revoked"], v["key"]["revoked"]);
    let (status, v) = create(&s, ADMIN_KEY, json!({"name": "ci-asyn", "role": "write"}));
    assert_plain_error(status, &v, 409, "ci-asyn");
    // the records keep who stored them
    let r = info(&s, "asyn/R4-45/rocky9", READ_KEY);
    assert_eq!(r.json()["component"]["uploaded_by"]["key"], "ci-asyn");
}

#[test]
fn scoped_admin_keys_delete_within_their_scope_and_cannot_manage_keys() {
    let s = Server::start();
    let ops = secret_of(
        &s,
        json!({"name": "ops-asyn", "role": "admin", "components": ["asyn*", "*-ioc"]}),
    );
    for path in ["asyn/1/rocky9", "motor/1/rocky9"] {
        let r = upload(&s, path, WRITE_KEY);
        assert_eq!(r.status, 201, "{}", r.text());
    }
    let del = |path: &str| {
        send(
            client()
                .delete(s.url(&format!("/v1/components/{path}")))
                .header("Authorization", bearer(&ops)),
        )
    };
    let e = assert_error_answer(&del("motor/1/rocky9"), 403);
    assert!(e["errorMessage"].as_str().unwrap().contains("asyn*, *-ioc"));
    assert_eq!(del("asyn/1/rocky9").status, 200);
    // overwrite within the scope (admin)
    let r = send(
        client()
            .put(s.url("/v1/components/asyn/2/rocky9?overwrite=true"))
            .header("Authorization", bearer(&ops))
            .body(tar_gz("2", &[("f", b"2")])),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    // a scoped admin key may not make keys (it could make an unscoped one)
    let (status, v) = create(&s, &ops, json!({"name": "escalate", "role": "admin"}));
    assert_plain_error(status, &v, 403, "scope");
    let (status, v, _) = list(&s, &ops);
    assert_plain_error(status, &v, 403, "scope");
    let (status, v) = revoke(&s, &ops, "ops-asyn");
    assert_plain_error(status, &v, 403, "scope");
    // GC is not a write of a component
    let r = send(
        client()
            .post(s.url("/v1/admin/gc"))
            .header("Authorization", bearer(&ops)),
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn expired_keys_are_refused() {
    let s = Server::start();
    let at = chrono::Utc::now() + chrono::Duration::seconds(2);
    let (status, v) = create(
        &s,
        ADMIN_KEY,
        json!({"name": "brief", "role": "read", "expires_at": at.to_rfc3339()}),
    );
    assert_eq!(status, 201, "{v}");
    let secret = v["secret"].as_str().unwrap().to_owned();
    assert_eq!(get_key(&s, "/v1/components", &secret).status, 200);
    std::thread::sleep(
        (at - chrono::Utc::now())
            .to_std()
            .unwrap_or_default()
            .saturating_add(Duration::from_millis(300)),
    );
    let r = get_key(&s, "/v1/components", &secret);
    let e = assert_error_answer(&r, 401);
    let msg = e["errorMessage"].as_str().unwrap();
    assert!(msg.contains("expired") && msg.contains("brief"), "{msg}");
    assert_eq!(listed(&s, "brief")["state"], "expired");

    // unknown, revoked and expired say which
    let r = get_key(&s, "/v1/components", &format!("as_{}", "0".repeat(64)));
    let e = assert_error_answer(&r, 401);
    let msg = e["errorMessage"].as_str().unwrap();
    assert!(
        msg.contains("not valid") && !msg.contains("expired"),
        "{msg}"
    );

    // expires_in_days
    let (status, v) = create(
        &s,
        ADMIN_KEY,
        json!({"name": "quarter", "role": "write", "expires_in_days": 90}),
    );
    assert_eq!(status, 201, "{v}");
    let exp = chrono::DateTime::parse_from_rfc3339(v["key"]["expires_at"].as_str().unwrap())
        .unwrap()
        .to_utc();
    let days = (exp - chrono::Utc::now()).num_days();
    assert!((89..=90).contains(&days), "{v}");
}

#[test]
fn bad_requests_are_refused_in_plain_words() {
    let s = Server::start();
    // roles
    let (status, v) = create(&s, WRITE_KEY, json!({"name": "x", "role": "read"}));
    assert_plain_error(status, &v, 403, "admin");
    let (status, v, _) = list(&s, READ_KEY);
    assert_plain_error(status, &v, 403, "admin");
    let (status, v) = revoke(&s, WRITE_KEY, "ci");
    assert_plain_error(status, &v, 403, "admin");
    let (status, v) = json_of(
        client()
            .post(s.url("/v1/keys"))
            .json(&json!({"name": "x", "role": "read"}))
            .send()
            .unwrap(),
    );
    assert_plain_error(status, &v, 401, "key");
    let (status, v) = json_of(client().get(s.url("/v1/keys")).send().unwrap());
    assert_plain_error(status, &v, 401, "key");

    // input
    for (body, needle) in [
        (json!({"name": "a b", "role": "read"}), "key name"),
        (json!({"name": "../x", "role": "read"}), "key name"),
        (json!({"name": "", "role": "read"}), "key name"),
        (json!({"name": "x".repeat(200), "role": "read"}), "longer"),
        (json!({"name": "x", "role": "root"}), "root"),
        (json!({"name": "x"}), "role"),
        (
            json!({"name": "x", "role": "write", "component": ["a"]}),
            "component",
        ),
        (
            json!({"name": "x", "role": "write", "components": []}),
            "components",
        ),
        (
            json!({"name": "x", "role": "write", "components": ["a/b"]}),
            "a/b",
        ),
        (
            json!({"name": "x", "role": "write", "components": ["-x"]}),
            "-x",
        ),
        (
            json!({"name": "x", "role": "write", "expires_in_days": 0}),
            "expires_in_days",
        ),
        (
            json!({"name": "x", "role": "write", "expires_in_days": -3}),
            "-3",
        ),
        (
            json!({"name": "x", "role": "write", "expires_at": "soon"}),
            "JSON",
        ),
        (
            json!({"name": "x", "role": "write", "expires_at": "2001-01-01T00:00:00Z"}),
            "future",
        ),
        (
            json!({"name": "x", "role": "write", "expires_at": "2999-01-01T00:00:00Z",
                   "expires_in_days": 3}),
            "not both",
        ),
    ] {
        let (status, v) = create(&s, ADMIN_KEY, body.clone());
        assert_plain_error(status, &v, 400, needle);
        assert!(!v.to_string().contains("as_"), "{body}: {v}");
    }
    let (status, v) = json_of(
        client()
            .post(s.url("/v1/keys"))
            .header("Authorization", bearer(ADMIN_KEY))
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .unwrap(),
    );
    assert_plain_error(status, &v, 400, "JSON");

    // names are unique, the config file's and reserved ones included
    for name in ["ci", "admin", "anonymous"] {
        let (status, v) = create(&s, ADMIN_KEY, json!({"name": name, "role": "read"}));
        assert_plain_error(status, &v, 409, name);
    }
    // config-file keys are revoked by editing the file
    let (status, v) = revoke(&s, ADMIN_KEY, "ci");
    assert_plain_error(status, &v, 409, "config");
    assert_eq!(get_key(&s, "/v1/components", WRITE_KEY).status, 200);
    let (status, v) = revoke(&s, ADMIN_KEY, "nobody");
    assert_plain_error(status, &v, 404, "nobody");
    let (status, v) = revoke(&s, ADMIN_KEY, "a..b");
    assert_plain_error(status, &v, 400, "key name");
    // methods
    let r = send(
        client()
            .put(s.url("/v1/keys"))
            .header("Authorization", bearer(ADMIN_KEY)),
    );
    assert_error_answer(&r, 405);
}

/// The original API: a key that is sent is checked (valid, scope) even from
/// a trusted network; without a key the network decides, as before.
#[test]
fn the_original_api_checks_a_sent_key() {
    let tmp = tempfile::tempdir().unwrap();
    let shared = tmp.path().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let s = Server::start_with(&config_with_keys(&format!(
        "[compat]\nimport_roots = ['{}']\ntrusted_networks = [\"127.0.0.0/8\"]\n",
        shared.display()
    )));
    let secret = secret_of(
        &s,
        json!({"name": "ci-asyn", "role": "write", "components": ["asyn"]}),
    );
    let tarball = |c: &str| {
        let p = shared.join(format!("{c}.tar.gz"));
        std::fs::write(&p, tar_gz("R1", &[("f", c.as_bytes())])).unwrap();
        p
    };
    let put = |c: &str, key: Option<&str>| {
        json_of(
            with_key(client().put(s.url("/component")), key)
                .json(&json!({"component": c, "tag": "R1", "arch": "rocky9",
                              "results_tarball": tarball(c)}))
                .send()
                .unwrap(),
        )
    };
    let (status, v) = put("motor", Some(&secret));
    assert_plain_error(status, &v, 403, "asyn");
    let (status, v) = put("asyn", Some(&secret));
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["component"]["uploaded_by"]["key"], "ci-asyn");
    // no key: the trusted network, recorded without a key
    let (status, v) = put("motor", None);
    assert_eq!(status, 201, "{v}");
    assert!(v["component"]["uploaded_by"].get("key").is_none(), "{v}");
    // POST /component (a build) outside the scope
    let (status, v) = json_of(
        client()
            .post(s.url("/component"))
            .header("Authorization", bearer(&secret))
            .json(
                &json!({"component": "calc", "tag": "R3", "architecture": "rocky9",
                          "url": "https://git.example.org/calc.git"}),
            )
            .send()
            .unwrap(),
    );
    assert_plain_error(status, &v, 403, "calc");
    // a download that would start a build on a miss (build.on_miss =
    // "trusted"): a key whose scope does not name the component is not made
    // good by the trusted network
    let miss = |c: &str, key: Option<&str>| {
        json_of(
            with_key(
                client().get(s.url(&format!(
                    "/component?component={c}&tag=R9&architecture=rocky9"
                ))),
                key,
            )
            .send()
            .unwrap(),
        )
    };
    let (status, v) = miss("calc", Some(&secret));
    assert_plain_error(status, &v, 404, "build.on_miss");
    // in its scope, or without a key: a build would start (were the
    // repository known)
    for (c, key) in [("asyn", Some(secret.as_str())), ("calc", None)] {
        let (status, v) = miss(c, key);
        assert_plain_error(status, &v, 404, "repository is unknown");
    }
    // a revoked key is refused, from a trusted network too
    let (status, _) = revoke(&s, ADMIN_KEY, "ci-asyn");
    assert_eq!(status, 200);
    let (status, v) = put("asyn", Some(&secret));
    assert_plain_error(status, &v, 401, "revoked");
}

/// A build asked for by a key records the key in its job.
#[test]
fn jobs_record_the_key_that_asked() {
    let s = Server::start();
    let secret = secret_of(&s, json!({"name": "pipeline-7", "role": "write"}));
    let (status, v) = json_of(
        client()
            .post(s.url("/v1/builds"))
            .header("Authorization", bearer(&secret))
            .header("X-adbs-linux-user", "jdoe")
            // nothing listens there: the job fails, and that is all right
            .json(&json!({"component": "calc", "tag": "R3", "arch": "rocky9",
                          "url": "https://127.0.0.1:9/calc.git"}))
            .send()
            .unwrap(),
    );
    assert_eq!(status, 202, "{v}");
    let id = v["job"].as_str().expect("job id").to_owned();
    let job = wait_job(&s, &id);
    assert_eq!(job["requested_by"]["key"], "pipeline-7", "{job}");
    assert_eq!(job["requested_by"]["linux_username"], "jdoe", "{job}");
}

/// Jobs and polling workers: a key with a scope cancels only the jobs of
/// its components and cannot claim builds (a worker builds whatever it is
/// handed).
#[test]
fn scoped_keys_cancel_their_jobs_only_and_claim_none() {
    // named a worker key: still refused, for its scope
    let s = Server::start_with(&config_with_keys("[build]\nworker_keys = [\"ci-asyn\"]\n"));
    let secret = secret_of(
        &s,
        json!({"name": "ci-asyn", "role": "write", "components": ["asyn*"]}),
    );
    let build = |c: &str| {
        let (status, v) = json_of(
            client()
                .post(s.url("/v1/builds"))
                .header("Authorization", bearer(WRITE_KEY))
                // nothing listens there: the job fails, and that is all right
                .json(&json!({"component": c, "tag": "R1", "arch": "rocky9",
                              "url": format!("https://127.0.0.1:9/{c}.git")}))
                .send()
                .unwrap(),
        );
        assert_eq!(status, 202, "{v}");
        v["job"].as_str().expect("job id").to_owned()
    };
    let cancel = |id: &str, key: &str| {
        json_of(
            client()
                .delete(s.url(&format!("/v1/jobs/{id}")))
                .header("Authorization", bearer(key))
                .header("X-adbs-linux-user", "jdoe")
                .send()
                .unwrap(),
        )
    };
    let calc = build("calc");
    let (status, v) = cancel(&calc, &secret);
    assert_plain_error(status, &v, 403, "asyn*");
    assert!(v["errorMessage"].as_str().unwrap().contains("calc"), "{v}");
    let asyn = build("asyn");
    let (status, v) = cancel(&asyn, &secret);
    assert!(status == 200 || status == 202, "{status} {v}");

    let claim = |key: &str| {
        send(
            client()
                .post(s.url("/v1/workers/claim"))
                .header("Authorization", bearer(key))
                .json(&json!({"worker": "w1", "arch": ["rocky9"]})),
        )
    };
    let r = claim(&secret);
    let e = assert_error_answer(&r, 403);
    assert!(e["errorMessage"].as_str().unwrap().contains("scope"), "{e}");
    let r = claim(ADMIN_KEY);
    assert_eq!(r.status, 204, "{}", r.text());
}

fn cli(s: &Server, token: &str, args: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_artifact-store"))
        .arg("key")
        .args(args)
        .env("ARTIFACT_STORE_URL", &s.base)
        .env("ARTIFACT_STORE_TOKEN", token)
        .output()
        .expect("run the CLI");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn the_cli_creates_lists_and_revokes() {
    let s = Server::start();
    let (ok, out, err) = cli(
        &s,
        ADMIN_KEY,
        &[
            "create",
            "ci-motor",
            "--role",
            "write",
            "--expires-in-days",
            "30",
            "--component",
            "motor*",
            "--component",
            "asyn",
        ],
    );
    assert!(ok, "{out}{err}");
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("key: "))
        .unwrap_or_else(|| panic!("no key printed: {out}"))
        .trim()
        .to_owned();
    assert!(out.contains("motor*,asyn"), "{out}");
    let r = upload(&s, "motor/R1/rocky9", &secret);
    assert_eq!(r.status, 201, "{}", r.text());

    let (ok, out, err) = cli(&s, ADMIN_KEY, &["list"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("ci-motor") && out.contains("config"), "{out}");
    assert!(!out.contains(&secret), "{out}");
    let (ok, out, _) = cli(&s, ADMIN_KEY, &["list", "--json"]);
    assert!(ok);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert!(v["keys"].as_array().unwrap().len() >= 4, "{v}");

    // a non-admin token: the server's words, exit 2
    let (ok, _, err) = cli(&s, WRITE_KEY, &["list"]);
    assert!(!ok);
    assert!(err.contains("403") && err.contains("admin"), "{err}");

    let (ok, out, err) = cli(&s, ADMIN_KEY, &["revoke", "ci-motor"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("revoked"), "{out}");
    assert_eq!(upload(&s, "motor/R2/rocky9", &secret).status, 401);

    // the offline commands still work
    let o = Command::new(env!("CARGO_BIN_EXE_artifact-store"))
        .args(["key", "new", "--name", "x", "--role", "read"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && out.contains("[[auth.keys]]"), "{out}");
    let o = Command::new(env!("CARGO_BIN_EXE_artifact-store"))
        .args(["key", "hash", "abc"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), hash("abc"));
}

/// Two replicas on one PostgreSQL (each with its own blobs: keys need only
/// the shared database).
#[test]
fn replicas_share_keys_and_a_revocation_holds_on_the_next_request() {
    let db = common::pg::database();
    let config = config_with_keys(&format!("[index]\nkind = \"postgres\"\nurl = \"{db}\"\n"));
    let a = Server::start_with(&config);
    let b = Server::start_with(&config);

    let secret = secret_of(
        &a,
        json!({"name": "ci-shared", "role": "write", "components": ["shared*"]}),
    );
    // made on a, used on b (and its scope holds there)
    let r = upload(&b, "shared/R1/rocky9", &secret);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["component"]["uploaded_by"]["key"], "ci-shared");
    assert_eq!(upload(&b, "other/R1/rocky9", &secret).status, 403);
    assert_eq!(info(&b, "shared/R1/rocky9", &secret).status, 200);
    // b noted the use; a lists it (never the secret nor its hash)
    assert!(listed(&a, "ci-shared")["last_used"].is_string());
    for s in [&a, &b] {
        let (status, v, text) = list(s, ADMIN_KEY);
        assert_eq!(status, 200, "{v}");
        assert!(
            !text.contains(&secret) && !text.contains(&hash(&secret)),
            "{text}"
        );
    }
    // names are unique across replicas
    let (status, v) = create(&b, ADMIN_KEY, json!({"name": "ci-shared", "role": "read"}));
    assert_plain_error(status, &v, 409, "ci-shared");

    // revoked on a: the very next request on b is refused
    let (status, v) = revoke(&a, ADMIN_KEY, "ci-shared");
    assert_eq!(status, 200, "{v}");
    let r = upload(&b, "shared/R2/rocky9", &secret);
    let e = assert_error_answer(&r, 401);
    assert!(
        e["errorMessage"].as_str().unwrap().contains("revoked"),
        "{e}"
    );
    assert_eq!(info(&b, "shared/R1/rocky9", &secret).status, 401);
    assert_eq!(listed(&b, "ci-shared")["state"], "revoked");
    // revoked on b, for a: the same
    let other = secret_of(&b, json!({"name": "ci-other", "role": "read"}));
    assert_eq!(get_key(&a, "/v1/components", &other).status, 200);
    assert_eq!(revoke(&b, ADMIN_KEY, "ci-other").0, 200);
    assert_eq!(get_key(&a, "/v1/components", &other).status, 401);

    // an expiry holds on both: made on b, refused on a once it passed
    let at = chrono::Utc::now() + chrono::Duration::seconds(2);
    let (status, v) = create(
        &b,
        ADMIN_KEY,
        json!({"name": "brief", "role": "write", "expires_at": at.to_rfc3339()}),
    );
    assert_eq!(status, 201, "{v}");
    let brief = v["secret"].as_str().unwrap().to_owned();
    let r = upload(&a, "brief/R1/rocky9", &brief);
    assert_eq!(r.status, 201, "{}", r.text());
    std::thread::sleep(
        (at - chrono::Utc::now())
            .to_std()
            .unwrap_or_default()
            .saturating_add(Duration::from_millis(300)),
    );
    for s in [&a, &b] {
        let r = upload(s, "brief/R2/rocky9", &brief);
        let e = assert_error_answer(&r, 401);
        assert!(
            e["errorMessage"].as_str().unwrap().contains("expired"),
            "{e}"
        );
        assert_eq!(listed(s, "brief")["state"], "expired");
    }
}

// --- the key ring over a real (sled) index, without HTTP ---

mod ring {
    use std::sync::Arc;

    use artifact_store::auth::{
        hash_key, AuthError, KeyError, KeyRing, KeySource, NewKey, MAX_DAYS,
    };
    use artifact_store::config::{AuthConfig, KeyConfig};
    use artifact_store::index::sled::SledIndex;
    use artifact_store::index::{Entry, Index};
    use artifact_store::model::{Identity, Role};
    use chrono::{Duration, Utc};

    fn ring(dir: &std::path::Path) -> (KeyRing, Arc<dyn Index>) {
        let cfg = AuthConfig {
            anonymous_read: true,
            keys: vec![KeyConfig {
                name: "admin".into(),
                role: Role::Admin,
                blake3: hash_key("the-admin-key"),
            }],
        };
        let index: Arc<dyn Index> = Arc::new(SledIndex::open(dir).unwrap());
        (KeyRing::new(&cfg, []).with_index(index.clone()), index)
    }

    fn new_key(name: &str) -> NewKey {
        NewKey {
            name: name.into(),
            role: Role::Write,
            expires_at: None,
            expires_in_days: None,
            components: None,
        }
    }

    #[test]
    fn create_use_list_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let (ring, index) = ring(dir.path());
        let by = Identity {
            key: Some("admin".into()),
            ..Default::default()
        };
        let mut req = new_key("ci-asyn");
        req.components = Some(vec!["asyn*".into()]);
        let (secret, info) = ring.create(req, by.clone()).unwrap();
        assert!(secret.starts_with("as_"));
        assert_eq!(info.created_by.as_ref(), Some(&by));
        // only the hash is kept
        let stored = index.api_key("ci-asyn").unwrap().unwrap();
        assert_eq!(stored.blake3, hash_key(&secret));
        assert!(!format!("{stored:?}").contains(&secret));

        let p = ring.identify(Some(&secret)).unwrap();
        assert_eq!(p.key_name(), Some("ci-asyn"));
        assert!(p.may_write("asynDriver").is_ok());
        assert!(matches!(
            p.may_write("motor"),
            Err(AuthError::OutOfScope { .. })
        ));
        assert!(matches!(
            ring.require_key_admin(&p),
            Err(AuthError::Forbidden { .. })
        ));
        assert!(index
            .api_key("ci-asyn")
            .unwrap()
            .unwrap()
            .last_used
            .is_some());

        let names: Vec<(String, KeySource)> = ring
            .list()
            .unwrap()
            .into_iter()
            .map(|k| (k.name, k.source))
            .collect();
        assert_eq!(
            names,
            [
                ("admin".to_owned(), KeySource::Config),
                ("ci-asyn".to_owned(), KeySource::Api)
            ]
        );

        assert!(matches!(
            ring.create(new_key("ci-asyn"), by.clone()),
            Err(KeyError::Exists(_))
        ));
        assert!(matches!(
            ring.create(new_key("admin"), by.clone()),
            Err(KeyError::Exists(_))
        ));
        assert!(matches!(
            ring.revoke("admin", by.clone()),
            Err(KeyError::InConfig(_))
        ));
        assert!(matches!(
            ring.revoke("nobody", by.clone()),
            Err(KeyError::NotFound(_))
        ));
        let first = ring.revoke("ci-asyn", by.clone()).unwrap().revoked.unwrap();
        assert!(matches!(
            ring.identify(Some(&secret)),
            Err(AuthError::Revoked { .. })
        ));
        // revoking again keeps the first revocation
        let again = ring.revoke("ci-asyn", by).unwrap().revoked.unwrap();
        assert_eq!(again, first);
    }

    #[test]
    fn expiry_and_bad_requests() {
        let dir = tempfile::tempdir().unwrap();
        let (ring, index) = ring(dir.path());
        let by = Identity::default();
        let (secret, _) = ring.create(new_key("short"), by.clone()).unwrap();
        // the key expires behind the service's back
        let mut k = index.api_key("short").unwrap().unwrap();
        k.expires_at = Some(Utc::now() - Duration::seconds(1));
        index.import(&[Entry::ApiKey(k)]).unwrap();
        let e = ring.identify(Some(&secret)).unwrap_err();
        assert!(matches!(e, AuthError::Expired { .. }), "{e}");
        assert!(e.to_string().contains("expired"));

        let bad = |f: &dyn Fn(&mut NewKey)| {
            let mut r = new_key("x");
            f(&mut r);
            ring.create(r, by.clone()).unwrap_err()
        };
        assert!(matches!(bad(&|r| r.name = "a b".into()), KeyError::Name(_)));
        assert!(matches!(
            bad(&|r| r.name = "anonymous".into()),
            KeyError::Exists(_)
        ));
        assert!(matches!(
            bad(&|r| r.expires_at = Some(Utc::now() - Duration::seconds(5))),
            KeyError::Invalid(_)
        ));
        assert!(matches!(
            bad(&|r| {
                r.expires_at = Some(Utc::now() + Duration::days(1));
                r.expires_in_days = Some(1);
            }),
            KeyError::Invalid(_)
        ));
        assert!(matches!(
            bad(&|r| r.expires_in_days = Some(0)),
            KeyError::Invalid(_)
        ));
        assert!(matches!(
            bad(&|r| r.expires_in_days = Some(MAX_DAYS + 1)),
            KeyError::Invalid(_)
        ));
        assert!(matches!(
            bad(&|r| r.components = Some(vec![])),
            KeyError::Invalid(_)
        ));
        assert!(matches!(
            bad(&|r| r.components = Some(vec!["../etc".into()])),
            KeyError::Invalid(_)
        ));
        let (_, k) = ring
            .create(
                NewKey {
                    expires_in_days: Some(30),
                    ..new_key("month")
                },
                by,
            )
            .unwrap();
        let days = (k.expires_at.unwrap() - Utc::now()).num_days();
        assert!((29..=30).contains(&days), "{days}");
    }
}
