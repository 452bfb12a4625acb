//! HTTP(S) batch delivery: generic JSON array, Splunk HEC, Elastic `_bulk`. TLS by rustls
//! with the system's CA store plus an optional CA file; certificates are always verified.
//! The auth token comes from a file and appears in no log or error message.
//!
//! Success is a 2xx for the whole batch (for `_bulk`, also every item created or already
//! present: `_id` is the alert id, so Elastic itself dedups a redelivered batch).

use std::path::Path;

use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use serde_json::Value;

use super::{BoxFuture, Record, Sink, SinkError};
use crate::config::{HttpConfig, HttpFlavor};

/// A bearer-like secret that never prints.
struct Token(HeaderValue);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token([REDACTED])")
    }
}

/// HTTP sink.
pub struct HttpSink {
    client: reqwest::Client,
    url: String,
    flavor: HttpFlavor,
    index: String,
    host: String,
    auth: Option<Token>,
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, SinkError> {
    std::fs::read(path).map_err(|e| SinkError::Setup(format!("{what} {}: {e}", path.display())))
}

/// What an HTTP sink reads from files: extra CA certificates, the client identity, the
/// token header.
struct Material {
    roots: Vec<reqwest::Certificate>,
    identity: Option<reqwest::Identity>,
    auth: Option<Token>,
}

/// Reads and parses the TLS material and token a config names; an error says which key.
fn material(c: &HttpConfig) -> Result<Material, (&'static str, SinkError)> {
    let setup = |key: &'static str, msg: String| (key, SinkError::Setup(msg));
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

/// Checks the files an HTTP sink's config names (token, CA, client certificate) the way
/// [`HttpSink::new`] reads them, without building a client: the config's validation runs it
/// before anything is attached. The error names the key (`tls.ca_file`…) and the problem.
pub fn check_material(c: &HttpConfig) -> Result<(), (&'static str, String)> {
    material(c).map(|_| ()).map_err(|(k, e)| (k, e.to_string()))
}

impl HttpSink {
    /// Builds the client (TLS material and token are read now: a bad file fails at start).
    pub fn new(c: &HttpConfig, host: &str) -> Result<Self, SinkError> {
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(c.timeout)
            .connect_timeout(c.timeout)
            .user_agent(concat!("detector/", env!("CARGO_PKG_VERSION")))
            // Redirects could send the token elsewhere.
            .redirect(reqwest::redirect::Policy::none());
        let m = material(c).map_err(|(_, e)| e)?;
        for cert in m.roots {
            b = b.add_root_certificate(cert);
        }
        if let Some(id) = m.identity {
            b = b.identity(id);
        }
        let client = b
            .build()
            .map_err(|e| SinkError::Setup(format!("HTTP client: {e}")))?;
        Ok(Self {
            client,
            url: c.url.clone(),
            flavor: c.flavor,
            index: c.index.clone().unwrap_or_else(|| "detector-alerts".into()),
            host: host.to_string(),
            auth: m.auth,
        })
    }

    /// The request body and its content type for a batch.
    pub fn body(&self, batch: &[Record]) -> (Vec<u8>, &'static str) {
        let mut out = Vec::new();
        match self.flavor {
            HttpFlavor::Generic => {
                out.push(b'[');
                for (i, r) in batch.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(&r.body);
                }
                out.push(b']');
                (out, "application/json")
            }
            HttpFlavor::SplunkHec => {
                // HEC takes several event objects back to back in one request.
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0);
                for r in batch {
                    let ev: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
                    let env = serde_json::json!({
                        "time": now,
                        "host": self.host,
                        "source": "detector",
                        "sourcetype": "_json",
                        "event": ev,
                    });
                    out.extend_from_slice(env.to_string().as_bytes());
                    out.push(b'\n');
                }
                (out, "application/json")
            }
            HttpFlavor::Elastic => {
                for r in batch {
                    let action = serde_json::json!({"create": {"_index": self.index, "_id": r.id}});
                    out.extend_from_slice(action.to_string().as_bytes());
                    out.push(b'\n');
                    out.extend_from_slice(&r.body);
                    out.push(b'\n');
                }
                (out, "application/x-ndjson")
            }
        }
    }

    async fn post(&self, batch: &[Record]) -> Result<(), SinkError> {
        let (body, ctype) = self.body(batch);
        let mut req = self
            .client
            .post(&self.url)
            .header(CONTENT_TYPE, ctype)
            .body(body);
        if let Some(t) = &self.auth {
            req = req.header(AUTHORIZATION, t.0.clone());
        }
        // Error texts of reqwest name the URL, never headers: the token stays out of logs.
        let resp = req
            .send()
            .await
            .map_err(|e| SinkError::Transport(format!("{}: {e}", self.url)))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(SinkError::Status {
                status: status.as_u16(),
                body: text.chars().take(200).collect(),
            });
        }
        if self.flavor == HttpFlavor::Elastic {
            bulk_ok(&text).map_err(|body| SinkError::Status {
                status: status.as_u16(),
                body,
            })?;
        }
        Ok(())
    }
}

/// A `_bulk` answer is a success when every item was created or already existed (409).
fn bulk_ok(text: &str) -> Result<(), String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("_bulk answer: {e}"))?;
    if v["errors"] != Value::Bool(true) {
        return Ok(());
    }
    let items = v["items"].as_array().cloned().unwrap_or_default();
    for it in &items {
        let st = it["create"]["status"].as_u64().unwrap_or(0);
        if !(200..300).contains(&st) && st != 409 {
            return Err(format!(
                "_bulk item failed: {}",
                it["create"]["error"]
                    .to_string()
                    .chars()
                    .take(200)
                    .collect::<String>()
            ));
        }
    }
    Ok(())
}

impl Sink for HttpSink {
    fn deliver<'a>(&'a mut self, batch: &'a [Record]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(self.post(batch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(flavor: HttpFlavor) -> HttpSink {
        let c: HttpConfig = crate::input::de::from_str(
            "test.yaml",
            &format!(
                "url: http://127.0.0.1:1/x\nflavor: {}\n",
                match flavor {
                    HttpFlavor::Generic => "generic",
                    HttpFlavor::SplunkHec => "splunk_hec",
                    HttpFlavor::Elastic => "elastic",
                }
            ),
            &crate::input::CONFIG,
        )
        .unwrap();
        HttpSink::new(&c, "h").unwrap()
    }

    fn recs() -> Vec<Record> {
        (0..2)
            .map(|i| Record {
                id: format!("id-{i}"),
                body: format!("{{\"id\":\"id-{i}\"}}").into_bytes(),
            })
            .collect()
    }

    #[test]
    fn bodies() {
        let (b, _) = sink(HttpFlavor::Generic).body(&recs());
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v[1]["id"], "id-1");
        let (b, _) = sink(HttpFlavor::SplunkHec).body(&recs());
        let lines: Vec<Value> = String::from_utf8(b)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["event"]["id"], "id-0");
        assert_eq!(lines[0]["host"], "h");
        let (b, ct) = sink(HttpFlavor::Elastic).body(&recs());
        assert_eq!(ct, "application/x-ndjson");
        let lines: Vec<Value> = String::from_utf8(b)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["create"]["_id"], "id-0");
        assert_eq!(lines[3]["id"], "id-1");
    }

    #[test]
    fn bulk_answers() {
        assert!(bulk_ok(r#"{"errors":false,"items":[]}"#).is_ok());
        assert!(bulk_ok(
            r#"{"errors":true,"items":[{"create":{"status":409}},{"create":{"status":201}}]}"#
        )
        .is_ok());
        assert!(bulk_ok(
            r#"{"errors":true,"items":[{"create":{"status":429,"error":{"type":"x"}}}]}"#
        )
        .is_err());
    }

    #[test]
    fn token_file_problems_fail_at_start_without_echoing_the_token() {
        let d = tempfile::tempdir().unwrap();
        let tok = d.path().join("tok");
        std::fs::write(&tok, "s3cr3t\nline2").unwrap();
        let c: HttpConfig = crate::input::de::from_str(
            "test.yaml",
            &format!(
                "url: https://127.0.0.1:1/x\ntoken_file: {}\n",
                tok.display()
            ),
            &crate::input::CONFIG,
        )
        .unwrap();
        let Err(e) = HttpSink::new(&c, "h") else {
            panic!("a token with a newline inside is not a header value")
        };
        assert!(!e.to_string().contains("s3cr3t"), "{e}");
        std::fs::write(&tok, "s3cr3t\n").unwrap();
        let s = HttpSink::new(&c, "h").unwrap();
        assert!(!format!("{:?}", s.auth).contains("s3cr3t"));
    }
}
