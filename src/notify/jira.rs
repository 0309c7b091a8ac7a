//! Jira: one ticket per incident, and never two. The incident's id is its
//! fingerprint: the issue carries the label `tp-<incident id>`, the issue
//! key is remembered in the outbox, and before any create a JQL search for
//! the label adopts a ticket made by an earlier run that crashed before it
//! could remember the key. Later states add a comment with the timeline
//! entries not yet told; resolution runs the configured transition, once.
//!
//! Jira Cloud speaks REST v3 with Atlassian Document Format bodies and
//! e-mail + API token (basic auth); Data Center speaks REST v2 with wiki
//! markup and a personal access token (bearer). ADF text nodes are plain
//! text; wiki markup is escaped, so log-derived values stay text.

use serde_json::{Value, json};

use super::config::{JiraFlavor, JiraSpec};
use super::render::{Notice, cut, when};
use super::{Outcome, retry_after};
use crate::respond::connectors::Secret;
use crate::respond::incident::IncidentStatus;

/// Whether an incident opens a ticket: severity at least the configured
/// one, or a person must act (escalated, an approval expired, a
/// verification failed).
pub fn wanted(spec: &JiraSpec, n: &Notice) -> bool {
    use crate::respond::action::ActionStatus;
    n.incident.severity >= spec.severity_at_least
        || n.incident.status == IncidentStatus::Escalated
        || n.actions.iter().any(|a| {
            a.status == ActionStatus::Expired
                || a.verification
                    .as_deref()
                    .is_some_and(|v| v.starts_with("failed"))
        })
}

/// The outbox body: what the ticket and its comments say.
pub fn body(n: &Notice) -> Value {
    let i = &n.incident;
    let severity = format!("{:?}", i.severity).to_lowercase();
    let mut facts = vec![
        format!("Status: {}", i.status.as_str()),
        format!("Priority: {:.0}", i.priority),
        format!("Severity: {severity}"),
        format!("Domain: {}", i.domain.as_str()),
        format!("Opened: {}", when(i.opened_ms)),
        format!(
            "Offenders: {}",
            cut(
                &i.offenders.iter().cloned().collect::<Vec<_>>().join(", "),
                2000
            )
        ),
        format!("Findings: {}", i.finding_ids.len()),
    ];
    if let Some(why) = &i.escalated_reason {
        facts.push(format!("Escalated: {why}"));
    }
    if let Some(a) = &n.analysis {
        facts.push(format!("Analysis (advice; nothing acts on it): {a}"));
    }
    let actions = n.action_lines();
    let timeline: Vec<String> = i
        .timeline
        .iter()
        .map(|e| format!("{} {}: {}", when(e.at_ms), e.phase, e.text))
        .collect();
    json!({
        "incident_id": i.incident_id,
        "severity": severity,
        "summary": cut(&format!("[ThreatPilot] {}", i.title), 250),
        "status": i.status.as_str(),
        "facts": facts,
        "actions": actions,
        "timeline": timeline,
    })
}

/// Escapes Jira wiki markup: every character that starts markup gets a
/// backslash, and line breaks become spaces.
pub fn wiki(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '*' | '_' | '-' | '+' | '^' | '~' | '?' | '{' | '}' | '[' | ']' | '|' | '!' | '#'
            | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' | '\t' => out.push(' '),
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// A document: a heading-less list of paragraphs, in the flavour's format.
fn doc(flavor: JiraFlavor, lines: &[String]) -> Value {
    match flavor {
        JiraFlavor::Cloud => json!({
            "type": "doc",
            "version": 1,
            "content": lines.iter().map(|l| json!({
                "type": "paragraph",
                "content": [{"type": "text", "text": cut(l, 4000)}],
            })).collect::<Vec<_>>(),
        }),
        JiraFlavor::DataCenter => Value::String(
            lines
                .iter()
                .map(|l| wiki(&cut(l, 4000)))
                .collect::<Vec<_>>()
                .join("\n"),
        ),
    }
}

/// The remembered state of one incident's ticket.
pub struct Known<'a> {
    pub key: Option<&'a str>,
    /// Timeline entries already told (in the description or comments).
    pub told: usize,
    pub transitioned: bool,
}

pub struct Jira<'a> {
    pub spec: &'a JiraSpec,
    pub client: &'a reqwest::Client,
    pub token: &'a Secret,
}

/// A failed call as an outcome.
async fn failed(what: &str, r: reqwest::Response) -> Outcome {
    let status = r.status().as_u16();
    let after = retry_after(r.headers());
    let text = r.text().await.unwrap_or_default();
    let why = serde_json::from_str::<Value>(&text)
        .ok()
        .map(|v| {
            let mut m: Vec<String> = v["errorMessages"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            if let Some(o) = v["errors"].as_object() {
                m.extend(
                    o.iter()
                        .map(|(k, v)| format!("{k}: {}", v.as_str().unwrap_or(""))),
                );
            }
            m.join("; ")
        })
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| cut(text.trim(), 200));
    match status {
        429 | 500..=599 => Outcome::Retry {
            after,
            why: format!("{what}: HTTP {status} {why}"),
        },
        _ => Outcome::Dead(format!("{what}: HTTP {status} {why}")),
    }
}

fn retry(what: &str, e: reqwest::Error) -> Outcome {
    Outcome::Retry {
        after: None,
        why: format!("{what}: {}", e.without_url()),
    }
}

impl Jira<'_> {
    fn api(&self) -> String {
        let v = match self.spec.flavor {
            JiraFlavor::Cloud => 3,
            JiraFlavor::DataCenter => 2,
        };
        format!("{}/rest/api/{v}", self.spec.base_url.trim_end_matches('/'))
    }

    fn req(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let r = self
            .client
            .request(method, url)
            .header(reqwest::header::ACCEPT, "application/json");
        match self.spec.flavor {
            JiraFlavor::Cloud => r.basic_auth(
                self.spec.email.as_deref().unwrap_or_default(),
                Some(self.token.expose()),
            ),
            JiraFlavor::DataCenter => r.bearer_auth(self.token.expose()),
        }
    }

    /// One call: its answer when it succeeded (JSON, or null for none),
    /// else the outcome to report.
    async fn call(
        &self,
        what: &str,
        r: reqwest::RequestBuilder,
        body: Option<&Value>,
    ) -> Result<Value, Outcome> {
        let r = match body {
            Some(b) => r.json(b),
            None => r,
        };
        let r = r.send().await.map_err(|e| retry(what, e))?;
        if !r.status().is_success() {
            return Err(failed(what, r).await);
        }
        let bytes = r.bytes().await.map_err(|e| retry(what, e))?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| Outcome::Dead(format!("{what}: Jira's answer is not JSON: {e}")))
    }

    /// Finds the ticket an earlier run made for this incident.
    async fn search(&self, label: &str) -> Result<Option<String>, Outcome> {
        let jql = format!(
            "project = \"{}\" AND labels = \"{label}\"",
            self.spec.project
        );
        let url = match self.spec.flavor {
            JiraFlavor::Cloud => format!("{}/search/jql", self.api()),
            JiraFlavor::DataCenter => format!("{}/search", self.api()),
        };
        let req = self.req(reqwest::Method::GET, &url).query(&[
            ("jql", jql.as_str()),
            ("fields", "key"),
            ("maxResults", "1"),
        ]);
        let v = self.call("search", req, None).await?;
        Ok(v["issues"][0]["key"].as_str().map(str::to_owned))
    }

    /// Creates, comments and transitions as the incident's state asks.
    pub async fn send(&self, body: &Value, known: Known<'_>) -> Outcome {
        match self.steps(body, known).await {
            Ok(refs) => Outcome::Sent(refs),
            Err(o) => o,
        }
    }

    async fn steps(&self, body: &Value, known: Known<'_>) -> Result<Refs, Outcome> {
        let label = format!("tp-{}", body["incident_id"].as_str().unwrap_or_default());
        let lines = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let timeline = lines(&body["timeline"]);
        let mut refs = Vec::new();
        let (key, told) = match known.key {
            Some(k) => (k.to_owned(), known.told),
            None => match self.search(&label).await? {
                Some(k) => {
                    refs.push(("", k.clone()));
                    (k, 0)
                }
                None => {
                    let mut text = lines(&body["facts"]);
                    text.push("Actions:".into());
                    text.extend(lines(&body["actions"]));
                    text.push("Timeline:".into());
                    text.extend(timeline.iter().cloned());
                    let fields = json!({
                        "project": {"key": self.spec.project},
                        "summary": body["summary"],
                        "issuetype": {"name": self.spec.issue_type},
                        "labels": [label, "threatpilot"],
                        "description": doc(self.spec.flavor, &text),
                    });
                    let url = format!("{}/issue", self.api());
                    let req = self.req(reqwest::Method::POST, &url);
                    let v = self
                        .call("create", req, Some(&json!({"fields": fields})))
                        .await?;
                    let Some(k) = v["key"].as_str() else {
                        return Err(Outcome::Dead("create: no key in Jira's answer".into()));
                    };
                    refs.push(("", k.to_owned()));
                    (k.to_owned(), timeline.len())
                }
            },
        };
        if told < timeline.len() {
            // what happened since the ticket last heard
            let mut text = vec![format!(
                "{}: {}",
                body["status"].as_str().unwrap_or_default(),
                body["summary"].as_str().unwrap_or_default()
            )];
            text.extend(timeline[told..].iter().cloned());
            let url = format!("{}/issue/{key}/comment", self.api());
            let req = self.req(reqwest::Method::POST, &url);
            self.call(
                "comment",
                req,
                Some(&json!({"body": doc(self.spec.flavor, &text)})),
            )
            .await?;
        }
        refs.push(("#told", timeline.len().to_string()));
        self.resolve(&key, body, known.transitioned, &mut refs)
            .await?;
        Ok(refs)
    }

    /// Runs the resolution transition once the incident is closed.
    async fn resolve(
        &self,
        key: &str,
        body: &Value,
        transitioned: bool,
        refs: &mut Refs,
    ) -> Result<(), Outcome> {
        let closed = matches!(body["status"].as_str(), Some("resolved" | "mitigated"));
        let Some(name) = self.spec.resolve_transition.as_deref() else {
            return Ok(());
        };
        if !closed || transitioned {
            return Ok(());
        }
        let url = format!("{}/issue/{key}/transitions", self.api());
        let v = self
            .call("transitions", self.req(reqwest::Method::GET, &url), None)
            .await?;
        let id = v["transitions"].as_array().and_then(|t| {
            t.iter()
                .find(|x| {
                    x["name"]
                        .as_str()
                        .is_some_and(|n| n.eq_ignore_ascii_case(name))
                })
                .and_then(|x| x["id"].as_str().map(str::to_owned))
        });
        match id {
            Some(id) => {
                let req = self.req(reqwest::Method::POST, &url);
                self.call("transition", req, Some(&json!({"transition": {"id": id}})))
                    .await?;
            }
            // the ticket may already be past it (closed by a person)
            None => tracing::warn!(
                issue = key,
                transition = name,
                "jira: no such transition from the issue's status; left as it is"
            ),
        }
        refs.push(("#transitioned", "1".into()));
        Ok(())
    }
}

/// What to remember of a send (see [`Outcome::Sent`]).
type Refs = Vec<(&'static str, String)>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wiki_markup_in_a_value_stays_text() {
        let w = wiki("*bold* {noformat}x{noformat} [link|http://e] -strike- !img.png! a\nb");
        assert_eq!(
            w,
            "\\*bold\\* \\{noformat\\}x\\{noformat\\} \\[link\\|http://e\\] \\-strike\\- \\!img.png\\! a b"
        );
    }

    #[test]
    fn adf_holds_text_nodes_only() {
        let d = doc(JiraFlavor::Cloud, &["<script>*x*</script>".into()]);
        assert_eq!(d["content"][0]["content"][0]["type"], "text");
        assert_eq!(
            d["content"][0]["content"][0]["text"],
            "<script>*x*</script>"
        );
        let w = doc(JiraFlavor::DataCenter, &["a|b".into(), "c".into()]);
        assert_eq!(w, "a\\|b\nc");
    }
}
