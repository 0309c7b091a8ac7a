//! E-mail over SMTP (lettre, rustls): STARTTLS on the submission port, TLS
//! from the first byte (port 465), or plain on a trusted relay. A message
//! is multipart: plain text and HTML. Server answers are classified the
//! SMTP way: a permanent (5xx) refusal is dead, everything else (4xx,
//! refused connections, timeouts) is retried from the outbox.

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::Value;

use super::Outcome;
use super::config::{EmailSpec, SmtpSecurity};
use crate::respond::connectors::Secret;

/// What a message needs besides its body: the sender's account and the
/// extra CA, read once at start.
pub struct Mailer<'a> {
    pub spec: &'a EmailSpec,
    pub password: Option<&'a Secret>,
    pub ca_pem: Option<&'a [u8]>,
    pub timeout: Duration,
}

impl Mailer<'_> {
    /// Sends `body` (`subject`, `text`, `html`); `key` names the message
    /// (its Message-ID, so a resend after a crash is recognisable).
    pub async fn send(&self, key: &str, body: &Value) -> Outcome {
        let message = match self.message(key, body) {
            Ok(m) => m,
            Err(e) => return Outcome::Dead(e),
        };
        let transport = match self.transport() {
            Ok(t) => t,
            Err(e) => return Outcome::Dead(e),
        };
        match transport.send(message).await {
            Ok(_) => Outcome::Sent(Vec::new()),
            Err(e) if e.is_permanent() => Outcome::Dead(format!("smtp refused the message: {e}")),
            Err(e) => Outcome::Retry {
                after: None,
                why: format!("smtp {}:{}: {e}", self.spec.host, self.port()),
            },
        }
    }

    fn port(&self) -> u16 {
        self.spec.port.unwrap_or(match self.spec.security {
            SmtpSecurity::Starttls => 587,
            SmtpSecurity::Tls => 465,
            SmtpSecurity::None => 25,
        })
    }

    fn message(&self, key: &str, body: &Value) -> Result<Message, String> {
        let spec = self.spec;
        let from: Mailbox = spec
            .from
            .parse()
            .map_err(|e| format!("email {}: from {:?}: {e}", spec.name, spec.from))?;
        let mut b = Message::builder()
            .from(from)
            .subject(crate::escape::terminal(
                body["subject"].as_str().unwrap_or("ThreatPilot"),
            ))
            .message_id(Some(format!(
                "<{}@threatpilot>",
                key.replace(
                    |c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '.',
                    "."
                )
            )));
        for to in &spec.to {
            let mb: Mailbox = to
                .parse()
                .map_err(|e| format!("email {}: to {to:?}: {e}", spec.name))?;
            b = b.to(mb);
        }
        let text = body["text"].as_str().unwrap_or_default().to_owned();
        let m = match body["html"].as_str() {
            Some(html) => b.multipart(MultiPart::alternative_plain_html(text, html.to_owned())),
            None => b.header(ContentType::TEXT_PLAIN).body(text),
        };
        m.map_err(|e| format!("email {}: {e}", spec.name))
    }

    fn transport(&self) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
        let spec = self.spec;
        let tls = || -> Result<TlsParameters, String> {
            let mut b = TlsParameters::builder(spec.host.clone());
            if let Some(pem) = self.ca_pem {
                for cert in pem_certificates(pem) {
                    let c = Certificate::from_pem(&cert)
                        .map_err(|e| format!("email {}: ca_file: {e}", spec.name))?;
                    b = b.add_root_certificate(c);
                }
            }
            b.build_rustls()
                .map_err(|e| format!("email {}: TLS: {e}", spec.name))
        };
        let mode = match spec.security {
            SmtpSecurity::Starttls => Tls::Required(tls()?),
            SmtpSecurity::Tls => Tls::Wrapper(tls()?),
            SmtpSecurity::None => Tls::None,
        };
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(spec.host.clone())
            .port(self.port())
            .tls(mode)
            .timeout(Some(self.timeout));
        if let (Some(user), Some(pw)) = (&spec.username, self.password) {
            b = b.credentials(Credentials::new(user.clone(), pw.expose().to_owned()));
        }
        Ok(b.build())
    }
}

/// Each `-----BEGIN CERTIFICATE-----` block of a PEM bundle on its own.
fn pem_certificates(pem: &[u8]) -> Vec<Vec<u8>> {
    const END: &str = "-----END CERTIFICATE-----";
    let text = String::from_utf8_lossy(pem);
    let mut out = Vec::new();
    let mut rest = text.as_ref();
    while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
        let Some(end) = rest[start..].find(END) else {
            break;
        };
        let stop = start + end + END.len();
        out.push(rest.as_bytes()[start..stop].to_vec());
        rest = &rest[stop..];
    }
    out
}

/// The e-mail of an incident's state: subject, plain text and HTML, every
/// log-derived value escaped for its part.
pub fn incident_body(n: &super::render::Notice) -> Value {
    use super::render::when;
    use crate::escape::{html, terminal};
    let i = &n.incident;
    let severity = format!("{:?}", i.severity).to_lowercase();
    let subject = format!(
        "[ThreatPilot] {} {} ({})",
        severity,
        terminal(&i.title),
        i.status.as_str()
    );
    let mut facts = vec![
        ("Incident", i.incident_id.clone()),
        ("Status", i.status.as_str().to_owned()),
        ("Severity", severity.clone()),
        ("Priority", format!("{:.0}", i.priority)),
        ("Domain", i.domain.as_str().to_owned()),
        (
            "Offender",
            format!("{:?} {}", i.offender_type, i.offender_value).to_lowercase(),
        ),
        ("Findings", i.finding_ids.len().to_string()),
        ("Opened", when(i.opened_ms)),
    ];
    if let Some(r) = &i.escalated_reason {
        facts.push(("Escalated", r.clone()));
    }
    if let Some(k) = &i.jira_key {
        facts.push(("Ticket", k.clone()));
    }
    if let Some(a) = &n.analysis {
        facts.push(("Analysis (advice)", a.clone()));
    }
    let actions = n.action_lines();
    let timeline: Vec<String> = i
        .timeline
        .iter()
        .rev()
        .take(20)
        .rev()
        .map(|t| format!("{} {}: {}", when(t.at_ms), t.phase, t.text))
        .collect();

    let mut text = format!("{}\n\n", terminal(&i.title));
    for (k, v) in &facts {
        text.push_str(&format!("{k}: {}\n", terminal(v)));
    }
    let mut page = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head><body style=\"font-family:sans-serif\"><h2>{}</h2><table>",
        html(&i.title)
    );
    for (k, v) in &facts {
        page.push_str(&format!(
            "<tr><th align=\"left\">{k}</th><td>{}</td></tr>",
            html(v)
        ));
    }
    page.push_str("</table>");
    for (title, lines) in [("Actions", &actions), ("Timeline", &timeline)] {
        if lines.is_empty() {
            continue;
        }
        text.push_str(&format!("\n{title}:\n"));
        page.push_str(&format!("<h3>{title}</h3><ul>"));
        for l in lines {
            text.push_str(&format!("- {}\n", terminal(l)));
            page.push_str(&format!("<li>{}</li>", html(l)));
        }
        page.push_str("</ul>");
    }
    page.push_str("</body></html>");
    serde_json::json!({"subject": subject, "text": text, "html": page, "severity": severity})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_is_split_into_certificates() {
        let one = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----";
        let bundle = format!("# comment\n{one}\n{one}\n");
        assert_eq!(pem_certificates(bundle.as_bytes()).len(), 2);
    }
}
