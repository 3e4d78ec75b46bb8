//! The layout of a stored tarball: its single top-level directory is the
//! tag. What a stored blob's top directory is, and whether an upload's top
//! directory is named like another tag (refused unless `wrap`).

use std::io::Read;

use super::{Components, Result};
use crate::model::ComponentKey;

impl Components {
    /// Whether a top directory `name` looks like another tag of `key`'s
    /// component: one it has stored, or the tag's leading letters followed
    /// by a digit (`R4.39` for `R4.40`, `v1.2` for `v1.3`, `2.0` for `1.0`;
    /// not `lib64`, `bin` or `x86_64` for `R4.40`).
    pub(super) fn names_another_tag(&self, key: &ComponentKey, name: &str) -> Result<bool> {
        if name == key.tag {
            return Ok(false);
        }
        if named_like_tag(name, &key.tag) {
            return Ok(true);
        }
        Ok(self
            .index
            .versions(&key.component)?
            .iter()
            .any(|r| r.tag == name))
    }

    /// The name of the first entry (the top-level directory) of a stored
    /// tar.zst blob, or `None` if it is not one.
    pub(super) fn blob_top_dir(&self, hash: &blake3::Hash) -> Option<String> {
        let mut r = self.blobs.read(hash).ok()?;
        let mut magic = [0u8; 4];
        r.read_exact(&mut magic).ok()?;
        if magic != [0x28, 0xb5, 0x2f, 0xfd] {
            return None;
        }
        let r = std::io::Cursor::new(magic).chain(r);
        let mut ar = tar::Archive::new(zstd::stream::read::Decoder::new(r).ok()?);
        let first = ar.entries().ok()?.next()?.ok()?;
        let p = first.path().ok()?.into_owned();
        let top = p.components().next()?;
        Some(top.as_os_str().to_string_lossy().into_owned())
    }
}

/// `name` starts with the letters `tag` starts with (case aside), then a
/// digit; false for a tag without digits (branch names).
fn named_like_tag(name: &str, tag: &str) -> bool {
    let lead = |s: &str| {
        s.find(|c: char| c.is_ascii_digit())
            .map(|i| s[..i].to_ascii_lowercase())
    };
    matches!((lead(tag), lead(name)), (Some(a), Some(b)) if a == b)
}

#[cfg(test)]
mod tests {
    use super::named_like_tag;

    #[test]
    fn tags_and_directories() {
        for (name, tag) in [
            ("R4.39", "R4.40"),
            ("r4.39", "R4.40"),
            ("R4.39", "R4.39-1.0.1"),
            ("v1.2", "v1.3"),
            ("2.0", "1.0"),
        ] {
            assert!(named_like_tag(name, tag), "{name} for {tag}");
        }
        for (name, tag) in [
            ("lib64", "R4.40"),
            ("bin", "R4.40"),
            ("x86_64", "R4.40"),
            ("vendor2", "v1.3"),
            ("R1", "main"),
            ("asyn-R4.40", "R4.40"),
        ] {
            assert!(!named_like_tag(name, tag), "{name} for {tag}");
        }
    }
}
