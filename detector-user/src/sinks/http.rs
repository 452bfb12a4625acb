//! HTTP(S) batch delivery: generic JSON array, Splunk HEC, Elastic `_bulk`. TLS by rustls
//! with the system's CA store plus an optional CA file; certificates are always verified.
//! The auth token comes from a file and appears in no log or error message.
//!
//! Success is a 2xx for the whole batch (for `_bulk`, also every item created or already
//! present: `_id` is the alert id, so Elastic itself dedups a redelivered batch).

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde_json::Value;

use super::{BoxFuture, Record, Sink, SinkError};
use crate::config::{
    material::{material, Token},
    HttpConfig, HttpFlavor,
};

/// HTTP sink.
pub(crate) struct HttpSink {
    client: reqwest::Client,
    url: String,
    flavor: HttpFlavor,
    index: String,
    host: String,
    auth: Option<Token>,
}

impl HttpSink {
    /// Builds the client (TLS material and token are read now: a bad file fails at start).
    pub(crate) fn new(c: &HttpConfig, host: &str) -> Result<Self, SinkError> {
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(c.timeout)
            .connect_timeout(c.timeout)
            .user_agent(concat!("detector/", env!("CARGO_PKG_VERSION")))
            // Redirects could send the token elsewhere.
            .redirect(reqwest::redirect::Policy::none());
        let m = material(c).map_err(|(_, e)| SinkError::Setup(e))?;
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
    pub(crate) fn body(&self, batch: &[Record]) -> (Vec<u8>, &'static str) {
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
