//! What a subject says about its messages.
//!
//! ```text
//! [part.<n>.]logs.<dataset>.<host...>     logs.sshd.web-1, part.2.logs.nginx.edge.eu
//! [part.<n>.]alerts.<source...>           alerts.alertmanager.prod
//! ```
//! The optional `part.<n>.` prefix is added by the server's partition
//! mapping (`deploy/nats/`). The dataset token becomes `event.dataset`
//! where the parser does not know it (and names access logs: `nginx`), the
//! rest of the subject `host.name` where the line does not carry one. The
//! parser is detected per line, as for files; a `ThreatPilot-Format` header
//! names it instead, and `alerts.*` carry Alertmanager payloads. One source (one event-time domain, one set of
//! windows) per subject without its partition prefix, so a source's windows
//! live on exactly one worker.

use crate::parse::Format;

/// Where a message came from, read off its subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route<'a> {
    pub partition: Option<u32>,
    /// The subject without its partition prefix: the source's identity.
    pub source: &'a str,
    pub dataset: Option<&'a str>,
    pub host: Option<&'a str>,
    /// Alertmanager for `alerts.*`, detected per line otherwise.
    pub format: Format,
}

/// Reads a subject; None when it is neither `logs.*` nor `alerts.*`.
pub fn route(subject: &str) -> Option<Route<'_>> {
    let (partition, rest) = match subject.strip_prefix("part.") {
        Some(r) => {
            let (n, rest) = r.split_once('.')?;
            (Some(n.parse().ok()?), rest)
        }
        None => (None, subject),
    };
    let (kind, tail) = rest.split_once('.')?;
    if tail.is_empty() || tail.split('.').any(str::is_empty) {
        return None;
    }
    let (dataset, host) = match kind {
        "logs" => match tail.split_once('.') {
            Some((d, h)) => (Some(d), Some(h)),
            None => (Some(tail), None),
        },
        "alerts" => (None, Some(tail)),
        _ => return None,
    };
    let format = match kind {
        "alerts" => Format::Alertmanager,
        _ => Format::Auto,
    };
    Some(Route {
        partition,
        source: rest,
        dataset,
        host,
        format,
    })
}

/// A subject token from free text (`.`, `*`, `>` and spaces are not allowed in one).
pub fn token(s: &str) -> String {
    let t: String = s
        .chars()
        .map(|c| match c {
            '.' | '*' | '>' | ' ' | '\t' | '\r' | '\n' => '_',
            c => c,
        })
        .collect();
    if t.is_empty() { "_".into() } else { t }
}

/// The event-time domain of a source: stable across workers and restarts.
pub fn time_domain(source: &str) -> u32 {
    (xxhash_rust::xxh3::xxh3_64(source.as_bytes()) >> 32) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_subject_names_dataset_and_host() {
        let r = route("logs.sshd.web-1").unwrap();
        assert_eq!(r.dataset, Some("sshd"));
        assert_eq!(r.host, Some("web-1"));
        assert_eq!(r.format, Format::Auto);
        assert_eq!(r.partition, None);
        assert_eq!(r.source, "logs.sshd.web-1");
    }

    #[test]
    fn partition_prefix_is_not_part_of_the_source() {
        let r = route("part.2.logs.nginx.edge.eu").unwrap();
        assert_eq!(r.partition, Some(2));
        assert_eq!(r.source, "logs.nginx.edge.eu");
        assert_eq!(r.host, Some("edge.eu"));
        assert_eq!(
            time_domain(r.source),
            time_domain(route("logs.nginx.edge.eu").unwrap().source)
        );
    }

    #[test]
    fn lines_are_detected_and_alerts_are_alertmanager_payloads() {
        let r = route("logs.nginx.web-2").unwrap();
        assert_eq!(r.format, Format::Auto);
        assert_eq!(r.dataset, Some("nginx"));
        assert_eq!(
            route("alerts.alertmanager.prod").unwrap().format,
            Format::Alertmanager
        );
    }

    #[test]
    fn other_subjects_do_not_route() {
        for s in [
            "metrics.cpu",
            "logs",
            "logs.",
            "logs..x",
            "part.x.logs.a",
            "part.1",
        ] {
            assert_eq!(route(s), None, "{s}");
        }
    }

    #[test]
    fn tokens_are_subject_safe() {
        assert_eq!(token("brute force.ssh"), "brute_force_ssh");
        assert_eq!(token(""), "_");
    }
}
