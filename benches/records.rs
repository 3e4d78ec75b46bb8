//! A million records, both backends: how long the service takes to start
//! on them and how long a lookup (`GET .../info`, the clients' cache check)
//! takes, through the real binary over HTTP.
//!
//! `cargo bench --bench records` (`BENCH_RECORDS`, default 1,000,000).
//! Loads the records with `Index::import` into a sled directory and into a
//! database of a throwaway PostgreSQL (Debian's `postgresql`, as in the
//! tests), then for each: spawns `artifact-store serve` and times it until
//! it listens, and times 10,000 lookups of random keys (after 2,000 to
//! warm up) on one keep-alive connection. Goals: start-up < 1 s, lookup
//! p99 < 2 ms.

#[allow(dead_code)]
#[path = "../tests/common/pg.rs"]
mod pg;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use artifact_store::config::IndexConfig;
use artifact_store::index::postgres::PgIndex;
use artifact_store::index::sled::SledIndex;
use artifact_store::index::{Entry, Index};
use artifact_store::model::{ComponentKey, Record};

fn key(i: usize) -> ComponentKey {
    ComponentKey::new(
        &format!("component-{:05}", i / 100),
        &format!("R{}.{}", i % 100, i % 7),
        "rocky9",
    )
    .expect("a valid key")
}

fn record(i: usize) -> Record {
    let k = key(i);
    Record {
        component: k.component,
        tag: k.tag,
        arch: k.arch,
        blake3: blake3::hash(&i.to_le_bytes()).to_hex().to_string(),
        size: i as u64,
        created: chrono::Utc::now(),
        ..Default::default()
    }
}

fn load(ix: &dyn Index, n: usize) {
    if ix.component_count().unwrap_or(0) >= n as u64 {
        return;
    }
    let t = Instant::now();
    let batch = 20_000;
    for start in (0..n).step_by(batch) {
        let entries: Vec<Entry> = (start..(start + batch).min(n))
            .map(|i| Entry::Component(record(i)))
            .collect();
        ix.import(&entries).expect("import");
    }
    println!("  loaded {n} records in {:.1} s", t.elapsed().as_secs_f64());
}

/// Starts the service on `config`; the time until it listens.
fn start(dir: &Path, config: &str) -> (Child, String, Duration) {
    std::fs::write(dir.join("config.toml"), config).expect("config");
    let t = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_artifact-store"))
        .arg("--config")
        .arg(dir.join("config.toml"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.join("data"))
        .env("ARTIFACT_STORE_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start artifact-store");
    let out = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(out).lines();
    let base = loop {
        match lines.next() {
            Some(Ok(l)) => {
                if let Some(a) = l.strip_prefix("listening on ") {
                    break a.trim().to_owned();
                }
            }
            _ => panic!("the service exited before listening"),
        }
    };
    let took = t.elapsed();
    std::thread::spawn(move || for _ in lines.by_ref() {});
    (child, base, took)
}

fn lookups(base: &str, n: usize) -> (Duration, Duration, Duration) {
    let client = reqwest::blocking::Client::new();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        key((x % n as u64) as usize)
    };
    let get = |k: ComponentKey| {
        let url = format!(
            "{base}/v1/components/{}/{}/{}/info",
            k.component, k.tag, k.arch
        );
        let t = Instant::now();
        let r = client.get(&url).send().expect("lookup");
        assert_eq!(r.status(), 200, "{url}");
        let _ = r.bytes();
        t.elapsed()
    };
    for _ in 0..2_000 {
        get(next());
    }
    let mut lat: Vec<Duration> = (0..10_000).map(|_| get(next())).collect();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    (pct(0.5), pct(0.99), lat[lat.len() - 1])
}

fn report(name: &str, dir: &Path, config: &str, n: usize) {
    let mut starts = Vec::new();
    for _ in 0..3 {
        let (mut c, _, took) = start(dir, config);
        starts.push(took);
        let _ = c.kill();
        let _ = c.wait();
    }
    starts.sort();
    let (mut c, base, _) = start(dir, config);
    let (p50, p99, max) = lookups(&base, n);
    let _ = c.kill();
    let _ = c.wait();
    println!(
        "{name}: start-up {:.0} ms (median of 3; goal < 1000), lookup p50 {:.2} ms, p99 {:.2} ms (goal < 2), max {:.1} ms",
        starts[1].as_secs_f64() * 1e3,
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3
    );
}

fn main() {
    let n: usize = std::env::var("BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    println!("{n} records");

    let tmp = tempfile::tempdir().expect("tempdir");
    let sled_dir = tmp.path().join("sled");
    std::fs::create_dir_all(sled_dir.join("data")).expect("dir");
    {
        let ix = SledIndex::open(&sled_dir.join("data/index")).expect("sled");
        load(&ix, n);
    }
    report("sled", &sled_dir, "log_requests = false\n", n);

    let url = pg::database();
    {
        let ix = PgIndex::open(&IndexConfig {
            url: Some(url.clone()),
            ..IndexConfig::default()
        })
        .expect("postgres");
        load(&ix, n);
    }
    pg::server().psql_in(&url, "VACUUM ANALYZE components");
    let pg_dir = tmp.path().join("pg");
    std::fs::create_dir_all(&pg_dir).expect("dir");
    report(
        "postgres",
        &pg_dir,
        &format!("log_requests = false\n[index]\nkind = \"postgres\"\nurl = \"{url}\"\n"),
        n,
    );
}
