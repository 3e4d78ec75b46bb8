//! Job-scoped tokens: minted when a build is handed to a worker (on Slurm,
//! Kubernetes, or a polling worker), they let that worker read, post that
//! job's log and store that one result — nothing else. A token names the
//! job and the hand-over (`dispatch`); it is valid only while that job is
//! not final and that hand-over is the job's current one, and never after
//! its expiry. The key is 32 random bytes kept in the index (the same for
//! every replica); the MAC is blake3's keyed hash.

use chrono::Utc;
use serde::{Deserialize, Serialize};

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The job.
    pub job: String,
    /// The hand-over (`Dispatch::id`).
    pub dispatch: String,
    /// Expiry (unix seconds).
    pub exp: i64,
}

const PREFIX: &str = "adbsjob_";

/// The index meta key holding the token key.
pub const KEY_META: &str = "job_token_key";

/// Mints a token for `claims` with `key`.
pub fn mint(key: &[u8; 32], claims: &Claims) -> String {
    let body = hex::encode(serde_json::to_vec(claims).unwrap_or_default());
    let mac = blake3::keyed_hash(key, body.as_bytes());
    format!("{PREFIX}{body}_{}", mac.to_hex())
}

/// Whether `token` looks like a job token (and not an API key).
pub fn is_job_token(token: &str) -> bool {
    token.starts_with(PREFIX)
}

/// The claims of a genuine, unexpired token.
pub fn verify(key: &[u8; 32], token: &str) -> Option<Claims> {
    let rest = token.strip_prefix(PREFIX)?;
    let (body, mac) = rest.rsplit_once('_')?;
    let given = blake3::Hash::from_hex(mac).ok()?;
    // blake3::Hash compares in constant time
    if blake3::keyed_hash(key, body.as_bytes()) != given {
        return None;
    }
    let claims: Claims = serde_json::from_slice(&hex::decode(body).ok()?).ok()?;
    (claims.exp > Utc::now().timestamp()).then_some(claims)
}

/// A fresh key.
pub fn new_key() -> [u8; 32] {
    rand::random()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_with_their_key_and_before_expiry() {
        let key = new_key();
        let c = Claims {
            job: "j1".into(),
            dispatch: "d1".into(),
            exp: Utc::now().timestamp() + 60,
        };
        let t = mint(&key, &c);
        assert!(is_job_token(&t));
        assert_eq!(verify(&key, &t), Some(c.clone()));
        assert_eq!(verify(&new_key(), &t), None, "another key");
        // a changed body or MAC
        let mut bad = t.clone();
        bad.replace_range(10..11, if &t[10..11] == "0" { "1" } else { "0" });
        assert_eq!(verify(&key, &bad), None);
        assert_eq!(verify(&key, &format!("{t}0")), None);
        assert_eq!(verify(&key, "adbsjob_zz_zz"), None);
        assert_eq!(verify(&key, "as_notatoken"), None);
        let old = Claims {
            exp: Utc::now().timestamp() - 1,
            ..c
        };
        assert_eq!(verify(&key, &mint(&key, &old)), None, "expired");
    }
}
