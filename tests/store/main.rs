//! Integration tests of the component store: the real binary on a loopback
//! port (see `common`), real HTTP with reqwest (blocking), and raw TCP where
//! a client must misbehave (truncated uploads, crashes mid-upload, paths a
//! URL library would normalise). One file per section; every test runs on
//! the default storage and again on S3 + PostgreSQL (`on_s3_postgres`).

#[path = "../common/mod.rs"]
mod common;

mod auth;
mod bad_input;
mod checksum;
mod cli;
mod download;
mod durability;
mod layout;
mod listing;
mod original;
mod upload;
mod wording;

pub use std::io::{Read, Write};
pub use std::net::{Shutdown, TcpStream};
pub use std::path::{Path, PathBuf};
pub use std::sync::{Arc, Barrier};
pub use std::time::{Duration, Instant};

pub use common::*;
pub use serde_json::{json, Value};

/// The same tests again, each server on a real S3 server (SeaweedFS) and a
/// real PostgreSQL instead of local blobs and sled.
macro_rules! on_s3_postgres {
    ($($name:ident => $test:path),* $(,)?) => {
        mod on_s3_postgres {
            $(
                #[test]
                fn $name() {
                    crate::common::on_backend(crate::common::Backend::S3Postgres, $test);
                }
            )*
        }
    };
}

on_s3_postgres! {
    writes_need_a_key_and_role => crate::auth::writes_need_a_key_and_role,
    anonymous_read_can_be_disabled => crate::auth::anonymous_read_can_be_disabled,
    first_start_generates_an_admin_key_once => crate::auth::first_start_without_keys_generates_an_admin_key_once,
    bad_names_are_refused => crate::bad_input::bad_names_are_refused,
    bodies_that_are_not_tarballs_are_refused => crate::bad_input::bodies_that_are_not_tarballs_are_refused,
    hostile_tarballs_are_refused_and_nothing_stored => crate::bad_input::hostile_tarballs_are_refused_and_nothing_stored,
    upload_limits_answer_413 => crate::bad_input::upload_limits_answer_413,
    truncated_upload_stores_nothing => crate::bad_input::truncated_upload_stores_nothing,
    unknown_routes_and_methods_answer_json => crate::bad_input::unknown_routes_and_methods_answer_json,
    checksum_header_checks_the_body_and_deploys_stored_blobs => crate::checksum::checksum_header_checks_the_body_and_deploys_stored_blobs,
    download_headers_head_range_and_etag => crate::download::download_headers_head_range_and_etag,
    download_as_gzip_has_the_same_files => crate::download::download_as_gzip_has_the_same_files,
    info_and_blob_routes => crate::download::info_and_blob_routes,
    data_survives_sigkill_and_restart => crate::durability::data_survives_sigkill_and_restart,
    concurrent_uploads_of_the_same_content_create_once => crate::durability::concurrent_uploads_of_the_same_content_create_once,
    concurrent_uploads_of_different_keys_all_succeed => crate::durability::concurrent_uploads_of_different_keys_all_succeed,
    crash_mid_upload_leaves_nothing_behind => crate::durability::crash_mid_upload_leaves_nothing_behind,
    listing_paging_versions_and_missing => crate::listing::listing_paging_versions_and_missing,
    original_get_component_api => crate::original::original_get_component_api,
    put_targz_creates_record_and_canonical_tarball => crate::upload::put_targz_creates_record_and_canonical_tarball,
    put_plain_tar_and_tar_zst_with_x_adbs_identity => crate::upload::put_plain_tar_and_tar_zst_with_x_adbs_identity,
    reupload_of_the_same_content_is_unchanged => crate::upload::reupload_of_the_same_content_is_unchanged,
    other_content_for_a_tag_conflicts_and_only_admins_overwrite => crate::upload::other_content_for_a_tag_conflicts_and_only_admins_overwrite,
    identical_content_under_two_keys_is_stored_once => crate::upload::identical_content_under_two_keys_is_stored_once,
    architecture_is_case_insensitive => crate::upload::architecture_is_case_insensitive,
    another_tags_top_directory_is_refused_unless_wrapped => crate::layout::another_tags_top_directory_is_refused_unless_wrapped,
    listing_searches_and_counts => crate::listing::listing_searches_and_counts,
}

/// PUT `body` to `/v1/components/{path}` with `key` and extra headers.
pub fn put_with(
    s: &Server,
    path: &str,
    key: Option<&str>,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> Resp {
    let mut rb = with_key(client().put(s.url(&format!("/v1/components/{path}"))), key);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    send(rb.body(body))
}

pub fn put(s: &Server, path: &str, key: Option<&str>, body: Vec<u8>) -> Resp {
    put_with(s, path, key, body, &[])
}

/// Asserts a 201 "created" answer and returns its record.
pub fn assert_created(r: &Resp) -> Value {
    assert_eq!(
        r.status,
        201,
        "expected 201, got {}: {}",
        r.status,
        r.text()
    );
    let v = r.json();
    assert_eq!(v["status"], "created", "{v}");
    assert!(v["component"].is_object(), "{v}");
    v["component"].clone()
}

/// A config with the standard keys, `top` (top-level keys) and `[auth]`.
pub fn config_full(top: &str, anonymous_read: bool) -> String {
    format!(
        "{top}\n[auth]\nanonymous_read = {anonymous_read}\n\
         [[auth.keys]]\nname = \"admin\"\nrole = \"admin\"\nblake3 = \"{}\"\n\
         [[auth.keys]]\nname = \"ci\"\nrole = \"write\"\nblake3 = \"{}\"\n\
         [[auth.keys]]\nname = \"reader\"\nrole = \"read\"\nblake3 = \"{}\"\n",
        hash(ADMIN_KEY),
        hash(WRITE_KEY),
        hash(READ_KEY)
    )
}

/// Stores a small component and returns (record, canonical tar.zst bytes).
pub fn store(s: &Server, component: &str, tag: &str, arch: &str, seed: u64) -> (Value, Vec<u8>) {
    let content = format!("{component} {tag} {arch} {seed}");
    let body = tar_gz(tag, &[("file.txt", content.as_bytes())]);
    let r = put(
        s,
        &format!("{component}/{tag}/{arch}"),
        Some(WRITE_KEY),
        body,
    );
    let rec = assert_created(&r);
    let dl = get(s, &format!("/v1/components/{component}/{tag}/{arch}"));
    assert_eq!(dl.status, 200, "{}", dl.text());
    (rec, dl.body)
}
