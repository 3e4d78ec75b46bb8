//! Hardening: what a hostile recipe, tarball, repository or client sends
//! cannot harm the store or the host. One test (or more) per item of the
//! hardening issue, each against the real binary over real HTTP, with real
//! git repositories and the real bubblewrap sandbox.

mod common;
#[path = "common/repos.rs"]
mod repos;

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use repos::Repos;
use serde_json::{json, Value};

fn build_config(extra: &str) -> String {
    config_with_keys(&format!(
        "[build]\nallow_local_urls = true\nsandbox = \"bwrap\"\n{extra}"
    ))
}

fn put(s: &Server, path: &str, body: Vec<u8>) -> (u16, Value) {
    json_of(
        client()
            .put(s.url(path))
            .header("Authorization", bearer(WRITE_KEY))
            .body(body)
            .send()
            .unwrap(),
    )
}

fn build(s: &Server, component: &str, url: &str) -> (u16, Value) {
    json_of(
        client()
            .post(s.url("/v1/builds?wait=true"))
            .header("Authorization", bearer(WRITE_KEY))
            .json(&json!({"component": component, "tag": "R1.0", "arch": "rocky9", "url": url}))
            .send()
            .unwrap(),
    )
}

fn tmp_is_empty(s: &Server) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = files_under(&s.dir.join("data/tmp"));
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "left in tmp/: {left:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The stored victim must still download whole after an attack.
fn victim_intact(s: &Server, blake3: &str) {
    let r = client()
        .get(s.url("/v1/components/victim/R1/rocky9"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "the victim's blob must still be served");
    let body = r.bytes().unwrap();
    assert_eq!(blake3::hash(&body).to_hex().to_string(), blake3);
}

fn store_victim(s: &Server) -> String {
    let (st, v) = put(
        s,
        "/v1/components/victim/R1/rocky9",
        tar_gz("R1", &[("lib/libvictim.so", b"victim bytes")]),
    );
    assert_eq!(st, 201, "{v}");
    v["component"]["blake3"].as_str().unwrap().to_owned()
}

// --- 1. artifacts never follow symlinks out of the work tree -------------------------------

#[test]
fn item1_artifacts_through_a_symlink_cannot_take_the_store() {
    let mut repos = Repos::new(&[]);
    let s = Server::start_with(&build_config(""));
    let victim = store_victim(&s);
    let blobs_before = files_under(&s.dir.join("data/blobs"));
    let blobs_dir = s.dir.join("data/blobs");
    // an absolute link to the store's blobs, named through a glob
    repos.add_tree("evil-abs", |d| {
        std::fs::write(
            d.join("config.yaml"),
            "build: \"true\"\nartifacts: [\"store/*\"]\n",
        )
        .unwrap();
        std::os::unix::fs::symlink(&blobs_dir, d.join("store")).unwrap();
    });
    // a relative link climbing out of the work tree (data/tmp/work-*/src)
    repos.add_tree("evil-rel", |d| {
        std::fs::write(
            d.join("config.yaml"),
            "build: \"true\"\nartifacts: [\"up/*/*\"]\n",
        )
        .unwrap();
        std::os::unix::fs::symlink("../../../blobs", d.join("up")).unwrap();
    });
    repos.serve();
    for name in ["evil-abs", "evil-rel"] {
        let (st, v) = build(&s, name, &repos.git_url(name));
        assert_eq!(st, 422, "{name}: {v}");
        let msg = v["errorMessage"].as_str().unwrap();
        assert!(msg.contains("symbolic link"), "{name}: {msg}");
        assert_eq!(
            files_under(&s.dir.join("data/blobs")),
            blobs_before,
            "{name} moved blobs"
        );
        victim_intact(&s, &victim);
    }
}

#[test]
fn item1_a_matched_link_to_a_host_file_is_not_packed() {
    let mut repos = Repos::new(&[]);
    let s = Server::start_with(&build_config(""));
    repos.add_tree("link-out", |d| {
        std::fs::write(
            d.join("config.yaml"),
            "build: \"true\"\nartifacts: [\"passwd\"]\n",
        )
        .unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.join("passwd")).unwrap();
    });
    repos.serve();
    let (st, v) = build(&s, "link-out", &repos.git_url("link-out"));
    assert_eq!(st, 422, "{v}");
    let msg = v["errorMessage"].as_str().unwrap();
    assert!(msg.contains("points outside"), "{msg}");
    assert!(
        std::path::Path::new("/etc/passwd").is_file(),
        "host file untouched"
    );
    let r = client()
        .get(s.url("/v1/components/link-out/R1.0/rocky9"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
}

// --- 2. size limits count what is written: PAX sizes, sparse files ------------------------

fn limited_config() -> String {
    config_with_keys("max_unpacked_bytes = 1048576")
}

/// A tar whose member's ustar size field is 0 while a PAX record says 2 MB.
fn pax_sized_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.append_pax_extensions([("size", b"2000000".as_slice())])
        .unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_path("R1/big").unwrap();
    h.set_size(0);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    // the header claims 0 bytes; the data (padded) follows anyway
    let mut raw = b.into_inner().unwrap();
    raw.truncate(raw.len() - 1024); // drop the end-of-archive blocks
    raw.extend_from_slice(h.as_bytes());
    const N: usize = 2_000_000;
    raw.extend(std::iter::repeat_n(b'x', N));
    raw.extend(std::iter::repeat_n(0u8, N.next_multiple_of(512) - N));
    raw.extend([0u8; 1024]);
    raw
}

/// A GNU sparse member: 512 bytes in the archive, 1 GiB when written.
fn sparse_tar() -> Vec<u8> {
    let real: u64 = 1 << 30;
    let mut h = tar::Header::new_gnu();
    h.set_path("R1/sparse").unwrap();
    h.set_entry_type(tar::EntryType::GNUSparse);
    h.set_mode(0o644);
    h.set_size(512);
    {
        let g = h.as_gnu_mut().unwrap();
        g.set_real_size(real);
        g.sparse[0].set_offset(real - 512);
        g.sparse[0].set_length(512);
    }
    h.set_cksum();
    let mut raw = h.as_bytes().to_vec();
    raw.extend([b's'; 512]);
    raw.extend([0u8; 1024]);
    raw
}

#[test]
fn item2_pax_and_sparse_sizes_count_against_the_limit() {
    let s = Server::start_with(&limited_config());
    let pax = pax_sized_tar();
    assert!(pax.len() < 2_100_000);
    let (st, v) = put(&s, "/v1/components/pax/R1/rocky9", pax);
    assert_error_code(st, &v, 413, "too_large", "1048576");
    let (st, v) = put(&s, "/v1/components/sparse/R1/rocky9", sparse_tar());
    assert_error_code(st, &v, 413, "too_large", "1048576");
    tmp_is_empty(&s);
    // the same limit holds a normal upload under it
    let (st, v) = put(
        &s,
        "/v1/components/small/R1/rocky9",
        tar_gz("R1", &[("a", &[7u8; 100_000])]),
    );
    assert_eq!(st, 201, "{v}");
}

// --- 3. hard links are kept as hard links, never multiplied ---------------------------------

fn hardlink_bomb(links: usize, size: usize) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let data: Vec<u8> = (0..size).map(|i| (i * 7919 % 251) as u8).collect();
    let mut h = tar::Header::new_gnu();
    h.set_size(size as u64);
    h.set_mode(0o644);
    b.append_data(&mut h, "R1/big", data.as_slice()).unwrap();
    for i in 0..links {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Link);
        h.set_size(0);
        h.set_mode(0o644);
        b.append_link(&mut h, format!("R1/l{i}"), "R1/big").unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn item3_hard_links_stay_hard_links() {
    let s = Server::start_with(&config_with_keys("max_unpacked_bytes = 4194304"));
    let (st, v) = put(
        &s,
        "/v1/components/links/R1/rocky9",
        hardlink_bomb(100, 1 << 20),
    );
    assert_eq!(st, 201, "{v}");
    let size = v["component"]["size"].as_u64().unwrap();
    assert!(
        size < 2 << 20,
        "100 hard links multiplied the blob: {size} bytes"
    );
    let body = client()
        .get(s.url("/v1/components/links/R1/rocky9"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    let mut ar = tar::Archive::new(zstd::stream::read::Decoder::new(&body[..]).unwrap());
    let (mut files, mut links) = (0, 0);
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        match e.header().entry_type() {
            tar::EntryType::Regular => files += 1,
            tar::EntryType::Link => {
                links += 1;
                assert_eq!(e.link_name().unwrap().unwrap().to_str(), Some("R1/big"));
            }
            _ => {}
        }
    }
    assert_eq!((files, links), (1, 100));

    // the CLI extracts them as hard links of one file
    let out = tempfile::tempdir().unwrap();
    let st = Command::new(env!("CARGO_BIN_EXE_artifact-store"))
        .args(["get", "links", "R1", "--extract"])
        .arg(out.path())
        .args(["--server", &s.base])
        .status()
        .unwrap();
    assert!(st.success());
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(out.path().join("R1/l42")).unwrap();
    assert_eq!(m.nlink(), 101);

    // a hard link to something not in the archive, or through a link, is refused
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Link);
    h.set_size(0);
    b.append_link(&mut h, "R1/pw", "etc/passwd").unwrap();
    let (st, v) = put(&s, "/v1/components/hl/R1/rocky9", b.into_inner().unwrap());
    assert_error_code(st, &v, 400, "bad_archive", "hard link");
    tmp_is_empty(&s);
}

// --- 4. symlinks are resolved on the real tree, chains included -----------------------------

fn tar_of(entries: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, link, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o755);
        match link {
            Some(t) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                b.append_link(&mut h, path, t).unwrap();
            }
            None if path.ends_with('/') => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                b.append_data(&mut h, path, &[][..]).unwrap();
            }
            None => {
                h.set_size(data.len() as u64);
                b.append_data(&mut h, path, *data).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

#[test]
fn item4_link_chains_and_writes_through_links_are_refused() {
    let s = Server::start();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "chain",
            tar_of(&[
                ("R1/dot", Some("."), b""),
                ("R1/up", Some("dot/dot/../../.."), b""),
            ]),
            "points outside",
        ),
        (
            "through",
            tar_of(&[
                ("R1/sub/", None, b""),
                ("R1/d", Some("sub"), b""),
                ("R1/d/x", None, b"written through a link"),
            ]),
            "symbolic link",
        ),
        (
            "later",
            // fine when written; a later entry makes the chain climb out
            tar_of(&[
                ("R1/a/", None, b""),
                ("R1/a/l", Some("b/../.."), b""),
                ("R1/a/b", Some("../.."), b""),
            ]),
            "points outside",
        ),
        (
            "abs",
            tar_of(&[("R1/pw", Some("/etc/passwd"), b"")]),
            "points outside",
        ),
    ];
    for (name, body, needle) in cases {
        let (st, v) = put(&s, &format!("/v1/components/{name}/R1/rocky9"), body);
        assert_error_code(st, &v, 400, "bad_archive", needle);
    }
    tmp_is_empty(&s);
    // links that stay inside are kept
    let ok = tar_of(&[
        ("R1/lib/libx.so.1", None, b"elf"),
        ("R1/lib/libx.so", Some("libx.so.1"), b""),
        ("R1/dot", Some("."), b""),
        ("R1/top", Some("lib/../lib/libx.so"), b""),
    ]);
    let (st, v) = put(&s, "/v1/components/ok/R1/rocky9", ok);
    assert_eq!(st, 201, "{v}");
}

#[test]
fn item4_build_output_links_out_of_the_tree_are_refused() {
    let mut repos = Repos::new(&[]);
    let s = Server::start_with(&build_config(""));
    repos.add_tree("mklink", |d| {
        std::fs::write(
            d.join("config.yaml"),
            "build: \"ln -s /etc/passwd passwd && mkdir -p x && ln -s ../../.. x/up\"\n",
        )
        .unwrap();
    });
    repos.serve();
    let (st, v) = build(&s, "mklink", &repos.git_url("mklink"));
    assert_eq!(st, 422, "{v}");
    assert!(
        v["errorMessage"]
            .as_str()
            .unwrap()
            .contains("points outside"),
        "{v}"
    );
}

// --- 5. one gzip conversion per blob, however many readers ask at once ----------------------

#[test]
fn item5_concurrent_first_gzip_downloads_convert_once() {
    let s = Server::start();
    // incompressible, so each conversion takes a while
    let data = noise(1, 12 << 20);
    let (st, v) = put(
        &s,
        "/v1/components/gz/R1/rocky9",
        tar_gz("R1", &[("noise", &data)]),
    );
    assert_eq!(st, 201, "{v}");
    let before = metric(&s, "derived_blobs_made_total", &[]);
    let url = s.url("/v1/components/gz/R1/rocky9?format=tar.gz");
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let r = client().get(url).send().unwrap();
                (r.status().as_u16(), r.bytes().unwrap())
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for (st, body) in &results {
        assert_eq!(*st, 200);
        assert_eq!(body, &results[0].1);
    }
    assert_eq!(metric(&s, "derived_blobs_made_total", &[]) - before, 1.0);
}

// --- 6. the sandbox shows the recipe nothing of the service --------------------------------

#[test]
fn item6_the_bwrap_sandbox_hides_keys_config_and_data() {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".ssh")).unwrap();
    std::fs::write(home.path().join(".ssh/id_ed25519"), "PRIVATE KEY").unwrap();
    // a toolchain directory the sandbox mounts (build.sandbox_binds), with
    // the service's own directory (data and config) inside it
    let tmp = tempfile::tempdir().unwrap();
    let tools = tmp.path().join("tools");
    let dir = tools.join("svc");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(tools.join("marker"), "a tool").unwrap();
    let data = dir.join("data");
    let config = dir.join("config.toml");
    let key = home.path().join(".ssh/id_ed25519");
    let probes = [
        data.join("index").display().to_string(),
        data.join("blobs").display().to_string(),
        config.display().to_string(),
        key.display().to_string(),
        "/root".into(),
        "/home".into(),
        "/etc/shadow".into(),
        "/var".into(),
    ];
    let marker = tools.join("marker").display().to_string();
    let mut repos = Repos::new(&[]);
    repos.add_tree("probe", |d| {
        let mut script = String::from("set -u\nmkdir -p report\n: > report/visible\n");
        for p in &probes {
            script.push_str(&format!("[ -e '{p}' ] && echo '{p}' >> report/visible\n"));
        }
        script.push_str(&format!("cat '{marker}' > report/tool\n"));
        script.push_str(
            "id -u > report/uid\nls / > report/root\nenv | cut -d= -f1 | sort > report/env\n",
        );
        std::fs::write(d.join("build.sh"), script).unwrap();
        std::fs::write(
            d.join("config.yaml"),
            "build: build.sh\nartifacts: [report]\n",
        )
        .unwrap();
    });
    repos.serve();
    let s = Server::start_in_env(
        &dir,
        &build_config(&format!(
            "sandbox_binds = [{:?}]",
            tools.display().to_string()
        )),
        &[
            ("HOME", home.path().to_str().unwrap()),
            ("LAB_SECRET_TOKEN", "leaked"),
        ],
    );
    let (st, v) = build(&s, "probe", &repos.git_url("probe"));
    assert_eq!(st, 200, "{v}");
    let body = client()
        .get(s.url("/v1/components/probe/R1.0/rocky9"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    let files = read_tar(&body, false);
    let get = |name: &str| {
        let e = files
            .iter()
            .find(|(p, _)| p == &format!("R1.0/report/{name}"))
            .unwrap_or_else(|| panic!("no {name}"));
        String::from_utf8_lossy(&e.1).into_owned()
    };
    assert_eq!(
        get("tool"),
        "a tool",
        "the configured toolchain directory is mounted"
    );
    assert_eq!(get("visible"), "", "the sandbox saw these host paths");
    assert_eq!(
        get("uid").trim(),
        "1000",
        "the recipe runs as an unprivileged user"
    );
    let root = get("root");
    for hidden in ["home", "root", "srv", "var"] {
        assert!(
            !root.lines().any(|l| l == hidden),
            "/{hidden} visible: {root}"
        );
    }
    assert!(!get("env").contains("LAB_SECRET_TOKEN"), "{}", get("env"));
}

#[test]
fn item6_podman_gets_no_service_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let rec = tmp.path().join("podman-env");
    let wrapper = tmp.path().join("podman");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\nenv > '{}'\nexit 3\n", rec.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let w = wrapper.display().to_string();
    let repos = Repos::new(&[]);
    repos.add_tree("pm", |d| {
        std::fs::write(
            d.join("config.yaml"),
            "build: make\nimage: localhost/none\n",
        )
        .unwrap();
    });
    let s = Server::start_with_env(
        &config_with_keys(&format!(
            "[build]\nallow_local_urls = true\nsandbox = \"podman\"\npodman_build = [{w:?}]\n\
             [image]\npodman_build = [{w:?}]\n"
        )),
        &[
            ("LAB_SECRET_TOKEN", "leaked"),
            ("AWS_SECRET_ACCESS_KEY", "leaked"),
        ],
    );
    let (st, v) = build(&s, "pm", &repos.file_url("pm"));
    assert_eq!(st, 422, "{v}");
    let env = std::fs::read_to_string(&rec).expect("the wrapper ran");
    assert!(
        !env.contains("leaked"),
        "podman saw the service's secrets:\n{env}"
    );
    assert!(env.contains("PATH="), "{env}");
    std::fs::remove_file(&rec).unwrap();
    // an image build: the same policy
    let form = reqwest::blocking::multipart::Form::new()
        .text("component", "img")
        .text("branch", "main")
        .part(
            "dockerfile",
            reqwest::blocking::multipart::Part::bytes(b"FROM scratch\n".to_vec())
                .file_name("Dockerfile"),
        );
    let (st, v) = json_of(
        client()
            .post(s.url("/v1/images?wait=true"))
            .header("Authorization", bearer(WRITE_KEY))
            .multipart(form)
            .send()
            .unwrap(),
    );
    assert_eq!(st, 422, "{v}");
    let env = std::fs::read_to_string(&rec).expect("the wrapper ran");
    assert!(
        !env.contains("leaked"),
        "podman saw the service's secrets:\n{env}"
    );
}

// --- 7. a full disk: 507, not ready, and the service still starts and serves reads ---------

/// A small tmpfs mounted for the test (needs root, as CI has), unmounted on drop.
struct SmallDisk(PathBuf, #[allow(dead_code)] tempfile::TempDir);

impl SmallDisk {
    fn new(mib: u64) -> SmallDisk {
        let t = tempfile::tempdir().unwrap();
        let m = t.path().join("disk");
        std::fs::create_dir(&m).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(&m)
            .output()
            .expect("mount");
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs and needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk(m, t)
    }

    /// Fills the disk, leaving about `leave` bytes free.
    fn fill(&self, name: &str, leave: u64) {
        let free = free_bytes(&self.0);
        let n = free.saturating_sub(leave);
        let mut f = std::fs::File::create(self.0.join(name)).unwrap();
        let chunk = vec![1u8; 1 << 16];
        let mut left = n;
        while left > 0 {
            let k = left.min(chunk.len() as u64) as usize;
            if f.write_all(&chunk[..k]).is_err() {
                break;
            }
            left -= k as u64;
        }
        let _ = f.sync_all();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn free_bytes(p: &Path) -> u64 {
    let out = Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(p)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn item7_full_disk_is_507_not_ready_and_still_serves_reads() {
    let disk = SmallDisk::new(48);
    let cfg = |floor: u64| {
        config_with_keys(&format!(
            "min_free_bytes = {floor}\nreserve_bytes = 4194304"
        ))
    };
    let mut s = Server::start_in(&disk.0, &cfg(8 << 20));
    assert!(disk.0.join("data/reserve").is_file(), "the reserve is held");
    let (st, v) = put(
        &s,
        "/v1/components/keep/R1/rocky9",
        tar_gz("R1", &[("f", b"kept")]),
    );
    assert_eq!(st, 201, "{v}");
    let kept = v["component"]["blake3"].as_str().unwrap().to_owned();
    let r = client().get(s.url("/readyz")).send().unwrap();
    assert_eq!(r.status(), 200);

    // below the floor: not ready, and an upload that cannot fit is refused early
    disk.fill("filler1", 4 << 20);
    let (st, v) = json_of(client().get(s.url("/readyz")).send().unwrap());
    assert_error_code(st, &v, 503, "not_ready", "min_free_bytes");
    let (st, v) = put(&s, "/v1/components/big/R1/rocky9", vec![0u8; 64 << 10]);
    assert_error_code(st, &v, 507, "insufficient_storage", "min_free_bytes");

    // the disk filled to the last byte: restart, reads still work
    s.kill();
    disk.fill("filler2", 0);
    assert!(free_bytes(&disk.0) < 64 << 10);
    let s = Server::start_in(&disk.0, &cfg(0));
    let r = client()
        .get(s.url("/v1/components/keep/R1/rocky9"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "reads go on with a full disk");
    assert_eq!(blake3::hash(&r.bytes().unwrap()).to_hex().to_string(), kept);
    // a write that hits the full disk is 507 JSON, and leaves nothing behind
    let (st, v) = put(
        &s,
        "/v1/components/late/R1/rocky9",
        tar_gz("R1", &[("n", &noise(1, 3 << 20))]),
    );
    assert_error_code(st, &v, 507, "insufficient_storage", "disk is full");
    tmp_is_empty(&s);
}

// --- 8. a stalled request body is dropped ---------------------------------------------------

#[test]
fn item8_a_body_that_stalls_is_dropped() {
    let s = Server::start_with(&config_with_keys(
        "[http]\nbody_idle_secs = 1\n[compat]\ntrusted_networks = [\"127.0.0.0/8\"]",
    ));
    let head = format!(
        "PUT /v1/components/slow/R1/rocky9 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {WRITE_KEY}\r\n\
         Content-Length: 100000\r\nConnection: close\r\n\r\n"
    );
    let t = Instant::now();
    let (status, body) = raw_http(&s, &[head.as_bytes(), &[0u8; 1000]].concat());
    let took = t.elapsed();
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 408, "{body}");
    assert!(body.contains("\"code\":\"body_timeout\""), "{body}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    tmp_is_empty(&s);
    // the original API's GET with a trickled JSON body, anonymous
    let head = "GET /component HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                Content-Length: 60\r\nConnection: close\r\n\r\n";
    let (status, body) = raw_http(&s, &[head.as_bytes(), b"{\"component\":"].concat());
    assert_eq!(status, 408, "{}", String::from_utf8_lossy(&body));
}

// --- 9. anonymous reads do not start builds ------------------------------------------------

#[test]
fn item9_build_on_miss_is_a_policy() {
    let names = ["base"];
    let mut repos = Repos::new(&names);
    repos.serve();
    let catalog = repos.catalog(&names);
    let s = Server::start_with(&build_config(&catalog));
    let jobs = |s: &Server| {
        json_of(client().get(s.url("/v1/jobs")).send().unwrap()).1["jobs"]
            .as_array()
            .unwrap()
            .len()
    };
    // anonymous: 404 saying how to ask, and no job
    let (st, v) = json_of(
        client()
            .get(s.url("/component?component=base&tag=R1.0"))
            .send()
            .unwrap(),
    );
    assert_error_code(st, &v, 404, "not_found", "build.on_miss");
    assert!(v["errorMessage"]
        .as_str()
        .unwrap()
        .contains("POST /v1/builds"));
    let (st, _) = json_of(
        client()
            .get(s.url("/v1/components/base/R1.0/rocky9?build=missing"))
            .send()
            .unwrap(),
    );
    assert_eq!(st, 404);
    assert_eq!(jobs(&s), 0, "an anonymous read started a build");
    // a write key may
    let r = client()
        .get(s.url("/component?component=base&tag=R1.0"))
        .header("Authorization", bearer(WRITE_KEY))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(jobs(&s), 1);
    // a read key may not
    let (st, _) = json_of(
        client()
            .get(s.url("/component?component=base&tag=R2.0"))
            .header("Authorization", bearer(READ_KEY))
            .send()
            .unwrap(),
    );
    assert_eq!(st, 404);
    drop(s);

    // trusted networks may under "trusted", not under "keys"
    for (policy, want) in [("trusted", 200), ("keys", 404)] {
        let s = Server::start_with(&config_with_keys(&format!(
            "[compat]\ntrusted_networks = [\"127.0.0.0/8\"]\n[build]\nallow_local_urls = true\n\
             sandbox = \"bwrap\"\non_miss = \"{policy}\"\n{catalog}"
        )));
        let r = client()
            .get(s.url("/component?component=base&tag=R1.0"))
            .send()
            .unwrap();
        assert_eq!(r.status(), want, "on_miss = {policy}");
    }
}

// --- 10. the small items -------------------------------------------------------------------

#[test]
fn item10_forwarded_headers_are_ignored_unless_from_a_trusted_proxy() {
    let s = Server::start();
    let (st, _) = put(
        &s,
        "/v1/components/fw/R1/rocky9",
        tar_gz("R1", &[("a", b"a")]),
    );
    assert_eq!(st, 201);
    let info = |s: &Server| {
        json_of(
            client()
                .get(s.url("/v1/components/fw/R1/rocky9/info"))
                .header("X-Forwarded-Host", "evil.example")
                .header("X-Forwarded-Proto", "https")
                .header("Forwarded", "host=evil2.example;proto=https")
                .send()
                .unwrap(),
        )
        .1
    };
    let v = info(&s);
    let url = v["component"]["download_url"].as_str().unwrap();
    assert!(url.starts_with(&s.base), "{url}");
    drop(s);
    let s = Server::start_with(&config_with_keys(
        "[http]\ntrusted_proxies = [\"127.0.0.0/8\"]",
    ));
    let (st, _) = put(
        &s,
        "/v1/components/fw/R1/rocky9",
        tar_gz("R1", &[("a", b"a")]),
    );
    assert_eq!(st, 201);
    let v = info(&s);
    let url = v["component"]["download_url"].as_str().unwrap();
    assert!(url.starts_with("https://evil2.example/"), "{url}");
}

#[test]
fn item10_job_logs_and_errors_do_not_show_the_data_directory() {
    let repos = Repos::new(&["failing"]);
    let s = Server::start_with(&build_config(""));
    let (st, v) = build(&s, "failing", &repos.file_url("failing"));
    assert_eq!(st, 422, "{v}");
    let id = v["job"].as_str().unwrap();
    let data = s.dir.join("data").canonicalize().unwrap();
    let data = data.display().to_string();
    let log = client()
        .get(s.url(&format!("/v1/jobs/{id}/log")))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(!log.contains(&data), "{log}");
    assert!(log.contains("$DATA"), "{log}");
    let job = wait_job(&s, id);
    assert!(!job.to_string().contains(&data), "{job}");
    assert!(!v.to_string().contains(&data), "{v}");
}

#[test]
fn item10_import_refusals_do_not_tell_what_exists() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("imports");
    std::fs::create_dir_all(&root).unwrap();
    let s = Server::start_with(&config_with_keys(&format!(
        "[compat]\nimport_roots = [{:?}]",
        root.display().to_string()
    )));
    let try_import = |path: &str| {
        json_of(
            client()
                .put(s.url("/component"))
                .header("Authorization", bearer(WRITE_KEY))
                .json(&json!({"component": "imp", "tag": "R1", "results_tarball": path}))
                .send()
                .unwrap(),
        )
    };
    let (st1, v1) = try_import("/etc/passwd");
    let (st2, v2) = try_import("/etc/no-such-file-anywhere");
    assert_error_code(st1, &v1, 403, "forbidden", "import root");
    assert_error_code(st2, &v2, 403, "forbidden", "import root");
    let shape = |v: &Value| {
        v["errorMessage"]
            .as_str()
            .unwrap()
            .replace("/etc/passwd", "P")
            .replace("/etc/no-such-file-anywhere", "P")
    };
    assert_eq!(shape(&v1), shape(&v2));
    let (st, v) = try_import(&root.join("missing.tar.gz").display().to_string());
    assert_error_code(st, &v, 403, "forbidden", "import root");
}

#[test]
fn item10_oversized_bodies_are_413_json() {
    let s = Server::start();
    let big = format!("{{\"component\": \"{}\"}}", "a".repeat(300 << 10));
    let (st, v) = json_of(
        client()
            .get(s.url("/component"))
            .header("Content-Type", "application/json")
            .body(big)
            .send()
            .unwrap(),
    );
    assert_error_code(st, &v, 413, "too_large", "limit");
    // a JSON body whose declared length is over the limit: answered at once
    let head =
        "POST /v1/components/missing HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                Content-Length: 5000000\r\nConnection: close\r\n\r\n";
    let (status, body) = raw_http(&s, &[head.as_bytes(), b"{\"components\": ["].concat());
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("\"code\":\"too_large\""), "{body}");
    assert!(body.contains("JSON body"), "{body}");
}

/// A hostile server for the client: a real HTTP server (Python's) that
/// serves a tarball whose third entry escapes, with a matching ETag.
#[test]
fn item10_a_failed_extract_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let www = tmp.path().join("www/v1/components/evil/R1");
    std::fs::create_dir_all(&www).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    for (p, d) in [("R1/a", b"a".as_slice()), ("R1/b", b"b".as_slice())] {
        let mut h = tar::Header::new_gnu();
        h.set_size(d.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, p, d).unwrap();
    }
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    h.as_gnu_mut().unwrap().name[..12].copy_from_slice(b"../escape\0\0\0");
    h.set_cksum();
    let mut raw = b.into_inner().unwrap();
    raw.truncate(raw.len() - 1024); // drop the end-of-archive blocks
    raw.extend_from_slice(h.as_bytes());
    raw.extend_from_slice(&[b'x'; 512]);
    raw.extend_from_slice(&[0u8; 1024]);
    let zst = zstd::encode_all(&raw[..], 3).unwrap();
    std::fs::write(www.join("rocky9"), &zst).unwrap();
    let etag = blake3::hash(&zst).to_hex().to_string();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let script = format!(
        "import http.server, functools\n\
         class H(http.server.SimpleHTTPRequestHandler):\n\
         \x20   def end_headers(self):\n\
         \x20       self.send_header('ETag', '\"{etag}\"')\n\
         \x20       super().end_headers()\n\
         http.server.ThreadingHTTPServer(('127.0.0.1', {port}), functools.partial(H, directory={:?})).serve_forever()\n",
        tmp.path().join("www").display().to_string()
    );
    let mut py = Command::new("python3")
        .args(["-c", &script])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "python server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = tmp.path().join("deps");
    let res = Command::new(env!("CARGO_BIN_EXE_artifact-store"))
        .args(["get", "evil", "R1", "--extract"])
        .arg(&out)
        .args(["--server", &format!("http://127.0.0.1:{port}")])
        .output()
        .unwrap();
    let _ = py.kill();
    let _ = py.wait();
    assert!(!res.status.success());
    assert!(
        String::from_utf8_lossy(&res.stderr).contains(".."),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let left: Vec<_> = std::fs::read_dir(&out)
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "a partial tree was left: {left:?}");
    assert!(!tmp.path().join("escape").exists());
}
