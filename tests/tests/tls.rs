//! HTTPS with a self-signed certificate: rustls and curl clients work, TLS
//! 1.1 is refused, and plain HTTP stays on loopback unless allowed.

use std::process::Command;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use ostore_tests::{OstoreProcess, guest, run_ostore, write_manifest};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_tls_1_2_and_1_3_and_refuses_1_1() {
    let dir = tempfile::tempdir().unwrap();
    let tls_dir = dir.path().join("tls");
    let made = run_ostore(
        &["tls", "self-signed", "--out-dir", tls_dir.to_str().unwrap()],
        &[],
    );
    assert!(made.success, "{}", made.stderr);
    let (cert, key) = (tls_dir.join("cert.pem"), tls_dir.join("key.pem"));
    let manifest = write_manifest(
        dir.path(),
        "secure",
        &[("/hello", "hello", &guest("hello"))],
    );
    let data = dir.path().join("data");
    let host = OstoreProcess::start(&[
        "-f",
        manifest.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);

    // A rustls client that trusts the certificate.
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(host.addr).await.unwrap();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .uri("/hello")
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.into_body().collect().await.unwrap().to_bytes(),
        "hello, world"
    );

    // curl, trusting the certificate, over TLS 1.2 and 1.3.
    let url = format!("https://localhost:{}/hello", host.addr.port());
    for version in [
        ["--tlsv1.2", "--tls-max", "1.2"],
        ["--tlsv1.3", "--tls-max", "1.3"],
    ] {
        let out = Command::new("curl")
            .args(["-sS", "--cacert", cert.to_str().unwrap()])
            .args(version)
            .arg(&url)
            .output()
            .expect("running curl");
        assert!(
            out.status.success(),
            "{version:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, b"hello, world");
    }
    // TLS 1.1 is refused by the server: the client offers only 1.1 (at
    // OpenSSL security level 0, so that it does offer it).
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &host.addr.to_string(),
            "-tls1_1",
            "-cipher",
            "DEFAULT@SECLEVEL=0",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running openssl");
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a TLS 1.1 handshake succeeded:\n{text}"
    );
    // rustls answers a ClientHello without 1.2 or 1.3 with an alert; no
    // session is made.
    assert!(
        text.contains("alert") && text.contains("Cipher is (NONE)"),
        "{text}"
    );
    // A plain-HTTP request to the TLS port gets no answer.
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .arg(format!("http://127.0.0.1:{}/hello", host.addr.port()))
        .output()
        .expect("running curl");
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("hello, world"));
}

#[test]
fn plain_http_is_refused_off_loopback_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_manifest(dir.path(), "open", &[("/hello", "hello", &guest("hello"))]);
    let run = run_ostore(
        &[
            "up",
            "-f",
            manifest.to_str().unwrap(),
            "--listen",
            "0.0.0.0:0",
        ],
        &[],
    );
    assert!(!run.success);
    assert!(run.stderr.contains("--allow-plain-http"), "{}", run.stderr);
}
