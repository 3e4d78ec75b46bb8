//! Errors of the object store in plain words: `NotFound` kept, refused
//! credentials, a server that does not answer, a missing bucket.

use std::io;

use object_store::client::{HttpError, HttpErrorKind};

/// Where the store is, for messages.
pub(super) struct Names {
    pub(super) bucket: String,
    pub(super) endpoint: String,
}

/// The innermost message of an error chain, on one line and not too long.
pub(super) fn detail(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    let mut s = cur
        .to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if s.len() > 300 {
        let mut end = 300;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("...");
    }
    s
}

fn transport_kind(e: &(dyn std::error::Error + 'static)) -> Option<HttpErrorKind> {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if let Some(h) = c.downcast_ref::<HttpError>() {
            return Some(h.kind());
        }
        cur = c.source();
    }
    None
}

/// The HTTP status of a failed request, for the errors whose variant does
/// not tell it (listings answer `Generic`): object_store's message says
/// "... status code: 403 Forbidden ...".
fn http_status(e: &(dyn std::error::Error + 'static)) -> Option<u16> {
    let mut cur = Some(e);
    while let Some(c) = cur {
        let s = c.to_string();
        if let Some(i) = s.find("status code: ") {
            return s[i + 13..].get(..3).and_then(|d| d.parse().ok());
        }
        cur = c.source();
    }
    None
}

/// Whether S3 said the bucket does not exist.
fn no_such_bucket(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if c.to_string().contains("NoSuchBucket") {
            return true;
        }
        cur = c.source();
    }
    false
}

impl Names {
    /// An error of the object store in plain words, `NotFound` kept (a
    /// missing bucket is not "not found": nothing may conclude from it
    /// that blobs are gone).
    pub(super) fn err(&self, what: &str, e: object_store::Error) -> io::Error {
        use object_store::Error as E;
        let (bucket, endpoint) = (&self.bucket, &self.endpoint);
        if no_such_bucket(&e) {
            return io::Error::other(format!(
                "{what}: the bucket {bucket} does not exist at {endpoint}"
            ));
        }
        let status = http_status(&e);
        match (&e, status) {
            (E::NotFound { .. }, _) | (_, Some(404)) => io::Error::new(
                io::ErrorKind::NotFound,
                format!("{what}: not found in bucket {bucket}"),
            ),
            (E::PermissionDenied { .. } | E::Unauthenticated { .. }, _) | (_, Some(401 | 403)) => {
                io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                    "{what}: the object store refused the credentials (403) for bucket {bucket} \
                     at {endpoint}"
                ),
                )
            }
            _ => match transport_kind(&e) {
                Some(HttpErrorKind::Connect) => io::Error::new(
                    io::ErrorKind::NotConnected,
                    format!(
                        "{what}: the object store at {endpoint} does not answer ({})",
                        detail(&e)
                    ),
                ),
                Some(HttpErrorKind::Timeout) => io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{what}: the object store at {endpoint} did not answer in time ({})",
                        detail(&e)
                    ),
                ),
                _ => io::Error::other(format!(
                    "{what}: the object store at {endpoint} failed: {}",
                    detail(&e)
                )),
            },
        }
    }

    /// As [`Names::err`] for writes and listings, where "not found" can
    /// only mean the bucket.
    pub(super) fn write_err(&self, what: &str, e: object_store::Error) -> io::Error {
        let e = self.err(what, e);
        if e.kind() == io::ErrorKind::NotFound {
            return io::Error::other(format!(
                "{what}: the bucket {} does not exist at {}",
                self.bucket, self.endpoint
            ));
        }
        e
    }
}
