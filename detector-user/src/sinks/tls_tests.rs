//! The HTTPS sink against a real TLS server (rustls) on 127.0.0.1, with a CA and certificates
//! made here: an untrusted server certificate is rejected by default, the configured CA file
//! makes it trusted, and a configured client certificate is presented.

use std::{
    path::Path,
    sync::{Arc, Mutex},
};

use http_body_util::BodyExt as _;
use hyper::{server::conn::http1, service::service_fn, Request, Response};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, CertifiedKey, IsCa, KeyPair};
use tokio_rustls::{
    rustls::{
        self,
        pki_types::{pem::PemObject as _, CertificateDer, PrivateKeyDer},
        server::WebPkiClientVerifier,
    },
    TlsAcceptor,
};

use super::{http::HttpSink, Record, Sink as _, SinkError};
use crate::config::HttpConfig;

fn ca(name: &str) -> CertifiedKey {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(rcgen::DnType::CommonName, name.to_string());
    let key_pair = KeyPair::generate().unwrap();
    let cert = p.self_signed(&key_pair).unwrap();
    CertifiedKey { cert, key_pair }
}

fn leaf(names: &[&str], issuer: &CertifiedKey) -> CertifiedKey {
    let p =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    let key_pair = KeyPair::generate().unwrap();
    let cert = p
        .signed_by(&key_pair, &issuer.cert, &issuer.key_pair)
        .unwrap();
    CertifiedKey { cert, key_pair }
}

/// What the server saw: request bodies, and whether each connection presented a client
/// certificate (its DER).
#[derive(Default)]
struct Seen {
    bodies: Vec<String>,
    client_certs: Vec<Option<Vec<u8>>>,
}

/// An HTTPS server on 127.0.0.1 presenting `server`, accepting (not requiring) client
/// certificates issued by `client_ca`.
async fn serve(server: &CertifiedKey, client_ca: &CertifiedKey) -> (u16, Arc<Mutex<Seen>>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(client_ca.cert.der().clone()).unwrap();
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(server.key_pair.serialize_pem().as_bytes()).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![CertificateDer::from(server.cert.der().to_vec())], key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let seen = s.clone();
            tokio::spawn(async move {
                // A client that rejects our certificate aborts the handshake: nothing to serve.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let cert = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| c.to_vec());
                seen.lock().unwrap().client_certs.push(cert);
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let body = req.into_body().collect().await?.to_bytes();
                        seen.lock()
                            .unwrap()
                            .bodies
                            .push(String::from_utf8_lossy(&body).into_owned());
                        Ok::<_, hyper::Error>(Response::new(http_body_util::Full::new(
                            hyper::body::Bytes::from_static(b"{}"),
                        )))
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (port, seen)
}

fn write(dir: &Path, name: &str, pem: String) -> String {
    let p = dir.join(name);
    std::fs::write(&p, pem).unwrap();
    p.display().to_string()
}

fn sink(yaml: &str) -> HttpSink {
    let c: HttpConfig =
        crate::input::de::from_str("test.yaml", yaml, &crate::input::CONFIG).unwrap();
    HttpSink::new(&c, "h").unwrap()
}

fn batch() -> Vec<Record> {
    vec![Record {
        id: "tls-1".into(),
        body: br#"{"id":"tls-1"}"#.to_vec(),
    }]
}

#[tokio::test]
async fn https_verifies_by_default_trusts_the_ca_file_and_presents_a_client_cert() {
    let server_ca = ca("test server CA");
    let client_ca = ca("test client CA");
    let server = leaf(&["localhost", "127.0.0.1"], &server_ca);
    let client = leaf(&["detector-agent"], &client_ca);
    let (port, seen) = serve(&server, &client_ca).await;
    let d = tempfile::tempdir().unwrap();
    let ca_file = write(d.path(), "ca.pem", server_ca.cert.pem());
    let cert_file = write(d.path(), "client.pem", client.cert.pem());
    let key_file = write(d.path(), "client.key", client.key_pair.serialize_pem());
    let url = format!("https://127.0.0.1:{port}/alerts");

    // Verification on, the server's CA unknown: refused, nothing delivered.
    let mut s = sink(&format!("url: {url}\n"));
    let e = s.deliver(&batch()).await.unwrap_err();
    assert!(matches!(e, SinkError::Transport(_)), "{e:?}");
    // Same with a CA file naming another CA.
    let other = write(d.path(), "other.pem", client_ca.cert.pem());
    let mut s = sink(&format!("url: {url}\ntls:\n  ca_file: {other}\n"));
    assert!(s.deliver(&batch()).await.is_err());
    assert!(seen.lock().unwrap().bodies.is_empty());

    // The CA file: delivered, no client certificate presented.
    let mut s = sink(&format!("url: {url}\ntls:\n  ca_file: {ca_file}\n"));
    s.deliver(&batch()).await.unwrap();
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.bodies.len(), 1);
        assert!(seen.bodies[0].contains("tls-1"), "{:?}", seen.bodies);
        assert_eq!(seen.client_certs, vec![None]);
    }

    // With a client certificate: the server sees it.
    let mut s = sink(&format!(
        "url: {url}\ntls:\n  ca_file: {ca_file}\n  client_cert: {cert_file}\n  client_key: {key_file}\n"
    ));
    s.deliver(&batch()).await.unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.bodies.len(), 2);
    assert_eq!(
        seen.client_certs.last().unwrap().as_deref(),
        Some(client.cert.der().as_ref())
    );
}
