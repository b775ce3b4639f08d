//! Authentication and authorization: bearer tokens (or HTTP Basic with the
//! token as password, for clients that carry credentials in a URL) mapped to
//! roles, and the role each route needs.
//!
//! Tokens are looked up by their BLAKE3 hash, so the table holds no secret in
//! a form that string comparison could leak through timing. The table sits
//! behind a lock so that SIGHUP can swap in a re-read token file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use http::HeaderMap;
use serde::Deserialize;

use crate::config::{AuthConfig, TokenConfig};

/// What a caller may do; each role includes the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Read blobs, the action cache and refs.
    Read,
    /// Read, and upload blobs, action results and refs.
    Write,
    /// Everything: deletes, backups, configuration.
    Admin,
}

impl Role {
    /// Parses `read`, `write` or `admin`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "read" => Some(Self::Read),
            "write" => Some(Self::Write),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

/// What a request needs, as the route table ([`crate::http::routes::table`]) says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Open to everyone.
    Public,
    /// Open when `metrics_public` is set, else the read role.
    Metrics,
    /// At least this role.
    Role(Role),
}

/// Who made a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// Token name (`anonymous` without credentials).
    pub name: String,
    /// Its role (`None` for anonymous callers when anonymous reads are off).
    pub role: Option<Role>,
}

/// Why a request was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No or unknown credentials: 401.
    #[error("{0}")]
    Unauthenticated(String),
    /// Known caller without the role: 403.
    #[error("{0}")]
    Forbidden(String),
}

/// Errors loading tokens.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// A token's role is not `read`, `write` or `admin`.
    #[error("token {name:?} has role {role:?}; expected read, write or admin")]
    BadRole {
        /// Token name.
        name: String,
        /// The role given.
        role: String,
    },
    /// The token file cannot be read or parsed.
    #[error("token file {path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    #[serde(default)]
    tokens: Vec<TokenConfig>,
}

type Table = HashMap<[u8; 32], (String, Role)>;

/// Checks credentials against the configured tokens.
pub struct Authenticator {
    table: RwLock<Arc<Table>>,
    inline: Vec<TokenConfig>,
    token_file: Option<PathBuf>,
    allow_anonymous_read: bool,
    metrics_public: bool,
}

fn token_key(token: &str) -> [u8; 32] {
    *blake3::hash(token.as_bytes()).as_bytes()
}

fn load_file(path: &Path) -> Result<Vec<TokenConfig>, TokenError> {
    let err = |message: String| TokenError::File {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    Ok(toml::from_str::<TokenFile>(&text)
        .map_err(|e| err(e.to_string()))?
        .tokens)
}

fn build_table(entries: &[TokenConfig]) -> Result<Table, TokenError> {
    entries
        .iter()
        .map(|t| {
            let role = Role::parse(&t.role).ok_or_else(|| TokenError::BadRole {
                name: t.name.clone(),
                role: t.role.clone(),
            })?;
            Ok((token_key(&t.token), (t.name.clone(), role)))
        })
        .collect()
}

impl Authenticator {
    /// Builds the token table from the config (and its token file).
    pub fn new(config: &AuthConfig) -> Result<Self, TokenError> {
        let auth = Self {
            table: RwLock::new(Arc::new(Table::new())),
            inline: config.tokens.clone(),
            token_file: config.token_file.clone(),
            allow_anonymous_read: config.allow_anonymous_read,
            metrics_public: config.metrics_public,
        };
        auth.reload()?;
        Ok(auth)
    }

    /// Re-reads the token file; on error the old table stays in force.
    pub fn reload(&self) -> Result<usize, TokenError> {
        let mut entries = self.inline.clone();
        if let Some(path) = &self.token_file {
            entries.extend(load_file(path)?);
        }
        let table = build_table(&entries)?;
        let n = table.len();
        *self.table.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(table);
        Ok(n)
    }

    /// Whether any token is configured (if not, the server is open).
    pub fn enabled(&self) -> bool {
        !self.table.read().unwrap_or_else(|p| p.into_inner()).is_empty()
    }

    /// The token carried by `Authorization: Bearer` or `Basic` (password, or user when no password).
    fn presented_token(headers: &HeaderMap) -> Result<Option<String>, AuthError> {
        let Some(value) = headers.get(http::header::AUTHORIZATION) else {
            return Ok(None);
        };
        let bad = || AuthError::Unauthenticated("malformed Authorization header".into());
        let value = value.to_str().map_err(|_| bad())?.trim();
        let (scheme, rest) = value.split_once(' ').ok_or_else(bad)?;
        match scheme.to_ascii_lowercase().as_str() {
            "bearer" => Ok(Some(rest.trim().to_string())),
            "basic" => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(rest.trim())
                    .map_err(|_| bad())?;
                let pair = String::from_utf8(decoded).map_err(|_| bad())?;
                let (user, pass) = pair.split_once(':').unwrap_or((&pair, ""));
                Ok(Some(if pass.is_empty() { user } else { pass }.to_string()))
            }
            _ => Err(bad()),
        }
    }

    /// Checks that a request's credentials grant `access`; returns the caller.
    pub fn check(&self, access: Access, headers: &HeaderMap) -> Result<Principal, AuthError> {
        self.check_with_cert(access, headers, None)
    }

    /// Checks a request whose TLS client certificate (verified against the
    /// configured CA) grants `cert_role`; a token, when presented, wins.
    pub fn check_with_cert(
        &self,
        access: Access,
        headers: &HeaderMap,
        cert_role: Option<Role>,
    ) -> Result<Principal, AuthError> {
        let table = self.table.read().unwrap_or_else(|p| p.into_inner()).clone();
        let anonymous = Principal {
            name: "anonymous".into(),
            role: self.allow_anonymous_read.then_some(Role::Read),
        };
        if table.is_empty() {
            return Ok(Principal {
                name: "anonymous".into(),
                role: Some(Role::Admin),
            });
        }
        let needed = match access {
            Access::Public => None,
            Access::Metrics => (!self.metrics_public).then_some(Role::Read),
            Access::Role(role) => Some(role),
        };
        let principal = match Self::presented_token(headers)? {
            Some(token) => match table.get(&token_key(&token)) {
                Some((name, role)) => Principal {
                    name: name.clone(),
                    role: Some(*role),
                },
                None => return Err(AuthError::Unauthenticated("unknown token".into())),
            },
            None => match cert_role {
                Some(role) => Principal {
                    name: "client-certificate".into(),
                    role: Some(role),
                },
                None => anonymous,
            },
        };
        match (needed, principal.role) {
            (None, _) => Ok(principal),
            (Some(need), Some(have)) if have >= need => Ok(principal),
            (Some(need), None) => Err(AuthError::Unauthenticated(format!(
                "this needs a token with the {need:?} role"
            ))),
            (Some(need), Some(_)) if principal.name == "anonymous" => Err(AuthError::Unauthenticated(format!(
                "this needs a token with the {need:?} role"
            ))),
            (Some(need), Some(have)) => Err(AuthError::Forbidden(format!(
                "token {:?} has the {have:?} role; this needs {need:?}",
                principal.name
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(anon: bool) -> Authenticator {
        let tok = |name: &str, role: &str| TokenConfig {
            name: name.into(),
            token: format!("{name}-secret"),
            role: role.into(),
        };
        Authenticator::new(&AuthConfig {
            allow_anonymous_read: anon,
            metrics_public: true,
            tokens: vec![tok("r", "read"), tok("w", "write"), tok("a", "admin")],
            token_file: None,
        })
        .unwrap()
    }

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, auth.parse().unwrap());
        h
    }

    const READ: Access = Access::Role(Role::Read);
    const WRITE: Access = Access::Role(Role::Write);
    const ADMIN: Access = Access::Role(Role::Admin);

    #[test]
    fn roles_and_statuses() {
        let a = auth(false);
        let none = HeaderMap::new();
        assert!(matches!(a.check(READ, &none), Err(AuthError::Unauthenticated(_))));
        assert!(a.check(Access::Public, &none).is_ok());
        // metrics_public is set in `auth`.
        assert!(a.check(Access::Metrics, &none).is_ok());
        assert!(a.check(READ, &headers("Bearer r-secret")).is_ok());
        assert!(matches!(
            a.check(WRITE, &headers("Bearer r-secret")),
            Err(AuthError::Forbidden(_))
        ));
        assert!(a.check(WRITE, &headers("Bearer w-secret")).is_ok());
        assert!(matches!(
            a.check(ADMIN, &headers("Bearer w-secret")),
            Err(AuthError::Forbidden(_))
        ));
        assert!(a.check(ADMIN, &headers("Bearer a-secret")).is_ok());
        assert!(matches!(
            a.check(READ, &headers("Bearer nope")),
            Err(AuthError::Unauthenticated(_))
        ));
        // Basic: user:token, or the token alone as user.
        let basic = |s: &str| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(s));
        assert!(a.check(WRITE, &headers(&basic("ci:w-secret"))).is_ok());
        assert!(a.check(WRITE, &headers(&basic("w-secret:"))).is_ok());
        assert!(a.check(READ, &headers("Digest xyz")).is_err());
    }

    #[test]
    fn anonymous_reads_when_allowed() {
        let a = auth(true);
        assert!(a.check(READ, &HeaderMap::new()).is_ok());
        assert!(matches!(
            a.check(WRITE, &HeaderMap::new()),
            Err(AuthError::Unauthenticated(_))
        ));
    }

    #[test]
    fn no_tokens_means_open() {
        let a = Authenticator::new(&AuthConfig::default()).unwrap();
        assert!(!a.enabled());
        assert!(a.check(ADMIN, &HeaderMap::new()).is_ok());
    }
}
