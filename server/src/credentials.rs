//! Passwords and tokens: what the server computes so that the replicated
//! auth state ([`raft_core::auth`]) never holds a password, and every
//! member verifies a token on its own.
//!
//! - A password is stored as `$pbkdf2-sha256$i=<iterations>$<salt>$<hash>`
//!   (PHC-like; salt and hash in unpadded standard base64), PBKDF2 with
//!   HMAC-SHA256, a random 16-byte salt per user. It is hashed by the node
//!   that receives it, before anything is proposed.
//! - A token is `<user>.<expires_at>.<generation>.<mac>`: the mac is
//!   HMAC-SHA256 with the cluster's replicated secret over the first three
//!   fields (unpadded base64url). Any member with the same auth state
//!   verifies it; a password change or the user's deletion changes the
//!   generation the state expects, and disabling auth drops the secret, so
//!   older tokens stop working everywhere.

use std::num::NonZeroU32;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine;
use raft_core::auth::{AuthState, MIN_SECRET_BYTES};
use ring::rand::{SecureRandom, SystemRandom};
use ring::{hmac, pbkdf2};

/// PBKDF2 iterations for new passwords: a few milliseconds per hash here.
/// Stored in each hash, so changing it leaves older hashes valid.
pub const PBKDF2_ITERATIONS: u32 = 10_000;

/// How long a token is valid.
pub const TOKEN_TTL: Duration = Duration::from_secs(3600);

const SALT_BYTES: usize = 16;
const HASH_BYTES: usize = 32;
const SCHEME: &str = "pbkdf2-sha256";

/// The system's random source failed (no entropy: nothing safe to do).
#[derive(Debug, thiserror::Error)]
#[error("the system random number generator failed")]
pub struct RandomFailed;

fn random<const N: usize>() -> Result<[u8; N], RandomFailed> {
    let mut bytes = [0u8; N];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| RandomFailed)?;
    Ok(bytes)
}

/// A fresh token-signing secret for `AuthOp::Enable`.
pub fn new_secret() -> Result<Vec<u8>, RandomFailed> {
    Ok(random::<MIN_SECRET_BYTES>()?.to_vec())
}

/// Hashes `password` with a new random salt (CPU-bound: call it off the
/// async threads).
pub fn hash_password(password: &str) -> Result<String, RandomFailed> {
    let salt = random::<SALT_BYTES>()?;
    Ok(hash_with(password, &salt, PBKDF2_ITERATIONS))
}

fn hash_with(password: &str, salt: &[u8], iterations: u32) -> String {
    let mut out = [0u8; HASH_BYTES];
    let n = NonZeroU32::new(iterations.max(1)).unwrap_or(NonZeroU32::MIN);
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        n,
        salt,
        password.as_bytes(),
        &mut out,
    );
    format!(
        "${SCHEME}$i={iterations}${}${}",
        STANDARD_NO_PAD.encode(salt),
        STANDARD_NO_PAD.encode(out)
    )
}

/// Whether `password` matches `stored` (a hash from [`hash_password`]); a
/// hash that does not parse matches nothing. CPU-bound, like hashing.
pub fn verify_password(password: &str, stored: &str) -> bool {
    let mut fields = stored.split('$');
    let (Some(""), Some(SCHEME), Some(iterations), Some(salt), Some(hash), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return false;
    };
    let Some(iterations) = iterations
        .strip_prefix("i=")
        .and_then(|i| i.parse::<u32>().ok())
        .and_then(NonZeroU32::new)
    else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (STANDARD_NO_PAD.decode(salt), STANDARD_NO_PAD.decode(hash)) else {
        return false;
    };
    // ring derives as many bytes as it is given to compare: a shortened
    // hash must not pass as a weaker one.
    if hash.len() != HASH_BYTES {
        return false;
    }
    pbkdf2::verify(
        pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        &salt,
        password.as_bytes(),
        &hash,
    )
    .is_ok()
}

/// A hash of a password nobody has: verifying against it when the user
/// does not exist costs what a real check costs, so the answer's timing
/// does not tell which user names exist.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_with("", &[0; SALT_BYTES], PBKDF2_ITERATIONS))
}

/// Seconds since the Unix epoch by this server's clock.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn mac(secret: &[u8], claims: &str) -> hmac::Tag {
    hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, secret),
        claims.as_bytes(),
    )
}

/// A token for `user` (token generation `generation`) until `expires_at`.
pub fn issue_token(secret: &[u8], user: &str, generation: u64, expires_at: u64) -> String {
    let claims = format!("{user}.{expires_at}.{generation}");
    let tag = mac(secret, &claims);
    format!("{claims}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadToken {
    /// Not of the token's shape, or the signature does not match.
    #[error("the token is not valid")]
    Invalid,
    /// Past its expiry.
    #[error("the token expired; get a new one (POST /auth/token)")]
    Expired,
    /// Its user was deleted or changed password since it was issued.
    #[error("the token was revoked (its user was deleted or changed password)")]
    Revoked,
}

/// The user and generation a valid `token` names, checked against `auth`
/// (its secret and the user's current generation) at `now`.
pub fn verify_token(auth: &AuthState, token: &str, now: u64) -> Result<(String, u64), BadToken> {
    let (claims, tag) = token.rsplit_once('.').ok_or(BadToken::Invalid)?;
    let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| BadToken::Invalid)?;
    if auth.secret().is_empty() {
        return Err(BadToken::Invalid);
    }
    hmac::verify(
        &hmac::Key::new(hmac::HMAC_SHA256, auth.secret()),
        claims.as_bytes(),
        &tag,
    )
    .map_err(|_| BadToken::Invalid)?;
    let mut fields = claims.split('.');
    let (Some(user), Some(expires_at), Some(generation), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(BadToken::Invalid);
    };
    let (Ok(expires_at), Ok(generation)) = (expires_at.parse::<u64>(), generation.parse::<u64>())
    else {
        return Err(BadToken::Invalid);
    };
    if now >= expires_at {
        return Err(BadToken::Expired);
    }
    if auth.user(user).is_none_or(|u| u.generation != generation) {
        return Err(BadToken::Revoked);
    }
    Ok((user.to_string(), generation))
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_core::auth::{AuthOp, ROOT};

    #[test]
    fn a_password_verifies_against_its_hash_only() {
        let h = hash_password("s3cret").unwrap();
        assert!(h.starts_with("$pbkdf2-sha256$i=10000$"), "{h}");
        assert!(verify_password("s3cret", &h));
        assert!(!verify_password("s3cret!", &h));
        assert_ne!(h, hash_password("s3cret").unwrap(), "salted");
        for bad in [
            "",
            "$",
            "$pbkdf2-sha256$i=0$AA$AA",
            "$md5$i=1$AA$AA",
            &h[..h.len() - 3],
        ] {
            assert!(!verify_password("s3cret", bad), "{bad}");
        }
        assert!(!verify_password("s3cret", decoy_hash()));
    }

    fn state() -> AuthState {
        let mut a = AuthState::default();
        for op in [
            AuthOp::AddUser {
                name: ROOT.into(),
                password: "h".into(),
            },
            AuthOp::GrantRole {
                user: ROOT.into(),
                role: ROOT.into(),
            },
            AuthOp::Enable {
                secret: new_secret().unwrap(),
            },
        ] {
            a.apply(&op).unwrap();
        }
        a
    }

    #[test]
    fn a_token_is_checked_for_signature_expiry_and_generation() {
        let mut a = state();
        let g = a.user(ROOT).unwrap().generation;
        let t = issue_token(a.secret(), ROOT, g, 100);
        assert_eq!(verify_token(&a, &t, 99), Ok((ROOT.to_string(), g)));
        assert_eq!(verify_token(&a, &t, 100), Err(BadToken::Expired));
        // Tampered: another expiry under the old signature.
        let forged = t.replacen(".100.", ".900.", 1);
        assert_eq!(verify_token(&a, &forged, 99), Err(BadToken::Invalid));
        assert_eq!(verify_token(&a, "x", 0), Err(BadToken::Invalid));
        assert_eq!(verify_token(&a, "a.b.c.d.e", 0), Err(BadToken::Invalid));
        // Another cluster's secret.
        let other = state();
        assert_eq!(verify_token(&other, &t, 99), Err(BadToken::Invalid));
        a.apply(&AuthOp::SetPassword {
            name: ROOT.into(),
            password: "h2".into(),
        })
        .unwrap();
        assert_eq!(verify_token(&a, &t, 99), Err(BadToken::Revoked));
        a.apply(&AuthOp::Disable).unwrap();
        assert_eq!(verify_token(&a, &t, 99), Err(BadToken::Invalid));
    }
}
