//! The README's walkthrough, run as written: every ```sh block of its
//! "Walkthrough" section, in order, in one bash (`set -euo pipefail`, so a
//! line that fails fails the test), with the binary under test first on
//! `PATH` and the service on a free port instead of 8080. The walkthrough
//! starts the real server itself, as a reader would. Needs bash, curl and
//! tar; the test fails when one is missing.

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const README: &str = include_str!("../README.md");

/// The ```sh blocks of the section whose heading starts with `heading`.
fn shell_blocks(markdown: &str, heading: &str) -> Vec<String> {
    let start = markdown
        .find(&format!("\n## {heading}"))
        .unwrap_or_else(|| panic!("the README has no \"## {heading}\" section"));
    let section = &markdown[start + 1..];
    let end = section[3..].find("\n## ").map_or(section.len(), |i| i + 3);
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in section[..end].lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(b), "```") => {
                blocks.push(std::mem::take(b));
                current = None;
            }
            (Some(b), l) => {
                b.push_str(l);
                b.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(current.is_none(), "an unclosed ```sh block in {heading}");
    blocks
}

fn need(tool: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{tool} is missing: the README's walkthrough needs it"
    );
}

#[test]
fn the_walkthrough_runs_as_written() {
    for tool in ["bash", "curl", "tar", "grep", "sed", "cut", "id", "mktemp"] {
        need(tool);
    }
    let blocks = shell_blocks(README, "Walkthrough");
    assert!(
        blocks.len() >= 5,
        "the walkthrough has {} blocks",
        blocks.len()
    );
    let script = blocks.concat();
    for var in ["$K_ADMIN", "$HASH", "$S/", "$SERVER"] {
        assert!(script.contains(var), "the walkthrough no longer uses {var}");
    }
    for needle in ["K_ADMIN=", "HASH=", "S=", "SERVER="] {
        assert!(
            script.contains(needle),
            "{needle} is not defined in the walkthrough"
        );
    }
    assert!(
        script.contains("127.0.0.1:8080"),
        "the walkthrough's address changed"
    );
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let script = script.replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"));
    // whatever happens, the server the walkthrough started stops with it
    let script = format!(
        "set -euo pipefail\n\
         trap '[ -n \"${{SERVER:-}}\" ] && kill \"$SERVER\" 2>/dev/null || true' EXIT\n\
         {script}"
    );

    let bin = Path::new(env!("CARGO_BIN_EXE_artifact-store"));
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let home = tempfile::tempdir().unwrap();
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(home.path())
        .env("PATH", path)
        .env("HOME", home.path())
        .env("TMPDIR", home.path())
        .env_remove("ARTIFACT_STORE_URL")
        .env_remove("ARTIFACT_STORE_TOKEN")
        .env_remove("ARTIFACT_STORE_GITHUB_USER")
        .env("ARTIFACT_STORE_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run bash");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).ok();
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).ok();
        s
    });
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the walkthrough did not finish in 3 minutes");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = reader.join().unwrap();
    let stderr = err_reader.join().unwrap();
    let said = format!("script:\n{script}\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        status.success(),
        "the walkthrough failed ({status}):\n{said}"
    );

    // what the reader is told to expect
    let admin = stdout
        .lines()
        .find_map(|l| l.strip_prefix("service at "))
        .unwrap_or_else(|| panic!("no service line:\n{said}"));
    assert!(admin.contains("admin key as_"), "{said}");
    let hash = stdout
        .lines()
        .find_map(|l| l.strip_prefix("stored blake3: "))
        .unwrap_or_else(|| panic!("no hash:\n{said}"));
    assert!(
        hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
        "{said}"
    );
    for want in [
        "\"status\":\"created\"",
        "\"code\":\"wrong_top_directory\"",
        "hello from demo R1.0",
        "\"count\":{\"records\":2,\"components\":1}",
        "check exited 1",
        "catalog ",
        "Swagger UI",
        "artifact_store_",
    ] {
        assert!(
            stdout.contains(want),
            "the walkthrough should show {want:?}:\n{said}"
        );
    }
    for page in [
        "/             200",
        "/docs         200",
        "/openapi.json 200",
    ] {
        assert!(stdout.contains(page), "{page}:\n{said}");
    }
    // the checksum deploy created the second arch from the stored hash
    let created = stdout.matches("\"status\":\"created\"").count();
    assert!(created >= 3, "upload, checksum deploy and wrap: {said}");
}
