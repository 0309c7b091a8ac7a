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
use super::slack::{Outcome, retry_after};
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
    let actions: Vec<String> = n
        .actions
        .iter()
        .map(|a| {
            format!(
                "{} {}: {} ({})",
                a.kind.as_str(),
                a.target,
                a.status.as_str(),
                a.reason
            )
        })
        .collect();
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
        let r = self
            .req(reqwest::Method::GET, &url)
            .query(&[
                ("jql", jql.as_str()),
                ("fields", "key"),
                ("maxResults", "1"),
            ])
            .send()
            .await
            .map_err(|e| retry("search", e))?;
        if !r.status().is_success() {
            return Err(failed("search", r).await);
        }
        let v: Value = r.json().await.map_err(|e| retry("search", e))?;
        Ok(v["issues"][0]["key"].as_str().map(str::to_owned))
    }

    /// Creates, comments and transitions as the incident's state asks.
    pub async fn send(&self, body: &Value, known: Known<'_>) -> Outcome {
        let label = format!("tp-{}", body["incident_id"].as_str().unwrap_or_default());
        let timeline: Vec<String> = body["timeline"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let lines = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut refs = Vec::new();
        let key = match known.key {
            Some(k) => k.to_owned(),
            None => match self.search(&label).await {
                Err(o) => return o,
                Ok(Some(k)) => {
                    refs.push(("", k.clone()));
                    k
                }
                Ok(None) => {
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
                    let r = match self
                        .req(reqwest::Method::POST, &url)
                        .json(&json!({"fields": fields}))
                        .send()
                        .await
                    {
                        Ok(r) => r,
                        Err(e) => return retry("create", e),
                    };
                    if !r.status().is_success() {
                        return failed("create", r).await;
                    }
                    let v: Value = match r.json().await {
                        Ok(v) => v,
                        Err(e) => return retry("create", e),
                    };
                    let Some(k) = v["key"].as_str() else {
                        return Outcome::Dead("create: no key in Jira's answer".into());
                    };
                    refs.push(("", k.to_owned()));
                    refs.push(("#told", timeline.len().to_string()));
                    return self.finish(k, body, known.transitioned, refs).await;
                }
            },
        };
        // what happened since the ticket last heard
        let told = known.told.min(timeline.len());
        if timeline.len() > told {
            let mut text = vec![format!(
                "{}: {}",
                body["status"].as_str().unwrap_or_default(),
                body["summary"].as_str().unwrap_or_default()
            )];
            text.extend(timeline[told..].iter().cloned());
            let url = format!("{}/issue/{key}/comment", self.api());
            let r = match self
                .req(reqwest::Method::POST, &url)
                .json(&json!({"body": doc(self.spec.flavor, &text)}))
                .send()
                .await
            {
                Ok(r) => r,
                Err(e) => return retry("comment", e),
            };
            if !r.status().is_success() {
                return failed("comment", r).await;
            }
            refs.push(("#told", timeline.len().to_string()));
        }
        self.finish(&key, body, known.transitioned, refs).await
    }

    /// Runs the resolution transition once the incident is closed.
    async fn finish(
        &self,
        key: &str,
        body: &Value,
        transitioned: bool,
        mut refs: Vec<(&'static str, String)>,
    ) -> Outcome {
        let closed = matches!(body["status"].as_str(), Some("resolved" | "mitigated"));
        let Some(name) = self.spec.resolve_transition.as_deref() else {
            return Outcome::Sent(refs);
        };
        if !closed || transitioned {
            return Outcome::Sent(refs);
        }
        let url = format!("{}/issue/{key}/transitions", self.api());
        let r = match self.req(reqwest::Method::GET, &url).send().await {
            Ok(r) => r,
            Err(e) => return retry("transitions", e),
        };
        if !r.status().is_success() {
            return failed("transitions", r).await;
        }
        let v: Value = match r.json().await {
            Ok(v) => v,
            Err(e) => return retry("transitions", e),
        };
        let id = v["transitions"].as_array().and_then(|t| {
            t.iter()
                .find(|x| {
                    x["name"]
                        .as_str()
                        .is_some_and(|n| n.eq_ignore_ascii_case(name))
                })
                .and_then(|x| x["id"].as_str().map(str::to_owned))
        });
        let Some(id) = id else {
            // the ticket may already be past it (closed by a person)
            tracing::warn!(
                issue = key,
                transition = name,
                "jira: no such transition from the issue's status; left as it is"
            );
            refs.push(("#transitioned", "1".into()));
            return Outcome::Sent(refs);
        };
        let r = match self
            .req(reqwest::Method::POST, &url)
            .json(&json!({"transition": {"id": id}}))
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => return retry("transition", e),
        };
        if !r.status().is_success() {
            return failed("transition", r).await;
        }
        refs.push(("#transitioned", "1".into()));
        Outcome::Sent(refs)
    }
}

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
