//! The files an HTTP sink's config names (token, CA, client certificate), read and parsed:
//! the config's validation checks them before anything is attached, and the HTTP sink builds
//! its client from the same result, so both read them one way.

use std::path::Path;

use reqwest::header::HeaderValue;

use super::{HttpConfig, HttpFlavor};

/// A bearer-like secret that never prints.
pub(crate) struct Token(pub HeaderValue);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token([REDACTED])")
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{what} {}: {e}", path.display()))
}

/// What an HTTP sink reads from files: extra CA certificates, the client identity, the
/// token header.
pub(crate) struct Material {
    /// Extra CA certificates (`tls.ca_file`).
    pub(crate) roots: Vec<reqwest::Certificate>,
    /// The client certificate and key (`tls.client_cert`, `tls.client_key`).
    pub(crate) identity: Option<reqwest::Identity>,
    /// The `Authorization` header made from `token_file`.
    pub(crate) auth: Option<Token>,
}

/// Reads and parses the TLS material and token a config names; an error says which key.
pub(crate) fn material(c: &HttpConfig) -> Result<Material, (&'static str, String)> {
    let setup = |key: &'static str, msg: String| (key, msg);
    let mut roots = Vec::new();
    if let Some(ca) = &c.tls.ca_file {
        let pem = read(ca, "tls.ca_file").map_err(|e| ("tls.ca_file", e))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| setup("tls.ca_file", format!("tls.ca_file {}: {e}", ca.display())))?;
        if certs.is_empty() {
            return Err(setup(
                "tls.ca_file",
                format!("tls.ca_file {}: no PEM certificate", ca.display()),
            ));
        }
        roots = certs;
    }
    let mut identity = None;
    if let (Some(cert), Some(key)) = (&c.tls.client_cert, &c.tls.client_key) {
        let mut pem = read(cert, "tls.client_cert").map_err(|e| ("tls.client_cert", e))?;
        pem.push(b'\n');
        pem.extend_from_slice(&read(key, "tls.client_key").map_err(|e| ("tls.client_key", e))?);
        identity = Some(reqwest::Identity::from_pem(&pem).map_err(|e| {
            setup(
                "tls.client_cert",
                format!("tls.client_cert {}: {e}", cert.display()),
            )
        })?);
    }
    let auth = match &c.token_file {
        Some(p) => {
            let raw = read(p, "token_file").map_err(|e| ("token_file", e))?;
            let bad = |why: &str| setup("token_file", format!("token_file {}: {why}", p.display()));
            let tok = String::from_utf8(raw).map_err(|_| bad("not UTF-8"))?;
            let tok = tok.trim();
            if tok.is_empty() {
                return Err(bad("empty"));
            }
            let scheme = match c.flavor {
                HttpFlavor::Generic => "Bearer",
                HttpFlavor::SplunkHec => "Splunk",
                HttpFlavor::Elastic => "ApiKey",
            };
            let mut v = HeaderValue::from_str(&format!("{scheme} {tok}"))
                .map_err(|_| bad("not a valid header value"))?;
            v.set_sensitive(true);
            Some(Token(v))
        }
        None => None,
    };
    Ok(Material {
        roots,
        identity,
        auth,
    })
}

/// Checks the files an HTTP sink's config names the way the sink reads them, without
/// building a client. The error names the key (`tls.ca_file`…) and the problem.
pub(crate) fn check(c: &HttpConfig) -> Result<(), (&'static str, String)> {
    material(c).map(|_| ())
}
