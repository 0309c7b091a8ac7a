//! The normalized event (SPEC 4.1): one log line or alert, with ECS field names.
//!
//! Events are the unit every stage passes on, so the type is built for the
//! hot path: enumerated fields (`event.dataset`, `event.action`, …) are
//! `&'static str` where parsers know them at compile time, `message` and the
//! common text fields (`source.ip`, `user.name`, `url.original`, …) are byte
//! ranges into `event.original` when they are slices of it (see [`Text`]),
//! `event.original` is itself a range of its batch's buffer (see [`Line`]),
//! and the rarely used fields live in a small `extra` list. The JSON form is
//! flat and dotted (`{"source.ip": "…"}`), written by [`Event::to_json`];
//! field access by ECS name for detectors goes through [`Field`], resolved
//! once at rule load.

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::{Map, Value};

pub use crate::line::Line;

/// `event.kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Kind {
    #[default]
    Event,
    Alert,
}

/// `event.outcome`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Outcome {
    Success,
    Failure,
    #[default]
    Unknown,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Unknown => "unknown",
        }
    }
}

/// A normalized event. Field names in comments are the ECS names.
#[derive(Clone, Debug, Default)]
pub struct Event {
    /// `@timestamp`: event time, epoch ms.
    pub timestamp: i64,
    /// `event.ingested`: when ThreatPilot read it, epoch ms.
    pub ingested: i64,
    pub kind: Kind,
    /// `event.category` (ECS allowed values: authentication, web, process, host, …).
    pub category: Option<&'static str>,
    /// `event.action`: what happened, e.g. `ssh_login`, `oom_kill`.
    pub action: Option<Cow<'static, str>>,
    pub outcome: Outcome,
    /// `event.dataset`, e.g. `sshd`, `nginx.access`.
    pub dataset: Cow<'static, str>,
    /// `event.original`: the raw line, always kept (mostly a range of its
    /// batch's buffer).
    pub original: Line,
    /// `message` when it is not a slice of `original`.
    pub message_owned: Option<String>,
    /// `message` as a byte range of `original` (when `message_owned` is None).
    pub message_range: (u32, u32),
    /// `source.ip`; read with [`Event::source_ip`], like the other text
    /// fields below.
    pub source_ip: Option<Text>,
    pub source_port: Option<u16>,
    pub user_name: Option<Text>,
    pub host_name: Option<Text>,
    pub service_name: Option<Text>,
    pub process_name: Option<Text>,
    pub process_pid: Option<u32>,
    pub http_method: Option<Cow<'static, str>>,
    /// `url.original`; `url.path` and `url.query` are derived from it.
    pub url_original: Option<Text>,
    pub http_status: Option<u16>,
    pub http_body_bytes: Option<u64>,
    pub user_agent: Option<Text>,
    /// `event.duration` in nanoseconds.
    pub duration_ns: Option<i64>,
    /// `log.level`, lowercase.
    pub log_level: Option<Cow<'static, str>>,
    /// `labels.*`.
    pub labels: Vec<(Cow<'static, str>, Text)>,
    /// Other ECS fields this event carries (`kubernetes.pod.name`, `error.message`, …).
    pub extra: Vec<(Cow<'static, str>, Text)>,
    /// `template.id` and `template.text`, set by the cluster stage.
    pub template: Option<TemplateRef>,
    /// `event.hash`: dedup fingerprint, set by the parse stage.
    pub hash: u64,
    /// `event.count`: how many identical events this one stands for.
    pub count: u32,
    /// Internal: how many events identical to this one (time domain, time
    /// and line) were kept before it (a run of identical lines longer than
    /// a batch); part of its stored id when not 0.
    pub occurrence: u32,
    /// Parse failure reason; the event is still kept (`error.type: parse_failure`).
    pub parse_error: Option<Cow<'static, str>>,
    /// Internal: the event-time domain (one per replayed file) for watermarks.
    pub time_domain: u32,
    /// Internal: monotonic ns when the source read the line (latency measurement).
    pub read_ns: u64,
    /// `log.file.path`, where the event came from a file.
    pub file_path: Option<crate::name::Name>,
    /// Internal: while a parser fills the event, where the line it reads
    /// (the same text as `original`) lies in memory and how long it is, so that
    /// setters can tell a slice of it (kept as a [`Text::Span`]) from any
    /// other string; (0, 0) otherwise. An address only, never read through.
    pub parsing: (usize, usize),
}

/// A text field's value: a byte range of the event's `original` (a value a
/// parser found in the line, kept without a copy), a name the parser knows
/// at compile time (`ssh`, `nginx`), or a string of its own (unescaped
/// JSON, a value from configuration). Read it through the event's
/// accessors, which resolve the range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Text {
    Span(u32, u32),
    Static(&'static str),
    Own(Box<str>),
}

impl Text {
    /// The value, given the event's `original`.
    #[inline]
    pub fn resolve<'a>(&'a self, original: &'a str) -> &'a str {
        match self {
            Text::Span(start, end) => original.get(*start as usize..*end as usize).unwrap_or(""),
            Text::Static(s) => s,
            Text::Own(s) => s,
        }
    }
}

impl From<String> for Text {
    fn from(s: String) -> Text {
        Text::Own(s.into_boxed_str())
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Text {
        Text::Own(s.into())
    }
}

/// Accessors of the text fields: `ev.source_ip()` reads `source.ip`, and
/// `ev.set_source_ip(v)` sets it, as a range of the line when `v` is a
/// slice of the line being parsed.
macro_rules! text_fields {
    ($($field:ident $set:ident;)*) => {
        impl Event {
            $(
                #[inline]
                pub fn $field(&self) -> Option<&str> {
                    self.$field.as_ref().map(|t| t.resolve(&self.original))
                }

                pub fn $set(&mut self, value: &str) {
                    self.$field = Some(self.text(value));
                }
            )*
        }
    };
}

text_fields! {
    source_ip set_source_ip;
    user_name set_user_name;
    host_name set_host_name;
    service_name set_service_name;
    process_name set_process_name;
    url_original set_url_original;
    user_agent set_user_agent;
}

/// The template an event was assigned to.
#[derive(Clone, Debug)]
pub struct TemplateRef {
    pub id: u64,
    pub text: Arc<str>,
}

/// An HTTP method, without allocating for the standard ones.
pub fn http_method(m: &str) -> Cow<'static, str> {
    const KNOWN: [&str; 9] = [
        "GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE",
    ];
    match KNOWN.iter().find(|k| **k == m) {
        Some(k) => Cow::Borrowed(k),
        None => Cow::Owned(m.to_owned()),
    }
}

/// Where a URL's query starts. A plain loop: URLs are mostly a few dozen
/// bytes, shorter than a vector search needs to pay for its setup, and
/// the path is asked for several times per request.
fn query_mark(url: &str) -> Option<usize> {
    memchr::memchr(b'?', url.as_bytes())
}

/// Formats a template id as it appears in JSON (`t-` and 16 hex digits).
pub fn template_id_string(id: u64) -> String {
    let mut s = String::with_capacity(18);
    push_template_id(&mut s, id);
    s
}

/// Appends a template id as [`template_id_string`] writes it, without
/// the formatting machinery: detectors that group by `template.id` ask for
/// it on every event.
fn push_template_id(out: &mut String, id: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push_str("t-");
    for shift in (0..16).rev() {
        out.push(HEX[(id >> (shift * 4)) as usize & 0xf] as char);
    }
}

impl Event {
    /// A new event for a raw line, before any parser has looked at it.
    #[inline(always)]
    pub fn raw(original: Line, dataset: Cow<'static, str>) -> Event {
        let len = original.len() as u32;
        Event {
            original,
            dataset,
            message_range: (0, len),
            count: 1,
            ..Event::default()
        }
    }

    /// The `message` field.
    pub fn message(&self) -> &str {
        match &self.message_owned {
            Some(m) => m,
            None => self
                .original
                .get(self.message_range.0 as usize..self.message_range.1 as usize)
                .unwrap_or(""),
        }
    }

    /// Starts filling the event from `line`, which holds the same text as
    /// its `original`: values sliced from it are kept as ranges until
    /// [`Event::parsed`].
    pub fn parsing(&mut self, line: &str) {
        debug_assert_eq!(self.original, line);
        self.parsing = (line.as_ptr() as usize, line.len());
    }

    /// Ends what [`Event::parsing`] began: values set from now on are copied.
    pub fn parsed(&mut self) {
        self.parsing = (0, 0);
    }

    /// `value` as a field's value: a range where it lies within the line
    /// being parsed, a copy otherwise.
    pub fn text(&self, value: &str) -> Text {
        let (at, len) = self.parsing;
        let start = (value.as_ptr() as usize).wrapping_sub(at);
        if at != 0 && start <= len && value.len() <= len - start && len <= u32::MAX as usize {
            Text::Span(start as u32, (start + value.len()) as u32)
        } else {
            Text::Own(value.into())
        }
    }

    /// Sets `message` to a byte range of `original`.
    pub fn set_message_range(&mut self, start: usize, end: usize) {
        self.message_owned = None;
        self.message_range = (start as u32, end as u32);
    }

    /// `url.path`: the part of `url.original` before `?`.
    pub fn url_path(&self) -> Option<&str> {
        let u = self.url_original()?;
        Some(query_mark(u).map_or(u, |q| &u[..q]))
    }

    /// `url.query`: the part of `url.original` after `?`.
    pub fn url_query(&self) -> Option<&str> {
        let u = self.url_original()?;
        query_mark(u).map(|q| &u[q + 1..])
    }

    /// Value of an `extra` field by ECS name. Only the value found is
    /// resolved: conditions ask for fields most events lack (`http.version`,
    /// `destination.domain`), and resolving every value on the way (as
    /// [`Event::extras`] does) costs that search more than the compares.
    pub fn extra(&self, name: &str) -> Option<&str> {
        self.extra
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.resolve(&self.original))
    }

    /// The `extra` fields, as (ECS name, value).
    pub fn extras(&self) -> impl Iterator<Item = (&str, &str)> {
        self.extra
            .iter()
            .map(|(k, v)| (k.as_ref(), v.resolve(&self.original)))
    }

    /// Value of a label (`labels.<name>`).
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.resolve(&self.original))
    }

    /// The labels, as (name, value).
    pub fn labels(&self) -> impl Iterator<Item = (&str, &str)> {
        self.labels
            .iter()
            .map(|(k, v)| (k.as_ref(), v.resolve(&self.original)))
    }

    /// Adds a label: a range where `value` lies within the line being
    /// parsed, a copy otherwise (see [`Event::text`]).
    pub fn push_label(&mut self, name: impl Into<Cow<'static, str>>, value: &str) {
        let value = self.text(value);
        self.labels.push((name.into(), value));
    }

    /// Adds an `extra` field: a range where `value` lies within the line
    /// being parsed, a copy otherwise (see [`Event::text`]).
    pub fn push_extra(&mut self, name: &'static str, value: impl AsRef<str>) {
        let value = self.text(value.as_ref());
        self.extra.push((Cow::Borrowed(name), value));
    }

    /// Value of a field by resolved reference; numbers are rendered into
    /// `buf` (by `itoa`: the status code is read for most requests, and
    /// `fmt` cost more than the lookups around it).
    pub fn get<'a>(&'a self, field: &Field, buf: &'a mut String) -> Option<&'a str> {
        macro_rules! num {
            ($v:expr) => {{
                let v = $v?;
                buf.clear();
                buf.push_str(itoa::Buffer::new().format(v));
                Some(buf.as_str())
            }};
        }
        match field {
            Field::Timestamp => num!(Some(self.timestamp)),
            Field::SourcePort => num!(self.source_port),
            Field::ProcessPid => num!(self.process_pid),
            Field::HttpStatus => num!(self.http_status),
            Field::HttpBodyBytes => num!(self.http_body_bytes),
            Field::Duration => num!(self.duration_ns),
            Field::TemplateId => {
                let t = self.template.as_ref()?;
                buf.clear();
                push_template_id(buf, t.id);
                Some(buf.as_str())
            }
            text => self.get_text(text),
        }
    }

    /// Value of a text field, borrowed from the event; None for the
    /// numeric fields and `template.id`, which [`Event::get`] renders.
    pub fn get_text(&self, field: &Field) -> Option<&str> {
        match field {
            Field::Kind => Some(match self.kind {
                Kind::Event => "event",
                Kind::Alert => "alert",
            }),
            Field::Category => self.category,
            Field::Action => self.action.as_deref(),
            Field::Outcome => Some(self.outcome.as_str()),
            Field::Dataset => Some(&self.dataset),
            Field::Original => Some(&self.original),
            Field::Message => Some(self.message()),
            Field::SourceIp => self.source_ip(),
            Field::UserName => self.user_name(),
            Field::HostName => self.host_name(),
            Field::ServiceName => self.service_name(),
            Field::ProcessName => self.process_name(),
            Field::HttpMethod => self.http_method.as_deref(),
            Field::UrlOriginal => self.url_original(),
            Field::UrlPath => self.url_path(),
            Field::UrlQuery => self.url_query(),
            Field::UserAgent => self.user_agent(),
            Field::LogLevel => self.log_level.as_deref(),
            Field::TemplateText => self.template.as_ref().map(|t| &*t.text),
            Field::Label(name) => self.label(name),
            Field::Extra(name) => self.extra(name),
            Field::Timestamp
            | Field::SourcePort
            | Field::ProcessPid
            | Field::HttpStatus
            | Field::HttpBodyBytes
            | Field::Duration
            | Field::TemplateId => None,
        }
    }

    /// Whether the event carries a field (`exists`), without rendering numbers.
    pub fn has(&self, field: &Field) -> bool {
        match field {
            Field::SourcePort => self.source_port.is_some(),
            Field::ProcessPid => self.process_pid.is_some(),
            Field::HttpStatus => self.http_status.is_some(),
            Field::HttpBodyBytes => self.http_body_bytes.is_some(),
            Field::Duration => self.duration_ns.is_some(),
            Field::TemplateId => self.template.is_some(),
            Field::Timestamp => true,
            other => self.get(other, &mut String::new()).is_some(),
        }
    }

    /// Numeric value of a field (for `sum` and numeric comparisons).
    pub fn get_number(&self, field: &Field) -> Option<f64> {
        match field {
            Field::Timestamp => Some(self.timestamp as f64),
            Field::HttpStatus => self.http_status.map(f64::from),
            Field::HttpBodyBytes => self.http_body_bytes.map(|v| v as f64),
            Field::SourcePort => self.source_port.map(f64::from),
            Field::ProcessPid => self.process_pid.map(f64::from),
            Field::Duration => self.duration_ns.map(|v| v as f64),
            other => {
                let mut buf = String::new();
                self.get(other, &mut buf)?.trim().parse().ok()
            }
        }
    }

    /// The flat, dotted ECS JSON object (SPEC 4.1).
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        let s = |v: &str| Value::String(v.to_owned());
        m.insert(
            "@timestamp".into(),
            Value::String(crate::time::format_rfc3339(self.timestamp)),
        );
        m.insert(
            "event.ingested".into(),
            Value::String(crate::time::format_rfc3339(self.ingested)),
        );
        m.insert(
            "event.kind".into(),
            s(if self.kind == Kind::Alert {
                "alert"
            } else {
                "event"
            }),
        );
        if let Some(c) = self.category {
            m.insert("event.category".into(), s(c));
        }
        if let Some(a) = &self.action {
            m.insert("event.action".into(), s(a));
        }
        m.insert("event.outcome".into(), s(self.outcome.as_str()));
        m.insert("event.dataset".into(), s(&self.dataset));
        m.insert("event.original".into(), s(&self.original));
        m.insert("message".into(), s(self.message()));
        let opt = |m: &mut Map<String, Value>, k: &str, v: Option<&str>| {
            if let Some(v) = v {
                m.insert(k.into(), Value::String(v.to_owned()));
            }
        };
        opt(&mut m, "source.ip", self.source_ip());
        if let Some(p) = self.source_port {
            m.insert("source.port".into(), p.into());
        }
        opt(&mut m, "user.name", self.user_name());
        opt(&mut m, "host.name", self.host_name());
        opt(&mut m, "service.name", self.service_name());
        opt(&mut m, "process.name", self.process_name());
        if let Some(p) = self.process_pid {
            m.insert("process.pid".into(), p.into());
        }
        if let Some(v) = &self.http_method {
            m.insert("http.request.method".into(), s(v));
        }
        opt(&mut m, "url.original", self.url_original());
        if let Some(p) = self.url_path() {
            m.insert("url.path".into(), s(p));
        }
        if let Some(q) = self.url_query() {
            m.insert("url.query".into(), s(q));
        }
        if let Some(v) = self.http_status {
            m.insert("http.response.status_code".into(), v.into());
        }
        if let Some(v) = self.http_body_bytes {
            m.insert("http.response.body.bytes".into(), v.into());
        }
        opt(&mut m, "user_agent.original", self.user_agent());
        if let Some(v) = self.duration_ns {
            m.insert("event.duration".into(), v.into());
        }
        if let Some(l) = &self.log_level {
            m.insert("log.level".into(), s(l));
        }
        if let Some(p) = &self.file_path {
            m.insert("log.file.path".into(), s(p));
        }
        for (k, v) in self.labels() {
            m.insert(format!("labels.{k}"), s(v));
        }
        for (k, v) in self.extras() {
            m.insert(k.to_owned(), s(v));
        }
        if let Some(t) = &self.template {
            m.insert(
                "template.id".into(),
                Value::String(template_id_string(t.id)),
            );
            m.insert("template.text".into(), s(&t.text));
        }
        m.insert(
            "event.hash".into(),
            Value::String(format!("{:016x}", self.hash)),
        );
        m.insert("event.count".into(), self.count.into());
        if let Some(e) = &self.parse_error {
            m.insert("error.type".into(), s("parse_failure"));
            m.insert("error.message".into(), s(e));
        }
        Value::Object(m)
    }
}

/// A field reference, resolved from its ECS name once when a rule is loaded.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    Timestamp,
    Kind,
    Category,
    Action,
    Outcome,
    Dataset,
    Original,
    Message,
    SourceIp,
    SourcePort,
    UserName,
    HostName,
    ServiceName,
    ProcessName,
    ProcessPid,
    HttpMethod,
    UrlOriginal,
    UrlPath,
    UrlQuery,
    HttpStatus,
    HttpBodyBytes,
    UserAgent,
    Duration,
    LogLevel,
    TemplateId,
    TemplateText,
    Label(String),
    Extra(String),
}

/// Every named ECS field with its JSON type, in output order; the event JSON
/// Schema is generated from this table.
pub const FIELDS: &[(&str, &str, &str)] = &[
    ("@timestamp", "string", "event time, RFC 3339 UTC"),
    (
        "event.ingested",
        "string",
        "when ThreatPilot read the event, RFC 3339 UTC",
    ),
    ("event.kind", "string", "event | alert"),
    (
        "event.category",
        "string",
        "ECS category: authentication, web, process, host, …",
    ),
    (
        "event.action",
        "string",
        "what happened, e.g. ssh_login, oom_kill",
    ),
    ("event.outcome", "string", "success | failure | unknown"),
    (
        "event.dataset",
        "string",
        "source format, e.g. sshd, nginx.access, kernel",
    ),
    ("event.original", "string", "the raw line, always kept"),
    ("message", "string", "the message part of the line"),
    ("source.ip", "string", "client or peer address"),
    ("source.port", "integer", "client or peer port"),
    ("user.name", "string", "account the event is about"),
    ("host.name", "string", "host that logged the event"),
    ("service.name", "string", "service the event belongs to"),
    ("process.name", "string", "program name"),
    ("process.pid", "integer", "process id"),
    ("http.request.method", "string", "HTTP method"),
    ("url.original", "string", "request target as sent"),
    ("url.path", "string", "path part of url.original"),
    ("url.query", "string", "query part of url.original"),
    ("http.response.status_code", "integer", "HTTP status"),
    ("http.response.body.bytes", "integer", "response body size"),
    ("user_agent.original", "string", "User-Agent header"),
    ("event.duration", "integer", "duration in nanoseconds"),
    ("log.level", "string", "severity, lowercase"),
    ("log.file.path", "string", "file the line was read from"),
    ("template.id", "string", "template id from clustering"),
    ("template.text", "string", "template text from clustering"),
    ("event.hash", "string", "dedup fingerprint"),
    (
        "event.count",
        "integer",
        "how many identical events this one stands for",
    ),
    (
        "error.type",
        "string",
        "parse_failure when no parser understood the line",
    ),
    ("error.message", "string", "why the line was not understood"),
];

impl Field {
    /// Resolves an ECS field name (`source.ip`, `labels.team`, `kubernetes.pod.name`).
    pub fn resolve(name: &str) -> Result<Field, String> {
        Ok(match name {
            "@timestamp" => Field::Timestamp,
            "event.kind" => Field::Kind,
            "event.category" => Field::Category,
            "event.action" => Field::Action,
            "event.outcome" => Field::Outcome,
            "event.dataset" => Field::Dataset,
            "event.original" => Field::Original,
            "message" => Field::Message,
            "source.ip" => Field::SourceIp,
            "source.port" => Field::SourcePort,
            "user.name" => Field::UserName,
            "host.name" => Field::HostName,
            "service.name" => Field::ServiceName,
            "process.name" => Field::ProcessName,
            "process.pid" => Field::ProcessPid,
            "http.request.method" => Field::HttpMethod,
            "url.original" => Field::UrlOriginal,
            "url.path" => Field::UrlPath,
            "url.query" => Field::UrlQuery,
            "http.response.status_code" => Field::HttpStatus,
            "http.response.body.bytes" => Field::HttpBodyBytes,
            "user_agent.original" => Field::UserAgent,
            "event.duration" => Field::Duration,
            "log.level" => Field::LogLevel,
            "template.id" => Field::TemplateId,
            "template.text" => Field::TemplateText,
            other => {
                if let Some(label) = other.strip_prefix("labels.") {
                    if label.is_empty() {
                        return Err("empty label name".into());
                    }
                    Field::Label(label.to_owned())
                } else if EXTRA_FIELDS.contains(&other) {
                    Field::Extra(other.to_owned())
                } else {
                    return Err(format!("unknown field `{other}`"));
                }
            }
        })
    }
}

/// ECS fields that parsers set through `Event::extra`.
pub const EXTRA_FIELDS: &[&str] = &[
    "error.message",
    "file.path",
    "kubernetes.pod.name",
    "kubernetes.namespace",
    "kubernetes.container.name",
    "kubernetes.node.name",
    "container.id",
    "rule.name",
    "alert.fingerprint",
    "alert.group_key",
    "alert.group",
    "alert.group_status",
    "organization.id",
    "alert.status",
    "alert.summary",
    "alert.starts_at",
    "alert.ends_at",
    "process.exit_code",
    "process.target.name",
    "process.target.pid",
    "dll.name",
    "sudo.command",
    "sudo.target_user",
    "user.target.name",
    "user.id",
    "process.command_line",
    "process.executable",
    "process.parent.pid",
    "nginx.limit_zone",
    "url.domain",
    "http.request.referrer",
    "http.version",
    "destination.domain",
    "tls.client.subject",
];

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Numbers and template ids read as text are what `fmt` writes.
        #[test]
        fn numeric_fields_render_as_fmt_does(
            ts: i64, port: u16, pid: u32, status: u16, bytes: u64, ns: i64, id: u64,
        ) {
            let mut ev = Event::raw(Line::default(), Cow::Borrowed("test"));
            ev.timestamp = ts;
            ev.source_port = Some(port);
            ev.process_pid = Some(pid);
            ev.http_status = Some(status);
            ev.http_body_bytes = Some(bytes);
            ev.duration_ns = Some(ns);
            ev.template = Some(TemplateRef { id, text: Arc::from("x") });
            let mut buf = String::new();
            for (field, want) in [
                (Field::Timestamp, ts.to_string()),
                (Field::SourcePort, port.to_string()),
                (Field::ProcessPid, pid.to_string()),
                (Field::HttpStatus, status.to_string()),
                (Field::HttpBodyBytes, bytes.to_string()),
                (Field::Duration, ns.to_string()),
                (Field::TemplateId, format!("t-{id:016x}")),
            ] {
                proptest::prop_assert_eq!(ev.get(&field, &mut buf), Some(want.as_str()));
            }
            proptest::prop_assert_eq!(template_id_string(id), format!("t-{id:016x}"));
        }
    }
}
