//! Items 5, 7, 8 and 9: gzip single-flight, a full disk, stalled bodies, the build-on-miss policy.

use super::*;

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
