//! The command-line client against the real server: who is asking goes
//! with every request (`linux_username`, `github_username`), downloads are
//! written with the permissions the umask gives, exit codes are those the
//! README documents (0 yes, 1 not found or missing, 2 error), `--wrap`.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

use super::*;

/// Runs the client under `sh -c 'umask U; exec ...'` in `dir`, with `env`.
fn cli(s: &Server, dir: &Path, umask: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(format!("umask {umask}; exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_artifact-store"))
        .args(args)
        .args(["--server", &s.base])
        .env_remove("ARTIFACT_STORE_TOKEN")
        .env_remove("ARTIFACT_STORE_GITHUB_USER")
        .envs(env.iter().copied())
        .current_dir(dir)
        .output()
        .expect("run the client")
}

fn said(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
pub fn the_client_says_who_asks_writes_shared_files_and_exits_as_documented() {
    let s = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(
        dir.join("asyn.tar.gz"),
        tar_gz("R4.39", &[("lib/libasyn.so", b"asyn")]),
    )
    .unwrap();

    // put: the identity of who ran it is recorded
    let o = cli(
        &s,
        dir,
        "022",
        &[
            ("USER", "alice"),
            ("ARTIFACT_STORE_GITHUB_USER", "alice-gh"),
            ("ARTIFACT_STORE_TOKEN", WRITE_KEY),
        ],
        &["put", "asyn", "R4.39", "asyn.tar.gz", "--arch", "rocky9"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", said(&o));
    let info = get(&s, "/v1/components/asyn/R4.39/rocky9/info").json();
    let by = &info["component"]["uploaded_by"];
    assert_eq!(by["linux_username"], "alice", "{info}");
    assert_eq!(by["github_username"], "alice-gh", "{info}");

    // without $USER: the password database's name for the user
    let o = cli(
        &s,
        dir,
        "022",
        &[("ARTIFACT_STORE_TOKEN", WRITE_KEY), ("USER", "")],
        &["put", "asyn", "R4.39", "asyn.tar.gz", "--arch", "rhel9"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", said(&o));
    let info = get(&s, "/v1/components/asyn/R4.39/rhel9/info").json();
    let me = Command::new("id").arg("-un").output().unwrap();
    let me = String::from_utf8_lossy(&me.stdout).trim().to_owned();
    assert_eq!(
        info["component"]["uploaded_by"]["linux_username"],
        me.as_str(),
        "{info}"
    );

    // get: the file has the umask's permissions, not 0600
    for (umask, want) in [("022", 0o644), ("002", 0o664)] {
        let out = format!("asyn-{umask}.tar.zst");
        let o = cli(
            &s,
            dir,
            umask,
            &[],
            &["get", "asyn", "R4.39", "--arch", "rocky9", "-o", &out],
        );
        assert_eq!(o.status.code(), Some(0), "{}", said(&o));
        assert_eq!(mode(&dir.join(&out)), want, "umask {umask}");
    }

    // a missing component: 1, as the README says; an error: 2
    let o = cli(
        &s,
        dir,
        "022",
        &[],
        &["get", "asyn", "R9.99", "--arch", "rocky9"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", said(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("R9.99"),
        "{}",
        said(&o)
    );
    let o = cli(
        &s,
        dir,
        "022",
        &[],
        &["put", "asyn", "R4.40", "asyn.tar.gz", "--arch", "rocky9"],
    );
    assert_eq!(o.status.code(), Some(2), "no key: {}", said(&o));

    // put of another tag's tarball: refused naming both, stored with --wrap
    let key = [("ARTIFACT_STORE_TOKEN", WRITE_KEY)];
    let args = ["put", "asyn", "R4.40", "asyn.tar.gz", "--arch", "rocky9"];
    let o = cli(&s, dir, "022", &key, &args);
    assert_eq!(o.status.code(), Some(2), "{}", said(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("R4.39/") && err.contains("R4.40"),
        "{}",
        said(&o)
    );
    let o = cli(&s, dir, "022", &key, &[&args[..], &["--wrap"]].concat());
    assert_eq!(o.status.code(), Some(0), "{}", said(&o));
}
