//! Checking what a worker says it pushed: the registry is asked for the
//! manifest of the spec's immutable tag, and the digest it names must be
//! the one reported. The service records only what the registry holds.

use std::time::Duration;

use super::ImageSpec;

/// The manifest types a pushed image may have (all accepted, so the
/// registry answers with the manifest as stored, not a converted one).
const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json";

/// `sha256:` and 64 lower-case hex characters.
pub fn is_digest(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Why a report is not taken.
#[derive(Debug)]
pub enum Refusal {
    /// The registry does not hold what the worker reported (or cannot be
    /// read with what the service has): final.
    Wrong(String),
    /// The registry could not be asked now: the worker may report again.
    Unavailable(String),
}

/// `Ok` when the registry names `digest` for the spec's immutable tag (the
/// tag of this build's content alone: the moving tag may still name the
/// previous build). A registry that wants credentials is asked with an
/// anonymous token when it hands one out (the Docker token flow); one that
/// wants more refuses the report: the service cannot check it
/// (`image.verify_push = false` takes reports unchecked).
pub async fn pushed(spec: &ImageSpec, digest: &str) -> Result<(), Refusal> {
    let registry = spec
        .registry
        .as_deref()
        .map(|r| r.trim_end_matches('/'))
        .ok_or_else(|| Refusal::Wrong("no registry is configured (image.registry)".into()))?;
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(!spec.tls_verify)
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| Refusal::Unavailable(e.to_string()))?;
    let name = &spec.immutable;
    let (repo, tag) = split(name, registry).map_err(Refusal::Wrong)?;
    match manifest_digest(&client, registry, spec.tls_verify, repo, tag).await? {
        Some(d) if d == digest => Ok(()),
        Some(d) => Err(Refusal::Wrong(format!(
            "the worker reported {digest}, but the registry names {d} for {name}: nothing was indexed"
        ))),
        None => Err(Refusal::Wrong(format!(
            "the worker reported {digest}, but {name} is not in the registry: nothing was indexed"
        ))),
    }
}

/// `(repository, tag)` of `<registry>/<repository>:<tag>`.
fn split<'a>(name: &'a str, registry: &str) -> Result<(&'a str, &'a str), String> {
    name.strip_prefix(registry)
        .and_then(|r| r.strip_prefix('/'))
        .and_then(|r| r.rsplit_once(':'))
        .ok_or_else(|| format!("{name} is not an image of {registry}"))
}

/// The digest the registry names for `repo:tag` (`None`: no such
/// manifest).
async fn manifest_digest(
    client: &reqwest::Client,
    registry: &str,
    tls_verify: bool,
    repo: &str,
    tag: &str,
) -> Result<Option<String>, Refusal> {
    // a registry without TLS is plain HTTP (as podman's --tls-verify=false)
    let schemes: &[&str] = if tls_verify {
        &["https"]
    } else {
        &["https", "http"]
    };
    let mut last = String::new();
    for scheme in schemes {
        let url = format!("{scheme}://{registry}/v2/{repo}/manifests/{tag}");
        let head = |bearer: Option<String>| {
            let mut rb = client.head(&url).header("accept", ACCEPT);
            if let Some(t) = bearer {
                rb = rb.bearer_auth(t);
            }
            rb.send()
        };
        let mut r = match head(None).await {
            Ok(r) => r,
            Err(e) => {
                last = format!("cannot ask the registry ({url}): {e}");
                continue;
            }
        };
        if r.status() == 401 {
            let challenge = r
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let token = anonymous_token(client, &challenge, repo)
                .await
                .map_err(|why| {
                    Refusal::Wrong(format!(
                        "the registry wants credentials to read {repo} ({why}), which the \
                         service does not have: the push cannot be checked. Let the registry \
                         hand out anonymous pull tokens, or set image.verify_push = false to \
                         take workers' reports unchecked"
                    ))
                })?;
            r = head(Some(token)).await.map_err(|e| {
                Refusal::Unavailable(format!("cannot ask the registry ({url}): {e}"))
            })?;
        }
        let status = r.status().as_u16();
        return match status {
            200 => r
                .headers()
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
                .map(|d| Some(d.to_owned()))
                .ok_or_else(|| Refusal::Wrong(format!("the registry names no digest for {url}"))),
            404 => Ok(None),
            401 | 403 => Err(Refusal::Wrong(format!(
                "the registry refuses the service's anonymous token for {repo} ({status}): \
                 the push cannot be checked (image.verify_push = false takes reports unchecked)"
            ))),
            other => Err(Refusal::Unavailable(format!(
                "the registry answered {other} for {url}"
            ))),
        };
    }
    Err(Refusal::Unavailable(last))
}

/// A pull token for `repo` from the realm of a `Bearer` challenge, asked
/// for without credentials.
async fn anonymous_token(
    client: &reqwest::Client,
    challenge: &str,
    repo: &str,
) -> Result<String, String> {
    let params = challenge
        .strip_prefix("Bearer ")
        .map(parse_challenge)
        .ok_or_else(|| {
            if challenge.is_empty() {
                "it answers 401".to_owned()
            } else {
                format!("it asks for {challenge}")
            }
        })?;
    let realm = params
        .iter()
        .find(|(k, _)| k == "realm")
        .map(|(_, v)| v.clone())
        .ok_or("its challenge names no realm")?;
    let mut url = url::Url::parse(&realm).map_err(|e| format!("realm {realm}: {e}"))?;
    {
        let mut q = url.query_pairs_mut();
        if let Some((_, service)) = params.iter().find(|(k, _)| k == "service") {
            q.append_pair("service", service);
        }
        q.append_pair("scope", &format!("repository:{repo}:pull"));
    }
    let r = client
        .get(url.clone())
        .send()
        .await
        .map_err(|e| format!("its token service {url}: {e}"))?;
    if !r.status().is_success() {
        return Err(format!(
            "its token service answers {} without credentials",
            r.status()
        ));
    }
    let v: serde_json::Value = r
        .json()
        .await
        .map_err(|e| format!("its token service's answer: {e}"))?;
    v.get("token")
        .or_else(|| v.get("access_token"))
        .and_then(|t| t.as_str())
        .map(str::to_owned)
        .ok_or_else(|| "its token service sent no token".to_owned())
}

/// `k="v",k2="v2"` pairs of a challenge.
fn parse_challenge(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while let Some((k, after)) = rest.split_once('=') {
        let k = k.trim().trim_start_matches(',').trim().to_owned();
        let (v, next) = match after.strip_prefix('"') {
            Some(q) => match q.split_once('"') {
                Some((v, n)) => (v.to_owned(), n),
                None => (q.to_owned(), ""),
            },
            None => match after.split_once(',') {
                Some((v, n)) => (v.trim().to_owned(), n),
                None => (after.trim().to_owned(), ""),
            },
        };
        out.push((k, v));
        rest = next.trim_start_matches(',').trim();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_and_names() {
        let d = format!("sha256:{}", "ab".repeat(32));
        assert!(is_digest(&d));
        assert!(!is_digest(&d.to_uppercase()));
        assert!(!is_digest("sha256:abc"));
        assert!(!is_digest(&format!("sha512:{}", "ab".repeat(32))));
        assert_eq!(
            split("127.0.0.1:5000/x-main-image:rocky9-0123", "127.0.0.1:5000"),
            Ok(("x-main-image", "rocky9-0123"))
        );
        assert!(split("other:5000/x:rocky9", "127.0.0.1:5000").is_err());
    }

    #[test]
    fn challenges() {
        let c = parse_challenge(
            r#"realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(
            c,
            vec![
                ("realm".into(), "https://auth.example/token".into()),
                ("service".into(), "registry.example".into()),
                ("scope".into(), "repository:a/b:pull,push".into()),
            ]
        );
        assert_eq!(
            parse_challenge("realm=x, service=y"),
            vec![("realm".into(), "x".into()), ("service".into(), "y".into())]
        );
    }
}
