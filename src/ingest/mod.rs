//! Push ingestion: Loki push, Alertmanager webhooks, syslog, and the Loki
//! query source, all feeding the stage graph through an
//! [`Ingress`](crate::flow::Ingress).
//!
//! A pushed line keeps the identity of the stream it came in on (a Loki
//! label set and tenant, a syslog peer): that [`Stream`] names its parser
//! state, its event-time domain and the fields every event from it carries
//! (`labels.*`, `host.name`, `service.name`, `event.dataset`,
//! `organization.id`). Transport details stay in the submodules; what
//! reaches the graph is the same `RawBatch` a file produces.

pub mod budget;
pub mod config;
pub mod loki;
pub mod loki_query;
pub mod stats;
pub mod syslog;

use std::borrow::Cow;

use crate::event::{Event, Text};
use crate::name::Name;
use crate::parse::{Format, JsonMapping, SourceState};

pub use stats::SourceStats;

/// Resolves once `stop` turns true (shutdown of long-lived sources).
pub async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// A pushed stream: where its lines came from, and what they all share.
#[derive(Debug)]
pub struct Stream {
    /// Identity hash: the source id, the tenant and the label set.
    pub key: u64,
    pub format: Format,
    pub json: JsonMapping,
    pub dataset: Option<Name>,
    pub host: Option<Name>,
    pub service: Option<String>,
    /// The program behind lines that have no syslog header (`job="sshd"`).
    pub program: Option<Name>,
    pub tenant: Option<String>,
    /// Labels as sent (Loki stream labels), become `labels.*`.
    pub labels: Vec<(String, String)>,
}

/// Labels that name `host.name`, `service.name`, `event.dataset` and the
/// parser, most specific first.
const HOST_LABELS: [&str; 5] = ["host_name", "hostname", "host", "nodename", "node"];
const SERVICE_LABELS: [&str; 4] = ["service_name", "service", "app", "application"];
const DATASET_LABELS: [&str; 2] = ["event_dataset", "dataset"];
const FORMAT_LABELS: [&str; 2] = ["log_format", "format"];
const PROGRAM_LABELS: [&str; 5] = ["program", "syslog_identifier", "unit", "job", "app"];

impl Stream {
    /// A stream from a label set; `source` is the pipeline source's id, so
    /// two sources never share a stream.
    pub fn from_labels(
        source: &str,
        tenant: Option<&str>,
        mut labels: Vec<(String, String)>,
        default_format: Format,
        json: &JsonMapping,
    ) -> Stream {
        labels.sort();
        let find = |names: &[&str]| {
            names.iter().find_map(|n| {
                labels
                    .iter()
                    .find(|(k, v)| k == n && !v.is_empty())
                    .map(|(_, v)| v.clone())
            })
        };
        let format = find(&FORMAT_LABELS)
            .and_then(|f| parse_format(&f))
            .unwrap_or(default_format);
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(source.as_bytes());
        h.update(&[0]);
        h.update(tenant.unwrap_or("").as_bytes());
        for (k, v) in &labels {
            h.update(&[0]);
            h.update(k.as_bytes());
            h.update(&[1]);
            h.update(v.as_bytes());
        }
        Stream {
            key: h.digest(),
            format,
            json: json.clone(),
            dataset: find(&DATASET_LABELS).map(|v| Name::new(&v)),
            host: find(&HOST_LABELS).map(|v| Name::new(&v)),
            service: find(&SERVICE_LABELS),
            program: find(&PROGRAM_LABELS).map(|v| Name::new(&v)),
            tenant: tenant.map(str::to_owned),
            labels,
        }
    }

    /// The same stream told apart by one more identity (a syslog peer).
    pub fn keyed_by(mut self, identity: &str) -> Stream {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(&self.key.to_le_bytes());
        h.update(identity.as_bytes());
        self.key = h.digest();
        self
    }

    /// The parser state for this stream's first line.
    pub fn parser_state(&self, reference_ms: i64) -> SourceState {
        let mut s = SourceState::new(self.format, reference_ms);
        s.dataset_hint = self.dataset.clone();
        s.host_hint = self.host.clone();
        s.program_hint = self.program.clone();
        s.json = self.json.clone();
        s.time_domain = (self.key >> 32) as u32;
        s
    }

    /// Adds what every event of the stream carries.
    pub fn annotate(&self, ev: &mut Event) {
        for (k, v) in &self.labels {
            if ev.label(k).is_none() {
                ev.labels
                    .push((Cow::Owned(k.clone()), Text::from(v.clone())));
            }
        }
        if ev.service_name.is_none() {
            ev.service_name = self.service.as_deref().map(Text::from);
        }
        if let Some(t) = &self.tenant {
            ev.push_extra("organization.id", t.clone());
        }
    }
}

/// A format named by a label (`format="access"`), as the pipeline file spells it.
pub fn parse_format(name: &str) -> Option<Format> {
    <Format as clap::ValueEnum>::from_str(&name.replace('_', "-"), true).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_name_host_service_dataset_and_format() {
        let s = Stream::from_labels(
            "loki",
            Some("team-a"),
            vec![
                ("service_name".into(), "api".into()),
                ("host".into(), "web-1".into()),
                ("dataset".into(), "nginx.access".into()),
                ("format".into(), "access".into()),
            ],
            Format::Auto,
            &JsonMapping::default(),
        );
        assert_eq!(s.format, Format::Access);
        assert_eq!(s.host.as_deref(), Some("web-1"));
        assert_eq!(s.service.as_deref(), Some("api"));
        assert_eq!(s.dataset.as_deref(), Some("nginx.access"));
        let mut ev = Event::raw("x".into(), Cow::Borrowed("unknown"));
        s.annotate(&mut ev);
        assert_eq!(ev.label("host"), Some("web-1"));
        assert_eq!(ev.extra("organization.id"), Some("team-a"));
    }

    #[test]
    fn the_same_labels_in_any_order_are_one_stream_per_tenant() {
        let l = |v: &[(&str, &str)]| {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect::<Vec<_>>()
        };
        let m = JsonMapping::default();
        let a = Stream::from_labels("s", None, l(&[("a", "1"), ("b", "2")]), Format::Auto, &m);
        let b = Stream::from_labels("s", None, l(&[("b", "2"), ("a", "1")]), Format::Auto, &m);
        let c = Stream::from_labels(
            "s",
            Some("t"),
            l(&[("a", "1"), ("b", "2")]),
            Format::Auto,
            &m,
        );
        assert_eq!(a.key, b.key);
        assert_ne!(a.key, c.key);
    }
}
