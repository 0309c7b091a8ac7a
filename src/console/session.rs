//! Console sessions. A person logs in with the same bearer token the API
//! takes; the console then holds a random session id in a cookie that
//! scripts cannot read (`HttpOnly`) and that no other site's page can send
//! (`SameSite=Strict`). Ids are kept as their SHA-256, so a memory dump
//! holds no usable cookie. Every form that changes something carries the
//! session's CSRF token, and a POST must come from the console's own
//! origin.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};
use sha2::{Digest, Sha256};

use super::config::ConsoleConfig;
use crate::api::auth::Need;
use crate::api::config::Role;

pub const COOKIE: &str = "tp_session";

/// Who is logged in.
#[derive(Clone, Debug)]
pub struct Session {
    pub name: String,
    pub role: Role,
    /// Sent back by every form that changes something.
    pub csrf: String,
}

impl Session {
    pub fn may(&self, need: Need) -> bool {
        self.role.allows(need)
    }
}

struct Held {
    session: Session,
    created: Instant,
    seen: Instant,
}

pub struct Sessions {
    held: Mutex<HashMap<[u8; 32], Held>>,
    idle: Duration,
    max_age: Duration,
    max: usize,
    secure: bool,
}

/// Why a POST was refused before it was looked at.
#[derive(Debug, PartialEq, Eq)]
pub enum Forged {
    Origin(String),
    Token,
}

impl std::fmt::Display for Forged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Forged::Origin(o) => write!(f, "the request came from another origin ({o})"),
            Forged::Token => f.write_str("the form's CSRF token is missing or wrong"),
        }
    }
}

impl Sessions {
    pub fn new(cfg: &ConsoleConfig) -> Sessions {
        Sessions {
            held: Mutex::new(HashMap::new()),
            idle: Duration::from_secs(cfg.session_idle_secs.max(60)),
            max_age: Duration::from_secs(cfg.session_max_secs.max(60)),
            max: cfg.max_sessions.max(1),
            secure: cfg.secure_cookie,
        }
    }

    /// Starts a session; returns the `Set-Cookie` value.
    pub fn open(&self, name: &str, role: Role) -> std::io::Result<String> {
        let id = crate::api::auth::new_token()?;
        let csrf = crate::api::auth::new_token()?;
        let now = Instant::now();
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        self.expire(&mut held, now);
        if held.len() >= self.max
            && let Some(k) = held.iter().min_by_key(|(_, h)| h.seen).map(|(k, _)| *k)
        {
            held.remove(&k);
        }
        held.insert(
            digest(&id),
            Held {
                session: Session {
                    name: name.to_owned(),
                    role,
                    csrf,
                },
                created: now,
                seen: now,
            },
        );
        metrics::gauge!(crate::metrics::CONSOLE_SESSIONS).set(held.len() as f64);
        Ok(self.cookie(&id, self.max_age.as_secs()))
    }

    /// The session a request's cookie names, while it lasts.
    pub fn find(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie(headers, COOKIE)?;
        let now = Instant::now();
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let key = digest(id);
        let h = held.get_mut(&key)?;
        if now.duration_since(h.seen) > self.idle || now.duration_since(h.created) > self.max_age {
            held.remove(&key);
            return None;
        }
        h.seen = now;
        Some(h.session.clone())
    }

    /// Ends the request's session; returns the `Set-Cookie` that clears it.
    pub fn close(&self, headers: &HeaderMap) -> String {
        if let Some(id) = cookie(headers, COOKIE) {
            let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            held.remove(&digest(id));
            metrics::gauge!(crate::metrics::CONSOLE_SESSIONS).set(held.len() as f64);
        }
        self.cookie("", 0)
    }

    fn cookie(&self, value: &str, max_age: u64) -> String {
        format!(
            "{COOKIE}={value}; Path=/console; Max-Age={max_age}; HttpOnly; SameSite=Strict{}",
            if self.secure { "; Secure" } else { "" }
        )
    }

    fn expire(&self, held: &mut HashMap<[u8; 32], Held>, now: Instant) {
        held.retain(|_, h| {
            now.duration_since(h.seen) <= self.idle && now.duration_since(h.created) <= self.max_age
        });
    }
}

/// Checks that a POST comes from the console itself: from its own origin
/// (when the browser says) and with the session's CSRF token.
pub fn check_post(
    session: Option<&Session>,
    form_token: Option<&str>,
    headers: &HeaderMap,
) -> Result<(), Forged> {
    same_origin(headers)?;
    match (session, form_token) {
        (None, _) => Ok(()),
        (Some(s), Some(t)) if equal(s.csrf.as_bytes(), t.as_bytes()) => Ok(()),
        _ => Err(Forged::Token),
    }
}

/// `Origin` (and `Sec-Fetch-Site`) against the request's own `Host`.
pub fn same_origin(headers: &HeaderMap) -> Result<(), Forged> {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return Err(Forged::Origin(format!("Sec-Fetch-Site: {site}")));
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("");
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let bare = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or("");
    if host.is_empty() || bare != host {
        return Err(Forged::Origin(origin.to_owned()));
    }
    Ok(())
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == name && !v.is_empty()).then_some(v)
        })
}

fn digest(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// Compares in time that does not depend on where the first difference is.
fn equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cookie(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, value.parse().unwrap());
        h
    }

    fn id_of(set_cookie: &str) -> String {
        set_cookie
            .split(';')
            .next()
            .unwrap()
            .trim_start_matches("tp_session=")
            .to_owned()
    }

    #[test]
    fn a_session_is_found_by_its_cookie_and_ends_at_logout() {
        let s = Sessions::new(&ConsoleConfig::default());
        let set = s.open("oncall", Role::Responder).unwrap();
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"));
        let h = with_cookie(&format!("theme=dark; tp_session={}", id_of(&set)));
        let found = s.find(&h).unwrap();
        assert_eq!(found.name, "oncall");
        assert!(found.may(Need::Respond));
        assert!(s.find(&with_cookie("tp_session=guess")).is_none());
        assert!(s.close(&h).contains("Max-Age=0"));
        assert!(s.find(&h).is_none());
    }

    #[test]
    fn posts_need_the_sessions_token_and_the_consoles_origin() {
        let s = Sessions::new(&ConsoleConfig::default());
        let id = id_of(&s.open("dashboard", Role::Viewer).unwrap());
        let session = s.find(&with_cookie(&format!("tp_session={id}"))).unwrap();
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "127.0.0.1:9464".parse().unwrap());
        assert_eq!(check_post(Some(&session), Some(&session.csrf), &h), Ok(()));
        assert_eq!(
            check_post(Some(&session), Some("forged"), &h),
            Err(Forged::Token)
        );
        assert_eq!(check_post(Some(&session), None, &h), Err(Forged::Token));
        h.insert(header::ORIGIN, "http://127.0.0.1:9464".parse().unwrap());
        assert!(check_post(Some(&session), Some(&session.csrf), &h).is_ok());
        h.insert(header::ORIGIN, "http://evil.example".parse().unwrap());
        assert!(matches!(
            check_post(Some(&session), Some(&session.csrf), &h),
            Err(Forged::Origin(_))
        ));
        h.remove(header::ORIGIN);
        h.insert("sec-fetch-site", "cross-site".parse().unwrap());
        assert!(check_post(Some(&session), Some(&session.csrf), &h).is_err());
    }

    #[test]
    fn the_oldest_unused_session_goes_past_the_cap() {
        let cfg = ConsoleConfig {
            max_sessions: 2,
            ..ConsoleConfig::default()
        };
        let s = Sessions::new(&cfg);
        let a = id_of(&s.open("a", Role::Viewer).unwrap());
        std::thread::sleep(Duration::from_millis(5));
        let b = id_of(&s.open("b", Role::Viewer).unwrap());
        std::thread::sleep(Duration::from_millis(5));
        s.find(&with_cookie(&format!("tp_session={a}")));
        let c = id_of(&s.open("c", Role::Viewer).unwrap());
        assert!(s.find(&with_cookie(&format!("tp_session={a}"))).is_some());
        assert!(s.find(&with_cookie(&format!("tp_session={b}"))).is_none());
        assert!(s.find(&with_cookie(&format!("tp_session={c}"))).is_some());
    }
}
