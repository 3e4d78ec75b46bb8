//! Repository URLs: which are allowed, mirror rewrites (like git's
//! `url.<base>.insteadOf`), and submodule URLs relative to their parent.

use std::collections::BTreeMap;

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
}
