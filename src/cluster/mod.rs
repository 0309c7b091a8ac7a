//! Clustering (SPEC 6): log lines grouped into templates.
//!
//! [`drain`] mines templates online, [`mask`] normalizes variable tokens,
//! [`logformat`] extracts `<Content>` with the Loghub benchmark's header
//! syntax, and [`eval`] scores groupings against Loghub ground truth. The
//! pipeline stage ([`Clusterer`]) sets `template.id` and `template.text` on
//! every event from its `message`, except for HTTP requests, whose line
//! format is already known: they are clustered on what varies meaningfully,
//! method, path segments and status (`GET products <*> NOT_FOUND`), not on the
//! whole line with its user agent and timestamp.

pub mod drain;
pub mod eval;
pub mod logformat;
pub mod mask;
pub mod words;

use crate::event::{Event, TemplateRef};
pub use drain::{Drain, DrainConfig};

/// The cluster stage: one miner for all sources.
pub struct Clusterer {
    drain: Drain,
    /// A request's key for [`Drain::add_keyed`], rebuilt per request.
    key: Vec<u8>,
}

impl Clusterer {
    pub fn new(cfg: DrainConfig) -> Clusterer {
        Clusterer {
            drain: Drain::new(cfg),
            key: Vec::new(),
        }
    }

    /// Sets the template of each event.
    pub fn process(&mut self, events: &mut [Event]) {
        for ev in events {
            let idx = match (ev.http_method.as_deref(), ev.url_path(), ev.http_status) {
                (Some(method), Some(path), Some(status)) => {
                    request_key(&mut self.key, method, path, status);
                    let status = status_token(status);
                    self.drain.add_keyed(
                        &self.key,
                        std::iter::once(method)
                            .chain(Segments(path))
                            .chain(std::iter::once(status)),
                    )
                }
                _ => self.drain.add(ev.message()),
            };
            let c = self.drain.cluster(idx);
            ev.template = Some(TemplateRef {
                id: c.id,
                text: c.text.clone(),
            });
        }
    }

    /// The miner's whole state, for a checkpoint.
    pub fn snapshot(&self) -> &Drain {
        &self.drain
    }

    /// Continues from a checkpoint's miner, under the configured settings.
    pub fn restore(&mut self, mut drain: Drain) {
        drain.set_config(self.drain.config().clone());
        self.drain = drain;
    }

    pub fn template_count(&self) -> usize {
        self.drain.clusters().len()
    }

    /// Template ids ever given out: each template's first, and a new one
    /// each time it generalised. Stores keep a row per id, so their
    /// `templates_latest` counts these, not [`Self::template_count`].
    pub fn template_versions(&self) -> usize {
        self.drain.clusters().len() + self.drain.generalized as usize
    }

    pub fn drain(&self) -> &Drain {
        &self.drain
    }
}

/// What fixes a request's tokens, without ambiguity: the method's length,
/// the method, the status, then the path.
fn request_key(key: &mut Vec<u8>, method: &str, path: &str, status: u16) {
    key.clear();
    key.extend_from_slice(&(method.len() as u32).to_le_bytes());
    key.extend_from_slice(method.as_bytes());
    key.extend_from_slice(&status.to_le_bytes());
    key.extend_from_slice(path.as_bytes());
}

/// The non-empty segments of a URL path. A byte loop: segments are a few
/// bytes long, too short for a general searcher's setup to pay off.
#[derive(Clone)]
struct Segments<'a>(&'a str);

impl<'a> Iterator for Segments<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        loop {
            if self.0.is_empty() {
                return None;
            }
            let end = self
                .0
                .bytes()
                .position(|b| b == b'/')
                .unwrap_or(self.0.len());
            let segment = &self.0[..end];
            self.0 = self.0.get(end + 1..).unwrap_or("");
            if !segment.is_empty() {
                return Some(segment);
            }
        }
    }
}

/// Status codes as reason phrases in capitals: keywords to the miner
/// (`drain::is_keyword`), so a 404 template is never a 200 one however
/// short the path, and readable in template text.
#[allow(clippy::match_overlapping_arm)] // specific codes first, then their class
fn status_token(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "CREATED",
        204 => "NO_CONTENT",
        206 => "PARTIAL_CONTENT",
        301 => "MOVED_PERMANENTLY",
        302 => "FOUND",
        304 => "NOT_MODIFIED",
        400 => "BAD_REQUEST",
        401 => "UNAUTHORIZED",
        403 => "FORBIDDEN",
        404 => "NOT_FOUND",
        405 => "METHOD_NOT_ALLOWED",
        408 => "REQUEST_TIMEOUT",
        413 => "PAYLOAD_TOO_LARGE",
        429 => "TOO_MANY_REQUESTS",
        444 => "NO_RESPONSE",
        499 => "CLIENT_CLOSED_REQUEST",
        500 => "INTERNAL_SERVER_ERROR",
        502 => "BAD_GATEWAY",
        503 => "SERVICE_UNAVAILABLE",
        504 => "GATEWAY_TIMEOUT",
        100..=199 => "INFORMATIONAL",
        200..=299 => "SUCCESS",
        300..=399 => "REDIRECTION",
        400..=499 => "CLIENT_ERROR",
        _ => "SERVER_ERROR",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{Format, SourceState, parse_line};

    #[test]
    fn segments_are_the_non_empty_parts_between_slashes() {
        for path in ["", "/", "//", "/a", "a/b", "/a//b/", "/é/ü//x", "///a"] {
            let want: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
            assert_eq!(Segments(path).collect::<Vec<_>>(), want, "{path}");
        }
    }

    #[test]
    fn access_lines_cluster_on_method_path_and_status() {
        let mut st = SourceState::new(Format::Auto, 0);
        let mut events = vec![
            parse_line(
                r#"10.0.0.1 - - [03/Mar/2026:10:00:00 +0000] "GET /products/42 HTTP/1.1" 200 5 "-" "curl/8""#,
                &mut st,
                0,
            ),
            parse_line(
                r#"10.0.0.2 - - [03/Mar/2026:10:00:01 +0000] "GET /products/77 HTTP/1.1" 200 9 "-" "Mozilla/5.0 (X11)""#,
                &mut st,
                0,
            ),
            parse_line(
                r#"10.0.0.2 - - [03/Mar/2026:10:00:01 +0000] "GET /products/77 HTTP/1.1" 404 9 "-" "Mozilla/5.0 (X11)""#,
                &mut st,
                0,
            ),
        ];
        let mut c = Clusterer::new(DrainConfig::default());
        c.process(&mut events);
        let t: Vec<&str> = events
            .iter()
            .map(|e| &*e.template.as_ref().unwrap().text)
            .collect();
        assert_eq!(t[1], "GET products <*> OK");
        assert_eq!(t[2], "GET products <*> NOT_FOUND");
    }
}
