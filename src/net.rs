//! Outbound HTTP clients: every one speaks HTTPS (rustls), trusting the
//! system's roots (`SSL_CERT_FILE` and `SSL_CERT_DIR` are honoured) and,
//! where a `ca_file` is configured, that PEM bundle too (a private CA in
//! front of Slack, Jira, a webhook receiver or a connector's API).

use std::time::Duration;

/// A client with `timeout` per request, trusting `ca_file`'s certificates
/// as well as the system's.
pub fn http_client(ca_file: Option<&str>, timeout: Duration) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)));
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|e| format!("ca_file {path}: {e}"))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("ca_file {path}: {e}"))?;
        if certs.is_empty() {
            return Err(format!("ca_file {path}: no PEM certificate in it"));
        }
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    b.build().map_err(|e| format!("HTTP client: {e}"))
}
