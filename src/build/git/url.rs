//! Repository URLs: which are allowed, mirror rewrites (like git's
//! `url.<base>.insteadOf`), submodule URLs relative to their parent, and
//! which hosts a submodule may send the service to.

use std::collections::BTreeMap;
use std::net::{IpAddr, ToSocketAddrs};

/// Refuses URL schemes we do not clone (local ones unless allowed).
pub fn check_url(url: &str, allow_local: bool) -> Result<(), String> {
    let lower = url.to_ascii_lowercase();
    let remote = ["https://", "http://", "ssh://", "git://"]
        .iter()
        .any(|p| lower.starts_with(p))
        || (url.contains('@') && url.contains(':') && !url.contains("://") && !url.contains("::")); // git@host:org/repo
    if remote {
        return Ok(());
    }
    let local = lower.starts_with("file://") || url.starts_with('/') || url.starts_with('.');
    if local {
        return if allow_local {
            Ok(())
        } else {
            Err(format!(
                "local repository URLs ({url}) are not allowed (set build.allow_local_urls)"
            ))
        };
    }
    Err(format!(
        "unsupported repository URL '{url}' (https, ssh, git:// or, where allowed, file://)"
    ))
}

/// `url` with the longest matching prefix of `rules` replaced (as git's
/// `insteadOf`); `None` when no rule applies.
pub fn rewrite(url: &str, rules: &BTreeMap<String, String>) -> Option<String> {
    rules
        .iter()
        .filter(|(from, _)| !from.is_empty() && url.starts_with(from.as_str()))
        .max_by_key(|(from, _)| from.len())
        .map(|(from, to)| format!("{to}{}", &url[from.len()..]))
}

/// A submodule URL as `.gitmodules` writes it, resolved against the parent
/// repository's URL when relative, as git does: the parent's URL is the
/// directory `./` starts from, each `../` drops one component of it.
pub fn resolve_relative(parent: &str, url: &str) -> String {
    if !(url.starts_with("./") || url.starts_with("../")) {
        return url.to_owned();
    }
    // the parent's path part: after "scheme://host" or "user@host:"
    let split = if let Some(i) = parent.find("://") {
        parent[i + 3..]
            .find('/')
            .map_or(parent.len(), |j| i + 3 + j)
    } else if let Some(i) = parent.find(':') {
        i + 1
    } else {
        0
    };
    let (base, path) = parent.split_at(split);
    let mut parts: Vec<&str> = path
        .trim_end_matches('/')
        .split('/')
        .filter(|p| !p.is_empty())
        .collect();
    let mut rest = url;
    loop {
        if let Some(r) = rest.strip_prefix("./") {
            rest = r;
        } else if let Some(r) = rest.strip_prefix("../") {
            parts.pop();
            rest = r;
        } else {
            break;
        }
    }
    let lead = if path.starts_with('/') { "/" } else { "" };
    let joined = parts
        .iter()
        .copied()
        .chain(std::iter::once(rest))
        .collect::<Vec<_>>()
        .join("/");
    format!("{base}{lead}{joined}")
}

/// Where a remote URL points: its scheme, host (lower case, an IPv6
/// address without brackets) and port (the scheme's default when absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The authority of a remote URL (`scheme://[user@]host[:port]/...` or
/// scp-style `user@host:path`); `None` for local or unreadable URLs.
pub fn authority(url: &str) -> Option<Authority> {
    let (scheme, hostport) = match url.find("://") {
        Some(i) => {
            let rest = &url[i + 3..];
            let auth = rest.split(['/', '?', '#']).next().unwrap_or_default();
            let hostport = auth.rsplit_once('@').map_or(auth, |(_, h)| h);
            (url[..i].to_ascii_lowercase(), hostport)
        }
        None if url.contains('@') && url.contains(':') && !url.contains("::") => {
            let before = url.split_once(':').map(|(h, _)| h)?;
            if before.contains('/') {
                return None;
            }
            let host = before.rsplit_once('@').map_or(before, |(_, h)| h);
            return Some(Authority {
                scheme: "ssh".into(),
                host: host.trim_matches(['[', ']']).to_ascii_lowercase(),
                port: 22,
            })
            .filter(|a| !a.host.is_empty());
        }
        None => return None,
    };
    let default = match scheme.as_str() {
        "https" => 443,
        "http" => 80,
        "ssh" => 22,
        "git" => 9418,
        _ => return None,
    };
    let (host, port) = if let Some(r) = hostport.strip_prefix('[') {
        let (h, after) = r.split_once(']')?;
        match after.strip_prefix(':') {
            Some("") => (h, default),
            Some(p) => (h, p.parse().ok()?),
            None if after.is_empty() => (h, default),
            None => return None,
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, "")) => (h, default),
            Some((h, p)) => (h, p.parse().ok()?),
            None => (hostport, default),
        }
    };
    if host.is_empty() {
        return None;
    }
    Some(Authority {
        scheme,
        host: host.to_ascii_lowercase(),
        port,
    })
}

/// `url` for comparisons and keys: scheme and authority in lower case, no
/// trailing slash.
pub fn canonical(url: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    match url.find("://") {
        Some(i) => {
            let rest = &url[i + 3..];
            let end = rest.find('/').unwrap_or(rest.len());
            format!(
                "{}://{}{}",
                url[..i].to_ascii_lowercase(),
                rest[..end].to_ascii_lowercase(),
                &rest[end..]
            )
        }
        None => url.to_owned(),
    }
}

/// Loopback, private, link-local, shared (CGNAT) and unspecified
/// addresses: the inside of a network.
fn internal_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            a.is_loopback()
                || a.is_private()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_broadcast()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
        }
        IpAddr::V6(a) => {
            let first = a.segments()[0];
            a.is_loopback()
                || a.is_unspecified()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || a.to_ipv4_mapped()
                    .is_some_and(|v4| internal_ip(IpAddr::V4(v4)))
        }
    }
}

/// Whether `a` is, or resolves to, an internal address (see [`internal_ip`]).
fn is_internal(a: &Authority) -> bool {
    if a.host == "localhost" || a.host.ends_with(".localhost") {
        return true;
    }
    if let Ok(ip) = a.host.parse::<IpAddr>() {
        return internal_ip(ip);
    }
    match (a.host.as_str(), a.port).to_socket_addrs() {
        Ok(addrs) => addrs.into_iter().any(|s| internal_ip(s.ip())),
        Err(_) => false,
    }
}

/// How an `allowed_hosts` entry admits `a`: by name, or (`*`) as any host
/// on a public address.
#[derive(PartialEq, Eq)]
enum Admits {
    No,
    Named,
    Public,
}

fn admits(pattern: &str, a: &Authority) -> Admits {
    let p = pattern.trim().to_ascii_lowercase();
    if p == "*" {
        return Admits::Public;
    }
    if let Some(suffix) = p.strip_prefix("*.") {
        return if a.host.ends_with(&format!(".{suffix}")) {
            Admits::Named
        } else {
            Admits::No
        };
    }
    let (host, port) = if let Some(r) = p.strip_prefix('[') {
        match r.split_once(']') {
            Some((h, after)) => (h.to_owned(), after.strip_prefix(':').map(str::to_owned)),
            None => (p.clone(), None),
        }
    } else if p.matches(':').count() == 1 {
        let (h, port) = p.split_once(':').unwrap_or((&p, ""));
        (h.to_owned(), Some(port.to_owned()))
    } else {
        (p.clone(), None)
    };
    let port_ok = port.is_none_or(|x| x.parse::<u16>().ok() == Some(a.port));
    if host == a.host && port_ok {
        Admits::Named
    } else {
        Admits::No
    }
}

/// The outbound policy for a submodule at `url` (as written, made absolute
/// against its parent) whose parent repository is at `parent` (as
/// written): allowed when a rewrite sends it to a configured mirror, when
/// it is on the parent's host and port, or when `allowed` names its host
/// (`*` admits public addresses only). Local URLs are for [`check_url`].
pub fn check_submodule_host(
    url: &str,
    parent: &str,
    allowed: &[String],
    rewrites: &BTreeMap<String, String>,
) -> Result<(), String> {
    if rewrite(url, rewrites).is_some() {
        return Ok(());
    }
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("file://") || url.starts_with('/') || url.starts_with('.') {
        return Ok(());
    }
    let Some(a) = authority(url) else {
        return Err(format!("cannot tell which host {url} names"));
    };
    let p = authority(parent);
    if p.as_ref()
        .is_some_and(|p| p.host == a.host && p.port == a.port)
    {
        return Ok(());
    }
    let verdicts: Vec<Admits> = allowed.iter().map(|pat| admits(pat, &a)).collect();
    if verdicts.contains(&Admits::Named) {
        return Ok(());
    }
    if verdicts.contains(&Admits::Public) && !is_internal(&a) {
        return Ok(());
    }
    Err(format!(
        "{url} is on {a}, not on its parent's host{}; a submodule may use its parent's host and port, \
         a host in build.git.allowed_hosts, or a URL that build.git.rewrites sends to a mirror",
        p.map(|p| format!(" ({p})")).unwrap_or_default()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(check_url("https://github.com/a/b", false).is_ok());
        assert!(check_url("git://127.0.0.1:9418/x", false).is_ok());
        assert!(check_url("git@github.com:a/b.git", false).is_ok());
        assert!(check_url("file:///srv/x", false).is_err());
        assert!(check_url("/srv/x", false).is_err());
        assert!(check_url("file:///srv/x", true).is_ok());
        assert!(check_url("ftp://x", true).is_err());
        assert!(check_url("ext::sh -c touch% /tmp/pwned", true).is_err());
        assert!(check_url("ext::git@x:y", true).is_err());
    }

    #[test]
    fn rewrites_longest_prefix_wins() {
        let rules: BTreeMap<String, String> = [
            (
                "https://github.com/".to_owned(),
                "https://mirror/gh/".to_owned(),
            ),
            (
                "https://github.com/epics-base/".to_owned(),
                "https://mirror/epics/".to_owned(),
            ),
        ]
        .into();
        assert_eq!(
            rewrite("https://github.com/epics-base/pvDataCPP", &rules).as_deref(),
            Some("https://mirror/epics/pvDataCPP")
        );
        assert_eq!(
            rewrite("https://github.com/other/x.git", &rules).as_deref(),
            Some("https://mirror/gh/other/x.git")
        );
        assert_eq!(rewrite("git://elsewhere/x", &rules), None);
    }

    #[test]
    fn relative_submodule_urls() {
        let p = "https://github.com/epics-base/epics-base.git";
        assert_eq!(
            resolve_relative(p, "../pvDataCPP.git"),
            "https://github.com/epics-base/pvDataCPP.git"
        );
        assert_eq!(
            resolve_relative(p, "../../other/x"),
            "https://github.com/other/x"
        );
        // as git: the parent's URL is the directory `./` starts from
        assert_eq!(
            resolve_relative(p, "./sub"),
            "https://github.com/epics-base/epics-base.git/sub"
        );
        assert_eq!(
            resolve_relative("git://h:9418/parent", "../sub1"),
            "git://h:9418/sub1"
        );
        assert_eq!(
            resolve_relative("git@host:org/repo.git", "../x.git"),
            "git@host:org/x.git"
        );
        assert_eq!(resolve_relative(p, "https://abs/x"), "https://abs/x");
    }

    #[test]
    fn authorities() {
        let a = |u: &str| authority(u).map(|a| a.to_string());
        assert_eq!(
            a("https://github.com/a/b").as_deref(),
            Some("github.com:443")
        );
        assert_eq!(
            a("git://127.0.0.1:9418/x").as_deref(),
            Some("127.0.0.1:9418")
        );
        assert_eq!(
            a("http://u:p@Host.Example:81/x").as_deref(),
            Some("host.example:81")
        );
        assert_eq!(
            a("git@github.com:a/b.git").as_deref(),
            Some("github.com:22")
        );
        assert_eq!(a("ssh://[::1]:2222/x").as_deref(), Some("[::1]:2222"));
        assert_eq!(a("file:///srv/x"), None);
        assert_eq!(a("/srv/x"), None);
        assert_eq!(canonical("GIT://Host:9418/Repo/"), "git://host:9418/Repo");
    }

    #[test]
    fn submodule_hosts() {
        let none = BTreeMap::new();
        let parent = "git://127.0.0.1:19418/ssrf";
        let ok = |u: &str, allowed: &[&str]| {
            let allowed: Vec<String> = allowed.iter().map(|s| s.to_string()).collect();
            check_submodule_host(u, parent, &allowed, &none).is_ok()
        };
        assert!(ok("git://127.0.0.1:19418/other", &[]));
        // another port of the same host: a port scan
        assert!(!ok("http://127.0.0.1:18081/metrics", &[]));
        assert!(!ok("http://127.0.0.1:1/", &[]));
        assert!(!ok("ssh://127.0.0.1:22/x", &[]));
        assert!(!ok("https://github.com/x", &[]));
        assert!(ok("https://github.com/x", &["github.com"]));
        assert!(ok("https://github.com/x", &["github.com:443"]));
        assert!(!ok("https://github.com/x", &["github.com:22"]));
        assert!(ok("https://a.example.org/x", &["*.example.org"]));
        // `*` is public addresses only; internal ones must be named
        assert!(!ok("http://10.1.2.3/x", &["*"]));
        assert!(!ok("http://169.254.169.254/latest", &["*"]));
        assert!(!ok("http://localhost:8080/x", &["*"]));
        assert!(!ok("http://[::1]:8080/x", &["*"]));
        assert!(ok("http://10.1.2.3/x", &["*", "10.1.2.3"]));
        assert!(ok("http://8.8.8.8/x", &["*"]));
        // a rewrite sends it to the operator's mirror
        let rules: BTreeMap<String, String> = [(
            "https://github.com/".to_owned(),
            "git://127.0.0.1:1/".to_owned(),
        )]
        .into();
        assert!(check_submodule_host("https://github.com/x", parent, &[], &rules).is_ok());
    }
}
