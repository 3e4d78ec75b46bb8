//! The web catalog at `/`, in a real headless Chromium driven through the
//! WebDriver protocol (chromedriver), against the real server: what it
//! lists, the search box, the live log of a running build, and the API key
//! field when anonymous reads are off.
//!
//! Needs Debian's `chromium` and `chromium-driver` (installed by
//! `.ci/test.sh`); the tests fail when they are missing.

mod common;
#[path = "common/repos.rs"]
mod repos;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use repos::Repos;
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A headless Chromium session through a chromedriver child process.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::blocking::Client,
    _profile: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Browser {
    fn start() -> Browser {
        assert!(
            Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is missing: apt-get install chromium chromium-driver"
        );
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is missing: apt-get install chromium chromium-driver");
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let profile = tempfile::tempdir().unwrap();
        let mut b = Browser {
            driver,
            base,
            session: String::new(),
            http,
            _profile: profile,
        };
        b.wait_ready();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1440,1000",
                    format!("--user-data-dir={}", b._profile.path().display()),
                ],
            },
        }}});
        let v = b.call("POST", "/session", Some(caps));
        b.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_owned();
        b
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.driver.try_wait().unwrap() {
                panic!("chromedriver exited at start: {status}");
            }
            let ready = self
                .http
                .get(format!("{}/status", self.base))
                .send()
                .ok()
                .and_then(|r| r.json::<Value>().ok())
                .is_some_and(|v| v["value"]["ready"] == true);
            if ready {
                return;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// One WebDriver command; its `value`, or a panic with the driver's error.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.try_call(method, path, body)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    fn try_call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body.unwrap_or_else(|| json!({}))),
        };
        let r = req.send().map_err(|e| e.to_string())?;
        let ok = r.status().is_success();
        let v: Value = r.json().map_err(|e| e.to_string())?;
        if ok {
            Ok(v["value"].clone())
        } else {
            Err(format!(
                "{}: {}",
                v["value"]["error"],
                v["value"]["message"].as_str().unwrap_or_default()
            ))
        }
    }

    fn s(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    fn goto(&self, url: &str) {
        self.call("POST", &self.s("/url"), Some(json!({ "url": url })));
    }

    fn find_all(&self, css: &str) -> Vec<String> {
        let v = self.call(
            "POST",
            &self.s("/elements"),
            Some(json!({"using": "css selector", "value": css})),
        );
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| e[ELEMENT].as_str().unwrap().to_owned())
            .collect()
    }

    fn find(&self, css: &str) -> String {
        let v = self.call(
            "POST",
            &self.s("/element"),
            Some(json!({"using": "css selector", "value": css})),
        );
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_owned()
    }

    /// The rendered (visible) text of the element.
    fn text(&self, eid: &str) -> String {
        let v = self.call("GET", &self.s(&format!("/element/{eid}/text")), None);
        v.as_str().unwrap_or_default().to_owned()
    }

    fn text_of(&self, css: &str) -> String {
        self.text(&self.find(css))
    }

    fn click(&self, eid: &str) {
        self.call("POST", &self.s(&format!("/element/{eid}/click")), None);
    }

    /// Types `text` (WebDriver key codes allowed) into the element.
    fn type_into(&self, eid: &str, text: &str) {
        self.call(
            "POST",
            &self.s(&format!("/element/{eid}/value")),
            Some(json!({ "text": text })),
        );
    }

    fn exec(&self, script: &str) -> Value {
        self.call(
            "POST",
            &self.s("/execute/sync"),
            Some(json!({"script": script, "args": []})),
        )
    }

    /// Polls `f` until it gives `Some`, or panics naming `what` with the page text.
    fn wait_for<T>(&self, what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(v) = f() {
                return v;
            }
            if Instant::now() > deadline {
                let page = self.exec("return document.body.innerText");
                panic!("timed out waiting for {what}; the page shows:\n{page}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Saves a PNG of the viewport.
    fn screenshot(&self, path: &Path) {
        let v = self.call("GET", &self.s("/screenshot"), None);
        let png = base64_decode(v.as_str().expect("base64 screenshot"));
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.try_call("DELETE", &self.s(""), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("bad base64 byte {c}"),
        }
    };
    let clean: Vec<u8> = s
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= val(*c) << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

fn put_component(s: &Server, c: &str, tag: &str, arch: &str, user: &str) {
    let body = tar_gz(tag, &[("README", format!("{c} {tag}\n").as_bytes())]);
    let r = client()
        .put(s.url(&format!("/v1/components/{c}/{tag}/{arch}")))
        .header("Authorization", bearer(WRITE_KEY))
        .header("linux_username", user)
        .body(body)
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().unwrap());
}

/// `component/tag/arch` of the component rows a person can see.
fn visible_rows(b: &Browser) -> Vec<String> {
    let v = b.exec(
        "return [...document.querySelectorAll('#components .component-row')]\
         .filter(r => r.offsetParent !== null)\
         .map(r => r.dataset.component + '/' + r.dataset.tag + '/' + r.dataset.arch)",
    );
    let mut rows: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_owned())
        .collect();
    rows.sort();
    rows
}

fn job_state(s: &Server, id: &str) -> String {
    let v: Value = client()
        .get(s.url(&format!("/v1/jobs/{id}")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    v["job"]["state"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn catalog_lists_filters_and_follows_a_running_build() {
    let repos = Repos::new(&["slow"]);
    let s = Server::start_with(&config_with_keys(
        "[build]\nallow_local_urls = true\nsandbox = \"bwrap\"\ntimeout_secs = 30\n",
    ));
    put_component(&s, "asyn", "R4.39", "rocky9", "alice");
    put_component(&s, "motor", "R7.3.1", "rhel9", "alice");

    // the page itself: HTML, self-contained
    let r = client().get(s.url("/")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert!(r
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = r.text().unwrap();
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "the page must load nothing from elsewhere"
    );
    assert_eq!(
        client().get(s.url("/index.html")).send().unwrap().status(),
        200
    );

    let b = Browser::start();
    b.goto(&s.url("/"));

    // (a) it lists what was stored: names, tags, arches, uploader
    let rows = b.wait_for("two component rows", 20, || {
        let rows = visible_rows(&b);
        (rows.len() == 2).then_some(rows)
    });
    assert_eq!(rows, ["asyn/R4.39/rocky9", "motor/R7.3.1/rhel9"]);
    let text = b.text_of("#components");
    for want in [
        "asyn", "motor", "R4.39", "R7.3.1", "rocky9", "rhel9", "alice",
    ] {
        assert!(text.contains(want), "#components lacks {want}: {text}");
    }
    let links = b.exec(
        "return [...document.querySelectorAll('#components .component-row a')].map(a => a.href)",
    );
    assert!(
        links
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap() == s.url("/v1/components/asyn/R4.39/rocky9")),
        "no download link: {links}"
    );
    assert!(b.text_of("#images").contains("No images"));

    // (b) the search box filters (client-side, then with the API's prefix)
    let search = b.find("#search");
    b.type_into(&search, "mot");
    b.wait_for("only motor", 10, || {
        (visible_rows(&b) == ["motor/R7.3.1/rhel9"]).then_some(())
    });
    std::thread::sleep(Duration::from_millis(800)); // past the prefix request
    assert_eq!(visible_rows(&b), ["motor/R7.3.1/rhel9"]);
    let text = b.text_of("#components");
    assert!(
        !text.contains("asyn") && text.contains("motor"),
        "filtered: {text}"
    );
    b.type_into(&search, "zzz");
    b.wait_for("no match message", 10, || {
        (visible_rows(&b).is_empty() && b.text_of("#components").contains("No component matches"))
            .then_some(())
    });
    b.type_into(&search, "\u{E00C}"); // Escape clears
    b.wait_for("both rows again", 10, || {
        (visible_rows(&b).len() == 2).then_some(())
    });

    // (c) a running build: its job is listed, and its log streams live
    let r = client()
        .post(s.url("/v1/builds"))
        .header("Authorization", bearer(WRITE_KEY))
        .header("linux_username", "alice")
        .json(&json!({"component": "slow", "tag": "R1.0", "url": repos.file_url("slow")}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let v: Value = r.json().unwrap();
    let id = v["job"].as_str().unwrap().to_owned();
    let row_css = format!(".job-row[data-job-id=\"{id}\"]");
    // the jobs list refreshes by itself
    let row = b.wait_for("the job in the list", 20, || {
        b.find_all(&row_css).into_iter().next()
    });
    assert!(b.text(&row).contains("slow"), "{}", b.text(&row));
    b.click(&row);
    let log = b.wait_for("the build's first line in #log", 60, || {
        let t = b.text_of("#log");
        t.contains("starting slow build").then_some(t)
    });
    assert_eq!(
        job_state(&s, &id),
        "running",
        "the line must show while the job runs; log: {log}"
    );
    assert!(b.text_of("#log-status").contains("live"));
    b.wait_for("the row marked running", 10, || {
        (b.text(&row).contains("running")).then_some(())
    });

    // the search filters jobs too
    b.type_into(&search, "motor");
    b.wait_for("the slow job hidden", 10, || {
        (b.text(&row).is_empty()).then_some(())
    });
    b.type_into(&search, "\u{E00C}");
    b.wait_for("the slow job shown", 10, || {
        (!b.text(&row).is_empty()).then_some(())
    });

    let shot = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ui-screenshot.png");
    b.screenshot(&shot);
    // the build is still going: the screenshot shows a live log
    assert_eq!(job_state(&s, &id), "running");
}

#[test]
fn asks_for_an_api_key_when_reads_need_one() {
    let s = Server::start_with(&config_with_keys("[auth]\nanonymous_read = false\n"));
    put_component(&s, "calc", "R3.7.5", "rocky9", "bob");
    let b = Browser::start();
    b.goto(&s.url("/"));
    let auth = b.find("#auth");
    b.wait_for("the API key field", 20, || {
        b.text(&auth).contains("API key").then_some(())
    });
    assert!(b.text_of("#components").contains("401"));
    let input = b.find("#api-key");
    b.type_into(&input, &format!("{READ_KEY}\u{E007}")); // Enter submits
    b.wait_for("the listing with the key", 20, || {
        (visible_rows(&b) == ["calc/R3.7.5/rocky9"]).then_some(())
    });
    assert!(
        b.text(&auth).is_empty(),
        "the key field hides once it works"
    );
    let stored = b.exec("return sessionStorage.getItem('artifact-store.api-key')");
    assert_eq!(stored, READ_KEY);
    assert!(b.text_of("#components").contains("bob"));
}

#[test]
fn a_components_page_shows_its_closure_and_reproducibility() {
    let repos = Repos::new(&["base", "mid-a"]);
    let s = Server::start_with(&config_with_keys(&format!(
        "[build]\nallow_local_urls = true\nsandbox = \"bwrap\"\n[build.catalog]\nbase = {:?}\n\"mid-a\" = {:?}\n",
        repos.file_url("base"),
        repos.file_url("mid-a")
    )));
    let r = client()
        .post(s.url("/v1/builds?wait=true"))
        .header("Authorization", bearer(WRITE_KEY))
        .json(&json!({"component": "mid-a", "tag": "R1.0"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    let r = client()
        .post(s.url("/v1/components/mid-a/R1.0/rocky9/rebuild?wait=true"))
        .header("Authorization", bearer(ADMIN_KEY))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());

    let b = Browser::start();
    b.goto(&s.url("/"));
    let row = b.wait_for("mid-a's row", 20, || {
        b.find_all(".component-row[data-component=\"mid-a\"]")
            .into_iter()
            .next()
    });
    b.click(&row);
    let text = b.wait_for("the closure", 20, || {
        let t = b.text_of("#detail-panel");
        t.contains("Dependency closure").then_some(t)
    });
    let order = b.exec(
        "return [...document.querySelectorAll('#detail-panel .closure-row')].map(r => r.dataset.component)",
    );
    assert_eq!(order, json!(["base", "mid-a"]), "{text}");
    assert!(text.contains("reproducible (checked"), "{text}");
    assert!(text.contains("inputs"), "{text}");
    assert!(b
        .exec("return location.hash")
        .as_str()
        .unwrap()
        .ends_with("#component/mid-a/R1.0/rocky9"));
    // the page's own link opens it directly
    b.goto(&s.url("/#component/base/R1.0/rocky9"));
    b.wait_for("base's page", 20, || {
        b.text_of("#detail-title")
            .contains("base R1.0")
            .then_some(())
    });
    b.screenshot(&Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ui-component.png"));
}
