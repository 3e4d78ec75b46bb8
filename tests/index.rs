//! The `Index` trait's conformance suite, the same bodies run against each
//! implementation: the embedded sled index (in a temp dir) and the
//! PostgreSQL index (a fresh database of the test binary's throwaway
//! server, see `common/pg.rs`). Then what only PostgreSQL has: replicas
//! (several indexes on one database), opening, errors; and a benchmark run
//! by hand (`pg_million_records_bench`, ignored).

mod common;

use std::collections::HashSet;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use artifact_store::index::sled::SledIndex;
use artifact_store::index::{Enqueued, Entry, Index, PutOutcome};
use artifact_store::model::{
    ApiKey, ComponentKey, Identity, ImageKey, ImageRecord, Job, JobState, JobTarget, Record,
    Revocation, Role, Step,
};
use chrono::Utc;

/// An index and what keeps it alive.
struct Backend {
    ix: Box<dyn Index>,
    _dir: Option<tempfile::TempDir>,
}

fn sled() -> Backend {
    let dir = tempfile::tempdir().expect("tempdir");
    let ix = SledIndex::open(&dir.path().join("index")).expect("open sled index");
    Backend {
        ix: Box::new(ix),
        _dir: Some(dir),
    }
}

#[cfg(feature = "postgres")]
fn pg_config(url: &str) -> artifact_store::config::IndexConfig {
    artifact_store::config::IndexConfig {
        kind: artifact_store::config::IndexKind::Postgres,
        url: Some(url.to_owned()),
        max_connections: 8,
        ..Default::default()
    }
}

#[cfg(feature = "postgres")]
fn open_pg(url: &str) -> artifact_store::index::postgres::PgIndex {
    artifact_store::index::postgres::PgIndex::open(&pg_config(url))
        .unwrap_or_else(|e| panic!("open the PostgreSQL index: {e}"))
}

#[cfg(feature = "postgres")]
fn postgres() -> Backend {
    Backend {
        ix: Box::new(open_pg(&common::pg::database())),
        _dir: None,
    }
}

/// Each body as a test per implementation: `<body>::sled`, `<body>::postgres`.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn sled() {
                let b = super::sled();
                super::$name(&*b.ix);
            }
            #[cfg(feature = "postgres")]
            #[test]
            fn postgres() {
                let b = super::postgres();
                super::$name(&*b.ix);
            }
        }
    )*};
}

conformance!(
    put_outcomes,
    concurrent_puts_to_one_key,
    raw_bytes_are_the_record,
    list_orders_bytewise_and_pages,
    list_prefix_is_literal,
    odd_names_are_data,
    versions_of_one_component,
    all_pages_through_every_record,
    update_record_only_for_the_same_blob,
    inputs_name_only_records_still_built_from_them,
    derived_blobs,
    downloads_are_coarse,
    images_by_prefix,
    meta_and_blob_uses,
    jobs_newest_first_and_unfinished,
    enqueue_is_single_flight,
    concurrent_enqueues_give_one_job,
    claims_never_share_a_job,
    pinned_jobs_go_to_their_replica,
    job_leases_expire_and_renew,
    replace_job_only_while_held,
    take_up_only_an_expired_job,
    named_leases,
    meta_written_once,
    job_logs_append_and_read_from_an_offset,
    search_sees_every_write,
    api_keys_by_name_and_by_hash,
    concurrent_creates_give_one_key,
    revoking_keeps_the_first_revocation,
    key_use_is_noted_at_most_once_a_minute,
);

fn rec(c: &str, t: &str, a: &str, h: &str) -> Record {
    Record {
        component: c.into(),
        tag: t.into(),
        arch: a.into(),
        blake3: h.into(),
        size: 1,
        created: Utc::now(),
        ..Default::default()
    }
}

fn key(c: &str, t: &str, a: &str) -> ComponentKey {
    ComponentKey {
        component: c.into(),
        tag: t.into(),
        arch: a.into(),
    }
}

fn job(id: &str, flight: Option<&str>) -> Job {
    Job {
        id: id.into(),
        kind: "component".into(),
        state: JobState::Queued,
        target: JobTarget::Component {
            component: "asyn".into(),
            tag: "R4-45".into(),
            arch: "rocky9".into(),
            url: None,
        },
        requested_by: Default::default(),
        created: Utc::now(),
        started: None,
        finished: None,
        steps: vec![],
        error: None,
        result: None,
        flight: flight.map(str::to_owned),
        replica: None,
        pinned: None,
        attempts: 0,
        dispatch: None,
    }
}

fn image(c: &str, branch: Option<&str>, arch: &str, digest: &str) -> ImageRecord {
    ImageRecord {
        component: c.into(),
        branch: branch.map(str::to_owned),
        arch: arch.into(),
        image: format!("registry.local/{c}:{arch}"),
        immutable: format!("registry.local/{c}:{arch}-0123456789ab"),
        digest: digest.into(),
        key: "k".into(),
        size: 10,
        created: Utc::now(),
        built_by: Default::default(),
        location: "registry".into(),
    }
}

fn keys(recs: &[Record]) -> Vec<ComponentKey> {
    recs.iter().map(Record::key).collect()
}

fn now() -> i64 {
    Utc::now().timestamp()
}

/// Jobs compared by what they store.
fn json(j: &Job) -> String {
    serde_json::to_string(j).expect("job json")
}

// --- component records ---

fn put_outcomes(ix: &dyn Index) {
    let k = key("asyn", "R4-45", "rocky9");
    let first = rec("asyn", "R4-45", "rocky9", "h1");
    assert_eq!(ix.put(&first, false).unwrap(), PutOutcome::Created);
    assert!(ix.contains(&k).unwrap());
    assert_eq!(
        ix.put(&rec("asyn", "R4-45", "rocky9", "h1"), false)
            .unwrap(),
        PutOutcome::Unchanged(first.clone())
    );
    assert_eq!(
        ix.put(&rec("asyn", "R4-45", "rocky9", "h2"), false)
            .unwrap(),
        PutOutcome::Conflict(first.clone())
    );
    assert_eq!(
        ix.get(&k).unwrap().unwrap().blake3,
        "h1",
        "a conflict changes nothing"
    );
    let second = rec("asyn", "R4-45", "rocky9", "h2");
    assert_eq!(
        ix.put(&second, true).unwrap(),
        PutOutcome::Replaced(first.clone())
    );
    assert_eq!(ix.get(&k).unwrap(), Some(second.clone()));
    // same blob with overwrite: kept as it is
    assert_eq!(
        ix.put(&rec("asyn", "R4-45", "rocky9", "h2"), true).unwrap(),
        PutOutcome::Unchanged(second.clone())
    );
    assert_eq!(ix.component_count().unwrap(), 1);
    assert_eq!(ix.remove(&k).unwrap(), Some(second));
    assert!(!ix.contains(&k).unwrap());
    assert_eq!(ix.get(&k).unwrap(), None);
    assert_eq!(ix.remove(&k).unwrap(), None);
    assert_eq!(ix.put(&first, false).unwrap(), PutOutcome::Created);
}

fn concurrent_puts_to_one_key(ix: &dyn Index) {
    let n = 20;
    let barrier = Barrier::new(n);
    let outcomes: Vec<PutOutcome> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..n)
            .map(|i| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    ix.put(&rec("race", "1", "x", &format!("h{i}")), false)
                        .expect("put")
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    let created = outcomes
        .iter()
        .filter(|o| **o == PutOutcome::Created)
        .count();
    assert_eq!(created, 1, "{outcomes:?}");
    let stored = ix.get(&key("race", "1", "x")).unwrap().expect("stored");
    for o in &outcomes {
        match o {
            PutOutcome::Created => {}
            PutOutcome::Conflict(existing) => assert_eq!(existing, &stored),
            other => panic!("unexpected outcome {other:?}"),
        }
    }
}

fn raw_bytes_are_the_record(ix: &dyn Index) {
    let r = rec("asyn", "R4-45", "rocky9", "h1");
    ix.put(&r, false).unwrap();
    let k = r.key();
    let raw = ix.raw(&k).unwrap().expect("raw");
    assert_eq!(raw.as_bytes(), serde_json::to_vec(&r).unwrap().as_slice());
    assert_eq!(raw.decode().unwrap(), r);
    assert_eq!(ix.raw(&k).unwrap().unwrap().as_bytes(), raw.as_bytes());
    let mut changed = r.clone();
    changed.size = 2;
    assert!(ix.update_record(&changed).unwrap());
    let again = ix.raw(&k).unwrap().unwrap();
    assert_ne!(again.as_bytes(), raw.as_bytes());
    assert_eq!(again.decode().unwrap(), changed);
    assert!(ix.raw(&key("asyn", "R4-45", "x")).unwrap().is_none());
}

/// Names that sort differently bytewise than in most locales.
const NAMES: [&str; 11] = [
    "a", "a_b", "a%b", "a\\b", "ab", "aB", "a-b", "a.b", "b", "B", "Ab",
];

fn fill(ix: &dyn Index) -> Vec<Record> {
    let mut all = Vec::new();
    for (i, c) in NAMES.iter().enumerate() {
        for t in ["1", "10", "2"] {
            for a in ["x", "y"] {
                let r = rec(c, t, a, &format!("h{i}{t}{a}"));
                ix.put(&r, false).unwrap();
                all.push(r);
            }
        }
    }
    all.sort_by_key(Record::key);
    all
}

fn list_orders_bytewise_and_pages(ix: &dyn Index) {
    let all = fill(ix);
    let listed = ix.list("", None, 1000).unwrap();
    assert_eq!(keys(&listed), keys(&all), "bytewise order of every key");
    // pages of 4, each after the last key of the one before
    let mut paged = Vec::new();
    let mut after: Option<ComponentKey> = None;
    loop {
        let page = ix.list("", after.as_ref(), 4).unwrap();
        assert!(page.len() <= 4);
        let Some(last) = page.last() else { break };
        after = Some(last.key());
        paged.extend(page);
    }
    assert_eq!(keys(&paged), keys(&all));
    // a prefix, paged
    let want: Vec<_> = all
        .iter()
        .filter(|r| r.component.starts_with('a'))
        .map(Record::key)
        .collect();
    let first = ix.list("a", None, 5).unwrap();
    assert_eq!(keys(&first), want[..5]);
    let rest = ix.list("a", Some(&first[4].key()), 1000).unwrap();
    assert_eq!(keys(&rest), want[5..]);
    assert!(ix
        .list("a", Some(&want[want.len() - 1]), 10)
        .unwrap()
        .is_empty());
    // at most `limit`, even none
    assert!(ix.list("", None, 0).unwrap().is_empty());
    // `after` before the prefix: the prefix's records from its first
    let b_all: Vec<_> = all
        .iter()
        .filter(|r| r.component.starts_with('b'))
        .map(Record::key)
        .collect();
    assert!(!b_all.is_empty());
    assert_eq!(keys(&ix.list("b", Some(&want[0]), 1000).unwrap()), b_all);
}

fn list_prefix_is_literal(ix: &dyn Index) {
    fill(ix);
    let comps = |p: &str| -> Vec<String> {
        let mut v: Vec<String> = ix
            .list(p, None, 1000)
            .unwrap()
            .into_iter()
            .map(|r| r.component)
            .collect();
        v.dedup();
        v
    };
    assert_eq!(comps("a_"), ["a_b"]);
    assert_eq!(comps("a%"), ["a%b"]);
    assert_eq!(comps("a\\"), ["a\\b"]);
    assert_eq!(comps("a."), ["a.b"]);
    assert_eq!(comps("A"), ["Ab"]);
    assert_eq!(comps("B"), ["B"]);
    assert!(comps("c").is_empty());
    assert!(comps("%").is_empty());
    // the prefix runs over the whole key (component NUL tag NUL arch)
    let under = |p: &str| -> Vec<ComponentKey> { keys(&ix.list(p, None, 1000).unwrap()) };
    assert_eq!(
        under("a\0"),
        [
            key("a", "1", "x"),
            key("a", "1", "y"),
            key("a", "10", "x"),
            key("a", "10", "y"),
            key("a", "2", "x"),
            key("a", "2", "y")
        ]
    );
    assert_eq!(
        under("a\u{0}1"),
        [
            key("a", "1", "x"),
            key("a", "1", "y"),
            key("a", "10", "x"),
            key("a", "10", "y")
        ]
    );
    assert_eq!(under("ab\u{0}2\u{0}y"), [key("ab", "2", "y")]);
    assert!(under("ab\u{0}2\u{0}y\u{0}").is_empty());
    assert!(under("\0").is_empty());
}

fn odd_names_are_data(ix: &dyn Index) {
    let evil = "x'); DROP TABLE components; --";
    let r = rec(evil, "$1", "' OR '1'='1", "h");
    assert_eq!(ix.put(&r, false).unwrap(), PutOutcome::Created);
    assert_eq!(ix.get(&r.key()).unwrap(), Some(r.clone()));
    assert_eq!(ix.list(evil, None, 10).unwrap(), std::slice::from_ref(&r));
    assert_eq!(ix.versions(evil).unwrap(), std::slice::from_ref(&r));
    ix.set_meta(evil, b"v").unwrap();
    assert_eq!(ix.meta(evil).unwrap().as_deref(), Some(&b"v"[..]));
    // a NUL in a name that is only looked up finds nothing (and fails nothing)
    assert_eq!(ix.get(&key("a\0b", "1", "x")).unwrap(), None);
    assert!(!ix.contains(&key("a", "1\0", "x")).unwrap());
    assert!(ix.versions("a\0").unwrap().is_empty());
    assert!(ix.by_inputs("i\0").unwrap().is_empty());
    assert_eq!(ix.derived("s\0", "tar.gz").unwrap(), None);
    assert_eq!(ix.job("j\0").unwrap().map(|j| j.id), None);
    assert_eq!(ix.meta("m\0").unwrap(), None);
    assert_eq!(ix.component_count().unwrap(), 1);
}

fn versions_of_one_component(ix: &dyn Index) {
    let all = fill(ix);
    let want: Vec<_> = all
        .iter()
        .filter(|r| r.component == "a")
        .map(Record::key)
        .collect();
    assert_eq!(want.len(), 6);
    assert_eq!(keys(&ix.versions("a").unwrap()), want);
    assert!(ix.versions("zz").unwrap().is_empty());
    assert!(ix.versions("").unwrap().is_empty());
}

fn all_pages_through_every_record(ix: &dyn Index) {
    let n = 2500;
    let recs: Vec<Record> = (0..n)
        .map(|i| rec(&format!("c{}", i % 97), &format!("t{i}"), "x", "h"))
        .collect();
    for chunk in recs.chunks(1000) {
        let entries: Vec<Entry> = chunk.iter().cloned().map(Entry::Component).collect();
        ix.import(&entries).unwrap();
    }
    let mut want = recs.clone();
    want.sort_by_key(Record::key);
    let got: Vec<Record> = ix.all().collect::<Result<_, _>>().unwrap();
    assert_eq!(got.len(), n);
    assert_eq!(got, want);
    assert_eq!(ix.component_count().unwrap(), n as u64);
}

fn update_record_only_for_the_same_blob(ix: &dyn Index) {
    let r = rec("asyn", "R4-45", "rocky9", "h1");
    ix.put(&r, false).unwrap();
    let mut meta = r.clone();
    meta.size = 99;
    assert!(ix.update_record(&meta).unwrap());
    assert_eq!(ix.get(&r.key()).unwrap(), Some(meta.clone()));
    let other = rec("asyn", "R4-45", "rocky9", "h2");
    assert!(!ix.update_record(&other).unwrap());
    assert_eq!(ix.get(&r.key()).unwrap(), Some(meta));
    assert!(!ix.update_record(&rec("nope", "1", "x", "h1")).unwrap());
    assert!(!ix.contains(&key("nope", "1", "x")).unwrap());
}

fn inputs_name_only_records_still_built_from_them(ix: &dyn Index) {
    let built = |c: &str, inputs: Option<&str>, h: &str| {
        let mut r = rec(c, "1", "x", h);
        r.inputs = inputs.map(str::to_owned);
        r
    };
    let b = built("b", Some("I1"), "hb");
    let a = built("a", Some("I1"), "ha");
    for r in [&b, &a] {
        ix.put(r, false).unwrap();
        ix.add_inputs("I1", &r.key()).unwrap();
    }
    ix.add_inputs("I1", &a.key()).unwrap(); // twice is once
    ix.add_inputs("I1", &key("gone", "1", "x")).unwrap();
    assert_eq!(ix.by_inputs("I1").unwrap(), [a.clone(), b.clone()]);
    assert!(ix.by_inputs("I2").unwrap().is_empty());
    assert!(ix.by_inputs("I").unwrap().is_empty(), "a key, not a prefix");
    // rebuilt from other inputs: no longer found by the old key
    let b2 = built("b", Some("I2"), "hb2");
    ix.put(&b2, true).unwrap();
    ix.add_inputs("I2", &b2.key()).unwrap();
    assert_eq!(ix.by_inputs("I1").unwrap(), std::slice::from_ref(&a));
    assert_eq!(ix.by_inputs("I2").unwrap(), [b2]);
    ix.remove(&a.key()).unwrap();
    assert!(ix.by_inputs("I1").unwrap().is_empty());
}

fn derived_blobs(ix: &dyn Index) {
    assert_eq!(ix.derived("s", "tar.gz").unwrap(), None);
    ix.set_derived("s", "tar.gz", "g1").unwrap();
    ix.set_derived("s", "tar.gz", "g2").unwrap();
    ix.set_derived("s", "zip", "z1").unwrap();
    ix.set_derived("s2", "tar.gz", "g2").unwrap();
    ix.set_derived("t", "tar.gz", "g3").unwrap();
    assert_eq!(ix.derived("s", "tar.gz").unwrap().as_deref(), Some("g2"));
    // g2 was found corrupt: every derivation that made it is forgotten
    ix.drop_derived_target("g2").unwrap();
    assert_eq!(ix.derived("s", "tar.gz").unwrap(), None);
    assert_eq!(ix.derived("s2", "tar.gz").unwrap(), None);
    assert_eq!(ix.derived("s", "zip").unwrap().as_deref(), Some("z1"));
    ix.set_derived("s2", "tar.gz", "g4").unwrap();
    // s is gone: its derivations too, not those of s2 or t
    ix.remove_derived("s").unwrap();
    assert_eq!(ix.derived("s", "zip").unwrap(), None);
    assert_eq!(ix.derived("s2", "tar.gz").unwrap().as_deref(), Some("g4"));
    assert_eq!(ix.derived("t", "tar.gz").unwrap().as_deref(), Some("g3"));
}

fn downloads_are_coarse(ix: &dyn Index) {
    let k = key("asyn", "R4-45", "rocky9");
    assert_eq!(ix.last_download(&k).unwrap(), None);
    let before = now();
    ix.note_download(&k).unwrap();
    let at = ix.last_download(&k).unwrap().expect("noted");
    assert!((before - 2..=now() + 2).contains(&at), "{at} vs {before}");
    // within the hour: not written again
    ix.import(&[Entry::Download {
        key: k.clone(),
        at: at - 1800,
    }])
    .unwrap();
    ix.note_download(&k).unwrap();
    assert_eq!(ix.last_download(&k).unwrap(), Some(at - 1800));
    // over an hour old: written
    ix.import(&[Entry::Download {
        key: k.clone(),
        at: at - 7200,
    }])
    .unwrap();
    ix.note_download(&k).unwrap();
    let again = ix.last_download(&k).unwrap().expect("noted");
    assert!(again >= at - 2, "{again} vs {at}");
    assert_eq!(ix.last_download(&key("asyn", "R4-45", "x")).unwrap(), None);
}

fn images_by_prefix(ix: &dyn Index) {
    let recs = [
        image("ioc", Some("main"), "x", "d1"),
        image("ioc", None, "x", "d2"),
        image("ioc", Some("feature/a"), "x", "d3"),
        image("ioc-b", None, "x", "d4"),
        image("base", None, "y", "d5"),
    ];
    for r in &recs {
        ix.put_image(r).unwrap();
    }
    let k = ImageKey {
        component: "ioc".into(),
        branch: Some("main".into()),
        arch: "x".into(),
    };
    assert_eq!(ix.image(&k).unwrap(), Some(recs[0].clone()));
    assert_eq!(
        ix.image_raw(&k).unwrap().unwrap().as_bytes(),
        serde_json::to_vec(&recs[0]).unwrap().as_slice()
    );
    let none = ImageKey {
        component: "ioc".into(),
        branch: None,
        arch: "x".into(),
    };
    assert_eq!(ix.image(&none).unwrap(), Some(recs[1].clone()));
    let digests = |p: &str, n: usize| -> Vec<String> {
        ix.images(p, n)
            .unwrap()
            .into_iter()
            .map(|r| r.digest)
            .collect()
    };
    // key order: component, then branch ("" for none), then arch
    assert_eq!(digests("", 10), ["d5", "d2", "d3", "d1", "d4"]);
    assert_eq!(digests("ioc", 10), ["d2", "d3", "d1", "d4"]);
    assert_eq!(digests("ioc", 2), ["d2", "d3"]);
    assert_eq!(digests("ioc-", 10), ["d4"]);
    assert!(digests("x", 10).is_empty());
    // replaced
    ix.put_image(&image("ioc", Some("main"), "x", "d6"))
        .unwrap();
    assert_eq!(ix.image(&k).unwrap().unwrap().digest, "d6");
    assert_eq!(digests("ioc", 10), ["d2", "d3", "d6", "d4"]);
    assert_eq!(
        ix.image(&ImageKey {
            component: "ioc".into(),
            branch: Some("dev".into()),
            arch: "x".into(),
        })
        .unwrap(),
        None
    );
}

fn meta_and_blob_uses(ix: &dyn Index) {
    assert_eq!(ix.meta("m").unwrap(), None);
    ix.set_meta("m", b"\0one\xff").unwrap();
    assert_eq!(ix.meta("m").unwrap().as_deref(), Some(&b"\0one\xff"[..]));
    ix.set_meta("m", b"").unwrap();
    assert_eq!(ix.meta("m").unwrap().as_deref(), Some(&b""[..]));
    let blob = "af".repeat(32);
    assert_eq!(ix.blob_used_at(&blob).unwrap(), None);
    let before = now();
    ix.note_blob_use(&blob).unwrap();
    let at = ix.blob_used_at(&blob).unwrap().expect("noted");
    assert!((before - 2..=now() + 2).contains(&at));
    ix.note_blob_use(&blob).unwrap();
    assert!(ix.blob_used_at(&blob).unwrap().unwrap() >= at);
}

// --- jobs ---

fn jobs_newest_first_and_unfinished(ix: &dyn Index) {
    let mut j1 = job("0001", None);
    j1.state = JobState::Success;
    let j2 = job("0002", None);
    let mut j3 = job("0003", None);
    j3.state = JobState::Running;
    j3.replica = Some("r1".into());
    let mut j4 = job("0004", None);
    j4.state = JobState::Failed;
    j4.error = Some("the build failed".into());
    for j in [&j2, &j4, &j1, &j3] {
        ix.put_job(j, true).unwrap();
    }
    assert_eq!(ix.job("0004").unwrap().map(|j| json(&j)), Some(json(&j4)));
    assert!(ix.job("0005").unwrap().is_none());
    let ids = |v: Vec<Job>| v.into_iter().map(|j| j.id).collect::<Vec<_>>();
    assert_eq!(ids(ix.jobs(10).unwrap()), ["0004", "0003", "0002", "0001"]);
    assert_eq!(ids(ix.jobs(2).unwrap()), ["0004", "0003"]);
    assert_eq!(ids(ix.unfinished_jobs().unwrap()), ["0002", "0003"]);
    // replaced unconditionally
    let mut j2b = j2.clone();
    j2b.state = JobState::Interrupted;
    ix.put_job(&j2b, false).unwrap();
    assert_eq!(ids(ix.unfinished_jobs().unwrap()), ["0003"]);
    assert_eq!(ix.job("0002").unwrap().map(|j| json(&j)), Some(json(&j2b)));
}

fn enqueue_is_single_flight(ix: &dyn Index) {
    let j1 = job("0001", Some("asyn/R4-45/rocky9"));
    assert!(matches!(ix.enqueue_job(&j1).unwrap(), Enqueued::New));
    assert_eq!(ix.job("0001").unwrap().map(|j| json(&j)), Some(json(&j1)));
    let j2 = job("0002", Some("asyn/R4-45/rocky9"));
    match ix.enqueue_job(&j2).unwrap() {
        Enqueued::Joined(j) => assert_eq!(j.id, "0001"),
        Enqueued::New => panic!("a second job for one flight"),
    }
    assert!(ix.job("0002").unwrap().is_none(), "nothing stored");
    // other flights and jobs without one are not held up
    assert!(matches!(
        ix.enqueue_job(&job("0003", Some("other"))).unwrap(),
        Enqueued::New
    ));
    assert!(matches!(
        ix.enqueue_job(&job("0004", None)).unwrap(),
        Enqueued::New
    ));
    assert!(matches!(
        ix.enqueue_job(&job("0005", None)).unwrap(),
        Enqueued::New
    ));
    // running: still joined
    let claimed = ix
        .claim_job("r1", Duration::from_secs(30))
        .unwrap()
        .unwrap();
    assert_eq!(claimed.id, "0001");
    assert!(matches!(
        ix.enqueue_job(&job("0006", Some("asyn/R4-45/rocky9")))
            .unwrap(),
        Enqueued::Joined(_)
    ));
    // once final, the flight is free again
    let mut done = claimed.clone();
    done.state = JobState::Success;
    done.finished = Some(Utc::now());
    assert!(ix.replace_job(&done, Some("r1")).unwrap());
    let j7 = job("0007", Some("asyn/R4-45/rocky9"));
    assert!(matches!(ix.enqueue_job(&j7).unwrap(), Enqueued::New));
    match ix
        .enqueue_job(&job("0008", Some("asyn/R4-45/rocky9")))
        .unwrap()
    {
        Enqueued::Joined(j) => assert_eq!(j.id, "0007"),
        Enqueued::New => panic!("a second job for one flight"),
    }
}

fn concurrent_enqueues_give_one_job(ix: &dyn Index) {
    let n = 20;
    let barrier = Barrier::new(n);
    let results: Vec<(String, Enqueued)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..n)
            .map(|i| {
                let barrier = &barrier;
                s.spawn(move || {
                    let id = format!("{i:04}");
                    barrier.wait();
                    let e = ix.enqueue_job(&job(&id, Some("one"))).expect("enqueue");
                    (id, e)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    let new: Vec<&String> = results
        .iter()
        .filter(|(_, e)| matches!(e, Enqueued::New))
        .map(|(id, _)| id)
        .collect();
    assert_eq!(new.len(), 1, "{results:?}");
    for (_, e) in &results {
        if let Enqueued::Joined(j) = e {
            assert_eq!(&j.id, new[0]);
        }
    }
    let stored: Vec<String> = ix.jobs(100).unwrap().into_iter().map(|j| j.id).collect();
    assert_eq!(stored, [new[0].clone()]);
}

fn claims_never_share_a_job(ix: &dyn Index) {
    let n = 30;
    for i in 0..n {
        ix.enqueue_job(&job(&format!("{i:04}"), None)).unwrap();
    }
    let barrier = Barrier::new(2);
    let claimed: Vec<(String, Job)> = std::thread::scope(|s| {
        let hs: Vec<_> = ["r1", "r2"]
            .into_iter()
            .map(|r| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    let mut got = Vec::new();
                    while let Some(j) = ix.claim_job(r, Duration::from_secs(30)).expect("claim") {
                        got.push((r.to_owned(), j));
                    }
                    got
                })
            })
            .collect();
        hs.into_iter()
            .flat_map(|h| h.join().expect("thread"))
            .collect()
    });
    assert_eq!(claimed.len(), n);
    let ids: HashSet<&str> = claimed.iter().map(|(_, j)| j.id.as_str()).collect();
    assert_eq!(ids.len(), n, "a job was claimed twice");
    for (r, j) in &claimed {
        assert_eq!(j.state, JobState::Running);
        assert_eq!(j.replica.as_deref(), Some(r.as_str()));
        assert_eq!(j.attempts, 1);
        assert!(j.started.is_some());
        let stored = ix.job(&j.id).unwrap().unwrap();
        assert_eq!(json(&stored), json(j), "the claim is what is stored");
    }
    assert!(ix
        .claim_job("r3", Duration::from_secs(30))
        .unwrap()
        .is_none());
    assert_eq!(ix.unfinished_jobs().unwrap().len(), n);
}

fn pinned_jobs_go_to_their_replica(ix: &dyn Index) {
    let mut pinned = job("0001", None);
    pinned.pinned = Some("r2".into());
    ix.enqueue_job(&pinned).unwrap();
    ix.enqueue_job(&job("0002", None)).unwrap();
    let lease = Duration::from_secs(30);
    // the oldest r1 may run
    assert_eq!(ix.claim_job("r1", lease).unwrap().unwrap().id, "0002");
    assert!(ix.claim_job("r1", lease).unwrap().is_none());
    let j = ix.claim_job("r2", lease).unwrap().unwrap();
    assert_eq!(j.id, "0001");
    assert_eq!(j.pinned.as_deref(), Some("r2"));
    // oldest first
    ix.enqueue_job(&job("0004", None)).unwrap();
    ix.enqueue_job(&job("0003", None)).unwrap();
    assert_eq!(ix.claim_job("r2", lease).unwrap().unwrap().id, "0003");
}

fn job_leases_expire_and_renew(ix: &dyn Index) {
    ix.enqueue_job(&job("0001", None)).unwrap();
    ix.enqueue_job(&job("0002", None)).unwrap();
    let short = Duration::from_millis(300);
    let a = ix.claim_job("r1", short).unwrap().unwrap();
    let b = ix.claim_job("r2", short).unwrap().unwrap();
    assert!(ix.expired_jobs().unwrap().is_empty());
    std::thread::sleep(Duration::from_millis(600));
    let mut expired: Vec<String> = ix
        .expired_jobs()
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    expired.sort();
    if ix.shared() {
        assert_eq!(expired, [a.id.clone(), b.id.clone()]);
    } else {
        // one process: jobs cut off by a crash are found at start-up
        assert!(expired.is_empty());
    }
    ix.renew_leases("r1", Duration::from_secs(30)).unwrap();
    let expired: Vec<String> = ix
        .expired_jobs()
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    if ix.shared() {
        assert_eq!(
            expired,
            std::slice::from_ref(&b.id),
            "r1 renewed, r2 did not"
        );
    }
    // a finished job has no lease to expire
    let mut done = b.clone();
    done.state = JobState::Failed;
    assert!(ix.replace_job(&done, Some("r2")).unwrap());
    assert!(ix.expired_jobs().unwrap().is_empty());
    let _ = a;
}

fn replace_job_only_while_held(ix: &dyn Index) {
    ix.enqueue_job(&job("0001", Some("f"))).unwrap();
    let lease = Duration::from_secs(30);
    let mut j = ix.claim_job("r1", lease).unwrap().unwrap();
    j.steps.push(Step {
        name: "clone".into(),
        state: JobState::Running,
        started: Utc::now(),
        finished: None,
    });
    assert!(
        !ix.replace_job(&j, Some("r2")).unwrap(),
        "r2 does not hold it"
    );
    assert!(!ix.replace_job(&j, None).unwrap(), "it is held");
    assert!(ix.replace_job(&j, Some("r1")).unwrap());
    assert_eq!(ix.job("0001").unwrap().unwrap().steps.len(), 1);
    // requeued (its replica stopped): claimable again, by another
    let mut again = j.clone();
    again.state = JobState::Queued;
    again.replica = None;
    assert!(ix.replace_job(&again, Some("r1")).unwrap());
    assert!(matches!(
        ix.enqueue_job(&job("0002", Some("f"))).unwrap(),
        Enqueued::Joined(_)
    ));
    let k = ix.claim_job("r2", lease).unwrap().unwrap();
    assert_eq!(k.id, "0001");
    assert_eq!(k.attempts, 2);
    assert_eq!(k.replica.as_deref(), Some("r2"));
    assert_eq!(k.started, j.started, "started once");
    assert!(!ix.replace_job(&j, Some("r1")).unwrap(), "r1 lost it");
    assert!(ix.replace_job(&k, Some("r2")).unwrap());
    assert!(
        !ix.replace_job(&job("0009", None), None).unwrap(),
        "no such job"
    );
    assert!(ix.job("0009").unwrap().is_none());
}

fn take_up_only_an_expired_job(ix: &dyn Index) {
    ix.enqueue_job(&job("0001", None)).unwrap();
    let mut j = ix
        .claim_job("r1", Duration::from_millis(300))
        .unwrap()
        .unwrap();
    let requeued = |j: &Job| {
        let mut q = j.clone();
        q.state = JobState::Queued;
        q.replica = None;
        q
    };
    assert!(
        !ix.take_up_job(&requeued(&j), "r1").unwrap(),
        "its lease has not expired"
    );
    std::thread::sleep(Duration::from_millis(600));
    if !ix.shared() {
        // one process: nothing expires while it runs
        assert!(!ix.take_up_job(&requeued(&j), "r1").unwrap());
        return;
    }
    // r1 renewed between the keeper's look and its take-up: r1 keeps it
    let seen = ix.expired_jobs().unwrap();
    assert_eq!(seen.len(), 1);
    ix.renew_leases("r1", Duration::from_secs(30)).unwrap();
    assert!(!ix.take_up_job(&requeued(&seen[0]), "r1").unwrap());
    assert_eq!(ix.job("0001").unwrap().unwrap().state, JobState::Running);
    // it stops renewing: taken up once, by one keeper
    j.steps.clear();
    assert!(ix.replace_job(&j, Some("r1")).unwrap());
    ix.renew_leases("r1", Duration::from_millis(1)).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        !ix.take_up_job(&requeued(&j), "r2").unwrap(),
        "r2 never held it"
    );
    assert!(ix.take_up_job(&requeued(&j), "r1").unwrap());
    assert!(
        !ix.take_up_job(&requeued(&j), "r1").unwrap(),
        "taken up already"
    );
    let k = ix
        .claim_job("r2", Duration::from_secs(30))
        .unwrap()
        .unwrap();
    assert_eq!((k.id.as_str(), k.attempts), ("0001", 2));
}

fn meta_written_once(ix: &dyn Index) {
    assert_eq!(ix.set_meta_if_absent("k", b"first").unwrap(), b"first");
    assert_eq!(ix.set_meta_if_absent("k", b"second").unwrap(), b"first");
    assert_eq!(ix.meta("k").unwrap().as_deref(), Some(&b"first"[..]));
    ix.delete_meta("k").unwrap();
    assert!(ix.meta("k").unwrap().is_none());
    ix.delete_meta("k").unwrap();
    // many writers at once: one value wins, every one of them sees it
    let seen: Vec<Vec<u8>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..10)
            .map(|i| {
                s.spawn(move || {
                    ix.set_meta_if_absent("race", format!("v{i}").as_bytes())
                        .unwrap()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(seen.iter().all(|v| *v == seen[0]), "{seen:?}");
    assert_eq!(ix.meta("race").unwrap(), Some(seen[0].clone()));
}

fn job_logs_append_and_read_from_an_offset(ix: &dyn Index) {
    assert!(ix.job_log("j1", 0, 100).unwrap().is_empty());
    ix.append_job_log("j1", b"hello ").unwrap();
    ix.append_job_log("j1", b"world\n").unwrap();
    ix.append_job_log("j2", b"other").unwrap();
    assert_eq!(ix.job_log("j1", 0, 100).unwrap(), b"hello world\n");
    assert_eq!(ix.job_log("j1", 3, 100).unwrap(), b"lo world\n");
    assert_eq!(ix.job_log("j1", 6, 100).unwrap(), b"world\n");
    assert_eq!(ix.job_log("j1", 2, 5).unwrap(), b"llo w");
    assert!(ix.job_log("j1", 12, 100).unwrap().is_empty());
    assert_eq!(ix.job_log("j2", 0, 100).unwrap(), b"other");
    // "j1" is not a prefix of another job's log
    ix.append_job_log("j10", b"ten").unwrap();
    assert_eq!(ix.job_log("j1", 0, 100).unwrap(), b"hello world\n");
}

fn named_leases(ix: &dyn Index) {
    let long = Duration::from_secs(30);
    assert!(ix.try_lease("gc", "a", long).unwrap());
    assert!(!ix.try_lease("gc", "b", long).unwrap());
    assert!(
        ix.try_lease("gc", "a", long).unwrap(),
        "renewed by its holder"
    );
    assert!(ix.try_lease("verify", "b", long).unwrap(), "another lease");
    ix.release_lease("gc", "b").unwrap();
    assert!(
        !ix.try_lease("gc", "b", long).unwrap(),
        "only its holder gives it up"
    );
    ix.release_lease("gc", "a").unwrap();
    assert!(ix.try_lease("gc", "b", long).unwrap());
    // expires
    assert!(ix
        .try_lease("short", "a", Duration::from_millis(200))
        .unwrap());
    assert!(!ix.try_lease("short", "b", long).unwrap());
    std::thread::sleep(Duration::from_millis(400));
    assert!(ix.try_lease("short", "b", long).unwrap());
    assert!(!ix.try_lease("short", "a", long).unwrap());
}

// --- API keys ---

fn hash_of(secret: &str) -> String {
    blake3::hash(secret.as_bytes()).to_hex().to_string()
}

fn api_key(name: &str, secret: &str) -> ApiKey {
    ApiKey {
        name: name.into(),
        role: Role::Write,
        blake3: hash_of(secret),
        components: vec!["asyn*".into(), "motor".into()],
        created: Utc::now(),
        created_by: Identity {
            linux_username: Some("jdoe".into()),
            github_username: None,
            key: Some("admin".into()),
        },
        expires_at: Some(Utc::now() + chrono::Duration::days(3)),
        last_used: None,
        revoked: None,
    }
}

fn api_keys_by_name_and_by_hash(ix: &dyn Index) {
    assert!(ix.api_keys().unwrap().is_empty());
    let b = api_key("ci-b", "secret-b");
    assert!(ix.create_api_key(&b).unwrap());
    // a name, or a hash, is taken once
    assert!(!ix.create_api_key(&b).unwrap());
    assert!(!ix.create_api_key(&api_key("ci-b", "secret-c")).unwrap());
    assert!(!ix.create_api_key(&api_key("ci-c", "secret-b")).unwrap());
    assert_eq!(ix.api_key("ci-c").unwrap(), None);
    assert_eq!(ix.api_key_by_hash(&hash_of("secret-c")).unwrap(), None);
    let mut a = api_key("ci-a", "secret-a");
    a.components.clear();
    a.expires_at = None;
    assert!(ix.create_api_key(&a).unwrap());

    assert_eq!(ix.api_key("ci-b").unwrap().as_ref(), Some(&b));
    assert_eq!(
        ix.api_key_by_hash(&hash_of("secret-b")).unwrap().as_ref(),
        Some(&b)
    );
    assert_eq!(
        ix.api_key_by_hash(&hash_of("secret-a")).unwrap().as_ref(),
        Some(&a)
    );
    assert_eq!(ix.api_key_by_hash(&hash_of("nothing")).unwrap(), None);
    assert_eq!(ix.api_key_by_hash("").unwrap(), None);
    assert_eq!(ix.api_key_by_hash("a\0b").unwrap(), None);
    assert_eq!(ix.api_key("a\0b").unwrap(), None);
    let names: Vec<String> = ix.api_keys().unwrap().into_iter().map(|k| k.name).collect();
    assert_eq!(names, ["ci-a", "ci-b"]);
}

fn concurrent_creates_give_one_key(ix: &dyn Index) {
    let n = 8;
    let barrier = Barrier::new(n);
    let made: Vec<bool> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    ix.create_api_key(&api_key("racer", &format!("secret-{i}")))
                        .unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(made.iter().filter(|m| **m).count(), 1, "{made:?}");
    let k = ix.api_key("racer").unwrap().unwrap();
    assert_eq!(ix.api_key_by_hash(&k.blake3).unwrap(), Some(k));
    assert_eq!(ix.api_keys().unwrap().len(), 1);
}

fn revoking_keeps_the_first_revocation(ix: &dyn Index) {
    assert!(ix.create_api_key(&api_key("leaked", "s1")).unwrap());
    let first = Revocation {
        at: Utc::now(),
        by: Identity {
            key: Some("admin".into()),
            ..Default::default()
        },
    };
    let k = ix.revoke_api_key("leaked", &first).unwrap().unwrap();
    assert_eq!(k.revoked.as_ref(), Some(&first));
    let later = Revocation {
        at: Utc::now() + chrono::Duration::seconds(5),
        by: Identity::default(),
    };
    let k = ix.revoke_api_key("leaked", &later).unwrap().unwrap();
    assert_eq!(k.revoked.as_ref(), Some(&first));
    // what a lookup by hash sees (every replica: no cache)
    let seen = ix.api_key_by_hash(&hash_of("s1")).unwrap().unwrap();
    assert_eq!(seen.revoked, Some(first));
    assert_eq!(ix.revoke_api_key("nobody", &later).unwrap(), None);
    assert_eq!(ix.revoke_api_key("a\0b", &later).unwrap(), None);
}

fn key_use_is_noted_at_most_once_a_minute(ix: &dyn Index) {
    assert!(ix.create_api_key(&api_key("busy", "s")).unwrap());
    let t0 = Utc::now();
    let whole = |t: chrono::DateTime<Utc>| chrono::DateTime::from_timestamp(t.timestamp(), 0);
    let last = || ix.api_key("busy").unwrap().unwrap().last_used;
    ix.note_api_key_use("busy", t0).unwrap();
    assert_eq!(last(), whole(t0));
    ix.note_api_key_use("busy", t0 + chrono::Duration::seconds(30))
        .unwrap();
    assert_eq!(last(), whole(t0), "noted again within a minute");
    let t1 = t0 + chrono::Duration::seconds(60);
    ix.note_api_key_use("busy", t1).unwrap();
    assert_eq!(last(), whole(t1));
    // the rest of the key is untouched, and a lookup by hash sees the note
    let k = ix.api_key_by_hash(&hash_of("s")).unwrap().unwrap();
    assert_eq!(k.last_used, whole(t1));
    assert_eq!(k.components, ["asyn*", "motor"]);
    ix.note_api_key_use("nobody", t1).unwrap();
    assert!(ix.api_key("nobody").unwrap().is_none());
}

// --- export and import, across implementations ---

/// One of everything.
fn populate(ix: &dyn Index) {
    let mut built = rec("asyn", "R4-45", "rocky9", "h1");
    built.inputs = Some("I1".into());
    ix.put(&built, false).unwrap();
    ix.put(&rec("a_b", "1", "x", "h2"), false).unwrap();
    ix.add_inputs("I1", &built.key()).unwrap();
    ix.set_derived("h1", "tar.gz", "g1").unwrap();
    ix.note_download(&built.key()).unwrap();
    ix.note_blob_use("h1").unwrap();
    ix.put_image(&image("ioc", Some("main"), "x", "d1"))
        .unwrap();
    ix.put_image(&image("ioc", None, "x", "d2")).unwrap();
    ix.set_meta("schema", b"\x01\x00").unwrap();
    let mut done = job("0001", Some("f"));
    done.state = JobState::Success;
    ix.put_job(&done, true).unwrap();
    ix.enqueue_job(&job("0002", Some("g"))).unwrap();
    let k = api_key("ci", "the-secret");
    ix.create_api_key(&k).unwrap();
    ix.note_api_key_use("ci", Utc::now()).unwrap();
    let rev = Revocation {
        at: Utc::now(),
        by: Identity::default(),
    };
    ix.revoke_api_key("ci", &rev).unwrap();
}

fn described(ix: &dyn Index) -> Vec<String> {
    let mut v: Vec<String> = ix
        .export()
        .map(|e| format!("{:?}", e.expect("export")))
        .collect();
    v.sort();
    v
}

fn migrate(from: &dyn Index, to: &dyn Index) {
    populate(from);
    let entries: Vec<Entry> = from.export().collect::<Result<_, _>>().unwrap();
    assert_eq!(entries.len(), 12, "{entries:#?}");
    to.import(&entries).unwrap();
    assert_eq!(described(to), described(from));
    let k = key("asyn", "R4-45", "rocky9");
    assert_eq!(
        to.raw(&k).unwrap().unwrap().as_bytes(),
        from.raw(&k).unwrap().unwrap().as_bytes()
    );
    assert_eq!(to.by_inputs("I1").unwrap(), from.by_inputs("I1").unwrap());
    assert_eq!(
        to.last_download(&k).unwrap(),
        from.last_download(&k).unwrap()
    );
    // the key, revoked and noted as used, is found by its hash there
    let key = to.api_key_by_hash(&hash_of("the-secret")).unwrap().unwrap();
    assert_eq!(Some(&key), from.api_key("ci").unwrap().as_ref());
    assert!(key.revoked.is_some() && key.last_used.is_some());
    // importing again changes nothing
    to.import(&entries).unwrap();
    assert_eq!(described(to), described(from));
}

#[cfg(feature = "postgres")]
#[test]
fn export_import_sled_to_postgres() {
    let (a, b) = (sled(), postgres());
    migrate(&*a.ix, &*b.ix);
    // the queued job can run where it went
    let j = b.ix.claim_job("r1", Duration::from_secs(30)).unwrap();
    assert_eq!(j.map(|j| j.id).as_deref(), Some("0002"));
}

#[cfg(feature = "postgres")]
#[test]
fn export_import_postgres_to_sled() {
    let (a, b) = (postgres(), sled());
    migrate(&*a.ix, &*b.ix);
}

#[test]
fn import_keeps_the_last_entry_of_a_key() {
    let check = |ix: &dyn Index| {
        ix.import(&[
            Entry::Component(rec("a", "1", "x", "h1")),
            Entry::Meta {
                key: "m".into(),
                value: b"1".to_vec(),
            },
            Entry::Component(rec("a", "1", "x", "h2")),
            Entry::Meta {
                key: "m".into(),
                value: b"2".to_vec(),
            },
        ])
        .unwrap();
        assert_eq!(ix.get(&key("a", "1", "x")).unwrap().unwrap().blake3, "h2");
        assert_eq!(ix.meta("m").unwrap().as_deref(), Some(&b"2"[..]));
    };
    check(&*sled().ix);
    #[cfg(feature = "postgres")]
    check(&*postgres().ix);
}

// --- PostgreSQL only: replicas, opening, errors ---

#[cfg(feature = "postgres")]
mod pg {
    use super::*;
    use artifact_store::index::postgres::PgIndex;

    #[test]
    fn open_needs_a_url() {
        let mut cfg = pg_config("x");
        cfg.url = None;
        let err = PgIndex::open(&cfg).err().expect("no URL").to_string();
        assert!(err.contains("[index] url"), "{err}");
    }

    #[test]
    fn open_says_when_the_database_does_not_answer() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let t = Instant::now();
        let err = PgIndex::open(&pg_config(&format!(
            "postgres://postgres@127.0.0.1:{port}/x"
        )))
        .err()
        .expect("nothing listens")
        .to_string();
        assert!(err.contains("does not answer"), "{err}");
        assert!(t.elapsed() < Duration::from_secs(10));
        let err = PgIndex::open(&pg_config("mysql://x"))
            .err()
            .expect("not PostgreSQL")
            .to_string();
        assert!(err.contains("not a valid PostgreSQL URL"), "{err}");
    }

    /// A replica answers from a record it read for at most
    /// `record_cache_ms`; its own writes are seen at once.
    #[test]
    fn a_replica_remembers_a_record_briefly_and_forgets_its_own_writes() {
        let url = common::pg::database();
        let open = |ms: u64| {
            PgIndex::open(&artifact_store::config::IndexConfig {
                record_cache_ms: ms,
                ..pg_config(&url)
            })
            .expect("open")
        };
        let (a, b) = (open(1500), open(1500));
        let r = rec("cached", "R1", "rocky9", &"a".repeat(64));
        let k = r.key();
        assert!(a.put(&r, false).is_ok());
        assert!(a.raw(&k).unwrap().is_some());
        // removed on another replica: seen there at once, here within the TTL
        let t = Instant::now();
        assert!(b.remove(&k).unwrap().is_some());
        assert!(b.raw(&k).unwrap().is_none());
        if t.elapsed() < Duration::from_millis(1000) {
            assert!(a.raw(&k).unwrap().is_some(), "answered from memory");
        }
        std::thread::sleep(Duration::from_millis(1600));
        assert!(a.raw(&k).unwrap().is_none(), "forgotten after the TTL");
        // a replica's own writes are seen at once
        assert!(a.put(&r, false).is_ok());
        assert!(a.raw(&k).unwrap().is_some());
        assert!(a.remove(&k).unwrap().is_some());
        assert!(a.raw(&k).unwrap().is_none());
        // 0: every lookup asks the database
        let (c, d) = (open(0), open(0));
        assert!(c.put(&r, false).is_ok());
        assert!(c.raw(&k).unwrap().is_some());
        assert!(d.remove(&k).unwrap().is_some());
        assert!(c.raw(&k).unwrap().is_none());
    }

    #[test]
    fn replicas_open_one_database_at_once() {
        let url = common::pg::database();
        let n = 8;
        let barrier = Barrier::new(n);
        let opened: Vec<PgIndex> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..n)
                .map(|_| {
                    let (barrier, url) = (&barrier, &url);
                    s.spawn(move || {
                        barrier.wait();
                        open_pg(url)
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().expect("thread")).collect()
        });
        opened[0].put(&rec("a", "1", "x", "h"), false).unwrap();
        for ix in &opened {
            assert!(ix.contains(&key("a", "1", "x")).unwrap());
        }
        drop(opened);
        // and again, on the existing schema
        let ix = open_pg(&url);
        assert_eq!(ix.component_count().unwrap(), 1);
        let applied = common::pg::server()
            .psql_in(&url, "SELECT count(*) FROM _sqlx_migrations WHERE success");
        let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
            .unwrap()
            .count();
        assert_eq!(applied.trim(), files.to_string(), "each migration once");
    }

    /// Replicas (an index each) race for one flight, then for the jobs.
    #[test]
    fn replicas_enqueue_and_claim_without_doubles() {
        let url = common::pg::database();
        let replicas: Vec<PgIndex> = (0..4).map(|_| open_pg(&url)).collect();
        let n = 20;
        let barrier = Barrier::new(n);
        let new = std::thread::scope(|s| {
            let hs: Vec<_> = (0..n)
                .map(|i| {
                    let (barrier, ix) = (&barrier, &replicas[i % 4]);
                    s.spawn(move || {
                        barrier.wait();
                        let flight = format!("f{}", i % 2);
                        matches!(
                            ix.enqueue_job(&job(&format!("{i:04}"), Some(&flight)))
                                .expect("enqueue"),
                            Enqueued::New
                        )
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().expect("thread"))
                .filter(|n| *n)
                .count()
        });
        assert_eq!(new, 2, "one job per flight");
        for i in 0..40 {
            replicas[i % 4]
                .enqueue_job(&job(&format!("1{i:03}"), None))
                .unwrap();
        }
        let barrier = Barrier::new(4);
        let claimed: Vec<String> = std::thread::scope(|s| {
            let hs: Vec<_> = replicas
                .iter()
                .enumerate()
                .map(|(r, ix)| {
                    let barrier = &barrier;
                    s.spawn(move || {
                        barrier.wait();
                        let me = format!("r{r}");
                        let mut got = Vec::new();
                        while let Some(j) = ix.claim_job(&me, Duration::from_secs(30)).unwrap() {
                            got.push(j.id);
                        }
                        got
                    })
                })
                .collect();
            hs.into_iter()
                .flat_map(|h| h.join().expect("thread"))
                .collect()
        });
        assert_eq!(claimed.len(), 42);
        let unique: HashSet<&String> = claimed.iter().collect();
        assert_eq!(unique.len(), 42, "a job was claimed twice");
    }

    /// Replicas race for a lease: one gets it.
    #[test]
    fn replicas_race_for_a_lease() {
        let url = common::pg::database();
        let replicas: Vec<PgIndex> = (0..4).map(|_| open_pg(&url)).collect();
        let barrier = Barrier::new(20);
        let got = std::thread::scope(|s| {
            let hs: Vec<_> = (0..20)
                .map(|i| {
                    let (barrier, ix) = (&barrier, &replicas[i % 4]);
                    s.spawn(move || {
                        barrier.wait();
                        ix.try_lease("gc", &format!("h{i}"), Duration::from_secs(30))
                            .unwrap()
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().expect("thread"))
                .filter(|g| *g)
                .count()
        });
        assert_eq!(got, 1);
    }

    /// Handlers call the index from async threads; it also ends there.
    #[test]
    fn works_inside_another_runtime() {
        let url = common::pg::database();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let ix = open_pg(&url);
            ix.put(&rec("a", "1", "x", "h"), false).unwrap();
            assert!(ix.raw(&key("a", "1", "x")).unwrap().is_some());
            drop(ix);
        });
    }

    #[test]
    fn errors_name_what_failed_in_plain_words() {
        let url = common::pg::database();
        let ix = open_pg(&url);
        common::pg::server().psql_in(&url, "DROP TABLE components CASCADE");
        let err = ix
            .get(&key("asyn", "R4-45", "rocky9"))
            .expect_err("no table")
            .to_string();
        assert!(
            err.contains("reading the record of asyn R4-45 (rocky9)"),
            "{err}"
        );
        assert!(err.contains("does not exist"), "{err}");
        for word in ["sqlx", "Error", "Database("] {
            assert!(!err.contains(word), "{err}");
        }
        let err = ix
            .put(&rec("a\0", "1", "x", "h"), false)
            .expect_err("NUL")
            .to_string();
        assert!(err.contains("NUL character"), "{err}");
    }

    /// A running job that arrives by import has no replica holding it: its
    /// lease is over, so a replica takes it up.
    #[test]
    fn imported_running_jobs_are_expired() {
        let ix = postgres();
        let mut j = job("0001", None);
        j.state = JobState::Running;
        j.replica = Some("old".into());
        ix.ix.import(&[Entry::Job(j)]).unwrap();
        let expired = ix.ix.expired_jobs().unwrap();
        assert_eq!(expired.len(), 1);
    }

    /// The service itself on a PostgreSQL index: two replicas (each with its
    /// own blobs) see one index.
    #[test]
    fn the_service_runs_on_postgres() {
        use common::{bearer, client, config_with_keys, tar_gz, Server, READ_KEY, WRITE_KEY};
        let url = common::pg::database();
        let cfg = config_with_keys(&format!(
            "[index]\nkind = \"postgres\"\nurl = \"{url}\"\nmax_connections = 4\n"
        ));
        let a = Server::start_with(&cfg);
        let b = Server::start_with(&cfg);
        let body = tar_gz("R4-45", &[("lib/libasyn.a", b"asyn")]);
        let put = |s: &Server, body: Vec<u8>| {
            client()
                .put(s.url("/v1/components/asyn/R4-45/rocky9"))
                .header("Authorization", bearer(WRITE_KEY))
                .body(body)
                .send()
                .unwrap()
                .status()
                .as_u16()
        };
        assert_eq!(put(&a, body.clone()), 201);
        let other = tar_gz("R4-45", &[("lib/libasyn.a", b"other")]);
        assert_eq!(put(&b, other), 409, "the other replica sees the record");
        for s in [&a, &b] {
            let listed: serde_json::Value = client()
                .get(s.url("/v1/components?prefix=as"))
                .header("Authorization", bearer(READ_KEY))
                .send()
                .unwrap()
                .json()
                .unwrap();
            assert_eq!(
                listed["components"].as_array().map(Vec::len),
                Some(1),
                "{listed}"
            );
            let ready = client().get(s.url("/readyz")).send().unwrap().status();
            assert_eq!(ready, 200);
        }
        let got = client()
            .get(a.url("/v1/components/asyn/R4-45/rocky9"))
            .header("Authorization", bearer(READ_KEY))
            .send()
            .unwrap();
        assert_eq!(got.status(), 200);
        assert!(!got.bytes().unwrap().is_empty());
    }

    /// By hand: `cargo test --test index -- --ignored --nocapture pg_million`.
    /// Loads 1,000,000 records (`BENCH_RECORDS`) with `import` into a fresh
    /// database of the throwaway server (or the one `BENCH_DATABASE_URL`
    /// names, loaded only if it has fewer), then times `raw` (10,000
    /// lookups of random keys, twice: the second pass on a warm cache),
    /// `open` on that database, and `all`.
    #[test]
    #[ignore]
    fn pg_million_records_bench() {
        let n: usize = std::env::var("BENCH_RECORDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000);
        let given = std::env::var("BENCH_DATABASE_URL").ok();
        let url = given.clone().unwrap_or_else(common::pg::database);
        let ix = open_pg(&url);
        let name = |i: usize| {
            key(
                &format!("component-{:05}", i / 100),
                &format!("R{}.{}", i % 100, i % 7),
                "rocky9",
            )
        };
        if ix.component_count().unwrap() < n as u64 {
            let t = Instant::now();
            let batch = 20_000;
            for start in (0..n).step_by(batch) {
                let entries: Vec<Entry> = (start..(start + batch).min(n))
                    .map(|i| {
                        let k = name(i);
                        let mut r = rec(
                            &k.component,
                            &k.tag,
                            &k.arch,
                            &blake3::hash(&i.to_le_bytes()).to_hex(),
                        );
                        r.size = i as u64;
                        Entry::Component(r)
                    })
                    .collect();
                ix.import(&entries).unwrap();
            }
            println!("import of {n} records: {:.1} s", t.elapsed().as_secs_f64());
            if given.is_none() {
                common::pg::server().psql_in(&url, "VACUUM ANALYZE components");
            }
        }
        let lookups = 10_000;
        let mut keys = Vec::with_capacity(lookups);
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..lookups {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            keys.push(name((x % n as u64) as usize));
        }
        for pass in ["first", "second"] {
            let mut lat = Vec::with_capacity(lookups);
            for k in &keys {
                let t = Instant::now();
                let r = ix.raw(k).unwrap();
                lat.push(t.elapsed());
                assert!(r.is_some());
            }
            lat.sort();
            let pct = |p: f64| lat[((lookups as f64 * p) as usize).min(lookups - 1)];
            println!(
                "raw(), {pass} pass: p50 {:?}, p90 {:?}, p99 {:?}, max {:?} over {lookups} lookups",
                pct(0.50),
                pct(0.90),
                pct(0.99),
                lat[lookups - 1]
            );
        }
        drop(ix);
        let t = Instant::now();
        let ix = open_pg(&url);
        println!("open on {n} records: {:?}", t.elapsed());
        let t = Instant::now();
        let all = ix.all().count();
        println!("all(): {all} records in {:.1} s", t.elapsed().as_secs_f64());
    }
}

/// Searches and counts follow every write made after the first search
/// (sled keeps the keys in memory once searched), prefixes and `after` too.
fn search_sees_every_write(ix: &dyn Index) {
    let w = |ws: &[&str]| ws.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let found = |ws: &[&str], prefix: &str, after: Option<&ComponentKey>| -> Vec<String> {
        ix.search(prefix, &w(ws), after, 100)
            .unwrap()
            .iter()
            .map(|r| r.key().display_path())
            .collect()
    };
    assert!(found(&["asyn"], "", None).is_empty());
    ix.put(&rec("asyn", "R4.39", "rocky9", "a1"), false)
        .unwrap();
    assert_eq!(found(&["asyn"], "", None), ["asyn/R4.39/rocky9"]);
    ix.put(&rec("asyn", "R4.40", "rhel9", "a2"), false).unwrap();
    ix.put(&rec("motor-asyn", "R1", "rocky9", "m1"), false)
        .unwrap();
    assert_eq!(
        found(&["asyn"], "", None),
        [
            "asyn/R4.39/rocky9",
            "asyn/R4.40/rhel9",
            "motor-asyn/R1/rocky9"
        ]
    );
    assert_eq!(
        found(&["ROCKY"], "", None),
        ["asyn/R4.39/rocky9", "motor-asyn/R1/rocky9"],
        "case aside"
    );
    assert_eq!(found(&["r4", "rhel"], "", None), ["asyn/R4.40/rhel9"]);
    assert_eq!(found(&["asyn"], "motor", None), ["motor-asyn/R1/rocky9"]);
    let first = key("asyn", "R4.39", "rocky9");
    assert_eq!(
        found(&["asyn"], "", Some(&first)),
        ["asyn/R4.40/rhel9", "motor-asyn/R1/rocky9"]
    );
    let c = ix.count_matching("", &w(&["asyn"])).unwrap();
    assert_eq!((c.records, c.components), (3, 2));
    let c = ix.count_matching("", &[]).unwrap();
    assert_eq!((c.records, c.components), (3, 2));
    // a replaced record stays found; a removed one is gone
    ix.put(&rec("asyn", "R4.39", "rocky9", "a3"), true).unwrap();
    ix.remove(&key("asyn", "R4.40", "rhel9")).unwrap();
    assert_eq!(
        found(&["asyn"], "", None),
        ["asyn/R4.39/rocky9", "motor-asyn/R1/rocky9"]
    );
    let c = ix.count_matching("asyn", &[]).unwrap();
    assert_eq!((c.records, c.components), (1, 1));
    // imported records too
    ix.import(&[Entry::Component(rec("calc", "R3.7", "rocky9", "c1"))])
        .unwrap();
    assert_eq!(found(&["r3.7"], "", None), ["calc/R3.7/rocky9"]);
    assert_eq!(ix.search("", &w(&["asyn"]), None, 1).unwrap().len(), 1);
}
