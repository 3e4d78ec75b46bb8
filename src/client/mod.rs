//! The command-line client: talks to a running service over HTTP, the way
//! build scripts would. `get` verifies blake3 while it streams, `check`
//! asks for a whole dependency list at once and answers with its exit code,
//! `build` follows the live log and exits with the build's result.
//!
//! This module is a plain HTTP client: it shares the wire types (`api`)
//! and the tarball safety code (`store::unpack`) with the server.

use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub mod deps;
mod keys;

pub use keys::{key_create, key_list, key_revoke, key_table};

use indicatif::{ProgressBar, ProgressStyle};
use reqwest::blocking::{multipart, Client, RequestBuilder, Response};
use serde::de::DeserializeOwned;

use crate::api::{
    BuildOutcome, BuildRequest, ComponentAnswer, ErrorBody, GcAnswer, ImageAnswer, ImageOutcome,
    JobAnswer, JobList, MissingAnswer, MissingRequest, VerifyAnswer, WantedItem,
};
use crate::model::{ComponentKey, Job, JobState};
use crate::store::unpack;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach {url}: {err}")]
    Connect { url: String, err: reqwest::Error },
    #[error("{status}: {message}")]
    Server { status: u16, message: String },
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Other(String),
}

pub type Result<T> = std::result::Result<T, ClientError>;

impl ClientError {
    /// The CLI's exit code for this error: 1 when what was asked for does
    /// not exist (the service answered 404), 2 for every other error.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Server { status: 404, .. } => 1,
            _ => 2,
        }
    }
}

/// A temp file in `dir` to be renamed over a file people use: created
/// `0666` less the umask (as `open` would make it), not tempfile's `0600`.
pub(crate) fn shared_temp_file(dir: &Path) -> io::Result<tempfile::NamedTempFile> {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .prefix(".artifact-store-")
        .permissions(std::fs::Permissions::from_mode(0o666))
        .tempfile_in(dir)
}

/// Where the service is, how to authenticate, and who is asking.
pub struct Remote {
    pub server: String,
    pub token: Option<String>,
    /// Sent as `linux_username` (and `X-adbs-linux-user`) with every request.
    pub linux_user: Option<String>,
    /// Sent as `github_username` (and `X-adbs-github-user`).
    pub github_user: Option<String>,
    http: Client,
}

/// The login name of the user running the client: `$USER`, else the
/// password database's name for the real user id.
pub fn linux_username() -> Option<String> {
    if let Some(u) = std::env::var("USER").ok().filter(|u| !u.trim().is_empty()) {
        return Some(u.trim().to_owned());
    }
    passwd_name(
        // SAFETY: getuid cannot fail and has no preconditions.
        unsafe { libc::getuid() },
    )
}

/// The name `uid` has in the password database (`getpwuid_r`).
fn passwd_name(uid: libc::uid_t) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: a zeroed passwd is a valid out-parameter (plain C struct).
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; buf outlives the use of
    // pw's string fields, which point into it.
    let rc =
        unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut found) };
    if rc != 0 || found.is_null() || pw.pw_name.is_null() {
        return None;
    }
    // SAFETY: pw_name is a NUL-terminated string inside buf.
    let name = unsafe { std::ffi::CStr::from_ptr(pw.pw_name) };
    let name = name.to_string_lossy().trim().to_owned();
    (!name.is_empty()).then_some(name)
}

/// A header value, or nothing when it cannot be one (control characters).
fn header_value(v: &str) -> Option<reqwest::header::HeaderValue> {
    reqwest::header::HeaderValue::from_str(v).ok()
}

impl Remote {
    /// A remote for `server`, sending `token` and the identity of the user
    /// running the client (see [`linux_username`]); `github_user` too when given.
    pub fn new(server: &str, token: Option<String>) -> Result<Self> {
        let http = Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(None)
            // downloads may be redirected to the object store: followed by
            // `download`, which keeps the service's ETag and sends the key
            // to the service only
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ClientError::Other(e.to_string()))?;
        Ok(Self {
            server: server.trim_end_matches('/').to_owned(),
            token: token.filter(|t| !t.is_empty()),
            linux_user: linux_username(),
            github_user: None,
            http,
        })
    }

    /// Sends `github_username` as well.
    pub fn with_github_user(mut self, user: Option<String>) -> Self {
        self.github_user = user.map(|u| u.trim().to_owned()).filter(|u| !u.is_empty());
        self
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server)
    }

    /// Whether `url` is on the configured server's origin (scheme, host and
    /// port): only there do the key and the user name go.
    fn same_origin(&self, url: &str) -> bool {
        match (reqwest::Url::parse(&self.server), reqwest::Url::parse(url)) {
            (Ok(a), Ok(b)) => a.origin() == b.origin(),
            _ => false,
        }
    }

    fn req(&self, rb: RequestBuilder, url: &str) -> RequestBuilder {
        if !self.same_origin(url) {
            return rb;
        }
        // both spellings: nginx-based proxies drop headers with underscores
        // unless told otherwise, the X-adbs-* ones pass
        let mut rb = rb;
        for (names, value) in [
            (["linux_username", "X-adbs-linux-user"], &self.linux_user),
            (["github_username", "X-adbs-github-user"], &self.github_user),
        ] {
            if let Some(v) = value.as_deref().and_then(header_value) {
                for n in names {
                    rb = rb.header(n, v.clone());
                }
            }
        }
        match &self.token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    fn send(&self, rb: RequestBuilder, url: &str) -> Result<Response> {
        let resp = self
            .req(rb, url)
            .send()
            .map_err(|err| ClientError::Connect {
                url: url.to_owned(),
                err,
            })?;
        Ok(resp)
    }

    /// Sends, and turns an error answer into `ClientError::Server`.
    fn ok(&self, rb: RequestBuilder, url: &str) -> Result<Response> {
        let resp = self.send(rb, url)?;
        if resp.status().is_success() || resp.status().as_u16() == 202 {
            return Ok(resp);
        }
        Err(server_error(resp))
    }

    /// GETs a download, following redirects (to a presigned URL of the
    /// object store) with a plain request: the ETag (blake3) is the
    /// service's, from its own answer; the key goes to the service only.
    fn download(&self, url: &str) -> Result<(Response, Option<String>)> {
        let etag = |r: &Response| {
            r.headers()
                .get("etag")
                .and_then(|v| v.to_str().ok())
                .map(|s| s.trim_matches('"').to_owned())
        };
        let mut resp = self.send(self.http.get(url), url)?;
        let first = etag(&resp);
        for _ in 0..5 {
            if !matches!(resp.status().as_u16(), 301 | 302 | 303 | 307 | 308) {
                break;
            }
            let next = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .and_then(|l| resp.url().join(l).ok())
                .ok_or_else(|| {
                    ClientError::Other(format!("{url}: a redirect without a usable Location"))
                })?;
            resp = self
                .http
                .get(next.clone())
                .send()
                .map_err(|err| ClientError::Connect {
                    url: next.to_string(),
                    err,
                })?;
        }
        if !resp.status().is_success() {
            return Err(server_error(resp));
        }
        let etag = first.or_else(|| etag(&resp));
        Ok((resp, etag))
    }

    fn json<T: DeserializeOwned>(&self, rb: RequestBuilder, url: &str) -> Result<T> {
        let text = self
            .ok(rb, url)?
            .text()
            .map_err(|err| ClientError::Connect {
                url: url.to_owned(),
                err,
            })?;
        serde_json::from_str(&text).map_err(|e| {
            ClientError::Other(format!(
                "unexpected answer from {url} ({e}): {}",
                text.chars().take(300).collect::<String>()
            ))
        })
    }
}

fn server_error(resp: Response) -> ClientError {
    let status = resp.status().as_u16();
    let text = resp.text().unwrap_or_default();
    let message = serde_json::from_str::<ErrorBody>(&text)
        .map(|e| e.error_message)
        .unwrap_or(text);
    ClientError::Server { status, message }
}

fn progress(len: Option<u64>, what: &str) -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = match len {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new_spinner(),
    };
    pb.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    pb.set_message(what.to_owned());
    pb
}

/// `get`: downloads a component (tar.zst), checking blake3 as it streams;
/// writes `out` (default `<component>-<tag>-<arch>.tar.zst`) and/or
/// extracts into `extract` (giving `<extract>/<tag>/...`).
pub fn get(
    r: &Remote,
    component: &str,
    tag: &str,
    arch: &str,
    out: Option<&Path>,
    extract: Option<&Path>,
) -> Result<PathBuf> {
    for (kind, v) in [
        ("component", component),
        ("tag", tag),
        ("architecture", arch),
    ] {
        crate::model::validate_name(kind, v).map_err(|e| ClientError::Other(e.to_string()))?;
    }
    let url = r.url(&format!("/v1/components/{component}/{tag}/{arch}"));
    let (mut resp, etag) = r.download(&url)?;
    let expected =
        etag.ok_or_else(|| ClientError::Other("the answer has no ETag (blake3)".into()))?;
    let dest = match out {
        Some(p) => p.to_owned(),
        // staged inside the target directory: old or minimal containers may have no /tmp
        None if extract.is_some() => {
            let x = extract.unwrap_or(Path::new("."));
            std::fs::create_dir_all(x)?;
            x.join(format!(".{component}-{tag}-{arch}.tar.zst.part"))
        }
        None => PathBuf::from(format!("{component}-{tag}-{arch}.tar.zst")),
    };
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = shared_temp_file(dir)?;
    let pb = progress(resp.content_length(), &format!("{component} {tag}"));
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = resp.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        tmp.write_all(&buf[..n])?;
        pb.inc(n as u64);
    }
    pb.finish_and_clear();
    let actual = hasher.finalize().to_hex().to_string();
    if actual != expected {
        return Err(ClientError::Other(format!(
            "blake3 mismatch: the server said {expected}, the download hashes to {actual}; nothing written"
        )));
    }
    tmp.as_file().sync_all()?;
    tmp.persist(&dest).map_err(|e| e.error)?;
    if let Some(x) = extract {
        let res = extract_into(&dest, x, tag);
        if res.is_err() && out.is_none() {
            let _ = std::fs::remove_file(&dest);
        }
        res?;
        if out.is_none() {
            let _ = std::fs::remove_file(&dest);
            return Ok(x.join(tag));
        }
    }
    Ok(dest)
}

/// Unpacks the `<tag>/` directory of `tarball` into `x` all or nothing:
/// into a temp directory inside `x` first, whose `<tag>/` then replaces
/// `x/<tag>` (whatever else the tarball holds is dropped: it cannot
/// replace other files of `x`). A refused or broken tarball leaves `x` as
/// it was.
fn extract_into(tarball: &Path, x: &Path, tag: &str) -> Result<()> {
    std::fs::create_dir_all(x)?;
    let stage = tempfile::Builder::new().prefix(".extract-").tempdir_in(x)?;
    let tar =
        unpack::open_tar(File::open(tarball)?).map_err(|e| ClientError::Other(e.to_string()))?;
    unpack::unpack_safe(tar, stage.path(), unpack::Limits::NONE)
        .map_err(|e| ClientError::Other(e.to_string()))?;
    match crate::store::beneath::lstat_direct(stage.path(), Path::new(tag)) {
        Ok(Some(m)) if m.is_dir() => {}
        _ => {
            return Err(ClientError::Other(format!(
                "the tarball holds no {tag}/ directory; nothing extracted"
            )))
        }
    }
    let dest = x.join(tag);
    match std::fs::symlink_metadata(&dest) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(&dest)?,
        Ok(_) => std::fs::remove_file(&dest)?,
        Err(_) => {}
    }
    std::fs::rename(stage.path().join(tag), &dest)?;
    Ok(())
}

/// `put`: uploads a tarball (tar.zst, tar.gz or tar) with its blake3 as
/// `X-Checksum-Blake3`. `wrap`: store a tarball whose only top directory
/// is named like another tag under `<tag>/` anyway (else the service
/// refuses it).
pub fn put(
    r: &Remote,
    component: &str,
    tag: &str,
    arch: &str,
    file: &Path,
    wrap: bool,
) -> Result<ComponentAnswer> {
    let query = if wrap { "?wrap=true" } else { "" };
    let url = r.url(&format!("/v1/components/{component}/{tag}/{arch}{query}"));
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(File::open(file)?)?;
    let f = File::open(file)?;
    let len = f.metadata()?.len();
    let pb = progress(Some(len), &format!("{component} {tag}"));
    let body = reqwest::blocking::Body::sized(pb.wrap_read(f), len);
    let rb = r
        .http
        .put(&url)
        .header("X-Checksum-Blake3", hasher.finalize().to_hex().as_str())
        .body(body);
    let v = r.json(rb, &url);
    pb.finish_and_clear();
    v
}

/// `check`: which of `items` (component, tag) are missing for `arch`.
pub fn check(r: &Remote, items: &[(String, String)], arch: &str) -> Result<Vec<ComponentKey>> {
    let url = r.url("/v1/components/missing");
    let body = MissingRequest::Object {
        components: items
            .iter()
            .map(|(c, t)| WantedItem {
                component: c.clone(),
                tag: t.clone(),
                arch: Some(arch.to_owned()),
                inputs: None,
            })
            .collect(),
    };
    let v: MissingAnswer = r.json(r.http.post(&url).json(&body), &url)?;
    Ok(v.missing)
}

/// Streams a job's log to `out` until the job ends; returns the final job.
pub fn follow(r: &Remote, job: &str, out: &mut dyn Write) -> Result<Job> {
    let url = r.url(&format!("/v1/jobs/{job}/log?follow=true"));
    let mut resp = r.ok(r.http.get(&url), &url)?;
    io::copy(&mut resp, out)?;
    Ok(job_of(r, job)?.job)
}

/// `build`: starts a build and follows its log; `Ok(true)` on success.
pub fn build(
    r: &Remote,
    component: &str,
    tag: &str,
    arch: &str,
    repo: Option<&str>,
    out: &mut dyn Write,
) -> Result<bool> {
    let url = r.url("/v1/builds");
    let body = BuildRequest {
        component: component.to_owned(),
        tag: tag.to_owned(),
        arch: Some(arch.to_owned()),
        url: repo.map(str::to_owned),
    };
    let id = match r.json(r.http.post(&url).json(&body), &url)? {
        BuildOutcome::Done(d) if d.cached == Some(true) => {
            writeln!(out, "{component} {tag} ({arch}) is already stored")?;
            return Ok(true);
        }
        BuildOutcome::Done(d) => d
            .job
            .ok_or_else(|| ClientError::Other("the answer names no job".into()))?,
        BuildOutcome::Accepted(a) => a.job,
    };
    writeln!(out, "job {id}")?;
    let job = follow(r, &id, out)?;
    Ok(job.state == JobState::Success)
}

/// What `image build` sends.
pub struct ImageBuild<'a> {
    pub component: &'a str,
    pub branch: &'a str,
    pub arch: &'a str,
    pub dockerfile: &'a Path,
    /// A directory (tarred here) or a tarball.
    pub context: Option<&'a Path>,
    pub no_cache: bool,
}

/// `image build`: uploads a Dockerfile (and a context directory or tarball).
pub fn image_build(r: &Remote, b: &ImageBuild<'_>, out: &mut dyn Write) -> Result<bool> {
    let ImageBuild {
        component,
        branch,
        arch,
        dockerfile,
        context,
        no_cache,
    } = *b;
    let mut form = multipart::Form::new()
        .text("component", component.to_owned())
        .text("branch", branch.to_owned())
        .text("arch", arch.to_owned())
        .file("dockerfile", dockerfile)?;
    let _ctx_tmp;
    if let Some(c) = context {
        let path = if c.is_dir() {
            // $TMPDIR, or the working directory where a minimal container has none
            let t =
                tempfile::NamedTempFile::new().or_else(|_| tempfile::NamedTempFile::new_in("."))?;
            let mut b = tar::Builder::new(t.reopen()?);
            b.follow_symlinks(false);
            b.append_dir_all(".", c)?;
            b.finish()?;
            let p = t.path().to_owned();
            _ctx_tmp = t;
            p
        } else {
            c.to_owned()
        };
        form = form.file("context", path)?;
    }
    let url = r.url(&format!("/v1/images?no_cache={no_cache}"));
    let id = match r.json(r.http.post(&url).multipart(form), &url)? {
        ImageOutcome::Done(a) if a.cached == Some(true) => {
            writeln!(out, "unchanged: {}", pull_line(&a))?;
            return Ok(true);
        }
        ImageOutcome::Done(a) => a
            .job
            .ok_or_else(|| ClientError::Other("the answer names no job".into()))?,
        ImageOutcome::Accepted(a) => a.job,
    };
    writeln!(out, "job {id}")?;
    let job = follow(r, &id, out)?;
    if job.state == JobState::Success {
        let img = image_get(r, component, branch, arch)?;
        writeln!(out, "{}", pull_line(&img))?;
        return Ok(true);
    }
    Ok(false)
}

/// What to pull: the pull command, or the image name when it is local.
fn pull_line(a: &ImageAnswer) -> &str {
    a.image
        .pull_command
        .as_deref()
        .unwrap_or(&a.image.image_name)
}

pub fn image_get(r: &Remote, component: &str, branch: &str, arch: &str) -> Result<ImageAnswer> {
    let url = r.url(&format!("/v1/images/{component}/{branch}/{arch}"));
    r.json(r.http.get(&url), &url)
}

/// `jobs`: the recent jobs.
pub fn jobs(r: &Remote) -> Result<JobList> {
    let url = r.url("/v1/jobs?limit=20");
    r.json(r.http.get(&url), &url)
}

/// `jobs ID`: one job.
pub fn job_of(r: &Remote, id: &str) -> Result<JobAnswer> {
    let url = r.url(&format!("/v1/jobs/{id}"));
    r.json(r.http.get(&url), &url)
}

/// `gc`: a garbage collection pass run by the server.
pub fn gc(r: &Remote) -> Result<GcAnswer> {
    let url = r.url("/v1/admin/gc");
    r.json(r.http.post(&url), &url)
}

/// `verify`: re-hash every blob on the server.
pub fn verify(r: &Remote) -> Result<VerifyAnswer> {
    let url = r.url("/v1/admin/verify");
    r.json(r.http.post(&url), &url)
}
