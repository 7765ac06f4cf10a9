//! API tokens: `cloudraid token create|list|revoke`. A token's secret is shown
//! once, when created; the index keeps only its SHA-256 (an `A` record), so the
//! metadata log carries tokens to the backends and `recover` brings them back.

use crate::format::{decode_record, encode_record, keys, TokenRecord, TokenRole};
use crate::fs::Fs;
use crate::meta::Batch;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What every secret starts with (so a leaked one is easy to recognise).
pub const PREFIX: &str = "crd_";

/// A token as listed (never its secret).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenInfo {
    pub name: String,
    pub role: TokenRole,
    /// Nanoseconds since the epoch.
    pub created: i64,
}

/// The answer to `token create`: the secret, shown once.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NewToken {
    pub token: TokenInfo,
    pub secret: String,
}

fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

fn info(r: &TokenRecord) -> TokenInfo {
    TokenInfo {
        name: r.name.clone(),
        role: r.role,
        created: r.created,
    }
}

/// Checks a token name: 1 to 64 letters, digits, `.`, `_` or `-`.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err(format!(
            "token name {name:?}: use 1 to 64 letters, digits, '.', '_' or '-'"
        ));
    }
    Ok(())
}

fn all(fs: &Fs) -> Result<Vec<TokenRecord>, String> {
    let rows = fs
        .index()
        .store()
        .scan(&[keys::TOKEN], None, usize::MAX)
        .map_err(|e| format!("cannot read the API tokens: {e}"))?;
    rows.iter()
        .map(|(_, v)| decode_record::<TokenRecord>(v).map_err(|e| format!("API token: {e}")))
        .collect()
}

/// Makes a new token named `name` with `role`; its secret is in the answer only.
pub fn create(fs: &Fs, name: &str, role: TokenRole) -> Result<NewToken, String> {
    check_name(name)?;
    if all(fs)?.iter().any(|t| t.name == name) {
        return Err(format!(
            "a token named {name} exists; revoke it first (`cloudraid token revoke`) or pick another name"
        ));
    }
    let mut raw = [0u8; 32];
    rand::Rng::fill(&mut rand::rng(), &mut raw);
    let secret = format!("{PREFIX}{}", hex::encode(raw));
    let rec = TokenRecord {
        name: name.to_string(),
        role,
        hash: hash(&secret),
        created: crate::fs::now_nanos(),
    };
    let mut b = Batch::default();
    b.put(keys::token(name), encode_record(&rec));
    fs.index()
        .apply(b)
        .map_err(|e| format!("cannot store the token: {e}"))?;
    crate::meta::events::record(
        fs.index(),
        "token_created",
        crate::format::Severity::Info,
        name,
        &format!("API token {name} created ({} role)", super::role_name(role)),
    );
    Ok(NewToken {
        token: info(&rec),
        secret,
    })
}

/// Every token, by name.
pub fn list(fs: &Fs) -> Result<Vec<TokenInfo>, String> {
    Ok(all(fs)?.iter().map(info).collect())
}

/// Revokes the token named `name`: requests with it are refused from now on.
pub fn revoke(fs: &Fs, name: &str) -> Result<TokenInfo, String> {
    let Some(rec) = all(fs)?.into_iter().find(|t| t.name == name) else {
        return Err(format!(
            "no token named {name} (`cloudraid token list` shows them)"
        ));
    };
    let mut b = Batch::default();
    b.delete(keys::token(name));
    fs.index()
        .apply(b)
        .map_err(|e| format!("cannot revoke the token: {e}"))?;
    crate::meta::events::record(
        fs.index(),
        "token_revoked",
        crate::format::Severity::Info,
        name,
        &format!("API token {name} revoked"),
    );
    Ok(info(&rec))
}

/// The token whose secret is `secret`, if there is one.
pub fn check(fs: &Fs, secret: &str) -> Result<Option<TokenInfo>, String> {
    if !secret.starts_with(PREFIX) {
        return Ok(None);
    }
    let h = hash(secret);
    Ok(all(fs)?.iter().find(|t| t.hash == h).map(info))
}
