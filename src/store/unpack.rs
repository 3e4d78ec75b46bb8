//! Reading uploads: recognise tar.zst / tar.gz / plain tar by their magic
//! bytes, and unpack one into a directory refusing anything that could
//! escape it (absolute paths, `..`, links pointing outside, device files).

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek};
use std::path::{Component, Path, PathBuf};

use super::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    TarZst,
    TarGz,
    Tar,
}

/// Looks at the first bytes of `f` (and rewinds it).
pub fn detect(f: &mut File) -> Result<Format, StoreError> {
    let mut head = [0u8; 512];
    let mut n = 0;
    while n < head.len() {
        let r = f.read(&mut head[n..])?;
        if r == 0 {
            break;
        }
        n += r;
    }
    f.rewind()?;
    if n == 0 {
        return Err(StoreError::bad("the upload is empty: expected a tarball"));
    }
    if n >= 4 && head[..4] == [0x28, 0xb5, 0x2f, 0xfd] {
        return Ok(Format::TarZst);
    }
    if n >= 2 && head[..2] == [0x1f, 0x8b] {
        return Ok(Format::TarGz);
    }
    if n == 512 && (&head[257..262] == b"ustar" || tar_checksum_ok(&head)) {
        return Ok(Format::Tar);
    }
    Err(StoreError::bad(
        "the upload is not a tarball (expected tar.zst, tar.gz or tar)",
    ))
}

fn tar_checksum_ok(h: &[u8; 512]) -> bool {
    let stored = std::str::from_utf8(&h[148..156])
        .ok()
        .map(|s| s.trim_matches(|c: char| c == '\0' || c == ' '))
        .and_then(|s| u32::from_str_radix(s, 8).ok());
    let sum: u32 = h
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                *b as u32
            }
        })
        .sum();
    stored == Some(sum)
}

/// A reader of the tar stream inside `f`, whatever its compression.
pub fn open_tar(mut f: File) -> Result<Box<dyn Read + Send>, StoreError> {
    let fmt = detect(&mut f)?;
    let r = BufReader::with_capacity(1 << 20, f);
    Ok(match fmt {
        Format::TarZst => Box::new(zstd::stream::read::Decoder::with_buffer(r)?),
        Format::TarGz => Box::new(flate2::read::MultiGzDecoder::new(r)),
        Format::Tar => Box::new(r),
    })
}

/// What [`unpack_safe`] found.
#[derive(Debug, Default, Clone, Copy)]
pub struct UnpackStats {
    pub entries: u64,
    pub bytes: u64,
}

/// Unpacks the tar stream into `dst` (which must exist), refusing entries
/// that could write or point outside it. `limit` caps the total file bytes.
pub fn unpack_safe<R: Read>(reader: R, dst: &Path, limit: u64) -> Result<UnpackStats, StoreError> {
    let mut ar = tar::Archive::new(reader);
    ar.set_preserve_permissions(false);
    ar.set_preserve_mtime(true);
    ar.set_unpack_xattrs(false);
    ar.set_overwrite(true);
    let mut stats = UnpackStats::default();
    let entries = ar.entries().map_err(|e| bad_tar(&e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad_tar(&e))?;
        let path = entry.path().map_err(|e| bad_tar(&e))?.into_owned();
        let kind = entry.header().entry_type();
        use tar::EntryType as T;
        match kind {
            T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink => continue,
            T::Char | T::Block | T::Fifo => {
                return Err(StoreError::bad(format!(
                    "{} is a device file or fifo: not allowed in a component",
                    path.display()
                )))
            }
            T::Regular | T::Continuous | T::Directory | T::Symlink | T::Link | T::GNUSparse => {}
            other => {
                return Err(StoreError::bad(format!(
                    "{}: unsupported tar entry type {:?}",
                    path.display(),
                    other
                )))
            }
        }
        let rel = relative_inside(&path)?;
        if rel.as_os_str().is_empty() {
            continue;
        }
        match kind {
            T::Symlink => {
                let target = entry.link_name().map_err(|e| bad_tar(&e))?.ok_or_else(|| {
                    StoreError::bad(format!("{}: symlink without target", path.display()))
                })?;
                check_link(&rel, &target)?;
            }
            T::Link => {
                let target = entry.link_name().map_err(|e| bad_tar(&e))?.ok_or_else(|| {
                    StoreError::bad(format!("{}: hard link without target", path.display()))
                })?;
                relative_inside(&target)?;
            }
            _ => {}
        }
        stats.bytes += entry.header().size().unwrap_or(0);
        if stats.bytes > limit {
            return Err(StoreError::TooLarge { limit });
        }
        stats.entries += 1;
        let ok = entry.unpack_in(dst).map_err(|e| bad_tar(&e))?;
        if !ok {
            return Err(StoreError::bad(format!(
                "{} would be written outside the component",
                path.display()
            )));
        }
    }
    if stats.entries == 0 {
        return Err(StoreError::bad("the tarball holds no entries"));
    }
    Ok(stats)
}

fn bad_tar(e: &io::Error) -> StoreError {
    StoreError::bad(format!("the upload is not a valid tarball: {e}"))
}

/// `path` as a relative path without `.`; refuses absolute paths and `..`.
fn relative_inside(path: &Path) -> Result<PathBuf, StoreError> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err(StoreError::bad(format!(
                    "{} is an absolute path: not allowed in a component",
                    path.display()
                )))
            }
            Component::ParentDir => {
                return Err(StoreError::bad(format!(
                    "{} contains '..': not allowed in a component",
                    path.display()
                )))
            }
        }
    }
    Ok(out)
}

/// A symlink at `link` (relative to the archive root) must resolve inside it.
fn check_link(link: &Path, target: &Path) -> Result<(), StoreError> {
    let escape = || {
        StoreError::bad(format!(
            "symlink {} -> {} points outside the component",
            link.display(),
            target.display()
        ))
    };
    if target.is_absolute() {
        return Err(escape());
    }
    let mut depth: i64 = link.components().count() as i64 - 1;
    for c in target.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return Err(escape());
                }
            }
            Component::CurDir => {}
            _ => return Err(escape()),
        }
    }
    Ok(())
}

/// The directory to pack after unpacking an upload for `tag` into `root`:
/// `root/<tag>` when that is the only top-level entry, else `root` itself
/// (whose contents then go under `<tag>/`).
pub fn content_root(root: &Path, tag: &str) -> io::Result<PathBuf> {
    let mut entries = fs::read_dir(root)?;
    if let (Some(first), None) = (entries.next(), entries.next()) {
        let first = first?;
        if first.file_name() == tag && first.file_type()?.is_dir() {
            return Ok(first.path());
        }
    }
    Ok(root.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_escapes() {
        assert!(check_link(Path::new("a/b/l"), Path::new("../x")).is_ok());
        assert!(check_link(Path::new("a/b/l"), Path::new("../../x")).is_ok());
        assert!(check_link(Path::new("a/b/l"), Path::new("../../../x")).is_err());
        assert!(check_link(Path::new("l"), Path::new("/etc/passwd")).is_err());
        assert!(check_link(Path::new("l"), Path::new("x/../../y")).is_err());
    }

    #[test]
    fn refuses_paths() {
        assert!(relative_inside(Path::new("/abs")).is_err());
        assert!(relative_inside(Path::new("a/../../b")).is_err());
        assert_eq!(
            relative_inside(Path::new("./a/b")).unwrap(),
            Path::new("a/b")
        );
    }
}
