//! Templates in playbooks and connectors: `{offender}`, `{context.host}`,
//! `{incident_id}`, … Compiled at load, so an unknown name is an error with
//! its line, never an empty string at run time. Rendering gives plain text;
//! each connector escapes it for its own context (URL, JSON, argv, nginx).
//! `{{` and `}}` stand for literal braces.

use std::collections::BTreeMap;

/// A name a template may use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Var {
    Offender,
    OffenderType,
    Detector,
    FindingId,
    IncidentId,
    ActionId,
    Domain,
    Classification,
    Severity,
    /// The action's target (in connector templates).
    Target,
    /// `context.<key>` of the finding.
    Context(String),
    /// `metrics.<name>` of the finding.
    Metric(String),
    /// `params.<name>` of the step (in connector templates).
    Param(String),
    /// The connector's secret (only in connector headers).
    Secret,
}

const METRICS: &[&str] = &[
    "event_count",
    "unique_targets",
    "success_count",
    "failure_count",
    "duration_sec",
    "value",
    "threshold",
];

impl Var {
    fn parse(name: &str) -> Result<Var, String> {
        Ok(match name {
            "offender" => Var::Offender,
            "offender.type" => Var::OffenderType,
            "detector" => Var::Detector,
            "finding_id" => Var::FindingId,
            "incident_id" => Var::IncidentId,
            "action_id" => Var::ActionId,
            "domain" => Var::Domain,
            "classification" => Var::Classification,
            "severity" => Var::Severity,
            "target" => Var::Target,
            "secret" => Var::Secret,
            _ => {
                if let Some(k) = name.strip_prefix("context.").filter(|k| !k.is_empty()) {
                    Var::Context(k.to_owned())
                } else if let Some(k) = name.strip_prefix("params.").filter(|k| !k.is_empty()) {
                    Var::Param(k.to_owned())
                } else if let Some(m) = name.strip_prefix("metrics.") {
                    if !METRICS.contains(&m) {
                        return Err(format!(
                            "unknown metric `{m}` in template (known: {})",
                            METRICS.join(", ")
                        ));
                    }
                    Var::Metric(m.to_owned())
                } else {
                    return Err(format!(
                        "unknown template name `{{{name}}}` (known: offender, offender.type, detector, finding_id, incident_id, action_id, domain, classification, severity, target, context.<key>, metrics.<name>, params.<name>)"
                    ));
                }
            }
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Part {
    Lit(String),
    Var(Var),
}

/// A compiled template.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
    source: String,
}

/// The values a template is rendered with.
pub trait Values {
    /// `None`: the value is not there (the render fails with its name).
    fn value(&self, var: &Var) -> Option<String>;
}

impl Template {
    /// Compiles `text`; `allowed` says which names this place may use.
    pub fn compile(text: &str, allowed: impl Fn(&Var) -> bool) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = text;
        while let Some(i) = rest.find(['{', '}']) {
            lit.push_str(&rest[..i]);
            let b = rest.as_bytes()[i];
            let after = &rest[i + 1..];
            if after.as_bytes().first() == Some(&b) {
                lit.push(b as char);
                rest = &after[1..];
                continue;
            }
            if b == b'}' {
                return Err(format!(
                    "unmatched `}}` in template {text:?} (write `}}}}`)"
                ));
            }
            let Some(end) = after.find('}') else {
                return Err(format!("unclosed `{{` in template {text:?}"));
            };
            let var = Var::parse(after[..end].trim())?;
            if !allowed(&var) {
                return Err(format!("`{{{}}}` cannot be used here", after[..end].trim()));
            }
            if !lit.is_empty() {
                parts.push(Part::Lit(std::mem::take(&mut lit)));
            }
            parts.push(Part::Var(var));
            rest = &after[end + 1..];
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(Template {
            parts,
            source: text.to_owned(),
        })
    }

    /// Renders with `values`, each value passed through `escape`.
    pub fn render_with(
        &self,
        values: &dyn Values,
        escape: impl Fn(&str) -> String,
    ) -> Result<String, String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Var(v) => match values.value(v) {
                    Some(x) => out.push_str(&escape(&x)),
                    None => {
                        return Err(format!("{} has no value for {v:?}", self.source));
                    }
                },
            }
        }
        Ok(out)
    }

    pub fn render(&self, values: &dyn Values) -> Result<String, String> {
        self.render_with(values, str::to_owned)
    }

    /// Whether the template holds no name (its text is all it renders).
    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Lit(_)))
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether every name sits inside a "…" or '…' string of the text
    /// around it (a PromQL query: a value outside quotes would be code).
    pub fn names_quoted(&self) -> bool {
        let mut quote: Option<char> = None;
        for p in &self.parts {
            match p {
                Part::Lit(s) => {
                    let mut escaped = false;
                    for c in s.chars() {
                        match (quote, c) {
                            (Some(_), '\\') if !escaped => {
                                escaped = true;
                                continue;
                            }
                            (Some(q), c) if c == q && !escaped => quote = None,
                            (None, '"' | '\'') => quote = Some(c),
                            _ => {}
                        }
                        escaped = false;
                    }
                }
                Part::Var(_) => {
                    if quote.is_none() {
                        return false;
                    }
                }
            }
        }
        true
    }

    /// Whether the template uses `var`.
    pub fn uses(&self, var: &Var) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, Part::Var(v) if v == var))
    }
}

/// Values in a map (tests, fixtures).
impl Values for BTreeMap<String, String> {
    fn value(&self, var: &Var) -> Option<String> {
        let key = match var {
            Var::Context(k) => format!("context.{k}"),
            Var::Metric(k) => format!("metrics.{k}"),
            Var::Param(k) => format!("params.{k}"),
            other => format!("{other:?}").to_lowercase(),
        };
        self.get(&key).cloned()
    }
}

/// Percent-encodes everything but unreserved characters (RFC 3986), for a
/// value placed in a URL path segment or query.
pub fn url_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Escapes a value for the inside of a PromQL string literal ("…" or
/// '…'), so a hostile offender cannot close the string and widen the
/// query (`"} or vector(0)` would make any verification pass).
pub fn promql_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any(_: &Var) -> bool {
        true
    }

    #[test]
    fn compiles_renders_and_refuses_unknown_names() {
        let t = Template::compile("block {offender} on {context.host} {{x}}", any).unwrap();
        let mut v = BTreeMap::new();
        v.insert("offender".to_owned(), "1.2.3.4".to_owned());
        v.insert("context.host".to_owned(), "web-1".to_owned());
        assert_eq!(t.render(&v).unwrap(), "block 1.2.3.4 on web-1 {x}");
        let err = Template::compile("{offendr}", any).unwrap_err();
        assert!(err.contains("unknown template name `{offendr}`"), "{err}");
        assert!(Template::compile("{offender", any).is_err());
        assert!(Template::compile("{metrics.nope}", any).is_err());
        assert!(Template::compile("{secret}", |v| *v != Var::Secret).is_err());
        let missing = Template::compile("{context.user}", any).unwrap();
        assert!(missing.render(&v).is_err());
    }

    #[test]
    fn promql_values_stay_inside_their_string() {
        let t = Template::compile("max(app_errors{{pod=\"{offender}\"}})", any).unwrap();
        assert!(t.names_quoted());
        let mut v = BTreeMap::new();
        v.insert("offender".to_owned(), "x\"} or vector(0) #".to_owned());
        assert_eq!(
            t.render_with(&v, promql_escape).unwrap(),
            "max(app_errors{pod=\"x\\\"} or vector(0) #\"})"
        );
        assert!(
            !Template::compile("rate(x[{offender}])", any)
                .unwrap()
                .names_quoted()
        );
        assert!(
            Template::compile("x{{a='{offender}'}}", any)
                .unwrap()
                .names_quoted()
        );
        assert!(
            !Template::compile("x{{a=\"\\\"\"}} {offender}", any)
                .unwrap()
                .names_quoted()
        );
    }

    #[test]
    fn url_escape_leaves_no_separator() {
        assert_eq!(url_escape("../../etc/x"), "..%2F..%2Fetc%2Fx");
        assert_eq!(url_escape("root; rm -rf /"), "root%3B%20rm%20-rf%20%2F");
    }
}
