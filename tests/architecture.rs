//! The architecture's rules, checked on the source (in the spirit of
//! rust-analyzer's tidy tests): ARCHITECTURE.md names them, this test keeps
//! them true. Each rule: which files may mention what.

use std::path::{Path, PathBuf};

fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read src") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            out.extend(sources(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// The file's code without comments (line comments and doc comments).
fn code(path: &Path) -> String {
    std::fs::read_to_string(path)
        .expect("read source")
        .lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `src/`-relative path with `/`.
fn rel(p: &Path) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    p.strip_prefix(&root)
        .expect("under src")
        .display()
        .to_string()
}

/// Whether `line` holds `needle` as a path (not inside a longer name:
/// `BuildCommand::new` is not `Command::new`).
fn mentions(line: &str, needle: &str) -> bool {
    line.match_indices(needle).any(|(i, _)| {
        !line[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

/// Files (other than those `allowed`) whose code contains any of `needles`.
fn offenders(needles: &[&str], allowed: impl Fn(&str) -> bool) -> Vec<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut bad = Vec::new();
    for p in sources(&src) {
        let r = rel(&p);
        if allowed(&r) {
            continue;
        }
        let c = code(&p);
        for n in needles {
            if let Some(line) = c
                .lines()
                .position(|l| l.trim() != "use super::*;" && mentions(l, n))
            {
                bad.push(format!("{r}:{}: {n}", line + 1));
            }
        }
    }
    bad
}

#[test]
fn actix_only_in_http_and_the_runtime_start() {
    let bad = offenders(&["actix_web", "actix_multipart", "actix_http"], |f| {
        f.starts_with("http/") || f == "main.rs"
    });
    assert!(bad.is_empty(), "actix outside http/: {bad:#?}");
    // main.rs only starts the runtime
    let main = code(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src/main.rs"));
    for l in main.lines().filter(|l| l.contains("actix_web")) {
        assert!(l.contains("actix_web::rt::System"), "main.rs: {l}");
    }
}

#[test]
fn sled_only_in_its_index_implementation() {
    let bad = offenders(&["sled::", "sled;"], |f| {
        f == "index/sled.rs" || f.starts_with("index/sled/") || f == "index/mod.rs" || f == "app.rs"
    });
    assert!(bad.is_empty(), "sled outside index/sled.rs: {bad:#?}");
    // app.rs chooses the implementation, by name only
    let app = code(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src/app.rs"));
    for l in app.lines().filter(|l| l.contains("sled")) {
        assert!(
            l.contains("index::sled::SledIndex") || l.contains("SledIndex::open"),
            "app.rs: {l}"
        );
    }
    let m = code(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src/index/mod.rs"));
    for l in m.lines().filter(|l| l.contains("sled")) {
        assert!(
            l.trim() == "pub mod sled;",
            "index/mod.rs may only declare the module: {l}"
        );
    }
}

#[test]
fn postgres_and_object_storage_only_in_their_implementations() {
    let bad = offenders(&["sqlx::", "sqlx;"], |f| {
        f == "index/postgres.rs" || f.starts_with("index/postgres/")
    });
    assert!(bad.is_empty(), "sqlx outside index/postgres: {bad:#?}");
    let bad = offenders(&["object_store::", "object_store;"], |f| {
        f == "store/s3.rs" || f.starts_with("store/s3/")
    });
    assert!(bad.is_empty(), "object_store outside store/s3: {bad:#?}");
}

#[test]
fn child_processes_only_through_process() {
    let bad = offenders(
        &[
            "process::Command",
            "tokio::process",
            "Command::new",
            "process::Stdio",
            "libc::fork",
            "libc::exec",
        ],
        |f| f == "process.rs",
    );
    assert!(
        bad.is_empty(),
        "children spawned outside process.rs: {bad:#?}"
    );
}

#[test]
fn the_domain_does_not_know_http() {
    let bad = offenders(&["crate::http", "artifact_store::http"], |f| {
        f.starts_with("http/") || f == "app.rs"
    });
    assert!(bad.is_empty(), "a domain module imports http: {bad:#?}");
}

#[test]
fn store_knows_nothing_of_the_index_or_http() {
    let bad = offenders(&["crate::index", "crate::http", "crate::components"], |f| {
        !f.starts_with("store/")
    });
    assert!(bad.is_empty(), "store/ reaches up: {bad:#?}");
}

#[test]
fn no_handler_file_imports_another() {
    let bad = offenders(&["handlers::", "super::"], |f| {
        !f.starts_with("http/handlers/") || f == "http/handlers/mod.rs"
    });
    assert!(
        bad.is_empty(),
        "a handler reaches another handler: {bad:#?}"
    );
}

#[test]
fn handlers_call_the_domain_not_the_store_or_the_index() {
    // (error.rs maps every layer's error enum, so it names them)
    let bad = offenders(
        &[".index()", ".blobs()", "crate::index", "crate::store"],
        |f| !f.starts_with("http/") || f == "http/error.rs",
    );
    assert!(bad.is_empty(), "http/ reaches past the domain: {bad:#?}");
}

#[test]
fn wire_types_know_no_actix_nor_storage() {
    let bad = offenders(
        &["actix", "crate::index", "crate::store", "crate::http"],
        |f| !f.starts_with("api/"),
    );
    assert!(
        bad.is_empty(),
        "api/ depends on a layer below HTTP's: {bad:#?}"
    );
}

#[test]
fn no_source_file_is_over_700_lines() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let big: Vec<String> = sources(&src)
        .into_iter()
        .filter_map(|p| {
            let n = std::fs::read_to_string(&p).ok()?.lines().count();
            (n > 700).then(|| format!("{}: {n} lines", rel(&p)))
        })
        .collect();
    assert!(big.is_empty(), "{big:#?}");
}

#[test]
fn the_code_map_names_every_module() {
    let arch = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/ARCHITECTURE.md"))
        .expect("ARCHITECTURE.md");
    let lib = code(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs"));
    for m in lib
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
    {
        let m = m.trim_end_matches(';');
        assert!(
            arch.contains(&format!("### `{m}`")),
            "ARCHITECTURE.md has no code map entry for `{m}`"
        );
    }
}
