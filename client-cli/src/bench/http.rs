//! The load generator's HTTP/1.1 client (raft-kv's REST API and etcd's
//! HTTP/JSON gateway): keep-alive connections driven straight through
//! hyper's connection API, each request a ready-made path and a few headers.
//!
//! The commands use reqwest (redirects, proxies, URL handling); the bench
//! does not, because a load generator that spends the machine's CPU on its
//! own requests measures itself. With reqwest, parsing and re-encoding a URL
//! per request, its pool and its body wrappers cost the bench about a third
//! of the CPU of a 256-connection put run on two cores.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use reqwest::Url;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::stats::ErrorKind;

/// Where requests go: `host:port` to connect to, the `Host` header, and
/// for an https URL the name the server's certificate must carry.
#[derive(Clone, Debug)]
pub struct Endpoint {
    addr: String,
    host: HeaderValue,
    tls_name: Option<ServerName<'static>>,
}

impl Endpoint {
    /// The endpoint of an `http://` or `https://` URL (the CLI refuses
    /// other schemes).
    pub fn of(url: &Url) -> Endpoint {
        let host = url.host_str().unwrap_or("127.0.0.1");
        let port = url.port_or_known_default().unwrap_or(80);
        // An IPv6 literal keeps its brackets in `host_str`.
        let addr = format!("{host}:{port}");
        let tls_name = (url.scheme() == "https")
            .then(|| {
                let bare = host.trim_start_matches('[').trim_end_matches(']');
                ServerName::try_from(bare.to_string()).ok()
            })
            .flatten();
        let host = HeaderValue::from_str(&addr).unwrap_or_else(|_| HeaderValue::from_static(""));
        Endpoint {
            addr,
            host,
            tls_name,
        }
    }
}

/// One request: method, origin-form path (`/key/k?consistency=stale`),
/// extra headers and body.
pub struct Call<'a> {
    /// The method.
    pub method: Method,
    /// Where to.
    pub endpoint: &'a Endpoint,
    /// The path and query, already escaped.
    pub path: String,
    /// Headers besides `Host` and the body's.
    pub headers: &'a [(HeaderName, HeaderValue)],
    /// A JSON body, or none.
    pub json: Option<Bytes>,
}

/// Keep-alive connections to any number of endpoints; at most
/// `max_idle_per_host` idle ones are kept per endpoint. Cloning shares them.
#[derive(Clone)]
pub struct HttpClient {
    inner: Arc<Inner>,
}

struct Inner {
    idle: Mutex<HashMap<String, Vec<SendRequest<Full<Bytes>>>>>,
    max_idle_per_host: usize,
    timeout: Duration,
    tls: Option<TlsConnector>,
}

impl HttpClient {
    /// A client whose requests (connecting included) each have `timeout`;
    /// https endpoints are reached with `tls`.
    pub fn new(max_idle_per_host: usize, timeout: Duration, tls: crate::tls::Tls) -> HttpClient {
        HttpClient {
            inner: Arc::new(Inner {
                idle: Mutex::default(),
                max_idle_per_host: max_idle_per_host.max(1),
                timeout,
                tls: tls.map(TlsConnector::from),
            }),
        }
    }

    /// Sends `call` and reads the whole answer, so the connection can carry
    /// the next request. A failure says which kind it was.
    pub async fn send(&self, call: Call<'_>) -> Result<(StatusCode, Bytes), ErrorKind> {
        match tokio::time::timeout(self.inner.timeout, self.exchange(call)).await {
            Ok(result) => result,
            Err(_) => Err(ErrorKind::Timeout),
        }
    }

    async fn exchange(&self, call: Call<'_>) -> Result<(StatusCode, Bytes), ErrorKind> {
        let endpoint = call.endpoint;
        let mut sender = match self.take_idle(&endpoint.addr) {
            Some(sender) => sender,
            None => connect(endpoint, self.inner.tls.as_ref()).await?,
        };
        let mut request = Request::builder()
            .method(call.method)
            .uri(call.path)
            .header(HOST, endpoint.host.clone());
        for (name, value) in call.headers {
            request = request.header(name, value);
        }
        let body = match call.json {
            Some(json) => {
                request =
                    request.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                json
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(body))
            .map_err(|_| ErrorKind::Transport)?;
        sender.ready().await.map_err(|_| ErrorKind::Transport)?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|_| ErrorKind::Transport)?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|_| ErrorKind::Transport)?
            .to_bytes();
        self.put_idle(&endpoint.addr, sender);
        Ok((status, body))
    }

    fn take_idle(&self, addr: &str) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = self.inner.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(addr)?;
        // A connection the server closed meanwhile is dropped here.
        while let Some(sender) = list.pop() {
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    fn put_idle(&self, addr: &str, sender: SendRequest<Full<Bytes>>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.inner.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = match idle.get_mut(addr) {
            Some(list) => list,
            None => idle.entry(addr.to_string()).or_default(),
        };
        if list.len() < self.inner.max_idle_per_host {
            list.push(sender);
        }
    }
}

/// A new keep-alive connection to `endpoint` (TLS for an https one), its
/// driver running as a task.
async fn connect(
    endpoint: &Endpoint,
    tls: Option<&TlsConnector>,
) -> Result<SendRequest<Full<Bytes>>, ErrorKind> {
    let stream = TcpStream::connect(&endpoint.addr)
        .await
        .map_err(|_| ErrorKind::Connect)?;
    // Requests are small and one at a time: never wait for Nagle.
    let _ = stream.set_nodelay(true);
    match (&endpoint.tls_name, tls) {
        (None, _) => handshake(stream).await,
        (Some(name), Some(tls)) => {
            let stream = tls
                .connect(name.clone(), stream)
                .await
                .map_err(|_| ErrorKind::Connect)?;
            handshake(stream).await
        }
        // The CLI refuses https servers without --cacert before this.
        (Some(_), None) => Err(ErrorKind::Connect),
    }
}

/// HTTP/1.1 on an open connection.
async fn handshake<IO>(io: IO) -> Result<SendRequest<Full<Bytes>>, ErrorKind>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http1::handshake(TokioIo::new(io))
        .await
        .map_err(|_| ErrorKind::Connect)?;
    tokio::spawn(async move {
        // Ends when the server closes or the last sender is dropped; a
        // broken connection shows up as the request's error.
        let _ = connection.await;
    });
    Ok(sender)
}

/// `/key/<key>` with the key percent-encoded as one path segment.
pub fn key_path(key: &str, query: &str) -> String {
    use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
    // Everything but RFC 3986's unreserved characters is escaped.
    const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    let mut path = String::with_capacity(5 + key.len() + query.len());
    path.push_str("/key/");
    path.extend(utf8_percent_encode(key, SEGMENT));
    path.push_str(query);
    path
}

/// Test support: reads one whole request (the head, then content-length
/// bytes) from `stream`, keeping what follows in `buf`.
#[cfg(test)]
pub async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |v| v.trim().parse().expect("a content-length"));
            if buf.len() >= end + 4 + len {
                return buf.drain(..end + 4 + len).collect();
            }
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.expect("read a request");
        assert!(n > 0, "the client closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_one_escaped_segment() {
        assert_eq!(key_path("bench-12", ""), "/key/bench-12");
        assert_eq!(
            key_path("a/b c?d", "?consistency=stale"),
            "/key/a%2Fb%20c%3Fd?consistency=stale"
        );
        assert_eq!(key_path("ключ", ""), "/key/%D0%BA%D0%BB%D1%8E%D1%87");
    }

    #[test]
    fn endpoints_keep_host_and_port() {
        let e = Endpoint::of(&Url::parse("http://127.0.0.1:3001/").unwrap());
        assert_eq!(e.addr, "127.0.0.1:3001");
        assert_eq!(e.host, "127.0.0.1:3001");
        let e = Endpoint::of(&Url::parse("http://[::1]:80/").unwrap());
        assert_eq!(e.addr, "[::1]:80");
    }

    /// `GET /key/k` at `endpoint`.
    fn get_k(endpoint: &Endpoint) -> Call<'_> {
        Call {
            method: Method::GET,
            endpoint,
            path: key_path("k", ""),
            headers: &[],
            json: None,
        }
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        // Port 1 on loopback: nothing listens there.
        let endpoint = Endpoint::of(&Url::parse("http://127.0.0.1:1").unwrap());
        let client = HttpClient::new(1, Duration::from_secs(2), None);
        let err = client.send(get_k(&endpoint)).await.unwrap_err();
        assert_eq!(err, ErrorKind::Connect);
    }

    #[tokio::test]
    async fn a_connection_is_reused_and_a_silent_server_times_out() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        // Accepts one connection and answers every request on it; a second
        // connection would never be answered.
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            for _ in 0..3 {
                let request = read_request(&mut s, &mut buf).await;
                let text = String::from_utf8_lossy(&request).to_lowercase();
                assert!(text.contains("host: 127.0.0.1:"), "{text}");
                s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await
                    .unwrap();
            }
            let _keep_open = listener;
            std::future::pending::<()>().await;
        });
        let endpoint = Endpoint::of(&Url::parse(&format!("http://127.0.0.1:{port}")).unwrap());
        let client = HttpClient::new(1, Duration::from_millis(500), None);
        for _ in 0..3 {
            let (status, body) = client
                .send(Call {
                    method: Method::PUT,
                    endpoint: &endpoint,
                    path: key_path("k", ""),
                    headers: &[],
                    json: Some(Bytes::from_static(b"{\"value\":\"v\"}")),
                })
                .await
                .expect("answered on the one connection");
            assert_eq!((status, &body[..]), (StatusCode::OK, &b"ok"[..]));
        }
        // The server now reads nothing more: the request times out.
        let err = client.send(get_k(&endpoint)).await.unwrap_err();
        assert_eq!(err, ErrorKind::Timeout);
        server.abort();
    }
}
