//! Access logs that web servers and proxies write as JSON under names of
//! their own: Caddy (`request.uri`, `request.client_ip`, headers as arrays),
//! Traefik (`RequestPath`, `ClientHost`, `DownstreamStatus`) and Envoy as
//! Istio configures it (`path`, `downstream_remote_address`,
//! `response_code`, `response_flags`). Their
//! keys are renamed to ECS names before the generic placement, so their
//! requests carry the fields an access log line gives (`source.ip`,
//! `url.original`, `user_agent.original`, …) and reach the web detectors
//! and Sigma's webserver rules as nginx's and Apache's do. Each schema
//! applies only to lines holding a key its software alone writes, so a
//! plain `size` or `duration` elsewhere keeps its meaning.
//!
//! Key names follow each project's documentation: Caddy's `log` directive
//! (<https://caddyserver.com/docs/caddyfile/directives/log>) and Traefik's
//! access logs (<https://doc.traefik.io/traefik/observability/access-logs/>),
//! and the command operators of Envoy's access log, under the names
//! Istio's JSON encoding gives them
//! (<https://www.envoyproxy.io/docs/envoy/latest/configuration/observability/access_log/usage>).

use std::borrow::Cow;

use super::Leaf;

/// What a schema's key becomes.
#[derive(Clone, Copy)]
enum To {
    /// This ECS name, the value as it is.
    Field(&'static str),
    /// This ECS name, unless the record holds the other key, which gives
    /// it better.
    Unless(&'static str, &'static str),
    /// `event.duration` (nanoseconds) from seconds.
    Seconds,
    /// `event.duration` (nanoseconds) from milliseconds.
    Millis,
    /// `source.ip` from `address:port`.
    Address,
    /// Nothing: a second timestamp.
    Drop,
}

struct Schema {
    /// `event.dataset` of its lines.
    dataset: &'static str,
    /// A key only this software writes.
    marker: &'static str,
    keys: &'static [(&'static str, To)],
}

const SCHEMAS: &[Schema] = &[
    Schema {
        dataset: "caddy.access",
        marker: "request.uri",
        keys: &[
            // the client behind trusted proxies (Caddy 2.7+), else the peer
            ("request.client_ip", To::Field("source.ip")),
            (
                "request.remote_ip",
                To::Unless("source.ip", "request.client_ip"),
            ),
            ("request.remote_port", To::Field("source.port")),
            ("request.method", To::Field("http.request.method")),
            ("request.uri", To::Field("url.original")),
            ("request.host", To::Field("url.domain")),
            ("request.proto", To::Field("http.version")),
            (
                "request.headers.User-Agent",
                To::Field("user_agent.original"),
            ),
            (
                "request.headers.Referer",
                To::Field("http.request.referrer"),
            ),
            ("user_id", To::Field("user.name")),
            ("size", To::Field("http.response.body.bytes")),
            ("duration", To::Seconds),
        ],
    },
    Schema {
        dataset: "traefik.access",
        marker: "DownstreamStatus",
        keys: &[
            ("ClientHost", To::Field("source.ip")),
            ("ClientPort", To::Field("source.port")),
            ("ClientUsername", To::Field("user.name")),
            ("RequestMethod", To::Field("http.request.method")),
            ("RequestPath", To::Field("url.original")),
            ("RequestHost", To::Field("url.domain")),
            ("RequestProtocol", To::Field("http.version")),
            ("DownstreamStatus", To::Field("http.response.status_code")),
            (
                "DownstreamContentSize",
                To::Field("http.response.body.bytes"),
            ),
            ("request_User-Agent", To::Field("user_agent.original")),
            ("request_Referer", To::Field("http.request.referrer")),
            ("Duration", To::Field("event.duration")),
            ("StartUTC", To::Field("@timestamp")),
            // when the log line was written (the request's end), to the second
            ("time", To::Drop),
            ("StartLocal", To::Drop),
        ],
    },
    Schema {
        // Istio's JSON access log (its default from 1.18) and Envoy's
        // JSON formats that keep the operators' names
        dataset: "envoy.access",
        marker: "response_flags",
        keys: &[
            // Envoy's view of the client, through the proxies it trusts
            ("downstream_remote_address", To::Address),
            ("method", To::Field("http.request.method")),
            ("path", To::Field("url.original")),
            ("authority", To::Field("url.domain")),
            ("protocol", To::Field("http.version")),
            ("response_code", To::Field("http.response.status_code")),
            ("bytes_sent", To::Field("http.response.body.bytes")),
            ("user_agent", To::Field("user_agent.original")),
            ("duration", To::Millis),
            ("start_time", To::Field("@timestamp")),
        ],
    },
];

/// Renames the keys of the schema `flat` follows, if any, to ECS names
/// (an empty key is dropped); its dataset.
pub(super) fn rename(flat: &mut [Leaf<'_>]) -> Option<&'static str> {
    let schema = SCHEMAS
        .iter()
        .find(|s| flat.iter().any(|l| l.key == s.marker))?;
    // the better keys the record holds
    let better: Vec<&str> = schema
        .keys
        .iter()
        .filter_map(|(_, to)| match to {
            To::Unless(_, other) if flat.iter().any(|l| l.key == *other) => Some(*other),
            _ => None,
        })
        .collect();
    for leaf in flat.iter_mut() {
        let Some(&(_, to)) = schema.keys.iter().find(|(k, _)| leaf.key == *k) else {
            continue;
        };
        // headers are lists of values: the first is the one sent
        if leaf.text.starts_with('[') {
            leaf.text = first_string(&leaf.text).map_or(Cow::Borrowed(""), Cow::Owned);
        }
        let absent = matches!(leaf.text.as_ref(), "" | "-");
        leaf.key = Cow::Borrowed(match to {
            To::Drop => "",
            _ if absent => "",
            To::Field(name) => name,
            To::Unless(_, other) if better.contains(&other) => "",
            To::Unless(name, _) => name,
            To::Seconds => match super::seconds_as_ns(leaf.number, &leaf.text) {
                Some(ns) => {
                    leaf.text = Cow::Owned(ns.to_string());
                    "event.duration"
                }
                None => "",
            },
            To::Millis => match leaf
                .number
                .or_else(|| leaf.text.parse().ok())
                .filter(|ms| ms.is_finite() && *ms >= 0.0)
            {
                Some(ms) => {
                    leaf.text = Cow::Owned(((ms * 1e6) as i64).to_string());
                    "event.duration"
                }
                None => "",
            },
            To::Address => match crate::parse::elb::client(&leaf.text) {
                Some((ip, _)) => {
                    leaf.text = Cow::Owned(ip.to_owned());
                    "source.ip"
                }
                None => "",
            },
        });
    }
    Some(schema.dataset)
}

/// The first string of a JSON array's text.
fn first_string(array: &str) -> Option<String> {
    let items: Vec<Cow<'_, str>> = serde_json::from_str(array).ok()?;
    items.into_iter().next().map(Cow::into_owned)
}

#[cfg(test)]
mod tests {
    use crate::parse::tests::one;

    #[test]
    fn caddy_requests_carry_the_access_fields() {
        let ev = one(
            r#"{"level":"info","ts":1764842400.5,"logger":"http.log.access.log0","msg":"handled request","request":{"remote_ip":"10.0.0.2","remote_port":"51234","client_ip":"203.0.113.7","proto":"HTTP/1.1","method":"GET","host":"example.com","uri":"/.env?x=1","headers":{"User-Agent":["zgrab/0.x"],"Referer":["https://example.com/"]}},"bytes_read":0,"user_id":"","duration":0.0025,"size":12,"status":404,"resp_headers":{"Server":["Caddy"]}}"#,
        );
        assert_eq!(ev.dataset, "caddy.access");
        assert_eq!(ev.category, Some("web"));
        assert_eq!(ev.source_ip(), Some("203.0.113.7"));
        assert_eq!(ev.source_port, Some(51234));
        assert_eq!(ev.http_method.as_deref(), Some("GET"));
        assert_eq!(ev.url_original(), Some("/.env?x=1"));
        assert_eq!(ev.http_status, Some(404));
        assert_eq!(ev.http_body_bytes, Some(12));
        assert_eq!(ev.user_agent(), Some("zgrab/0.x"));
        assert_eq!(
            ev.extra("http.request.referrer"),
            Some("https://example.com/")
        );
        assert_eq!(ev.extra("url.domain"), Some("example.com"));
        assert_eq!(ev.duration_ns, Some(2_500_000));
        assert_eq!(ev.user_name(), None);
        assert_eq!(ev.timestamp, 1_764_842_400_500);
        // a version every client speaks is not worth a field
        assert_eq!(ev.extra("http.version"), None);
        assert_eq!(ev.action.as_deref(), Some("http_request"));
    }

    #[test]
    fn caddy_before_2_7_gives_the_peer_address() {
        let ev = one(
            r#"{"ts":1764842400,"logger":"http.log.access","request":{"remote_ip":"198.51.100.4","method":"CONNECT","uri":"mail.example.net:25","proto":"HTTP/1.7","headers":{}},"status":405,"size":0}"#,
        );
        assert_eq!(ev.source_ip(), Some("198.51.100.4"));
        assert_eq!(ev.extra("http.version"), Some("1.7"));
        assert_eq!(ev.user_agent(), None);
        // a CONNECT to another host is a proxy probe, as in an access line
        assert_eq!(ev.extra("destination.domain"), Some("mail.example.net"));
    }

    #[test]
    fn traefik_requests_carry_the_access_fields() {
        let ev = one(
            r#"{"ClientAddr":"203.0.113.8:41234","ClientHost":"203.0.113.8","ClientPort":"41234","ClientUsername":"-","DownstreamContentSize":19,"DownstreamStatus":404,"Duration":1234567,"RequestHost":"example.com","RequestMethod":"GET","RequestPath":"/wp-login.php","RequestProtocol":"HTTP/1.1","RouterName":"web@docker","StartUTC":"2026-12-04T10:00:00.25Z","level":"info","msg":"","request_User-Agent":"curl/8.0","time":"2026-12-04T10:00:01Z"}"#,
        );
        assert_eq!(ev.dataset, "traefik.access");
        assert_eq!(ev.category, Some("web"));
        assert_eq!(ev.source_ip(), Some("203.0.113.8"));
        assert_eq!(ev.source_port, Some(41234));
        assert_eq!(ev.user_name(), None);
        assert_eq!(ev.url_original(), Some("/wp-login.php"));
        assert_eq!(ev.http_status, Some(404));
        assert_eq!(ev.http_body_bytes, Some(19));
        assert_eq!(ev.user_agent(), Some("curl/8.0"));
        assert_eq!(ev.duration_ns, Some(1_234_567));
        // the request's start, not the second the line was written
        assert_eq!(
            crate::time::format_rfc3339(ev.timestamp),
            "2026-12-04T10:00:00.250Z"
        );
        assert_eq!(ev.label("RouterName"), Some("web@docker"));
    }

    #[test]
    fn istio_json_requests_carry_the_access_fields() {
        let ev = one(
            r#"{"authority":"shop.example","bytes_received":0,"bytes_sent":135,"connection_termination_details":null,"downstream_local_address":"10.44.1.27:8080","downstream_remote_address":"203.0.113.9:37652","duration":4,"method":"GET","path":"/.git/config","protocol":"HTTP/1.1","request_id":"84961386-6d84-929d-98bd-c5aee93b5c88","requested_server_name":null,"response_code":404,"response_code_details":"via_upstream","response_flags":"-","route_name":"default","start_time":"2026-12-04T10:00:00.409Z","upstream_cluster":"inbound|8080||","upstream_host":"10.44.1.27:8080","upstream_local_address":"127.0.0.6:41854","upstream_service_time":"3","upstream_transport_failure_reason":null,"user_agent":"zgrab/0.x","x_forwarded_for":"198.51.100.1"}"#,
        );
        assert_eq!(ev.dataset, "envoy.access");
        assert_eq!(ev.category, Some("web"));
        assert_eq!(ev.source_ip(), Some("203.0.113.9"));
        assert_eq!(ev.url_original(), Some("/.git/config"));
        assert_eq!(ev.http_method.as_deref(), Some("GET"));
        assert_eq!(ev.http_status, Some(404));
        assert_eq!(ev.http_body_bytes, Some(135));
        assert_eq!(ev.user_agent(), Some("zgrab/0.x"));
        assert_eq!(ev.duration_ns, Some(4_000_000));
        assert_eq!(ev.extra("url.domain"), Some("shop.example"));
        assert_eq!(
            crate::time::format_rfc3339(ev.timestamp),
            "2026-12-04T10:00:00.409Z"
        );
    }

    #[test]
    fn plain_json_keeps_its_keys() {
        let ev = one(r#"{"ts":"2026-01-16T06:48:51Z","msg":"copied","size":12,"duration":3}"#);
        assert_eq!(ev.dataset, "json");
        assert_eq!(ev.http_body_bytes, None);
        assert_eq!(ev.duration_ns, None);
        assert_eq!(ev.label("size"), Some("12"));
    }
}
