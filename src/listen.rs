//! Inbound connections: accept loops that survive a full file table,
//! connection caps per listener and per client address, and an HTTP
//! server that drops clients too slow to send their headers or that sit
//! idle.
//!
//! A listener is a resource anyone on the network can spend: one client
//! opening a thousand connections and sending a byte a second must cost
//! bounded memory and file descriptors and must not keep `/healthz` from
//! answering. So a connection over either cap is closed at once, headers
//! must arrive within `header_read_timeout`, a connection with no traffic
//! for `idle_timeout` is closed, and when `accept` fails (`EMFILE` when
//! the process is out of descriptors) the loop waits, doubling up to a
//! second, and says so once per ten seconds rather than once per retry.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Waits after a failed `accept`, longer each time in a row, and warns
/// at most once per ten seconds with how many failures it folded in.
pub struct AcceptBackoff {
    what: &'static str,
    delay: Duration,
    last_warn: Option<Instant>,
    folded: u64,
}

impl AcceptBackoff {
    pub fn new(what: &'static str) -> AcceptBackoff {
        AcceptBackoff {
            what,
            delay: Duration::ZERO,
            last_warn: None,
            folded: 0,
        }
    }

    /// An accept succeeded: the next failure starts from a short wait.
    pub fn ok(&mut self) {
        self.delay = Duration::ZERO;
    }

    /// An accept failed: counts it, warns if due, and waits.
    pub async fn failed(&mut self, e: &io::Error) {
        metrics::counter!(crate::metrics::ACCEPT_ERRORS, "listener" => self.what).increment(1);
        self.folded += 1;
        if self
            .last_warn
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
        {
            let hint = if e.raw_os_error() == Some(24) || e.raw_os_error() == Some(23) {
                " (out of file descriptors: raise the open-file limit or lower the connection caps)"
            } else {
                ""
            };
            tracing::warn!(
                listener = self.what,
                error = %e,
                failures = self.folded,
                "accept failed; backing off{hint}"
            );
            self.last_warn = Some(Instant::now());
            self.folded = 0;
        }
        self.delay = (self.delay * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
        tokio::time::sleep(self.delay).await;
    }
}

/// Connections per client address, bounded.
pub struct ClientSlots {
    per_client: usize,
    held: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place in [`ClientSlots`]; freed when dropped.
pub struct ClientSlot {
    slots: Arc<ClientSlots>,
    ip: IpAddr,
}

impl ClientSlots {
    pub fn new(per_client: usize) -> Arc<ClientSlots> {
        Arc::new(ClientSlots {
            per_client: per_client.max(1),
            held: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for `ip`, or `None` when it already holds its share.
    pub fn take(self: &Arc<Self>, ip: IpAddr) -> Option<ClientSlot> {
        let mut held = self.held.lock().ok()?;
        let n = held.entry(ip).or_insert(0);
        if *n >= self.per_client {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            slots: self.clone(),
            ip,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        if let Ok(mut held) = self.slots.held.lock()
            && let Some(n) = held.get_mut(&self.ip)
        {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.ip);
            }
        }
    }
}

/// What bounds one listener's connections.
#[derive(Clone, Debug)]
pub struct ConnLimits {
    pub max_connections: usize,
    pub max_per_client: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
}

/// A connection admitted under both caps; dropping it frees its places.
pub struct Admitted {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    /// Hold while the connection lives.
    pub places: Places,
}

/// A connection's places under the listener's and its client's caps.
pub struct Places {
    _listener: OwnedSemaphorePermit,
    _client: ClientSlot,
}

/// Accepts connections under `limits`' caps until the listener fails
/// for good; connections over a cap are closed at once and counted.
pub struct Acceptor {
    listener: TcpListener,
    what: &'static str,
    slots: Arc<Semaphore>,
    clients: Arc<ClientSlots>,
    backoff: AcceptBackoff,
}

impl Acceptor {
    pub fn new(listener: TcpListener, what: &'static str, limits: &ConnLimits) -> Acceptor {
        Acceptor {
            listener,
            what,
            slots: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            clients: ClientSlots::new(limits.max_per_client),
            backoff: AcceptBackoff::new(what),
        }
    }

    /// The next connection both caps admit.
    pub async fn next(&mut self) -> Admitted {
        loop {
            let (stream, peer) = match self.listener.accept().await {
                Ok(a) => {
                    self.backoff.ok();
                    a
                }
                Err(e) => {
                    self.backoff.failed(&e).await;
                    continue;
                }
            };
            let refuse = |why: &'static str| {
                metrics::counter!(crate::metrics::CONNECTIONS_REFUSED, "listener" => self.what, "reason" => why)
                    .increment(1);
            };
            let Ok(permit) = self.slots.clone().try_acquire_owned() else {
                refuse("listener_full");
                continue;
            };
            let Some(client) = self.clients.take(peer.ip()) else {
                refuse("client_full");
                continue;
            };
            return Admitted {
                stream,
                peer,
                places: Places {
                    _listener: permit,
                    _client: client,
                },
            };
        }
    }
}

/// Serves `router` on `listener` over HTTP/1.1 under `limits`; each
/// request carries the peer address as axum's `ConnectInfo`.
pub async fn serve_http(listener: TcpListener, router: axum::Router, limits: ConnLimits) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt;

    let mut acceptor = Acceptor::new(listener, "api", &limits);
    loop {
        let Admitted {
            stream,
            peer,
            places,
        } = acceptor.next().await;
        let router = router.clone();
        let limits = limits.clone();
        tokio::spawn(async move {
            let activity = Arc::new(AtomicU64::new(crate::flow::mono_ns()));
            let io = TokioIo::new(Watched {
                inner: stream,
                activity: activity.clone(),
            });
            let service = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                router.clone().oneshot(req.map(axum::body::Body::new))
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .keep_alive(true);
            let conn_fut = builder.serve_connection(io, service);
            tokio::pin!(conn_fut);
            let idle_ns = limits.idle_timeout.as_nanos() as u64;
            let tick = (limits.idle_timeout / 4).max(Duration::from_millis(50));
            let mut closing: Option<Instant> = None;
            loop {
                tokio::select! {
                    _ = conn_fut.as_mut() => break,
                    _ = tokio::time::sleep(tick) => {
                        let quiet = crate::flow::mono_ns().saturating_sub(activity.load(Ordering::Relaxed));
                        match closing {
                            // a connection that stays silent after being asked
                            // to close (a response nobody reads) is dropped
                            Some(t) if t.elapsed() >= limits.idle_timeout => {
                                metrics::counter!(crate::metrics::CONNECTIONS_CLOSED, "listener" => "api", "reason" => "unresponsive").increment(1);
                                break;
                            }
                            Some(_) => {}
                            None if quiet >= idle_ns => {
                                metrics::counter!(crate::metrics::CONNECTIONS_CLOSED, "listener" => "api", "reason" => "idle").increment(1);
                                conn_fut.as_mut().graceful_shutdown();
                                closing = Some(Instant::now());
                            }
                            None => {}
                        }
                    }
                }
            }
            drop(places);
        });
    }
}

/// A stream that records when bytes last moved either way.
struct Watched {
    inner: TcpStream,
    activity: Arc<AtomicU64>,
}

impl Watched {
    fn touch(&self) {
        self.activity
            .store(crate::flow::mono_ns(), Ordering::Relaxed);
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_holds_at_most_its_share_and_gets_it_back() {
        let slots = ClientSlots::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let one = slots.take(a).unwrap();
        let _two = slots.take(a).unwrap();
        assert!(slots.take(a).is_none());
        assert!(slots.take(b).is_some(), "another client is not affected");
        drop(one);
        assert!(slots.take(a).is_some());
    }
}
