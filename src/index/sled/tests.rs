//! Unit tests of the sled index.

use super::*;
use chrono::Utc;

fn rec(c: &str, t: &str, a: &str, h: &str) -> Record {
    Record {
        component: c.into(),
        tag: t.into(),
        arch: a.into(),
        blake3: h.into(),
        size: 1,
        created: Utc::now(),
        uploaded_by: Default::default(),
        source: None,
        dependencies: vec![],
        ..Default::default()
    }
}

#[test]
fn put_conflict_list() {
    let dir = tempfile::tempdir().unwrap();
    let ix = SledIndex::open(dir.path()).unwrap();
    assert_eq!(
        ix.put(&rec("a", "1", "x", "h1"), false).unwrap(),
        PutOutcome::Created
    );
    assert!(matches!(
        ix.put(&rec("a", "1", "x", "h1"), false).unwrap(),
        PutOutcome::Unchanged(_)
    ));
    assert!(matches!(
        ix.put(&rec("a", "1", "x", "h2"), false).unwrap(),
        PutOutcome::Conflict(_)
    ));
    assert!(matches!(
        ix.put(&rec("a", "1", "x", "h2"), true).unwrap(),
        PutOutcome::Replaced(_)
    ));
    ix.put(&rec("ab", "1", "x", "h3"), false).unwrap();
    ix.put(&rec("b", "1", "x", "h4"), false).unwrap();
    assert_eq!(ix.list("a", None, 10).unwrap().len(), 2);
    let first = ix.list("", None, 1).unwrap();
    let next = ix.list("", Some(&first[0].key()), 10).unwrap();
    assert_eq!(next.len(), 2);
    assert_eq!(ix.versions("a").unwrap().len(), 1);
}
