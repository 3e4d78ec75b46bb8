//! A key's scope: patterns of the component names it may write (uploads,
//! builds, images, deletes). A pattern is a component name in which `*`
//! stands for any run of characters (`asyn*`, `*-ioc`, `motor`); no
//! pattern at all means every component.

use crate::model::MAX_NAME_LEN;

/// The most patterns one key may have.
pub const MAX_PATTERNS: usize = 64;

/// The component names a key may write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope(Vec<String>);

impl Scope {
    /// Every component.
    pub fn all() -> Self {
        Scope(Vec::new())
    }

    /// Patterns as a request gives them (`components`), checked: each a
    /// component name with `*` where any run of characters may stand.
    pub fn parse(patterns: &[String]) -> Result<Scope, String> {
        if patterns.is_empty() {
            return Err(
                "components: give at least one pattern, or leave 'components' out \
                        for a key that may write every component"
                    .into(),
            );
        }
        if patterns.len() > MAX_PATTERNS {
            return Err(format!(
                "components: at most {MAX_PATTERNS} patterns (there are {})",
                patterns.len()
            ));
        }
        let mut out: Vec<String> = Vec::with_capacity(patterns.len());
        for p in patterns {
            check_pattern(p)?;
            if !out.contains(p) {
                out.push(p.clone());
            }
        }
        Ok(Scope(out))
    }

    /// Patterns as the index keeps them (checked when they were stored).
    pub fn from_stored(patterns: Vec<String>) -> Self {
        Scope(patterns)
    }

    pub fn is_all(&self) -> bool {
        self.0.is_empty()
    }

    pub fn patterns(&self) -> &[String] {
        &self.0
    }

    /// Whether the component `name` is in the scope.
    pub fn allows(&self, name: &str) -> bool {
        self.0.is_empty() || self.0.iter().any(|p| glob(p.as_bytes(), name.as_bytes()))
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return f.write_str("*");
        }
        f.write_str(&self.0.join(", "))
    }
}

/// A pattern: the characters of names and `*`, not empty, not longer than
/// a name, and (with `*` read as a letter) no `..`, `.` or leading `-`.
fn check_pattern(p: &str) -> Result<(), String> {
    let shown: String = p.chars().take(80).collect();
    if p.is_empty() {
        return Err("components: a pattern is empty".into());
    }
    if p.len() > MAX_NAME_LEN {
        return Err(format!(
            "components: the pattern '{shown}' is longer than {MAX_NAME_LEN} characters"
        ));
    }
    let chars_ok = p
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-' | b'*'));
    if !chars_ok || p.contains("..") || p == "." || p.starts_with('-') {
        return Err(format!(
            "components: '{shown}' is not a pattern of component names: letters, digits and \
             . _ + - (no '..'), with * for any run of characters"
        ));
    }
    Ok(())
}

/// `*`-only wildcard matching (greedy with one backtrack point: linear in
/// practice, at most |pattern| x |name| steps).
fn glob(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|b| *b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(p: &[&str]) -> Scope {
        Scope::parse(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn patterns_match_names() {
        let s = scope(&["asyn*", "motor", "*-ioc", "a*b*c"]);
        for yes in [
            "asyn",
            "asynDriver",
            "motor",
            "x-ioc",
            "-ioc",
            "abc",
            "aXbYc",
            "abbc",
        ] {
            assert!(s.allows(yes), "{yes}");
        }
        for no in ["motors", "Motor", "asy", "ioc", "x-iocs", "acb", "xasyn"] {
            assert!(!s.allows(no), "{no}");
        }
        assert!(Scope::all().allows("anything"));
        assert!(scope(&["*"]).allows("anything"));
        assert!(scope(&["**"]).allows(""));
        assert_eq!(scope(&["a", "a", "b"]).patterns(), ["a", "b"]);
        assert_eq!(scope(&["a*", "b"]).to_string(), "a*, b");
    }

    #[test]
    fn bad_patterns_are_refused() {
        let bad = |p: &str| Scope::parse(&[p.to_owned()]).unwrap_err();
        for p in ["", "as yn", "../x", "a/b", "-x", ".", "é*", "a?"] {
            let e = bad(p);
            assert!(e.starts_with("components:"), "{p}: {e}");
        }
        assert!(bad(&"a".repeat(MAX_NAME_LEN + 1)).contains("longer"));
        assert!(Scope::parse(&[]).is_err());
        let many: Vec<String> = (0..=MAX_PATTERNS).map(|i| format!("c{i}")).collect();
        assert!(Scope::parse(&many).is_err());
    }

    #[test]
    fn matching_is_not_exponential() {
        let p = format!("{}b", "*a".repeat(30));
        let name = "a".repeat(MAX_NAME_LEN);
        let t = std::time::Instant::now();
        assert!(!glob(p.as_bytes(), name.as_bytes()));
        assert!(t.elapsed() < std::time::Duration::from_millis(100));
    }
}
