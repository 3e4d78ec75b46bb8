//! Checking what a worker says it pushed: the registry is asked for the
//! manifest of the spec's immutable tag (then the moving one), and the
//! digest it names must be the one reported. The service records only
//! what the registry holds.

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

/// `Ok` when the registry names `digest` for the spec's immutable or
/// moving tag. A registry that wants credentials the service does not
/// have cannot be asked: that is logged, and the report is taken.
pub async fn pushed(spec: &ImageSpec, digest: &str) -> Result<(), String> {
    let registry = spec
        .registry
        .as_deref()
        .map(|r| r.trim_end_matches('/'))
        .ok_or("no registry is configured (image.registry)")?;
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(!spec.tls_verify)
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())?;
    let mut named = Vec::new();
    for name in [&spec.immutable, &spec.image] {
        let (repo, tag) = split(name, registry)?;
        match manifest_digest(&client, registry, spec.tls_verify, repo, tag).await? {
            Answer::Digest(d) if d == digest => return Ok(()),
            Answer::Digest(d) => named.push(format!("{name} is {d}")),
            Answer::Missing => named.push(format!("{name} is not in the registry")),
            Answer::NoCredentials(status) => {
                tracing::warn!(
                    image = %name,
                    "the registry answers {status} without credentials: the digest {digest} the worker reported is taken unchecked"
                );
                return Ok(());
            }
        }
    }
    Err(format!(
        "the worker reported {digest}, but {}: nothing was indexed",
        named.join(", and ")
    ))
}

enum Answer {
    Digest(String),
    Missing,
    NoCredentials(u16),
}

/// `(repository, tag)` of `<registry>/<repository>:<tag>`.
fn split<'a>(name: &'a str, registry: &str) -> Result<(&'a str, &'a str), String> {
    name.strip_prefix(registry)
        .and_then(|r| r.strip_prefix('/'))
        .and_then(|r| r.rsplit_once(':'))
        .ok_or_else(|| format!("{name} is not an image of {registry}"))
}

async fn manifest_digest(
    client: &reqwest::Client,
    registry: &str,
    tls_verify: bool,
    repo: &str,
    tag: &str,
) -> Result<Answer, String> {
    // a registry without TLS is plain HTTP (as podman's --tls-verify=false)
    let schemes: &[&str] = if tls_verify {
        &["https"]
    } else {
        &["https", "http"]
    };
    let mut last = String::new();
    for scheme in schemes {
        let url = format!("{scheme}://{registry}/v2/{repo}/manifests/{tag}");
        let r = match client.head(&url).header("accept", ACCEPT).send().await {
            Ok(r) => r,
            Err(e) => {
                last = format!("cannot ask the registry ({url}): {e}");
                continue;
            }
        };
        let status = r.status().as_u16();
        return Ok(match status {
            200 => {
                let d = r
                    .headers()
                    .get("docker-content-digest")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
                    .ok_or_else(|| format!("the registry names no digest for {url}"))?;
                Answer::Digest(d)
            }
            404 => Answer::Missing,
            401 | 403 => Answer::NoCredentials(status),
            other => return Err(format!("the registry answered {other} for {url}")),
        });
    }
    Err(last)
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
}
