//! The HTTP server under the warp filters: accepts connections itself so that a client that
//! never finishes its headers is cut after `server.read_timeout_secs`, that one client address
//! holds at most `server.connections_per_client` connections (more are answered 503 and
//! closed), and that each request carries its client's address (`ClientAddr`) and, when it asks
//! to switch protocols, its connection (`Upgrade`). A connection whose first request a
//! `Takeover` claims (the SSE stream) is served off hyper, on its bare socket. Shuts down
//! gracefully: no new connection, the open ones finish their requests.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;

/// The address a request came from, in its extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// The connection of a request that asks to switch protocols, in its extensions, so that a
/// filter can take it over once it has answered 101 (`hyper::upgrade::OnUpgrade` is not `Clone`,
/// which warp's extension filter needs). The API takes its WebSockets over this way rather than
/// through `warp::ws`, whose WebSocket keeps a 128 KiB read buffer per connection that cannot be
/// set smaller.
#[derive(Clone)]
pub struct Upgrade(Arc<Mutex<Option<hyper::upgrade::OnUpgrade>>>);

impl Upgrade {
    /// The connection, once: a second take answers `None`.
    pub fn take(&self) -> Option<hyper::upgrade::OnUpgrade> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// The head of a connection's first request, as a `Takeover` is shown it: read by peeking, so
/// the connection is untouched until the takeover consumes `len` bytes of it.
pub struct Head {
    pub path: String,
    pub query: String,
    pub headers: warp::http::HeaderMap,
    /// The head's length in bytes, blank line included.
    pub len: usize,
}

/// What a takeover answers: the connection was served, or it is handed (untouched) to hyper.
pub type Taken = std::pin::Pin<
    Box<dyn std::future::Future<Output = Option<tokio::net::TcpStream>> + Send + 'static>,
>;

/// Connections the API serves itself, on their bare socket, instead of through hyper: those
/// whose first request line starts with `prefix` and whose head arrives whole in the first
/// read. A long-lived stream through hyper holds its 8 KiB read buffer and 8 KiB header
/// buffer for as long as it is open (neither can be set smaller), which was two thirds of
/// what an SSE subscriber cost.
#[derive(Clone)]
pub struct Takeover {
    pub prefix: &'static [u8],
    pub serve: Arc<dyn Fn(Head, tokio::net::TcpStream, ClientAddr) -> Taken + Send + Sync>,
}

/// The most of a first request a takeover looks at; a longer head goes to hyper.
pub const PEEK: usize = 2048;

/// The head of the connection's first request if it starts with `prefix` and is whole in what
/// has arrived; `None` sends the connection to hyper as it is.
async fn peek_head(stream: &tokio::net::TcpStream, prefix: &[u8]) -> Option<Head> {
    let mut buf = [0u8; PEEK];
    let n = stream.peek(&mut buf).await.ok()?;
    let got = &buf[..n];
    if !got.starts_with(prefix) {
        return None;
    }
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(len) = request.parse(got).ok()? else {
        return None;
    };
    let (path, query) = match request.path?.split_once('?') {
        Some((path, query)) => (path.to_string(), query.to_string()),
        None => (request.path?.to_string(), String::new()),
    };
    let mut map = warp::http::HeaderMap::new();
    for h in request.headers.iter() {
        let name = warp::http::HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        let value = warp::http::HeaderValue::from_bytes(h.value).ok()?;
        map.append(name, value);
    }
    Some(Head {
        path,
        query,
        headers: map,
        len,
    })
}

/// What one client may hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub connections_per_client: usize,
}

/// Counted places per key (connections per client address, streams per token): a place is
/// given back when its `Slot` drops.
pub struct Counts<K: Eq + Hash + Clone>(Arc<Mutex<HashMap<K, usize>>>);

impl<K: Eq + Hash + Clone> Default for Counts<K> {
    fn default() -> Self {
        Counts(Arc::default())
    }
}

impl<K: Eq + Hash + Clone> Clone for Counts<K> {
    fn clone(&self) -> Self {
        Counts(Arc::clone(&self.0))
    }
}

/// One place taken in `Counts`.
pub struct Slot<K: Eq + Hash + Clone> {
    counts: Counts<K>,
    key: K,
}

impl<K: Eq + Hash + Clone> Counts<K> {
    /// The keys that hold a place now.
    pub fn keys(&self) -> Vec<K> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Takes a place for `key` if it holds fewer than `most`.
    pub fn take(&self, key: K, most: usize) -> Option<Slot<K>> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(key.clone()).or_default();
        if *n >= most {
            return None;
        }
        *n += 1;
        Some(Slot {
            counts: self.clone(),
            key,
        })
    }
}

impl<K: Eq + Hash + Clone> Drop for Slot<K> {
    fn drop(&mut self) {
        let mut map = self.counts.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

/// Puts the client's address into every request it sends.
#[derive(Clone)]
struct WithClient<S> {
    inner: S,
    addr: ClientAddr,
}

impl<S, B> tower_service::Service<warp::http::Request<B>> for WithClient<S>
where
    S: tower_service::Service<warp::http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: warp::http::Request<B>) -> Self::Future {
        req.extensions_mut().insert(self.addr);
        if let Some(on) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() {
            req.extensions_mut()
                .insert(Upgrade(Arc::new(Mutex::new(Some(on)))));
        }
        self.inner.call(req)
    }
}

/// The answer to a client over its connection limit, written by hand since no request of it
/// is read.
const TOO_MANY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
connection: close\r\nretry-after: 1\r\ncontent-length: 88\r\n\r\n\
{\"error\":\"too_many_connections\",\"message\":\"too many open connections from this address\"}";

/// Serves `filter` on `listener` until `shutdown` resolves, then waits (up to 10 s) for the
/// connections' requests to finish.
pub async fn serve<F>(
    listener: tokio::net::TcpListener,
    filter: F,
    limits: Limits,
    takeover: Option<Takeover>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) where
    F: warp::Filter + Clone + Send + Sync + 'static,
    F::Extract: warp::Reply,
{
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let counts = Counts::<IpAddr>::default();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Out of file descriptors, mostly: wait a little rather than spin.
                    tracing::warn!(%error, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Some(slot) = counts.take(peer.ip(), limits.connections_per_client.max(1)) else {
            tracing::warn!(client = %peer.ip(), "connection refused: too many from this address");
            tokio::spawn(async move {
                let mut stream = stream;
                let _ = stream.write_all(TOO_MANY).await;
                let _ = stream.shutdown().await;
            });
            continue;
        };
        let service = WithClient {
            inner: warp::service(filter.clone()),
            addr: ClientAddr(peer.ip()),
        };
        let service = hyper_util::service::TowerToHyperService::new(service);
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout);
        let watcher = graceful.watcher();
        let takeover = takeover.clone();
        let client = ClientAddr(peer.ip());
        tokio::spawn(async move {
            let _slot = slot;
            let stream = match takeover {
                None => stream,
                Some(t) => {
                    // Bounded like hyper's own wait for a head: a client that sends nothing
                    // is cut.
                    let peeked =
                        tokio::time::timeout(limits.header_timeout, peek_head(&stream, t.prefix));
                    match peeked.await {
                        Err(_) => return,
                        Ok(None) => stream,
                        Ok(Some(head)) => match (t.serve)(head, stream, client).await {
                            None => return,
                            Some(stream) => stream,
                        },
                    }
                }
            };
            let connection = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            if let Err(error) = watcher.watch(connection).await {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections were still open 10 s after the stop");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_a_whole_http_answer() {
        let text = std::str::from_utf8(TOO_MANY).expect("text");
        let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|n| n.trim().parse().ok())
            .expect("a length");
        assert_eq!(body.len(), length);
        assert!(serde_json::from_str::<serde_json::Value>(body.trim()).is_ok());
    }

    #[test]
    fn a_client_holds_at_most_its_share_of_connections() {
        let counts = Counts::<IpAddr>::default();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let a = counts.take(ip, 2).expect("first");
        let _b = counts.take(ip, 2).expect("second");
        assert!(counts.take(ip, 2).is_none());
        assert!(counts.take("10.0.0.1".parse().unwrap(), 2).is_some());
        drop(a);
        assert!(
            counts.take(ip, 2).is_some(),
            "a slot comes back when its connection ends"
        );
    }
}
