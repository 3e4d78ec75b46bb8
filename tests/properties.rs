//! Property-based tests of the parsers and guards: names, recipe YAML and
//! tarball unpacking. Generated inputs must never escape a temp root, never
//! exceed a limit and never panic. `PROPTEST_CASES` sets the number of
//! cases (64 by default here, so `cargo test` stays quick; try 10000).
//! The `Range` parser's properties are unit tests beside it (`http/files.rs`).

use std::path::{Component, Path, PathBuf};

use artifact_store::build::recipe::Recipe;
use artifact_store::model::{validate_name, ComponentKey};
use artifact_store::store::unpack::unpack_safe;
use proptest::prelude::*;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// --- names -------------------------------------------------------------------------------

fn name_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9._+-]{1,20}",
        "[A-Za-z0-9./\\\\ _+-]{0,20}",
        "\\PC{0,12}",
        Just("..".to_owned()),
        Just(".".to_owned()),
        "[.]{1,4}[a-z/]{0,4}",
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn accepted_names_are_single_safe_path_components(n in name_like()) {
        if validate_name("tag", &n).is_ok() {
            prop_assert!(!n.is_empty() && n.len() <= 128);
            prop_assert!(!n.contains('/') && !n.contains('\\') && !n.contains(".."));
            prop_assert!(n != "." && !n.starts_with('-'));
            let comps: Vec<_> = Path::new(&n).components().collect();
            prop_assert_eq!(comps.len(), 1);
            prop_assert!(matches!(comps[0], Component::Normal(_)));
        }
    }

    #[test]
    fn a_key_joined_under_a_root_stays_under_it(c in name_like(), t in name_like(), a in name_like()) {
        if let Ok(k) = ComponentKey::new(&c, &t, &a) {
            let root = Path::new("/store");
            let p = root.join(&k.component).join(&k.tag).join(&k.arch);
            prop_assert!(p.starts_with(root));
            prop_assert_eq!(p.components().count(), 5);
            prop_assert_eq!(k.arch.clone(), k.arch.to_ascii_lowercase());
        }
    }
}

// --- recipe YAML ------------------------------------------------------------------------

fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9._ -]{0,12}",
        Just("1.10".to_owned()),
        Just("~".to_owned()),
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("'quoted: yes'".to_owned()),
        Just("build.sh".to_owned()),
        Just("make -j4".to_owned()),
    ]
}

fn yaml_value(depth: u32) -> BoxedStrategy<String> {
    let leaf = scalar().boxed();
    if depth == 0 {
        return leaf;
    }
    prop_oneof![
        leaf,
        prop::collection::vec(yaml_value(depth - 1), 0..4)
            .prop_map(|items| format!("[{}]", items.join(", "))),
        prop::collection::vec((key(), yaml_value(depth - 1)), 0..4).prop_map(|kv| {
            let body: Vec<String> = kv.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            format!("{{{}}}", body.join(", "))
        }),
    ]
    .boxed()
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("build".to_owned()),
        Just("command".to_owned()),
        Just("image".to_owned()),
        Just("artifacts".to_owned()),
        Just("environments".to_owned()),
        Just("dependencies".to_owned()),
        Just("rocky9".to_owned()),
        Just("rhel7".to_owned()),
        Just("epics-base".to_owned()),
        Just("matrix".to_owned()),
        "[a-z]{1,8}",
    ]
}

fn recipe_text() -> impl Strategy<Value = String> {
    prop::collection::vec((key(), yaml_value(3)), 0..6).prop_map(|kv| {
        kv.iter()
            .map(|(k, v)| format!("{k}: {v}\n"))
            .collect::<String>()
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn recipes_parse_or_fail_cleanly(text in recipe_text(), arch in "[A-Za-z0-9]{1,8}") {
        if let Ok(r) = Recipe::parse(&text, "config.yaml") {
            if let Ok(plan) = r.plan(&arch) {
                prop_assert!(!plan.command.is_empty());
                for a in plan.artifacts.iter().flatten() {
                    prop_assert!(!Path::new(a).is_absolute(), "{a}");
                    prop_assert!(!Path::new(a).components().any(|c| c == Component::ParentDir), "{a}");
                }
            }
        }
    }

    #[test]
    fn arbitrary_text_never_panics_the_recipe_parser(text in "\\PC{0,200}") {
        let _ = Recipe::parse(&text, "config.yaml").map(|r| r.plan("rocky9"));
    }
}

// --- tar unpacking ----------------------------------------------------------------------

/// One generated archive member.
#[derive(Debug, Clone)]
enum Member {
    File {
        name: Vec<u8>,
        size: usize,
    },
    Dir {
        name: Vec<u8>,
    },
    Symlink {
        name: Vec<u8>,
        target: Vec<u8>,
    },
    Hardlink {
        name: Vec<u8>,
        target: Vec<u8>,
    },
    /// A PAX record overriding the next member's size.
    PaxSize {
        size: u64,
    },
}

fn path_piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => "[a-c]{1,2}".prop_map(|s| s.into_bytes()),
        1 => Just(b"..".to_vec()),
        1 => Just(b".".to_vec()),
        1 => Just(vec![0xff, 0xfe, b'x']),
        1 => "[a-z]{60,90}".prop_map(|s| s.into_bytes()),
    ]
}

fn rel_path() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(path_piece(), 1..4).prop_map(|parts| parts.join(&b'/'))
}

fn link_target(outside: &Path) -> impl Strategy<Value = Vec<u8>> {
    let abs = outside.join("x").display().to_string().into_bytes();
    prop_oneof![
        4 => rel_path(),
        1 => Just(abs),
        1 => Just(b"/etc/passwd".to_vec()),
        1 => Just(b"../outside/x".to_vec()),
        1 => Just(b"../../outside".to_vec()),
        1 => rel_path().prop_map(|p| [b"../".as_slice(), &p].concat()),
    ]
}

fn member(outside: PathBuf) -> impl Strategy<Value = Member> {
    prop_oneof![
        4 => (rel_path(), 0usize..5000).prop_map(|(name, size)| Member::File { name, size }),
        2 => rel_path().prop_map(|name| Member::Dir { name }),
        3 => (rel_path(), link_target(&outside)).prop_map(|(name, target)| Member::Symlink { name, target }),
        2 => (rel_path(), rel_path()).prop_map(|(name, target)| Member::Hardlink { name, target }),
        1 => (0u64..20_000_000).prop_map(|size| Member::PaxSize { size }),
    ]
}

fn header(name: &[u8], kind: tar::EntryType, size: u64, link: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    // GNU long names for what does not fit the header
    for (bytes, k) in [(name, b'L'), (link, b'K')] {
        if bytes.len() >= 100 {
            let mut h = tar::Header::new_gnu();
            h.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
            h.set_entry_type(tar::EntryType::new(k));
            h.set_size(bytes.len() as u64 + 1);
            h.set_cksum();
            out.extend_from_slice(h.as_bytes());
            let mut data = bytes.to_vec();
            data.push(0);
            pad_to_block(&mut data);
            out.extend(data);
        }
    }
    let mut h = tar::Header::new_gnu();
    {
        let g = h.as_gnu_mut().unwrap();
        let n = name.len().min(99);
        g.name[..n].copy_from_slice(&name[..n]);
        let l = link.len().min(99);
        g.linkname[..l].copy_from_slice(&link[..l]);
    }
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o755);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out
}

fn pad_to_block(v: &mut Vec<u8>) {
    let rem = v.len() % 512;
    if rem != 0 {
        v.extend(std::iter::repeat_n(0u8, 512 - rem));
    }
}

fn archive(members: &[Member]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in members {
        match m {
            Member::File { name, size } => {
                out.extend(header(name, tar::EntryType::Regular, *size as u64, b""));
                let mut data = vec![b'd'; *size];
                pad_to_block(&mut data);
                out.extend(data);
            }
            Member::Dir { name } => out.extend(header(name, tar::EntryType::Directory, 0, b"")),
            Member::Symlink { name, target } => {
                out.extend(header(name, tar::EntryType::Symlink, 0, target))
            }
            Member::Hardlink { name, target } => {
                out.extend(header(name, tar::EntryType::Link, 0, target))
            }
            Member::PaxSize { size } => {
                let rec = format!("size={size}\n");
                let rec = format!(
                    "{} {rec}",
                    rec.len() + 1 + (rec.len() + 1).to_string().len()
                );
                out.extend(header(
                    b"pax",
                    tar::EntryType::XHeader,
                    rec.len() as u64,
                    b"",
                ));
                let mut data = rec.into_bytes();
                pad_to_block(&mut data);
                out.extend(data);
            }
        }
    }
    out.extend([0u8; 1024]);
    out
}

fn written_bytes(root: &Path) -> u64 {
    walkdir::WalkDir::new(root)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = walkdir::WalkDir::new(dir)
        .follow_links(false)
        .into_iter()
        .flatten()
        .map(|e| e.path().display().to_string())
        .collect();
    v.sort();
    v
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn unpacking_never_escapes_never_exceeds_never_panics(
        members in prop::collection::vec(member(PathBuf::from("/nonexistent-outside")), 1..14),
        limit in 2_000u64..40_000,
    ) {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("x"), b"sentinel").unwrap();
        let root = t.path().join("a/b/root");
        std::fs::create_dir_all(&root).unwrap();
        // point the generated absolute targets at our own "outside" dir
        let members: Vec<Member> = members
            .into_iter()
            .map(|m| match m {
                Member::Symlink { name, target } if target.starts_with(b"/nonexistent-outside") => {
                    Member::Symlink { name, target: outside.join("x").display().to_string().into_bytes() }
                }
                other => other,
            })
            .collect();
        let before = listing(t.path());
        let res = unpack_safe(
            &archive(&members)[..],
            &root,
            artifact_store::store::unpack::Limits { bytes: limit, entries: 10 },
        );

        // nothing outside the root changed
        let after: Vec<String> = listing(t.path())
            .into_iter()
            .filter(|p| !Path::new(p).starts_with(&root))
            .collect();
        let before_out: Vec<String> = before
            .into_iter()
            .filter(|p| !Path::new(p).starts_with(&root))
            .collect();
        prop_assert_eq!(after, before_out);
        prop_assert_eq!(std::fs::read(outside.join("x")).unwrap(), b"sentinel".to_vec());
        // never more file bytes than the limit
        prop_assert!(written_bytes(&root) <= limit, "{} > {limit}", written_bytes(&root));
        if let Ok(stats) = res {
            prop_assert!(stats.bytes <= limit);
            // every link kept resolves inside the root
            for e in walkdir::WalkDir::new(&root).into_iter().flatten() {
                if e.path_is_symlink() {
                    let rel = e.path().strip_prefix(&root).unwrap();
                    prop_assert!(
                        artifact_store::store::beneath::resolve(&root, rel, "t").is_ok(),
                        "{} escapes", rel.display()
                    );
                }
            }
        }
    }
}
