//! Bearer tokens with roles. Tokens are stored as their SHA-256 only, so a
//! leaked pipeline file or tokens file gives no access; a request's token is
//! hashed and looked up.

use std::collections::HashMap;

use axum::http::{HeaderMap, StatusCode, header};
use sha2::{Digest, Sha256};

use super::config::{AuthConfig, Role, TokenConfig};

/// What an endpoint needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    Read,
    Respond,
    Admin,
    Ingest,
}

impl Role {
    pub fn allows(self, need: Need) -> bool {
        match need {
            Need::Read => matches!(self, Role::Viewer | Role::Responder | Role::Admin),
            Need::Respond => matches!(self, Role::Responder | Role::Admin),
            Need::Admin => self == Role::Admin,
            Need::Ingest => matches!(self, Role::Ingest | Role::Admin),
        }
    }
}

/// The token table; `None` config means an open API.
pub struct Auth {
    by_hash: HashMap<[u8; 32], (String, Role)>,
    enabled: bool,
    ingest: bool,
    public_metrics: bool,
}

/// Who made a request: a token's name, or nobody (open API).
#[derive(Clone, Debug)]
pub struct Caller {
    pub name: Option<String>,
}

impl Auth {
    pub fn load(cfg: Option<&AuthConfig>) -> anyhow::Result<Auth> {
        let Some(cfg) = cfg else {
            return Ok(Auth {
                by_hash: HashMap::new(),
                enabled: false,
                ingest: false,
                public_metrics: true,
            });
        };
        let mut tokens = cfg.tokens.clone();
        if let Some(path) = &cfg.tokens_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read tokens file {path}: {e}"))?;
            let more: Vec<TokenConfig> = serde_saphyr::from_str(&text)
                .map_err(|e| anyhow::anyhow!("tokens file {path}: {e}"))?;
            tokens.extend(more);
        }
        let mut by_hash = HashMap::new();
        for t in tokens {
            let hash = decode_hex(&t.sha256).ok_or_else(|| {
                anyhow::anyhow!(
                    "token {:?}: sha256 must be 64 hex digits (run `threatpilot token new`)",
                    t.name
                )
            })?;
            if by_hash.insert(hash, (t.name.clone(), t.role)).is_some() {
                anyhow::bail!("token {:?}: the same token is listed twice", t.name);
            }
        }
        Ok(Auth {
            by_hash,
            enabled: true,
            ingest: cfg.ingest,
            public_metrics: cfg.public_metrics,
        })
    }

    /// Checks a request against what its endpoint needs.
    pub fn check(&self, headers: &HeaderMap, need: Need) -> Result<Caller, (StatusCode, String)> {
        // two credentials are ambiguous: a proxy and the client may each
        // think theirs is the one checked
        if headers
            .get_all(header::AUTHORIZATION)
            .iter()
            .nth(1)
            .is_some()
        {
            return Err((
                StatusCode::BAD_REQUEST,
                "more than one Authorization header\n".into(),
            ));
        }
        let open = !self.enabled || (need == Need::Ingest && !self.ingest);
        let presented = bearer(headers);
        if open {
            return Ok(Caller {
                name: presented.and_then(|t| self.lookup(t)).map(|(n, _)| n),
            });
        }
        let Some(token) = presented else {
            return Err((
                StatusCode::UNAUTHORIZED,
                "missing bearer token (Authorization: Bearer <token>)\n".into(),
            ));
        };
        match self.lookup(token) {
            None => Err((StatusCode::UNAUTHORIZED, "unknown token\n".into())),
            Some((name, role)) if role.allows(need) => Ok(Caller { name: Some(name) }),
            Some((name, role)) => Err((
                StatusCode::FORBIDDEN,
                format!("token {name:?} has role {role:?}, which may not do this ({need:?})\n"),
            )),
        }
    }

    /// Whether tokens are asked for at all (without, the API is open).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The name and role of a presented token, for the console's login.
    pub fn login(&self, token: &str) -> Option<(String, Role)> {
        self.lookup(token.trim())
    }

    pub fn metrics_public(&self) -> bool {
        !self.enabled || self.public_metrics
    }

    fn lookup(&self, token: &str) -> Option<(String, Role)> {
        let h: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.by_hash.get(&h).cloned()
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Lowercase hex SHA-256 of a token, as the config stores it.
pub fn hash_token(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A new random token: 32 bytes from the operating system, hex.
pub fn new_token() -> std::io::Result<String> {
    use std::io::Read;
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(format!(
        "tp_{}",
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    ))
}

fn decode_hex(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        let t = |name: &str, role, token: &str| TokenConfig {
            name: name.into(),
            role,
            sha256: hash_token(token),
        };
        Auth::load(Some(&AuthConfig {
            tokens: vec![
                t("grafana", Role::Viewer, "view-secret"),
                t("shipper", Role::Ingest, "push-secret"),
                t("ops", Role::Admin, "admin-secret"),
            ],
            tokens_file: None,
            ingest: true,
            public_metrics: true,
        }))
        .unwrap()
    }

    fn with(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        h
    }

    #[test]
    fn roles_decide_and_tokens_are_matched_by_hash() {
        let a = auth();
        assert_eq!(
            a.check(&with("view-secret"), Need::Read)
                .unwrap()
                .name
                .as_deref(),
            Some("grafana")
        );
        assert_eq!(
            a.check(&with("view-secret"), Need::Ingest).unwrap_err().0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            a.check(&with("push-secret"), Need::Read).unwrap_err().0,
            StatusCode::FORBIDDEN
        );
        assert!(a.check(&with("push-secret"), Need::Ingest).is_ok());
        assert!(a.check(&with("admin-secret"), Need::Respond).is_ok());
        assert_eq!(
            a.check(&with("guess"), Need::Read).unwrap_err().0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            a.check(&HeaderMap::new(), Need::Read).unwrap_err().0,
            StatusCode::UNAUTHORIZED
        );
    }

    #[test]
    fn two_authorization_headers_are_refused_whichever_comes_first() {
        let a = auth();
        for (first, second) in [("view-secret", "admin-secret"), ("admin-secret", "guess")] {
            let mut h = with(first);
            h.append(
                header::AUTHORIZATION,
                format!("Bearer {second}").parse().unwrap(),
            );
            assert_eq!(
                a.check(&h, Need::Read).unwrap_err().0,
                StatusCode::BAD_REQUEST
            );
        }
    }

    #[test]
    fn a_malformed_hash_is_an_error_at_load() {
        let cfg = AuthConfig {
            tokens: vec![TokenConfig {
                name: "x".into(),
                role: Role::Viewer,
                sha256: "plain-token".into(),
            }],
            tokens_file: None,
            ingest: true,
            public_metrics: true,
        };
        let err = Auth::load(Some(&cfg)).err().unwrap();
        assert!(err.to_string().contains("64 hex"), "{err}");
    }
}
