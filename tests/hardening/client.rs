//! `deps fetch` against a hostile server: a real HTTP server on loopback
//! (std's TcpListener, written here) answering `/v1/resolve` with crafted
//! closures and serving crafted tarballs. The client must not write,
//! replace or delete anything outside `--into`, nor anything inside it
//! that it did not make; must send its key only to the server's origin;
//! must stop a download at its declared size; must not panic.

use super::*;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// What the hostile server answers and what it heard.
#[derive(Default)]
struct Script {
    resolve: Value,
    blob: Vec<u8>,
    /// Send blobs without Content-Length (the end is the connection's end).
    no_length: bool,
    /// (path, Authorization header) of each request.
    heard: Vec<(String, Option<String>)>,
}

struct Hostile {
    port: u16,
    script: Arc<Mutex<Script>>,
}

impl Hostile {
    fn start() -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let script: Arc<Mutex<Script>> = Arc::default();
        let s = script.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let s = s.clone();
                std::thread::spawn(move || serve(conn, &s));
            }
        });
        Hostile { port, script }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn set(&self, resolve: Value, blob: Vec<u8>) {
        let mut s = self.script.lock().unwrap();
        s.resolve = resolve;
        s.blob = blob;
    }

    fn heard(&self) -> Vec<(String, Option<String>)> {
        self.script.lock().unwrap().heard.clone()
    }
}

fn serve(conn: TcpStream, script: &Mutex<Script>) {
    let mut r = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if r.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split(' ').nth(1).unwrap_or_default().to_owned();
    let (mut len, mut auth) = (0usize, None);
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').unwrap_or((&h, ""));
        match k.to_ascii_lowercase().as_str() {
            "content-length" => len = v.trim().parse().unwrap_or(0),
            "authorization" => auth = Some(v.trim().to_owned()),
            _ => {}
        }
    }
    let mut body = vec![0; len];
    let _ = r.read_exact(&mut body);
    let (bytes, ct, no_length) = {
        let mut s = script.lock().unwrap();
        s.heard.push((path.clone(), auth));
        if path.starts_with("/v1/resolve") {
            (
                s.resolve.to_string().into_bytes(),
                "application/json",
                false,
            )
        } else {
            (s.blob.clone(), "application/zstd", s.no_length)
        }
    };
    let mut out = conn;
    let head = if no_length {
        format!("HTTP/1.1 200 OK\r\ncontent-type: {ct}\r\nconnection: close\r\n\r\n")
    } else {
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: {ct}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            bytes.len()
        )
    };
    let _ = out.write_all(head.as_bytes());
    let _ = out.write_all(&bytes);
}

/// A closure of `entries` (component, tag, declared size, blob URL), all
/// stored with `blake3`, and its lock.
fn answer(entries: &[(&str, &str, u64, String)], blake3: &str) -> Value {
    let ents: Vec<Value> = entries
        .iter()
        .map(|(c, t, size, url)| {
            json!({"component": c, "tag": t, "arch": "rocky9", "state": "stored", "dependencies": [],
                   "stored": {"component": c, "tag": t, "arch": "rocky9", "blake3": blake3, "size": size,
                              "created": "2026-01-01T00:00:00Z", "uploaded_by": {}, "dependencies": [],
                              "path": "/x", "download_url": url, "blob_url": url, "info_url": url}})
        })
        .collect();
    let lock: Vec<Value> = entries
        .iter()
        .map(|(c, t, size, _)| json!({"component": c, "tag": t, "blake3": blake3, "size": size, "dependencies": []}))
        .collect();
    json!({"status": "complete", "arch": "rocky9", "roots": [], "entries": ents,
           "stored": entries.len(), "missing": [],
           "lock": {"lockVersion": 1, "arch": "rocky9", "roots": [], "components": lock}})
}

/// A tar.zst with `R1.0/pwned.txt` and a top-level `.bashrc`.
fn payload() -> Vec<u8> {
    zst(&plain_tar(
        "",
        &[
            ("R1.0/pwned.txt", b"pwned-by-hostile-artifact-server\n"),
            (".bashrc", b"echo pwned-by-hostile-artifact-server\n"),
        ],
    ))
}

fn fetch(h: &Hostile, work: &Path) -> std::process::Output {
    std::fs::write(work.join("config.yaml"), "dependencies:\n  - x: R1.0\n").unwrap();
    Command::new(env!("CARGO_BIN_EXE_artifact-store"))
        .args(["deps", "fetch", "--arch", "rocky9", "--into", "deps"])
        .args(["--server", &h.base(), "--token", "secret-token-xyz"])
        .current_dir(work)
        .output()
        .unwrap()
}

fn said(o: &std::process::Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Refused cleanly: exit status 2 (an error, not a panic's 101).
fn refused(o: &std::process::Output, needle: &str) {
    assert_eq!(o.status.code(), Some(2), "{}", said(o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(needle),
        "stderr should say {needle:?}: {}",
        said(o)
    );
}

#[test]
fn hostile_names_write_nothing_outside_into() {
    let h = Hostile::start();
    let t = tempfile::tempdir().unwrap();
    let work = t.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let p = payload();
    let hash = hex_of(&p);
    let blob = format!("{}/blob/0", h.base());
    let abs = t.path().join("victim_abs");
    for bad in [abs.to_str().unwrap(), "../victim_rel", "a/b", ".."] {
        h.set(
            answer(&[(bad, "R1.0", p.len() as u64, blob.clone())], &hash),
            p.clone(),
        );
        let o = fetch(&h, &work);
        refused(&o, "the server's answer is refused");
    }
    // a hostile tag is refused too, and so is a name this command writes itself
    for (c, tag) in [
        ("good", "../../x"),
        ("env.sh", "R1.0"),
        ("deps.lock.json", "R1.0"),
    ] {
        h.set(
            answer(&[(c, tag, p.len() as u64, blob.clone())], &hash),
            p.clone(),
        );
        refused(&fetch(&h, &work), "the server's answer is refused");
    }
    assert!(!abs.exists(), "created {}", abs.display());
    assert!(!t.path().join("victim_rel").exists());
    assert!(!work.join("deps/a").exists());
    assert!(!work.join("deps/env.sh").exists());

    // a fine name: only the tag's directory is taken, not the tarball's .bashrc
    h.set(
        answer(&[("good", "R1.0", p.len() as u64, blob.clone())], &hash),
        p.clone(),
    );
    let o = fetch(&h, &work);
    assert!(o.status.success(), "{}", said(&o));
    let deps = work.join("deps");
    assert!(deps.join("good/R1.0/pwned.txt").is_file());
    assert!(!deps.join("good/.bashrc").exists());
    assert!(!deps.join(".bashrc").exists());
}

#[test]
fn only_directories_fetch_made_are_replaced() {
    let h = Hostile::start();
    let t = tempfile::tempdir().unwrap();
    let work = t.path().join("work");
    let deps = work.join("deps");
    std::fs::create_dir_all(&deps).unwrap();
    let p = payload();
    let hash = hex_of(&p);
    let blob = format!("{}/blob/0", h.base());
    // the previous lock (the server's words) names a directory outside
    let victim = t.path().join("victim_del");
    std::fs::create_dir_all(victim.join("sub")).unwrap();
    std::fs::write(victim.join("sub/precious.txt"), "precious").unwrap();
    std::fs::write(
        deps.join("deps.lock.json"),
        json!({"lockVersion": 1, "arch": "rocky9", "roots": [], "components": [
            {"component": victim.to_str().unwrap(), "tag": "A", "blake3": hash, "size": 1, "dependencies": []}]})
        .to_string(),
    )
    .unwrap();
    h.set(
        answer(&[("good", "R1.0", p.len() as u64, blob.clone())], &hash),
        p.clone(),
    );
    let o = fetch(&h, &work);
    assert!(o.status.success(), "{}", said(&o));
    assert_eq!(
        std::fs::read_to_string(victim.join("sub/precious.txt")).unwrap(),
        "precious"
    );
    // a directory of the user's inside --into, and a symlink out of it
    std::fs::create_dir_all(deps.join("mine")).unwrap();
    std::fs::write(deps.join("mine/notes.txt"), "mine").unwrap();
    std::os::unix::fs::symlink(&victim, deps.join("link")).unwrap();
    for name in ["mine", "link"] {
        h.set(
            answer(&[(name, "R1.0", p.len() as u64, blob.clone())], &hash),
            p.clone(),
        );
        refused(&fetch(&h, &work), "was not made by `deps fetch`");
    }
    assert_eq!(
        std::fs::read_to_string(deps.join("mine/notes.txt")).unwrap(),
        "mine"
    );
    assert!(!victim.join("R1.0").exists());
    assert!(victim.join("sub/precious.txt").is_file());
    // its own directory it replaces: another tag of `good`
    let p2 = zst(&plain_tar("", &[("R2.0/v2.txt", b"v2\n")]));
    h.set(
        answer(
            &[("good", "R2.0", p2.len() as u64, blob.clone())],
            &hex_of(&p2),
        ),
        p2,
    );
    let o = fetch(&h, &work);
    assert!(o.status.success(), "{}", said(&o));
    assert!(deps.join("good/R2.0/v2.txt").is_file());
    assert!(!deps.join("good/R1.0").exists(), "the old tag stays");
}

#[test]
fn the_key_goes_only_to_the_servers_origin() {
    let h = Hostile::start();
    let other = Hostile::start();
    let t = tempfile::tempdir().unwrap();
    let p = payload();
    let hash = hex_of(&p);
    other.set(json!({}), p.clone());
    let entries = [
        (
            "same",
            "R1.0",
            p.len() as u64,
            format!("{}/blob/0", h.base()),
        ),
        // another origin: the same address by another name, and another port
        (
            "elsewhere",
            "R1.0",
            p.len() as u64,
            format!("http://localhost:{}/blob/1", other.port),
        ),
    ];
    h.set(answer(&entries, &hash), p.clone());
    let o = fetch(&h, t.path());
    assert!(o.status.success(), "{}", said(&o));
    let mine = h.heard();
    assert!(
        mine.iter()
            .all(|(_, a)| a.as_deref() == Some("Bearer secret-token-xyz")),
        "{mine:?}"
    );
    assert!(mine.iter().any(|(p, _)| p == "/blob/0"), "{mine:?}");
    let theirs = other.heard();
    assert_eq!(theirs.len(), 1, "{theirs:?}");
    assert_eq!(
        theirs[0].1, None,
        "the key went to another origin: {theirs:?}"
    );
}

#[test]
fn downloads_stop_at_their_declared_size_and_sizes_do_not_overflow() {
    let h = Hostile::start();
    let t = tempfile::tempdir().unwrap();
    let blob = format!("{}/blob/0", h.base());
    // 32 MiB of zeros compress to almost nothing; declared: 100 bytes
    let big = vec![0u8; 32 << 20];
    let p = zst(&plain_tar("", &[("R1.0/zeros", &big)]));
    assert!(p.len() > 200);
    let hash = hex_of(&p);
    h.set(
        answer(&[("good", "R1.0", 100, blob.clone())], &hash),
        p.clone(),
    );
    // with a Content-Length: refused before reading
    refused(&fetch(&h, t.path()), "the closure declares 100");
    // without one: stopped while streaming
    h.script.lock().unwrap().no_length = true;
    refused(&fetch(&h, t.path()), "longer than the 100 bytes");
    let written: u64 = walkdir::WalkDir::new(t.path().join("deps"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum();
    assert!(written < 1 << 20, "{written} bytes written");
    assert!(!t.path().join("deps/good/R1.0").exists());

    // absurd sizes: an error, not a panic
    h.script.lock().unwrap().no_length = false;
    let entries = [
        ("a", "R1.0", u64::MAX, blob.clone()),
        ("b", "R1.0", u64::MAX, blob.clone()),
    ];
    h.set(answer(&entries, &hash), p);
    refused(&fetch(&h, t.path()), "2^64");
}
