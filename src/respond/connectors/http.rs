//! The HTTP connector: one templated request per action kind against a
//! base URL. Path values are percent-encoded (a user named `../../etc/x`
//! stays one path segment), bodies are JSON values whose strings are
//! templates (so a value is always a JSON string, never JSON syntax), and
//! every request carries `Idempotency-Key: <action id>`, so an action
//! retried after a crash is the same request to the far side.

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ActionValues, ConnectorError, Secret, SecretRef, capped, connector_var, templates};
use crate::respond::action::Action;
use crate::respond::template::{Template, url_escape};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpSpec {
    pub name: String,
    /// `https://idp.example.com/api`; paths are appended.
    pub base_url: String,
    #[serde(default)]
    pub secret: Option<SecretRef>,
    /// Headers of every request; values may use `{secret}`
    /// (`Authorization: "Bearer {secret}"`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// A PEM bundle of CA certificates trusted besides the system's.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// The request of each action kind it carries.
    pub requests: BTreeMap<String, RequestSpec>,
}

fn default_timeout() -> u64 {
    5000
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestSpec {
    #[serde(default = "post")]
    pub method: String,
    /// Path template, e.g. `/users/{target}/lock`.
    pub path: String,
    /// A JSON body whose strings are templates.
    #[serde(default)]
    pub body: Option<serde_json::Value>,
    /// Statuses that mean done (default: any 2xx).
    #[serde(default)]
    pub expect_status: Option<Vec<u16>>,
}

fn post() -> String {
    "POST".into()
}

pub struct Compiled {
    pub headers: BTreeMap<String, Template>,
    pub requests: BTreeMap<String, Request>,
}

/// One action kind's request, compiled.
pub struct Request {
    pub method: reqwest::Method,
    pub path: Template,
    pub body: Option<Body>,
    pub expect: Option<Vec<u16>>,
}

/// A body template: the JSON shape with templated strings.
#[derive(Clone, Debug)]
pub enum Body {
    Str(Template),
    Array(Vec<Body>),
    Object(Vec<(String, Body)>),
    Other(serde_json::Value),
}

impl Body {
    fn compile(v: &serde_json::Value) -> Result<Body, String> {
        Ok(match v {
            serde_json::Value::String(s) => Body::Str(Template::compile(s, connector_var(false))?),
            serde_json::Value::Array(a) => {
                Body::Array(a.iter().map(Body::compile).collect::<Result<_, _>>()?)
            }
            serde_json::Value::Object(o) => Body::Object(
                o.iter()
                    .map(|(k, v)| Ok((k.clone(), Body::compile(v)?)))
                    .collect::<Result<_, String>>()?,
            ),
            other => Body::Other(other.clone()),
        })
    }

    fn render(&self, v: &ActionValues) -> Result<serde_json::Value, String> {
        Ok(match self {
            Body::Str(t) => serde_json::Value::String(t.render(v)?),
            Body::Array(a) => {
                serde_json::Value::Array(a.iter().map(|b| b.render(v)).collect::<Result<_, _>>()?)
            }
            Body::Object(o) => serde_json::Value::Object(
                o.iter()
                    .map(|(k, b)| Ok((k.clone(), b.render(v)?)))
                    .collect::<Result<_, String>>()?,
            ),
            Body::Other(x) => x.clone(),
        })
    }
}

impl HttpSpec {
    pub fn compile(&self) -> Result<Compiled, String> {
        reqwest::Url::parse(&self.base_url)
            .map_err(|e| format!("connector {}: base_url: {e}", self.name))?;
        let mut requests = BTreeMap::new();
        for (kind, r) in &self.requests {
            let method = reqwest::Method::from_bytes(r.method.to_uppercase().as_bytes())
                .map_err(|_| format!("connector {}: method {:?}", self.name, r.method))?;
            let path = Template::compile(&r.path, connector_var(false))?;
            let body = r.body.as_ref().map(Body::compile).transpose()?;
            requests.insert(
                kind.clone(),
                Request {
                    method,
                    path,
                    body,
                    expect: r.expect_status.clone(),
                },
            );
        }
        Ok(Compiled {
            headers: templates(&self.headers, true)?,
            requests,
        })
    }
}

pub struct Http {
    name: String,
    base: String,
    compiled: Compiled,
    secret: Option<Secret>,
    client: reqwest::Client,
    timeout_ms: u64,
}

impl Http {
    pub fn new(spec: &HttpSpec) -> Result<Http, String> {
        let compiled = spec.compile()?;
        let secret = spec.secret.as_ref().map(SecretRef::resolve).transpose()?;
        let client = crate::net::http_client(
            spec.ca_file.as_deref(),
            Duration::from_millis(spec.timeout_ms),
        )
        .map_err(|e| format!("connector {}: {e}", spec.name))?;
        Ok(Http {
            name: spec.name.clone(),
            base: spec.base_url.trim_end_matches('/').to_owned(),
            compiled,
            secret,
            client,
            timeout_ms: spec.timeout_ms,
        })
    }

    pub async fn execute(&self, a: &Action) -> Result<String, ConnectorError> {
        let Some(Request {
            method,
            path,
            body,
            expect,
        }) = self.compiled.requests.get(a.kind.as_str())
        else {
            return Err(ConnectorError::Refused(format!(
                "connector {} has no request for {}",
                self.name,
                a.kind.as_str()
            )));
        };
        let values = ActionValues {
            action: a,
            secret: self.secret.as_ref(),
        };
        let path = path
            .render_with(&values, url_escape)
            .map_err(ConnectorError::Refused)?;
        let url = format!("{}{path}", self.base);
        let mut req = self
            .client
            .request(method.clone(), &url)
            .header("Idempotency-Key", &a.action_id);
        for (k, t) in &self.compiled.headers {
            let v = t.render(&values).map_err(ConnectorError::Refused)?;
            if v.contains(['\r', '\n']) {
                return Err(ConnectorError::Refused(format!(
                    "header {k} would hold a line break"
                )));
            }
            req = req.header(k, v);
        }
        if let Some(b) = body {
            req = req.json(&b.render(&values).map_err(ConnectorError::Refused)?);
        }
        let resp = req.send().await.map_err(|e| {
            if e.is_timeout() {
                ConnectorError::Timeout(self.timeout_ms)
            } else {
                ConnectorError::External {
                    // the URL may hold values, never the secret (headers are not shown)
                    message: format!("{} {url}: {}", method, e.without_url()),
                    retry: true,
                }
            }
        })?;
        let status = resp.status();
        let text = resp.bytes().await.unwrap_or_default();
        let ok = match expect {
            Some(list) => list.contains(&status.as_u16()),
            None => status.is_success(),
        };
        let answer = format!(
            "{method} {path} → {}: {}",
            status.as_u16(),
            capped(&text, 512)
        );
        if ok {
            Ok(answer)
        } else {
            Err(ConnectorError::External {
                message: answer,
                retry: status.is_server_error() || status.as_u16() == 429,
            })
        }
    }
}
