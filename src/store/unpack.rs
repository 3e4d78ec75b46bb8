//! Reading uploads: recognise tar.zst / tar.gz / plain tar by their magic
//! bytes, and unpack one into a directory refusing anything that could
//! escape it (absolute paths, `..`, links pointing outside, device files).

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use super::{beneath, StoreError};

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
    /// Bytes written: file contents as actually written (PAX sizes and
    /// sparse files as their real length) plus one 512-byte header per entry.
    pub bytes: u64,
}

/// What an unpack may write.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes (see [`UnpackStats::bytes`]).
    pub bytes: u64,
    /// Entries (files, directories, links): each costs memory when packed.
    pub entries: u64,
}

impl Limits {
    /// No limit (the client, unpacking what it verified).
    pub const NONE: Limits = Limits {
        bytes: u64::MAX,
        entries: u64::MAX,
    };
}

/// Bytes counted per entry besides its content: its tar header, which a
/// repack writes too (so a million empty files are not free).
pub const ENTRY_OVERHEAD: u64 = 512;

/// Unpacks the tar stream into `dst` (which must exist and be private to
/// the caller), refusing anything that could write or point outside it:
/// absolute paths, `..`, writes through a symlink, hard links to anything
/// but a file already unpacked, symlinks that resolve outside `dst` (chains
/// included, checked on the real file system), device files and fifos.
/// `limits` cap what is written (see [`UnpackStats::bytes`]) and the number
/// of entries; past them the unpack stops with [`StoreError::TooLarge`] or
/// [`StoreError::TooManyEntries`].
pub fn unpack_safe<R: Read>(
    reader: R,
    dst: &Path,
    limits: Limits,
) -> Result<UnpackStats, StoreError> {
    let limit = limits.bytes;
    let mut ar = tar::Archive::new(reader);
    let mut stats = UnpackStats::default();
    let mut buf = vec![0u8; 256 << 10];
    let mut link_budget = beneath::MAX_TREE_STEPS;
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
        stats.entries += 1;
        if stats.entries > limits.entries {
            return Err(StoreError::TooManyEntries {
                limit: limits.entries,
            });
        }
        stats.bytes = stats.bytes.saturating_add(ENTRY_OVERHEAD);
        if stats.bytes > limit {
            return Err(StoreError::TooLarge { limit });
        }
        if let Some(parent) = rel.parent() {
            beneath::create_dirs(dst, parent).map_err(refused)?;
        }
        let full = dst.join(&rel);
        let mode = entry.header().mode().unwrap_or(0o644) & 0o777;
        let mtime = entry.header().mtime().unwrap_or(0).max(1) as i64;
        let mtime = filetime::FileTime::from_unix_time(mtime, 0);
        match kind {
            T::Directory => {
                match fs::symlink_metadata(&full) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        fs::remove_file(&full)?;
                        fs::create_dir(&full).map_err(|e| named(&rel, e))?;
                    }
                    Err(_) => fs::create_dir(&full).map_err(|e| named(&rel, e))?,
                }
                fs::set_permissions(&full, fs::Permissions::from_mode(mode | 0o700))?;
            }
            T::Symlink => {
                let target = entry.link_name().map_err(|e| bad_tar(&e))?.ok_or_else(|| {
                    StoreError::bad(format!("{}: symlink without target", path.display()))
                })?;
                if target.as_os_str().is_empty() {
                    return Err(StoreError::bad(format!(
                        "{}: symlink with an empty target",
                        path.display()
                    )));
                }
                replace_non_dir(&full, &rel)?;
                std::os::unix::fs::symlink(&target, &full).map_err(|e| named(&rel, e))?;
                // checked at once on the real tree, and again at the end
                // (a later entry may change where a chain leads)
                beneath::resolve(dst, &rel, "the component")
                    .map_err(|e| link_error(e, &rel, &target))?;
                filetime::set_symlink_file_times(&full, mtime, mtime)?;
            }
            T::Link => {
                let target = entry.link_name().map_err(|e| bad_tar(&e))?.ok_or_else(|| {
                    StoreError::bad(format!("{}: hard link without target", path.display()))
                })?;
                let target_rel = relative_inside(&target)?;
                match beneath::lstat_direct(dst, &target_rel).map_err(refused)? {
                    Some(m) if m.is_file() => {}
                    _ => {
                        return Err(StoreError::bad(format!(
                            "hard link {} -> {}: the target must be a file earlier in the archive",
                            path.display(),
                            target.display()
                        )))
                    }
                }
                if target_rel == rel {
                    continue;
                }
                replace_non_dir(&full, &rel)?;
                // a hard link adds no bytes: the repack keeps it a hard link
                fs::hard_link(dst.join(&target_rel), &full).map_err(|e| named(&rel, e))?;
            }
            _ => {
                replace_non_dir(&full, &rel)?;
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&full)
                    .map_err(|e| named(&rel, e))?;
                let room = limit - stats.bytes;
                stats.bytes += copy_limited(&mut entry, &mut f, &mut buf, room, limit)?;
                f.set_permissions(fs::Permissions::from_mode(mode))?;
                filetime::set_file_handle_times(&f, Some(mtime), Some(mtime))?;
            }
        }
    }
    if stats.entries == 0 {
        return Err(StoreError::bad("the tarball holds no entries"));
    }
    beneath::check_links_with(dst, "the component", &mut link_budget).map_err(refused)?;
    Ok(stats)
}

/// Copies an entry's content into `f`, at most `room` bytes (more is
/// [`StoreError::TooLarge`]). A read error is a broken archive; a write
/// error is ours (a full disk, say).
fn copy_limited<R: Read>(
    entry: &mut R,
    f: &mut fs::File,
    buf: &mut [u8],
    room: u64,
    limit: u64,
) -> Result<u64, StoreError> {
    let mut n: u64 = 0;
    loop {
        let k = match entry.read(buf) {
            Ok(0) => return Ok(n),
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(bad_tar(&e)),
        };
        n += k as u64;
        if n > room {
            return Err(StoreError::TooLarge { limit });
        }
        io::Write::write_all(f, &buf[..k])?;
    }
}

/// Makes room for a new non-directory entry at `full`: a duplicate file or
/// link is replaced (the later entry wins, as with tar); a directory is not.
fn replace_non_dir(full: &Path, rel: &Path) -> Result<(), StoreError> {
    match fs::symlink_metadata(full) {
        Ok(m) if m.is_dir() => Err(StoreError::bad(format!(
            "{} is both a directory and a file in the archive",
            rel.display()
        ))),
        Ok(_) => Ok(fs::remove_file(full)?),
        Err(_) => Ok(()),
    }
}

fn refused(e: beneath::BeneathError) -> StoreError {
    match &e {
        beneath::BeneathError::Io { err, .. } if err.kind() != io::ErrorKind::NotADirectory => {
            StoreError::Io(io::Error::new(err.kind(), e.to_string()))
        }
        beneath::BeneathError::ThroughLink { .. } => {
            StoreError::bad(format!("{e}: not allowed in a component"))
        }
        other => StoreError::bad(other.to_string()),
    }
}

fn link_error(e: beneath::BeneathError, link: &Path, target: &Path) -> StoreError {
    match e {
        beneath::BeneathError::Escapes { .. } => StoreError::bad(format!(
            "symlink {} -> {} points outside the component",
            link.display(),
            target.display()
        )),
        other => refused(other),
    }
}

/// A file system error about an entry: the entry's fault (a name too
/// long, a name the file system cannot hold) is a bad archive; anything else
/// (a full disk) is ours.
fn named(rel: &Path, e: io::Error) -> StoreError {
    match e.raw_os_error() {
        Some(libc::ENAMETOOLONG | libc::EINVAL | libc::EILSEQ | libc::EMLINK | libc::ELOOP) => {
            StoreError::bad(format!("{}: {e}", rel.display()))
        }
        _ => StoreError::Io(e),
    }
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

/// The name of `root`'s only entry when that is a directory.
pub fn single_top_dir(root: &Path) -> io::Result<Option<String>> {
    let mut entries = fs::read_dir(root)?;
    if let (Some(first), None) = (entries.next(), entries.next()) {
        let first = first?;
        if first.file_type()?.is_dir() {
            return Ok(Some(first.file_name().to_string_lossy().into_owned()));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

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
