//! Items 2, 3 and 4: uploads count what they write, keep hard links, resolve links on the real tree.

use super::*;

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
