//! The Redis connector: revokes a user's sessions (or tokens) by deleting
//! the keys that match a pattern such as `session:{target}:*`. The value is
//! glob-escaped before it is placed in the pattern, so a user named `*`
//! matches only a user named `*`, never everyone. Keys are found with SCAN
//! (never KEYS, which blocks the server) and deleted with DEL.
//!
//! It speaks the few RESP commands it needs (AUTH, SELECT, SCAN, DEL) over
//! one TCP connection per action: a client library would add a dependency
//! tree for four commands.

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use super::{ActionValues, ConnectorError, Secret, SecretRef, connector_var};
use crate::respond::action::Action;
use crate::respond::template::Template;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedisSpec {
    pub name: String,
    /// `host:port`.
    pub address: String,
    #[serde(default)]
    pub database: u32,
    /// The password (AUTH), by reference.
    #[serde(default)]
    pub secret: Option<SecretRef>,
    /// Key pattern per action kind (`revoke_sessions: "session:{target}:*"`).
    pub patterns: BTreeMap<String, String>,
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
}

fn default_timeout() -> u64 {
    5000
}

impl RedisSpec {
    pub fn compile(&self) -> Result<BTreeMap<String, Template>, String> {
        self.patterns
            .iter()
            .map(|(k, v)| Ok((k.clone(), Template::compile(v, connector_var(false))?)))
            .collect()
    }
}

/// Escapes Redis glob characters.
pub fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\' | '^' | '-') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

pub struct Redis {
    address: String,
    database: u32,
    secret: Option<Secret>,
    patterns: BTreeMap<String, Template>,
    timeout: Duration,
}

/// A RESP reply.
#[derive(Debug)]
enum Reply {
    Simple(#[allow(dead_code)] String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
}

type Conn = BufReader<tokio::net::TcpStream>;

async fn send(conn: &mut Conn, args: &[&[u8]]) -> std::io::Result<Reply> {
    let mut buf = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        buf.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        buf.extend_from_slice(a);
        buf.extend_from_slice(b"\r\n");
    }
    conn.get_mut().write_all(&buf).await?;
    read(conn).await
}

fn read(
    conn: &mut Conn,
) -> std::pin::Pin<Box<dyn Future<Output = std::io::Result<Reply>> + Send + '_>> {
    Box::pin(async move {
        let mut line = String::new();
        if conn.read_line(&mut line).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        let line = line.trim_end_matches(['\r', '\n']);
        let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "bad RESP reply");
        let (tag, rest) = line.split_at_checked(1).ok_or_else(bad)?;
        Ok(match tag {
            "+" => Reply::Simple(rest.to_owned()),
            "-" => Reply::Error(rest.to_owned()),
            ":" => Reply::Int(rest.parse().map_err(|_| bad())?),
            "$" => {
                let n: i64 = rest.parse().map_err(|_| bad())?;
                if n < 0 {
                    Reply::Bulk(None)
                } else {
                    let mut b = vec![0u8; n as usize + 2];
                    conn.read_exact(&mut b).await?;
                    b.truncate(n as usize);
                    Reply::Bulk(Some(b))
                }
            }
            "*" => {
                let n: i64 = rest.parse().map_err(|_| bad())?;
                let mut items = Vec::new();
                for _ in 0..n.max(0) {
                    items.push(read(conn).await?);
                }
                Reply::Array(items)
            }
            _ => return Err(bad()),
        })
    })
}

fn external(e: impl std::fmt::Display) -> ConnectorError {
    ConnectorError::External {
        message: format!("redis: {e}"),
        retry: true,
    }
}

impl Redis {
    pub fn new(spec: &RedisSpec) -> Result<Redis, String> {
        Ok(Redis {
            address: spec.address.clone(),
            database: spec.database,
            secret: spec.secret.as_ref().map(SecretRef::resolve).transpose()?,
            patterns: spec.compile()?,
            timeout: Duration::from_millis(spec.timeout_ms),
        })
    }

    pub async fn execute(&self, a: &Action) -> Result<String, ConnectorError> {
        let Some(t) = self.patterns.get(a.kind.as_str()) else {
            return Err(ConnectorError::Refused(format!(
                "this redis connector has no pattern for {}",
                a.kind.as_str()
            )));
        };
        let pattern = t
            .render_with(
                &ActionValues {
                    action: a,
                    secret: None,
                },
                glob_escape,
            )
            .map_err(ConnectorError::Refused)?;
        match tokio::time::timeout(self.timeout, self.delete_matching(&pattern)).await {
            Ok(r) => r,
            Err(_) => Err(ConnectorError::Timeout(self.timeout.as_millis() as u64)),
        }
    }

    async fn delete_matching(&self, pattern: &str) -> Result<String, ConnectorError> {
        let stream = tokio::net::TcpStream::connect(&self.address)
            .await
            .map_err(external)?;
        let mut conn = BufReader::new(stream);
        let check = |r: Reply| match r {
            Reply::Error(e) => Err(external(e)),
            other => Ok(other),
        };
        if let Some(s) = &self.secret {
            check(
                send(&mut conn, &[b"AUTH", s.expose().as_bytes()])
                    .await
                    .map_err(external)?,
            )?;
        }
        if self.database != 0 {
            let db = self.database.to_string();
            check(
                send(&mut conn, &[b"SELECT", db.as_bytes()])
                    .await
                    .map_err(external)?,
            )?;
        }
        let mut cursor = b"0".to_vec();
        let mut deleted = 0i64;
        loop {
            let r = check(
                send(
                    &mut conn,
                    &[
                        b"SCAN",
                        &cursor,
                        b"MATCH",
                        pattern.as_bytes(),
                        b"COUNT",
                        b"1000",
                    ],
                )
                .await
                .map_err(external)?,
            )?;
            let Reply::Array(mut parts) = r else {
                return Err(external("SCAN answered something else than an array"));
            };
            let keys = match parts.pop() {
                Some(Reply::Array(k)) => k,
                _ => return Err(external("SCAN answered no key list")),
            };
            cursor = match parts.pop() {
                Some(Reply::Bulk(Some(c))) => c,
                _ => return Err(external("SCAN answered no cursor")),
            };
            let keys: Vec<Vec<u8>> = keys
                .into_iter()
                .filter_map(|k| match k {
                    Reply::Bulk(Some(b)) => Some(b),
                    _ => None,
                })
                .collect();
            if !keys.is_empty() {
                let mut args: Vec<&[u8]> = vec![b"DEL"];
                args.extend(keys.iter().map(Vec::as_slice));
                if let Reply::Int(n) = check(send(&mut conn, &args).await.map_err(external)?)? {
                    deleted += n;
                }
            }
            if cursor == b"0" {
                break;
            }
        }
        let _ = send(&mut conn, &[b"QUIT"]).await;
        Ok(format!("deleted {deleted} keys matching {pattern}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_characters_cannot_widen_the_pattern() {
        assert_eq!(glob_escape("alice"), "alice");
        assert_eq!(glob_escape("*"), "\\*");
        assert_eq!(glob_escape("a?[b]"), "a\\?\\[b\\]");
    }
}
