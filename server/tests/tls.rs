//! TLS end to end: a 3-process cluster with https for clients and mutual
//! TLS between members, certificates generated here with rcgen (through
//! `tls::gen_certs`).

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use raft_kv_server::tls::gen_certs::{write_dir_with, write_file, Authority};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use support::{client_binary, Cluster, ClusterOptions, ClusterTls};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(20);
const PEER_ALPN: &[u8] = raft_kv_server::tls::PEER_ALPN;

/// A certificate directory in the `gen-certs` layout, and its CA.
struct Certs {
    _dir: tempfile::TempDir,
    path: PathBuf,
    ca: Authority,
}

fn certs() -> Certs {
    let dir = tempfile::Builder::new()
        .prefix("raft-kv-certs-")
        .tempdir()
        .expect("temp dir");
    let ca = Authority::new("test CA").expect("CA");
    write_dir_with(&ca, dir.path(), 3, &[]).expect("write certificates");
    Certs {
        path: dir.path().to_path_buf(),
        _dir: dir,
        ca,
    }
}

fn read_certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .expect("open PEM")
        .collect::<Result<Vec<_>, _>>()
        .expect("PEM certificates")
}

/// A client configuration trusting `ca` and presenting `identity`
/// (certificate file, key file), if any.
fn client_config(ca: &Path, identity: Option<(&Path, &Path)>) -> ClientConfig {
    let mut roots = RootCertStore::empty();
    for c in read_certs(ca) {
        roots.add(c).expect("CA certificate");
    }
    let builder = ClientConfig::builder_with_provider(raft_kv_server::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots);
    match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                read_certs(cert),
                PrivateKeyDer::from_pem_file(key).expect("PEM key"),
            )
            .expect("certificate and key"),
        None => builder.with_no_client_auth(),
    }
}

fn https_client(config: ClientConfig) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(15))
        .build()
        .expect("https client")
}

async fn tls_cluster(certs: &Certs) -> Cluster {
    let dir = &certs.path;
    let client = https_client(client_config(
        &dir.join("ca.pem"),
        Some((&dir.join("client.pem"), &dir.join("client-key.pem"))),
    ));
    Cluster::start_with(
        3,
        ClusterOptions {
            tls: Some(ClusterTls {
                dir: dir.clone(),
                client,
            }),
            ..ClusterOptions::default()
        },
    )
    .await
}

/// Opens a TLS connection to `port` with `config` and sends a peer-stream
/// handshake as member `from`; the first line of the answer, or the error
/// that ended the connection.
async fn peer_stream_attempt(
    port: u16,
    mut config: ClientConfig,
    alpn: bool,
    headers: &[(&str, String)],
) -> Result<String, String> {
    if alpn {
        config.alpn_protocols = vec![PEER_ALPN.to_vec()];
    }
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let name = ServerName::try_from("127.0.0.1").expect("server name");
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let mut request = format!(
        "GET /raft/stream HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nconnection: upgrade\r\n\
         upgrade: raft-kv-peer/1\r\n"
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    tls.write_all(request.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = tls.read(&mut buf).await.map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("closed without an answer".into());
        }
        answer.extend_from_slice(&buf[..n]);
        if let Some(end) = answer.windows(2).position(|w| w == b"\r\n") {
            return Ok(String::from_utf8_lossy(&answer[..end]).to_string());
        }
    }
}

/// The certificate `port` presents to a new connection (as a member's
/// server when `peer`).
async fn presented_certificate(port: u16, certs: &Certs, peer: bool) -> Option<Vec<u8>> {
    let dir = &certs.path;
    let mut config = client_config(
        &dir.join("ca.pem"),
        Some((&dir.join("node-1.pem"), &dir.join("node-1-key.pem"))),
    );
    if peer {
        config.alpn_protocols = vec![PEER_ALPN.to_vec()];
    }
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let name = ServerName::try_from("127.0.0.1").ok()?;
    let tls = connector.connect(name, tcp).await.ok()?;
    let (_, conn) = tls.get_ref();
    Some(conn.peer_certificates()?.first()?.as_ref().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_elects_serves_https_and_refuses_strangers() {
    let certs = certs();
    let mut c = tls_cluster(&certs).await;
    let leader = c.wait_for_leader(WAIT).await;
    assert!(c.url(leader).starts_with("https://"));
    let follower = c.ids().into_iter().find(|&id| id != leader).unwrap();

    // Written through a follower (forwarded to the leader as a member) and
    // read back through every member over https.
    let r = c.put(follower, "k", "v1").await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    for id in c.ids() {
        let r = c.get(id, "k", false).await;
        assert_eq!(r.status(), 200);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["value"], "v1");
    }

    let port = c.port(follower);
    let failed_before = c
        .metric(follower, "tls_handshakes_failed_total")
        .await
        .unwrap();
    let streams_before = c
        .metric(follower, "raft_peer_streams_accepted_total")
        .await
        .unwrap();

    // A client certificate from another CA, and none at all: refused.
    let other = tempfile::tempdir().unwrap();
    raft_kv_server::tls::gen_certs::write_dir(other.path(), 1, &[]).unwrap();
    let stranger = https_client(client_config(
        &certs.path.join("ca.pem"),
        Some((
            &other.path().join("client.pem"),
            &other.path().join("client-key.pem"),
        )),
    ));
    let url = format!("{}/key/k", c.url(follower));
    assert!(stranger.get(&url).send().await.is_err());
    let anonymous = https_client(client_config(&certs.path.join("ca.pem"), None));
    assert!(anonymous.get(&url).send().await.is_err());

    // A member's protocol without a member certificate, or with one from
    // another CA: the handshake fails, no stream is opened.
    let speak_as = c.peer_headers(leader);
    let none = client_config(&certs.path.join("ca.pem"), None);
    let answer = peer_stream_attempt(port, none, true, &speak_as).await;
    assert!(answer.is_err(), "{answer:?}");
    let foreign = client_config(
        &certs.path.join("ca.pem"),
        Some((
            &other.path().join("node-1.pem"),
            &other.path().join("node-1-key.pem"),
        )),
    );
    let answer = peer_stream_attempt(port, foreign, true, &speak_as).await;
    assert!(answer.is_err(), "{answer:?}");
    // A client's connection (a valid client certificate, no member ALPN)
    // is answered, but not on the peer routes.
    let client = client_config(
        &certs.path.join("ca.pem"),
        Some((
            &certs.path.join("client.pem"),
            &certs.path.join("client-key.pem"),
        )),
    );
    let answer = peer_stream_attempt(port, client, false, &speak_as).await;
    assert_eq!(answer.as_deref(), Ok("HTTP/1.1 403 Forbidden"));

    let failed_after = c
        .metric(follower, "tls_handshakes_failed_total")
        .await
        .unwrap();
    assert!(
        failed_after >= failed_before + 4.0,
        "{failed_before} -> {failed_after}"
    );
    assert_eq!(
        c.metric(follower, "raft_peer_streams_accepted_total")
            .await
            .unwrap(),
        streams_before,
        "a peer stream was accepted from a stranger"
    );

    // The DNS-rebinding guard: a name that is not this node's is refused.
    let r = c
        .http()
        .get(format!("{}/status", c.url(follower)))
        .header("host", "attacker.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // The cluster still serves.
    assert_eq!(c.put(leader, "k", "v2").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_certificates_are_used_without_a_restart_while_writes_go_on() {
    let certs = certs();
    let mut c = tls_cluster(&certs).await;
    let leader = c.wait_for_leader(WAIT).await;

    // Writes through the leader for the whole rotation; every one must be
    // acknowledged.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, acked) = (stop.clone(), acked.clone());
        let http = c.http().clone();
        let url = c.url(leader);
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let r = http
                    .put(format!("{url}/key/w{n}"))
                    .json(&serde_json::json!({ "value": n.to_string() }))
                    .send()
                    .await
                    .map_err(|e| format!("put w{n}: {e}"))?;
                if r.status() != 200 {
                    return Err(format!("put w{n}: {}", r.status()));
                }
                acked.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
            Ok::<u64, String>(n)
        })
    };
    c.wait_until(WAIT, "writes are acknowledged", || {
        let acked = acked.clone();
        async move { acked.load(Ordering::Relaxed) >= 20 }
    })
    .await;

    // New member certificates (new keys) from the same CA, the key written
    // before the certificate, as a careless rotation would.
    let mut rotated = Vec::new();
    for id in c.ids() {
        let issued = certs.ca.issue_node(id, &[]).unwrap();
        let dir = &certs.path;
        write_file(
            &dir.join(format!("node-{id}-key.pem")),
            &issued.key_pem,
            true,
        )
        .unwrap();
        write_file(&dir.join(format!("node-{id}.pem")), &issued.cert_pem, false).unwrap();
        let der = CertificateDer::from_pem_slice(issued.cert_pem.as_bytes())
            .unwrap()
            .as_ref()
            .to_vec();
        rotated.push((id, der));
    }
    let at_rotation = acked.load(Ordering::Relaxed);
    for (id, der) in &rotated {
        let port = c.port(*id);
        for peer in [false, true] {
            let certs = &certs;
            c.wait_until(WAIT, "new connections see the new certificate", || async move {
                presented_certificate(port, certs, peer).await.as_ref() == Some(der)
            })
            .await;
        }
    }
    // SIGHUP reads the files again too.
    let reloads = c.metric(leader, "tls_reloads_total").await.unwrap();
    assert!(reloads >= 1.0);
    let pid = c.pid(leader).unwrap();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    c.wait_until(WAIT, "SIGHUP reloads the certificates", || async {
        c.metric(leader, "tls_reloads_total").await.unwrap_or(0.0) > reloads
    })
    .await;
    c.wait_until(WAIT, "writes go on after the rotation", || {
        let acked = acked.clone();
        async move { acked.load(Ordering::Relaxed) >= at_rotation + 20 }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let written = writer.await.unwrap().expect("every write acknowledged");
    // Members connecting anew use the rotated certificates: a restarted
    // member rejoins and catches up.
    let follower = c.ids().into_iter().find(|&id| id != leader).unwrap();
    c.kill(follower);
    c.restart(follower).await;
    let last = format!("w{}", written - 1);
    c.wait_until(WAIT, "the restarted member has the last write", || {
        let last = last.clone();
        let c = &c;
        async move { c.local_value(follower, &last).await.is_some() }
    })
    .await;
    assert_eq!(c.put(leader, "after", "rotation").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_speaks_https_with_cacert() {
    let certs = certs();
    let mut c = tls_cluster(&certs).await;
    c.wait_for_leader(WAIT).await;
    let dir = &certs.path;
    let cli = |args: &[&str]| {
        let mut cmd = std::process::Command::new(client_binary());
        cmd.args(["--server", &c.url(1), "--timeout", "10s"])
            .args(args)
            .env_remove("RAFT_KV_CACERT")
            .env_remove("RAFT_KV_CERT")
            .env_remove("RAFT_KV_KEY");
        cmd.output().expect("run raft-kv-client")
    };
    let ca = dir.join("ca.pem").display().to_string();
    let cert = dir.join("client.pem").display().to_string();
    let key = dir.join("client-key.pem").display().to_string();
    let tls = ["--cacert", &ca, "--cert", &cert, "--key", &key];
    let out = cli(&[&tls[..], &["put", "greeting", "hello"]].concat());
    assert!(out.status.success(), "{out:?}");
    let out = cli(&[&tls[..], &["get", "greeting"]].concat());
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "hello");
    // Without --cacert: a usage error naming the flag, not a hang.
    let out = cli(&["get", "greeting"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--cacert"));
}
