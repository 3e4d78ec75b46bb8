//! The `BlobStore` conformance suite, run against each implementation: a
//! local directory (`local::...`) and S3-compatible object storage
//! (`s3::...`: a real SeaweedFS, a fresh bucket per test). Then what only
//! an object store has (`s3_only::...`: presigned URLs, credentials, cut
//! connections), and `s3_stream_speed` (ignored: a measurement).

mod common;

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::time::{Duration, SystemTime};

use artifact_store::store::local::LocalBlobs;
use artifact_store::store::{BlobInfo, BlobStore, Scratch};

/// A store under test, with scratch space to write blobs as the service
/// does (a temp file, hashed while written).
struct Backend {
    store: Box<dyn BlobStore>,
    scratch: Scratch,
    s3: bool,
    #[cfg(feature = "s3")]
    target: Option<common::s3::S3Target>,
    _dir: tempfile::TempDir,
}

/// The S3 store's key prefix in the conformance tests.
#[cfg(feature = "s3")]
const PREFIX: &str = "conformance/";

fn local() -> Backend {
    let dir = tempfile::tempdir().expect("tempdir");
    Backend {
        store: Box::new(LocalBlobs::open(dir.path()).expect("open local blobs")),
        scratch: Scratch::open(dir.path()).expect("scratch"),
        s3: false,
        #[cfg(feature = "s3")]
        target: None,
        _dir: dir,
    }
}

/// S3 with small multipart settings (8 MiB threshold, 5 MiB parts).
#[cfg(feature = "s3")]
fn s3() -> Backend {
    use artifact_store::store::s3::S3Blobs;
    let dir = tempfile::tempdir().expect("tempdir");
    let t = common::s3::seaweedfs().bucket();
    let mut cfg = t.config(PREFIX);
    cfg.multipart_threshold_bytes = 8 << 20;
    cfg.part_bytes = 5 << 20;
    Backend {
        store: Box::new(S3Blobs::open(&cfg).expect("open S3 blobs")),
        scratch: Scratch::open(dir.path()).expect("scratch"),
        s3: true,
        target: Some(t),
        _dir: dir,
    }
}

/// `size` pseudo-random bytes from `seed` (blake3's output stream), from
/// `offset` on.
fn random_bytes(seed: &str, offset: u64, size: usize) -> Vec<u8> {
    let mut xof = blake3::Hasher::new().update(seed.as_bytes()).finalize_xof();
    xof.set_position(offset);
    let mut v = vec![0u8; size];
    xof.fill(&mut v);
    v
}

/// Writes `size` pseudo-random bytes to a temp file, 1 MiB at a time, and
/// stores it.
fn put_random(store: &dyn BlobStore, scratch: &Scratch, size: u64, seed: &str) -> BlobInfo {
    let mut w = scratch.writer().expect("writer");
    let mut xof = blake3::Hasher::new().update(seed.as_bytes()).finalize_xof();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        xof.fill(&mut buf[..n]);
        w.write_all(&buf[..n]).expect("write");
        left -= n as u64;
    }
    let (tmp, info) = w.finish().expect("finish");
    store.put(tmp, &info).expect("put");
    info
}

impl Backend {
    fn put(&self, bytes: &[u8]) -> BlobInfo {
        let mut w = self.scratch.writer().expect("writer");
        w.write_all(bytes).expect("write");
        let (tmp, info) = w.finish().expect("finish");
        self.store.put(tmp, &info).expect("put");
        info
    }

    fn put_random(&self, size: u64, seed: &str) -> BlobInfo {
        put_random(self.store.as_ref(), &self.scratch, size, seed)
    }

    fn read_all(&self, hash: &blake3::Hash) -> Vec<u8> {
        let mut v = Vec::new();
        self.store
            .read(hash)
            .expect("read")
            .read_to_end(&mut v)
            .expect("read to the end");
        v
    }

    fn range(&self, hash: &blake3::Hash, start: u64, len: Option<u64>) -> Vec<u8> {
        let mut v = Vec::new();
        self.store
            .read_range(hash, start, len)
            .expect("read_range")
            .read_to_end(&mut v)
            .expect("read to the end");
        v
    }
}

fn kind_of<T>(r: io::Result<T>) -> io::ErrorKind {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.kind(),
    }
}

/// Hash and length of everything a reader gives.
fn digest(mut r: impl Read) -> io::Result<(blake3::Hash, u64)> {
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 256 << 10];
    let mut n = 0u64;
    loop {
        let k = r.read(&mut buf)?;
        if k == 0 {
            return Ok((h.finalize(), n));
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
}

// --- the conformance suite: each runs against every implementation ---

fn put_size_contains_read(b: Backend) {
    let info = b.put(b"hello, blobs");
    assert_eq!(info.hash, blake3::hash(b"hello, blobs"));
    assert_eq!(b.store.size(&info.hash).unwrap(), Some(12));
    assert!(b.store.contains(&info.hash).unwrap());
    assert_eq!(b.read_all(&info.hash), b"hello, blobs");
    // the same content again: kept once
    let again = b.put(b"hello, blobs");
    assert_eq!(again, info);
    assert_eq!(b.store.list().unwrap().len(), 1);
    // an empty blob
    let empty = b.put(b"");
    assert_eq!(b.store.size(&empty.hash).unwrap(), Some(0));
    assert_eq!(b.read_all(&empty.hash), b"");
    // an unknown one
    let unknown = blake3::hash(b"never stored");
    assert_eq!(b.store.size(&unknown).unwrap(), None);
    assert!(!b.store.contains(&unknown).unwrap());
    assert_eq!(kind_of(b.store.read(&unknown)), io::ErrorKind::NotFound);
    assert_eq!(
        kind_of(b.store.read_range(&unknown, 3, Some(2))),
        io::ErrorKind::NotFound
    );
}

fn read_ranges(b: Backend) {
    let data = random_bytes("ranges", 0, 1000);
    let info = b.put(&data);
    let h = &info.hash;
    assert_eq!(b.range(h, 0, Some(10)), &data[..10]);
    assert_eq!(b.range(h, 10, Some(100)), &data[10..110]);
    assert_eq!(b.range(h, 990, None), &data[990..]);
    assert_eq!(b.range(h, 0, None), data);
    assert_eq!(b.range(h, 999, Some(1)), &data[999..]);
    // longer than the rest: to the end
    assert_eq!(b.range(h, 500, Some(10_000)), &data[500..]);
    assert_eq!(b.range(h, 500, Some(u64::MAX)), &data[500..]);
    // nothing
    assert_eq!(b.range(h, 0, Some(0)), b"");
    assert_eq!(b.range(h, 1000, None), b"");
    assert_eq!(b.range(h, 5000, Some(5)), b"");
}

/// Past the end is empty however far past (a file seeks there, an object
/// store would answer 416).
fn read_range_far_past_the_end(b: Backend) {
    let info = b.put(b"short");
    assert_eq!(b.range(&info.hash, 1 << 40, Some(1)), b"");
    assert_eq!(b.range(&info.hash, u64::MAX, None), b"");
}

fn large_blob_in_parts(b: Backend) {
    // 40 MiB: 8 parts of 5 MiB on S3
    let size = 40u64 << 20;
    let info = b.put_random(size, "large");
    assert_eq!(b.store.size(&info.hash).unwrap(), Some(size));
    let (hash, n) = digest(b.store.read(&info.hash).unwrap()).unwrap();
    assert_eq!(n, size);
    assert_eq!(hash, info.hash, "read back differs");
    // a range across the first part boundary, and the tail
    let at = (5u64 << 20) - 10;
    assert_eq!(
        b.range(&info.hash, at, Some(20)),
        random_bytes("large", at, 20)
    );
    assert_eq!(
        b.range(&info.hash, size - 7, None),
        random_bytes("large", size - 7, 7)
    );
    assert_eq!(b.store.list().unwrap().len(), 1);
    // a reader dropped early stops (the store goes on answering)
    let mut r = b.store.read(&info.hash).unwrap();
    let mut head = [0u8; 1000];
    r.read_exact(&mut head).unwrap();
    assert_eq!(head.as_slice(), random_bytes("large", 0, 1000));
    drop(r);
    assert_eq!(b.range(&info.hash, 1, Some(2)), random_bytes("large", 1, 2));
}

fn list_and_delete(b: Backend) {
    let before = SystemTime::now() - Duration::from_secs(600);
    let one = b.put(b"1");
    let two = b.put(b"22");
    let three = b.put_random(100_000, "three");
    let listed: HashMap<_, _> = b
        .store
        .list()
        .unwrap()
        .into_iter()
        .map(|m| (m.hash, m))
        .collect();
    assert_eq!(listed.len(), 3);
    for i in [&one, &two, &three] {
        let m = listed[&i.hash];
        assert_eq!(m.size, i.size);
        assert!(m.modified > before && m.modified < SystemTime::now() + Duration::from_secs(600));
    }
    b.store.delete(&two.hash).unwrap();
    assert!(!b.store.contains(&two.hash).unwrap());
    assert_eq!(b.store.size(&two.hash).unwrap(), None);
    assert_eq!(kind_of(b.store.read(&two.hash)), io::ErrorKind::NotFound);
    assert_eq!(
        kind_of(b.store.read_range(&two.hash, 1, Some(1))),
        io::ErrorKind::NotFound
    );
    let left: Vec<_> = b
        .store
        .list()
        .unwrap()
        .into_iter()
        .map(|m| m.hash)
        .collect();
    assert_eq!(left.len(), 2);
    assert!(!left.contains(&two.hash));
    // absent is fine
    b.store.delete(&two.hash).unwrap();
    // and it can be stored again
    b.put(b"22");
    assert_eq!(b.read_all(&two.hash), b"22");
}

fn quarantine(b: Backend) {
    let bad = b.put(b"this one is corrupt");
    let good = b.put(b"this one is fine");
    b.store.quarantine(&bad.hash).unwrap();
    assert!(!b.store.contains(&bad.hash).unwrap());
    assert_eq!(kind_of(b.store.read(&bad.hash)), io::ErrorKind::NotFound);
    let left: Vec<_> = b
        .store
        .list()
        .unwrap()
        .into_iter()
        .map(|m| m.hash)
        .collect();
    assert_eq!(left, vec![good.hash]);
    assert_eq!(
        kind_of(b.store.quarantine(&blake3::hash(b"absent"))),
        io::ErrorKind::NotFound
    );
}

fn small_objects(b: Backend) {
    let s = &b.store;
    s.put_object("records/c/t/a.json", b"one").unwrap();
    s.put_object("records/c/t/b.json", b"two").unwrap();
    s.put_object("logs/job-1", b"log").unwrap();
    assert_eq!(
        s.get_object("records/c/t/a.json").unwrap().as_deref(),
        Some(&b"one"[..])
    );
    // replaced
    s.put_object("records/c/t/a.json", b"uno").unwrap();
    assert_eq!(
        s.get_object("records/c/t/a.json").unwrap().as_deref(),
        Some(&b"uno"[..])
    );
    let records = vec!["records/c/t/a.json", "records/c/t/b.json"];
    assert_eq!(s.list_objects("records/").unwrap(), records);
    assert_eq!(s.list_objects("records/c/").unwrap(), records);
    assert_eq!(s.list_objects("logs/").unwrap(), vec!["logs/job-1"]);
    assert!(s.list_objects("nothing/").unwrap().is_empty());
    assert_eq!(s.get_object("records/none").unwrap(), None);
    s.delete_object("records/c/t/a.json").unwrap();
    assert_eq!(s.get_object("records/c/t/a.json").unwrap(), None);
    assert_eq!(
        s.list_objects("records/").unwrap(),
        vec!["records/c/t/b.json"]
    );
    s.delete_object("records/c/t/a.json").unwrap();
    s.put_object("logs/empty", b"").unwrap();
    assert_eq!(s.get_object("logs/empty").unwrap(), Some(vec![]));
    // objects are not blobs
    assert!(s.list().unwrap().is_empty());

    let long = "x".repeat(513);
    for bad in [
        "",
        "/abs",
        "a//b",
        "../x",
        "a/../b",
        "a/./b",
        "a b",
        "a\0b",
        "é",
        "a\\b",
        "trailing/",
        long.as_str(),
    ] {
        assert_eq!(
            kind_of(s.put_object(bad, b"x")),
            io::ErrorKind::InvalidInput,
            "{bad:?}"
        );
        assert_eq!(
            kind_of(s.get_object(bad)),
            io::ErrorKind::InvalidInput,
            "{bad:?}"
        );
        assert_eq!(
            kind_of(s.delete_object(bad)),
            io::ErrorKind::InvalidInput,
            "{bad:?}"
        );
    }
    for bad in ["records", "../", "/", "a//"] {
        assert_eq!(
            kind_of(s.list_objects(bad)),
            io::ErrorKind::InvalidInput,
            "{bad:?}"
        );
    }
}

fn capabilities(b: Backend) {
    let info = b.put(b"caps");
    assert!(!b.store.describe().is_empty());
    b.store.ping().unwrap();
    b.store.touch(&info.hash);
    b.store.touch(&blake3::hash(b"absent"));
    let url = b
        .store
        .presigned_url(&info.hash, Some("x.tar.zst"), Duration::from_secs(60))
        .unwrap();
    let path = b.store.local_path(&info.hash);
    let free = b.store.free_bytes().unwrap();
    if b.s3 {
        assert!(url.is_some());
        assert_eq!(path, None);
        assert_eq!(free, None);
    } else {
        assert_eq!(url, None);
        assert_eq!(std::fs::read(path.expect("a local path")).unwrap(), b"caps");
        assert!(free.is_some());
    }
}

/// Called from inside async code (as the HTTP layer sometimes does), and
/// dropped there: no panic, no deadlock.
fn usable_from_async_code(b: Backend) {
    let info = b.put(b"from async code");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let got = rt.block_on(async {
        let mut v = Vec::new();
        b.store
            .read(&info.hash)
            .unwrap()
            .read_to_end(&mut v)
            .unwrap();
        assert_eq!(b.store.size(&info.hash).unwrap(), Some(15));
        v
    });
    assert_eq!(got, b"from async code");
    rt.block_on(async move { drop(b) });
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod local {
            $( #[test] fn $name() { super::$name(super::local()); } )*
        }
        #[cfg(feature = "s3")]
        mod s3 {
            $( #[test] fn $name() { super::$name(super::s3()); } )*
        }
    };
}

conformance!(
    put_size_contains_read,
    read_ranges,
    read_range_far_past_the_end,
    large_blob_in_parts,
    list_and_delete,
    quarantine,
    small_objects,
    capabilities,
    usable_from_async_code,
);

// --- what only an object store has ---

#[cfg(feature = "s3")]
mod s3_only {
    use super::*;
    use artifact_store::store::s3::S3Blobs;
    use common::s3::{seaweedfs, Proxy, Spoil};

    fn presign(b: &Backend, hash: &blake3::Hash, filename: Option<&str>, secs: u64) -> String {
        b.store
            .presigned_url(hash, filename, Duration::from_secs(secs))
            .unwrap()
            .expect("a presigned URL")
    }

    fn get(url: &str) -> reqwest::blocking::Response {
        reqwest::blocking::Client::new()
            .get(url)
            .send()
            .expect("GET the presigned URL")
    }

    #[test]
    fn presigned_downloads() {
        let b = s3();
        let data = random_bytes("presigned", 0, 300_000);
        let info = b.put(&data);
        let url = presign(&b, &info.hash, Some("pkg-1.0_x86_64.tar.zst"), 60);
        assert!(!url.contains(common::s3::SECRET_KEY), "{url}");
        let r = get(&url);
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["content-disposition"],
            "attachment; filename=\"pkg-1.0_x86_64.tar.zst\""
        );
        assert_eq!(r.bytes().unwrap(), data);

        // a name that would break the header is made harmless
        let url = presign(&b, &info.hash, Some("a\"b\r\nSet-Cookie: x"), 60);
        let r = get(&url);
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["content-disposition"],
            "attachment; filename=\"a_b__Set-Cookie_ x\""
        );
        assert!(r.headers().get("set-cookie").is_none());

        // no name: no disposition
        let r = get(&presign(&b, &info.hash, None, 60));
        assert_eq!(r.status(), 200);
        assert!(r.headers().get("content-disposition").is_none());

        // tampered: the signature, the name, the key
        let sig = url.find("X-Amz-Signature=").expect("a signature") + 16;
        let mut bad = url.clone().into_bytes();
        bad[sig] = if bad[sig] == b'0' { b'1' } else { b'0' };
        let bad = String::from_utf8(bad).unwrap();
        assert_eq!(get(&bad).status(), 403);
        let url = presign(&b, &info.hash, Some("pkg.tar.zst"), 60);
        assert_eq!(get(&url.replace("pkg.tar.zst", "evil.exe")).status(), 403);
        let other = b.put(b"another blob");
        let hex = info.hex();
        let swapped = url.replace(&hex, &other.hex()).replace(
            &format!("/{}/", &hex[..2]),
            &format!("/{}/", &other.hex()[..2]),
        );
        assert_eq!(get(&swapped).status(), 403);

        // expired
        let url = presign(&b, &info.hash, None, 1);
        std::thread::sleep(Duration::from_millis(2100));
        assert_eq!(get(&url).status(), 403);
    }

    #[test]
    fn wrong_credentials_are_refused_in_plain_words() {
        let t = seaweedfs().bucket();
        let mut cfg = t.config("");
        cfg.secret_access_key = Some("a-wrong-secret".into());
        let s = S3Blobs::open(&cfg).unwrap();
        let e = s.ping().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("refused the credentials (403)") && msg.contains(&t.bucket),
            "{msg}"
        );
        assert!(!msg.contains("a-wrong-secret"), "{msg}");

        let dir = tempfile::tempdir().unwrap();
        let scratch = Scratch::open(dir.path()).unwrap();
        let mut w = scratch.writer().unwrap();
        w.write_all(b"refused").unwrap();
        let (tmp, info) = w.finish().unwrap();
        let e = s.put(tmp, &info).unwrap_err();
        eprintln!("wrong secret: {e}");
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
        assert!(
            e.to_string().contains("refused the credentials (403)"),
            "{e}"
        );
        assert!(!s.describe().contains("a-wrong-secret"));
    }

    #[test]
    fn no_server_and_no_bucket_are_told_apart() {
        let t = seaweedfs().bucket();
        // a loopback port nobody listens on
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cfg = t.config("");
        cfg.endpoint = Some(format!("http://127.0.0.1:{port}"));
        let e = S3Blobs::open(&cfg).unwrap().ping().unwrap_err();
        eprintln!("no server: {e}");
        assert!(
            e.to_string().contains(&format!(
                "the object store at http://127.0.0.1:{port} does not answer"
            )),
            "{e}"
        );
        let mut cfg = t.config("");
        cfg.bucket = "no-such-bucket".into();
        let e = S3Blobs::open(&cfg).unwrap().ping().unwrap_err();
        assert!(
            e.to_string()
                .contains("the bucket no-such-bucket does not exist"),
            "{e}"
        );
        let mut cfg = t.config("");
        cfg.access_key_id = None;
        cfg.secret_access_key = None;
        if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
            let e = S3Blobs::open(&cfg).unwrap_err();
            assert!(e.to_string().contains("AWS_ACCESS_KEY_ID"), "{e}");
        }
    }

    /// A connection cut in the middle of a body: the reader fails (after
    /// the client's retries), it never ends early as if all was read.
    #[test]
    fn a_cut_body_is_an_error() {
        let b = s3();
        let size = 3u64 << 20;
        let info = b.put_random(size, "cut");
        let proxy = Proxy::start(
            seaweedfs().s3_port,
            Spoil {
                each: Some(256 << 10),
                ..Spoil::default()
            },
        );
        let mut cfg = b.target.as_ref().unwrap().config(PREFIX);
        cfg.endpoint = Some(proxy.endpoint());
        let cut = S3Blobs::open(&cfg).unwrap();
        let e = digest(cut.read(&info.hash).unwrap()).unwrap_err();
        eprintln!("cut body: {e}");
        assert!(e.to_string().contains(&info.hex()), "{e}");
        let e = match cut.read_range(&info.hash, 1000, Some(size - 2000)) {
            Ok(r) => digest(r).unwrap_err(),
            Err(e) => e,
        };
        assert!(e.to_string().contains(&info.hex()), "{e}");
        // a long read (in parallel segments) fails too
        let long = b.put_random(40 << 20, "cut long");
        let e = digest(cut.read(&long.hash).unwrap()).unwrap_err();
        eprintln!("cut long body: {e}");
        assert!(e.to_string().contains(&long.hex()), "{e}");
        // small reads still pass
        let mut v = Vec::new();
        cut.read_range(&info.hash, 10, Some(100))
            .unwrap()
            .read_to_end(&mut v)
            .unwrap();
        assert_eq!(v, random_bytes("cut", 10, 100));
    }

    /// Over a slow link, a long read takes the rest in parallel segments,
    /// delivered in order; a segment cut short is an error.
    #[test]
    fn a_slow_link_reads_in_segments() {
        let b = s3();
        let size = 40u64 << 20;
        let info = b.put_random(size, "slow link");
        let slow = Spoil {
            rate: Some(40_000_000),
            ..Spoil::default()
        };
        let proxy = Proxy::start(seaweedfs().s3_port, slow);
        let mut cfg = b.target.as_ref().unwrap().config(PREFIX);
        cfg.endpoint = Some(proxy.endpoint());
        let store = S3Blobs::open(&cfg).unwrap();
        let t0 = std::time::Instant::now();
        let (hash, n) = digest(store.read(&info.hash).unwrap()).unwrap();
        let secs = t0.elapsed().as_secs_f64();
        assert_eq!((hash, n), (info.hash, size));
        let conns = proxy.connections.load(std::sync::atomic::Ordering::SeqCst);
        eprintln!(
            "40 MiB at 40 MB/s a connection: {:.0} MB/s over {conns} connections",
            size as f64 / secs / 1e6
        );
        assert!(conns >= 3, "{conns} connections: no segments");
        // a range, in segments too
        let (start, len) = (3u64 << 20, 34u64 << 20);
        let (hash, n) = digest(store.read_range(&info.hash, start, Some(len)).unwrap()).unwrap();
        assert_eq!(n, len);
        let mut want = blake3::Hasher::new();
        want.update(&random_bytes("slow link", start, len as usize));
        assert_eq!(hash, want.finalize());

        // everything cut after 12 MiB: past the first segment, the
        // segments fail
        let cut = Proxy::start(
            seaweedfs().s3_port,
            Spoil {
                total: Some(12 << 20),
                ..slow
            },
        );
        cfg.endpoint = Some(cut.endpoint());
        let store = S3Blobs::open(&cfg).unwrap();
        let e = digest(store.read(&info.hash).unwrap()).unwrap_err();
        eprintln!("cut segments: {e}");
        assert!(e.to_string().contains(&info.hex()), "{e}");
    }

    #[test]
    fn prefixes_keep_stores_apart() {
        let t = seaweedfs().bucket();
        let dir = tempfile::tempdir().unwrap();
        let scratch = Scratch::open(dir.path()).unwrap();
        let a = S3Blobs::open(&t.config("team-a")).unwrap();
        let c = S3Blobs::open(&t.config("team-c/")).unwrap();
        let root = S3Blobs::open(&t.config("")).unwrap();
        let ia = put_random(&a, &scratch, 10, "a");
        let ic = put_random(&c, &scratch, 10, "c");
        assert!(a.contains(&ia.hash).unwrap() && !a.contains(&ic.hash).unwrap());
        assert!(c.contains(&ic.hash).unwrap() && !c.contains(&ia.hash).unwrap());
        assert_eq!(a.list().unwrap().len(), 1);
        assert!(root.list().unwrap().is_empty());
        a.put_object("records/x", b"a").unwrap();
        assert!(c.list_objects("records/").unwrap().is_empty());
        assert_eq!(
            root.get_object("team-a/records/x").unwrap().as_deref(),
            Some(&b"a"[..])
        );
        assert!(a
            .describe()
            .starts_with(&format!("s3://{}/team-a/ at http://", t.bucket)));
    }

    /// Small objects may not write over blobs (their keys share the
    /// prefix).
    #[test]
    fn objects_cannot_name_blob_keys() {
        let b = s3();
        let info = b.put(b"a blob");
        let key = format!("blobs/{}/{}", &info.hex()[..2], info.hex());
        for name in [key.as_str(), "quarantine/x", "blobs"] {
            assert_eq!(
                kind_of(b.store.put_object(name, b"forged")),
                io::ErrorKind::InvalidInput
            );
        }
        assert_eq!(
            kind_of(b.store.list_objects("blobs/")),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(b.read_all(&info.hash), b"a blob");
    }

    /// Content-addressed: a blob held with the same size is not uploaded
    /// again; one held with another size (damaged) is replaced.
    #[test]
    fn existing_blobs_are_kept_and_damaged_ones_replaced() {
        use object_store::ObjectStoreExt;
        let b = s3();
        let t = b.target.clone().unwrap();
        let raw = object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&t.endpoint)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_bucket_name(&t.bucket)
            .with_access_key_id(&t.access_key)
            .with_secret_access_key(&t.secret_key)
            .build()
            .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let data = b"the real content";
        let hash = blake3::hash(data);
        let hex = hash.to_hex();
        let key = object_store::path::Path::from(format!("{PREFIX}blobs/{}/{hex}", &hex[..2]));
        // same size, other bytes: taken as the blob (no upload)
        rt.block_on(raw.put(&key, b"SAME size, other".to_vec().into()))
            .unwrap();
        b.put(data);
        assert_eq!(b.read_all(&hash), b"SAME size, other");
        // another size: replaced
        rt.block_on(raw.put(&key, b"short".to_vec().into()))
            .unwrap();
        b.put(data);
        assert_eq!(b.read_all(&hash), data);
        // a temp file that does not match what it claims is refused
        let mut w = b.scratch.writer().unwrap();
        w.write_all(b"12345").unwrap();
        let (tmp, mut info) = w.finish().unwrap();
        info.size = 4;
        assert_eq!(kind_of(b.store.put(tmp, &info)), io::ErrorKind::InvalidData);
    }
}

/// Streaming speed of `S3Blobs::read` against a plain download of the
/// same object (curl of a presigned URL), on the same SeaweedFS in the
/// same run: `cargo test --release --test blobs s3_stream_speed -- --ignored --nocapture`.
#[cfg(feature = "s3")]
#[test]
#[ignore]
fn s3_stream_speed() {
    use artifact_store::store::s3::S3Blobs;
    use std::process::Command;
    use std::time::Instant;
    let t = common::s3::seaweedfs().bucket();
    let store = S3Blobs::open(&t.config("speed/")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let scratch = Scratch::open(dir.path()).unwrap();
    let size = 256u64 << 20;
    let mut w = scratch.writer().unwrap();
    let mut xof = blake3::Hasher::new().update(b"speed").finalize_xof();
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..size >> 20 {
        xof.fill(&mut buf);
        w.write_all(&buf).unwrap();
    }
    let (tmp, info) = w.finish().unwrap();
    let t0 = Instant::now();
    store.put(tmp, &info).unwrap();
    let put_secs = t0.elapsed().as_secs_f64();
    let url = store
        .presigned_url(&info.hash, None, Duration::from_secs(600))
        .unwrap()
        .unwrap();
    let mb_s = |secs: f64| size as f64 / secs / 1e6;
    let (mut ours, mut curl, mut reqw) = (Vec::new(), Vec::new(), Vec::new());
    // the first round warms SeaweedFS's caches up and is not counted
    for round in 0..8 {
        let t0 = Instant::now();
        let n = io::copy(&mut store.read(&info.hash).unwrap(), &mut io::sink()).unwrap();
        let a = t0.elapsed().as_secs_f64();
        assert_eq!(n, size);
        let t0 = Instant::now();
        let n = reqwest::blocking::Client::new()
            .get(&url)
            .send()
            .unwrap()
            .copy_to(&mut io::sink())
            .unwrap();
        let q = t0.elapsed().as_secs_f64();
        assert_eq!(n, size);
        let out = Command::new("curl")
            .args([
                "-sS",
                "-f",
                "-o",
                "/dev/null",
                "-w",
                "%{size_download} %{time_total}",
            ])
            .arg(&url)
            .output()
            .expect("this measurement needs curl (Debian package curl)");
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (n, secs) = text.split_once(' ').expect("curl's numbers");
        assert_eq!(n.parse::<u64>().unwrap(), size);
        if round > 0 {
            ours.push(a);
            reqw.push(q);
            curl.push(secs.parse::<f64>().unwrap());
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (a, c, q) = (median(&mut ours), median(&mut curl), median(&mut reqw));
    println!(
        "256 MiB: upload {:.0} MB/s; (a) S3Blobs::read {:.0} MB/s; (b) curl of the presigned URL \
         {:.0} MB/s; a/b {:.2}; reqwest (blocking) of the URL {:.0} MB/s (medians of 7)",
        mb_s(put_secs),
        mb_s(a),
        mb_s(c),
        c / a,
        mb_s(q)
    );
}
