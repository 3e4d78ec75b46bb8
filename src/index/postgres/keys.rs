//! Keys in PostgreSQL: text cannot hold NUL, and the prefix of a key as the
//! embedded index stores it (`a\0b\0c`) as a range of tuples.

use super::{IndexError, Result};
use crate::model::{ComponentKey, ImageKey};

/// PostgreSQL cannot store a NUL character in text.
pub(super) fn nul_free(parts: &[&str]) -> bool {
    parts.iter().all(|p| !p.contains('\0'))
}

pub(super) fn key_nul_free(k: &ComponentKey) -> bool {
    nul_free(&[&k.component, &k.tag, &k.arch])
}

pub(super) fn no_nul(what: &str, parts: &[&str]) -> Result<()> {
    if nul_free(parts) {
        Ok(())
    } else {
        Err(IndexError::Db(format!(
            "{what}: a name holds a NUL character, which the database cannot store"
        )))
    }
}

/// The next string in code point (= UTF-8 byte) order after every string
/// that starts with `s`; `None` when there is none (empty, or only the
/// last code point).
pub(super) fn successor(s: &str) -> Option<String> {
    let mut chars: Vec<char> = s.chars().collect();
    while let Some(c) = chars.pop() {
        let next = match c as u32 {
            0xD7FF => Some('\u{E000}'),
            n => char::from_u32(n + 1),
        };
        if let Some(n) = next {
            chars.push(n);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// Keys `(a, b, c)` held by the embedded index as the bytes `a\0b\0c`: the
/// keys whose bytes start with `prefix`, as a range `[lower, upper)` of
/// tuples (bytewise order; no upper bound: to the end). `None`: no key can
/// match.
pub(super) type Bounds = ([String; 3], Option<[String; 3]>);

pub(super) fn prefix_range(prefix: &str) -> Option<Bounds> {
    let parts: Vec<&str> = prefix.split('\0').collect();
    if parts.len() > 3 {
        return None;
    }
    let mut lower: [String; 3] = Default::default();
    for (slot, p) in lower.iter_mut().zip(&parts) {
        *slot = (*p).to_owned();
    }
    let last = parts.len() - 1;
    let mut upper = lower.clone();
    match successor(parts[last]) {
        Some(s) => upper[last] = s,
        None if last == 0 => return Some((lower, None)),
        None => {
            // every key with exactly these leading parts: the next part up
            upper[last].clear();
            upper[last - 1].push('\u{1}');
        }
    }
    Some((lower, Some(upper)))
}

pub(super) fn key_binds(k: &ComponentKey) -> Vec<String> {
    vec![k.component.clone(), k.tag.clone(), k.arch.clone()]
}

pub(super) fn image_binds(k: &ImageKey) -> Vec<String> {
    vec![
        k.component.clone(),
        k.branch.clone().unwrap_or_default(),
        k.arch.clone(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successors() {
        assert_eq!(successor("ab").as_deref(), Some("ac"));
        assert_eq!(successor("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(successor("\u{D7FF}").as_deref(), Some("\u{E000}"));
        assert_eq!(successor(""), None);
        assert_eq!(successor("\u{10FFFF}"), None);
    }

    #[test]
    fn prefix_ranges() {
        let s = |a: &str, b: &str, c: &str| [a.to_owned(), b.to_owned(), c.to_owned()];
        assert_eq!(prefix_range(""), Some((s("", "", ""), None)));
        assert_eq!(
            prefix_range("as"),
            Some((s("as", "", ""), Some(s("at", "", ""))))
        );
        assert_eq!(
            prefix_range("asyn\0"),
            Some((s("asyn", "", ""), Some(s("asyn\u{1}", "", ""))))
        );
        assert_eq!(
            prefix_range("asyn\0R4\0x"),
            Some((s("asyn", "R4", "x"), Some(s("asyn", "R4", "y"))))
        );
        assert_eq!(prefix_range("a\0b\0c\0"), None);
    }
}
