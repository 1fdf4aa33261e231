//! Live progress: `GET /api/ws` (WebSocket) and `GET /api/events` (Server-Sent Events) deliver the
//! same messages. A subscriber follows chosen trackers (`trackers=1,2`), a campaign
//! (`campaign_id=3`) or all of its tenant's activity (neither); over WebSocket it may change that
//! at any time by sending `{"type": "subscribe", ...}` with the same fields. It first receives a
//! `snapshot` (read from the store, numbered with the last event's `seq`), then `tracker` and
//! `notification` messages with increasing `seq`. One that falls behind, or reconnects (with
//! `since=SEQ` or SSE's `Last-Event-ID`), gets a fresh snapshot, so it never shows a wrong total.
//! The token goes in the Authorization header or, for browsers, in `token=`.

use crate::error::ErrorCode;
use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use warp::http::{header, HeaderMap, StatusCode};

use super::{token_hash, ApiError, ApiState};
use crate::answers;
use domain::{Id, Tracker, TrackerStatus};
use engine::events::{Coalescer, Event, Payload, Scope, COALESCE};

/// Trackers of a tenant-wide snapshot: every active one, and this many of the latest others.
const RECENT: usize = 20;

/// What a subscriber asks for, in the query string or a subscribe message.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveQuery {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub campaign_id: Option<Id>,
    /// Comma-separated tracker ids.
    #[serde(default)]
    pub trackers: Option<String>,
    /// The last `seq` the client saw; it gets a fresh snapshot either way.
    #[serde(default)]
    pub since: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscribeMessage {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    campaign_id: Option<Id>,
    #[serde(default)]
    trackers: Option<Vec<Id>>,
    #[serde(default)]
    since: Option<u64>,
}

fn scope_of(campaign_id: Option<Id>, trackers: Option<Vec<Id>>) -> Result<Scope, ApiError> {
    match (campaign_id, trackers) {
        (Some(_), Some(_)) => Err(ApiError::invalid(
            "subscribe to a campaign or to trackers, not both",
        )),
        (Some(c), None) => Ok(Scope::Campaign(c)),
        (None, Some(t)) if t.is_empty() => Err(ApiError::invalid("trackers must not be empty")),
        (None, Some(t)) => Ok(Scope::Trackers(t)),
        (None, None) => Ok(Scope::Tenant),
    }
}

/// Who subscribes to what: the token's tenant, its subscription, and whether it is a client
/// coming back (`since=`), which gets a snapshot marked `resync`.
pub struct Subscriber {
    pub tenant: Id,
    /// The SHA-256 of the token it came with: the stream ends when that token is revoked.
    pub token: [u8; 32],
    /// Its place among the token's open streams.
    pub slot: super::StreamSlot,
    pub scope: Scope,
    pub resync: bool,
}

/// The tenant of the token (header first, then `token=`) and the subscription asked for.
pub async fn authorize(
    state: &ApiState,
    authorization: Option<&str>,
    query: &str,
) -> Result<Subscriber, ApiError> {
    let q: LiveQuery = serde_urlencoded::from_str(query)
        .map_err(|e| ApiError::invalid(format!("bad query string: {e}")))?;
    let from_header = authorization.and_then(|h| {
        h.strip_prefix("Bearer ")
            .or_else(|| h.strip_prefix("bearer "))
            .map(str::trim)
    });
    let token = from_header
        .or(q.token.as_deref())
        .filter(|t| !t.is_empty())
        .ok_or_else(ApiError::unauthorized)?;
    let hash = token_hash(token);
    let tenant = state
        .store
        .token(&hash)
        .await?
        .filter(|t| t.live(state.clock.now_ms()))
        .ok_or_else(ApiError::unauthorized)?
        .tenant_id;
    let trackers = match q.trackers {
        None => None,
        Some(list) => Some(
            list.split(',')
                .map(|t| {
                    t.trim()
                        .parse::<Id>()
                        .map_err(|_| ApiError::invalid(format!("trackers: {t:?} is not an id")))
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let scope = scope_of(q.campaign_id, trackers)?;
    check_scope(state, tenant, &scope).await?;
    let slot = state.limits.subscribe(hash)?;
    Ok(Subscriber {
        tenant,
        token: hash,
        slot,
        scope,
        resync: q.since.is_some(),
    })
}

/// A campaign or tracker of another tenant is not found, as everywhere in the API.
async fn check_scope(state: &ApiState, tenant: Id, scope: &Scope) -> Result<(), ApiError> {
    match scope {
        Scope::Tenant => Ok(()),
        Scope::Campaign(c) => state
            .store
            .campaign(tenant, *c)
            .await?
            .map(|_| ())
            .ok_or_else(|| ApiError::not_found("campaign")),
        Scope::Trackers(ids) => {
            for id in ids {
                if state
                    .store
                    .tracker(*id)
                    .await?
                    .is_none_or(|t| t.tenant_id != tenant)
                {
                    return Err(ApiError::not_found("tracker"));
                }
            }
            Ok(())
        }
    }
}

/// What a feed sends.
#[derive(Debug)]
pub enum Out {
    Snapshot(crate::answers::Snapshot),
    Event(Arc<Event>),
    Error(crate::answers::ErrorAnswer),
}

/// An answer's JSON text. The answers hold strings, numbers, booleans and maps keyed by
/// strings only, so serializing one cannot fail.
fn answer_string(answer: &impl serde::Serialize) -> String {
    serde_json::to_string(answer).unwrap_or_default()
}

fn answer_text(answer: &impl serde::Serialize) -> Utf8Bytes {
    answer_string(answer).into()
}

impl Out {
    /// Counts an event's delivery delay, once it was handed to the subscriber's connection.
    fn delivered(&self, metrics: &metrics::Metrics) {
        if let Out::Event(e) = self {
            metrics
                .live_delivery
                .observe(e.published.elapsed().as_secs_f64());
        }
    }

    /// The message's type, number (for SSE's id) and JSON text; an event's text is one buffer
    /// shared by every subscriber it goes to.
    pub fn render(&self) -> (&'static str, Option<u64>, Utf8Bytes) {
        match self {
            Out::Snapshot(v) => ("snapshot", Some(v.seq), answer_text(v)),
            Out::Error(v) => ("error", None, answer_text(v)),
            Out::Event(e) => {
                let kind = match &e.payload {
                    Payload::Tracker(_) => "tracker",
                    Payload::Notification(_) => "notification",
                };
                // Rendered once, however many subscribers receive it.
                let text = e.wire.get_or_init(|| {
                    let text = match &e.payload {
                        Payload::Tracker(t) => answer_string(&answers::TrackerEvent {
                            kind: "tracker".into(),
                            seq: e.seq,
                            tracker: answers::Tracker::from(&**t),
                        }),
                        Payload::Notification(n) => answer_string(&answers::NotificationEvent {
                            kind: "notification".into(),
                            seq: e.seq,
                            notification: answers::Notification::from(&**n),
                        }),
                    };
                    bytes::Bytes::from(text)
                });
                // The buffer holds a `String`'s bytes (rendered just above, on this or another
                // subscriber's turn), so it is UTF-8 and the check cannot fail.
                let text = Utf8Bytes::try_from(text.clone()).expect("rendered from a String");
                (kind, Some(e.seq), text)
            }
        }
    }
}

async fn snapshot(
    state: &ApiState,
    tenant: Id,
    scope: &Scope,
    reason: &str,
) -> Result<Out, ApiError> {
    // Numbered before reading: every event after this number is newer than what is read.
    let seq = state.hub.seq();
    let mut trackers: Vec<Tracker> = match scope {
        Scope::Trackers(ids) => {
            let mut found = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(t) = state.store.tracker(*id).await? {
                    if t.tenant_id == tenant {
                        found.push(t);
                    }
                }
            }
            found
        }
        Scope::Campaign(c) => state.store.campaign_trackers(*c).await?,
        Scope::Tenant => {
            let mut all = Vec::new();
            for c in state.store.campaigns(tenant).await? {
                all.extend(state.store.campaign_trackers(c.id).await?);
            }
            all.sort_by_key(|t| std::cmp::Reverse(t.id));
            let mut kept = 0;
            all.retain(|t| {
                kept += 1;
                t.status == TrackerStatus::Active || kept <= RECENT
            });
            all
        }
    };
    trackers.sort_by_key(|t| t.id);
    let unread = state
        .store
        .notifications(tenant)
        .await?
        .iter()
        .filter(|n| !n.read)
        .count();
    Ok(Out::Snapshot(answers::Snapshot {
        kind: "snapshot".into(),
        seq,
        reason: reason.to_string(),
        scope: answers::FeedScope::from(scope),
        trackers: trackers.iter().map(answers::Tracker::from).collect(),
        unread_notifications: unread as u64,
    }))
}

/// How often the tokens of open streams are read again (a revocation on another node, or by
/// the CLI, or an expiry); a revocation on this node ends its streams at once.
const TOKEN_RECHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// The one task that reads the tokens of open streams again every `TOKEN_RECHECK` and announces
/// those that no longer hold on `revocations`, as a revocation on this node is announced: the
/// streams themselves keep no timer (ten thousand subscribers of one token woke five thousand
/// times a second to ask the same question). Ends when the service stops.
pub async fn watch_tokens(state: ApiState) {
    loop {
        tokio::select! {
            _ = state.closing.cancelled() => return,
            _ = tokio::time::sleep(TOKEN_RECHECK) => {}
        }
        for token in state.limits.followed_tokens() {
            let live = state
                .limits
                .token_holds(&state, &token, TOKEN_RECHECK)
                .await;
            // A store out of reach says nothing about the token: keep its streams.
            if matches!(live, Ok(false)) {
                let _ = state.revocations.send(token);
            }
        }
    }
}

/// Resolves when the token is revoked or expires.
pub async fn token_gone(state: &ApiState, token: [u8; 32]) {
    let mut revoked = state.revocations.subscribe();
    loop {
        match revoked.recv().await {
            Ok(hash) if hash == token => return,
            Ok(_) => {}
            // Announcements were missed: ask the store, which the watcher would have asked.
            Err(broadcast::error::RecvError::Lagged(_)) => {
                let live = state.limits.token_holds(state, &token, TOKEN_RECHECK).await;
                if matches!(live, Ok(false)) {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
}

/// The snapshots of `tenant`'s subscription, read from the store (an error is sent in place of
/// one that cannot be read).
fn snapshots(
    state: &ApiState,
    tenant: Id,
) -> impl Fn(Scope, &'static str) -> std::pin::Pin<Box<dyn std::future::Future<Output = Out> + Send>>
{
    let state = state.clone();
    move |scope: Scope, why: &'static str| {
        let state = state.clone();
        Box::pin(async move {
            match snapshot(&state, tenant, &scope, why).await {
                Ok(s) => s,
                Err(e) => Out::Error(e.body()),
            }
        })
    }
}

/// Feeds one subscriber until it goes away: a snapshot, then its events, coalesced; a fresh
/// snapshot after it fell behind or changed its subscription.
pub async fn feed(
    state: ApiState,
    tenant: Id,
    token: [u8; 32],
    scope: Scope,
    first_reason: &'static str,
    out: mpsc::Sender<Out>,
    control: watch::Receiver<Scope>,
) {
    let events = state.hub.subscribe();
    let snap = snapshots(&state, tenant);
    tokio::select! {
        _ = feed_from(events, snap, tenant, scope, first_reason, out, control) => {}
        _ = state.closing.cancelled() => {}
        _ = token_gone(&state, token) => {}
    }
}

/// `feed` on a given event receiver and snapshot source.
async fn feed_from<Snap: std::future::Future<Output = Out>>(
    mut events: broadcast::Receiver<Arc<Event>>,
    snapshot: impl Fn(Scope, &'static str) -> Snap,
    tenant: Id,
    mut scope: Scope,
    first_reason: &'static str,
    out: mpsc::Sender<Out>,
    mut control: watch::Receiver<Scope>,
) {
    let mut coalescer = Coalescer::new(COALESCE);
    let mut reason = Some(first_reason);
    loop {
        if let Some(why) = reason.take() {
            coalescer.clear();
            if out.send(snapshot(scope.clone(), why).await).await.is_err() {
                return;
            }
        }
        let due = coalescer.next_due();
        tokio::select! {
            received = events.recv() => match received {
                Ok(e) if scope.matches(tenant, &e) => {
                    if let Some(e) = coalescer.offer(e, tokio::time::Instant::now()) {
                        if out.send(Out::Event(e)).await.is_err() {
                            return;
                        }
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::debug!(tenant_id = tenant, missed, "a live subscriber fell behind");
                    reason = Some("lagged");
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)), if due.is_some() => {
                for e in coalescer.due(tokio::time::Instant::now()) {
                    if out.send(Out::Event(e)).await.is_err() {
                        return;
                    }
                }
            }
            changed = control.changed() => match changed {
                Ok(()) => {
                    scope = control.borrow_and_update().clone();
                    reason = Some("subscribed");
                }
                // The client side is gone; its sender goes with it.
                Err(_) => return,
            },
        }
    }
}

/// A subscriber's WebSocket, over the HTTP connection it came on.
pub type Socket =
    tokio_tungstenite::WebSocketStream<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>;

/// What a WebSocket reads at a time. Clients send only subscribe messages, so a small buffer
/// does; tungstenite's default (128 KiB, zeroed at the first read) was most of what a
/// subscriber cost.
const READ_BUFFER: usize = 4 * 1024;

/// The largest message a client may send (a subscribe message is a few hundred bytes).
const MAX_MESSAGE: usize = 64 * 1024;

/// What may wait unsent for one client before it is dropped: a client that stops reading
/// otherwise holds the service's memory. The feed's channel in front of it is bounded too,
/// and a feed that cannot send falls behind and later sends a fresh snapshot.
const MAX_UNSENT: usize = 1024 * 1024;

fn socket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        // Each message goes out as it is sent: nothing is held back to batch small writes.
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_UNSENT)
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
}

/// Checks that a request to `/api/ws` asks for a WebSocket (RFC 6455, section 4.2.1) on a
/// connection that can switch protocols, and answers the `Sec-WebSocket-Accept` to send.
pub fn handshake(
    headers: &HeaderMap,
    upgrade: Option<&super::server::Upgrade>,
) -> Result<String, ApiError> {
    let has = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    let refused = |message: &str| ApiError::new(ErrorCode::WebsocketRequired, message);
    if !has(header::CONNECTION, "upgrade") || !has(header::UPGRADE, "websocket") {
        return Err(refused(
            "GET /api/ws opens a WebSocket: send Connection: Upgrade and Upgrade: websocket",
        ));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return Err(refused(
            "only WebSocket version 13 is spoken (Sec-WebSocket-Version: 13)",
        ));
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return Err(refused("the WebSocket handshake needs a Sec-WebSocket-Key"));
    };
    if upgrade.is_none() {
        return Err(refused("this connection cannot switch protocols"));
    }
    Ok(tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes()))
}

/// The 101 answer that switches the connection to the WebSocket protocol.
pub fn switching(accept: &str) -> warp::reply::Response {
    let mut response = warp::reply::Response::new(Vec::<u8>::new().into());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("upgrade"),
    );
    headers.insert(
        header::UPGRADE,
        header::HeaderValue::from_static("websocket"),
    );
    if let Ok(v) = header::HeaderValue::from_str(accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    response
}

/// The WebSocket, once the 101 is sent and the connection handed over; `None` when the client
/// went away before that.
pub async fn upgraded(on: hyper::upgrade::OnUpgrade) -> Option<Socket> {
    match on.await {
        Ok(io) => Some(
            tokio_tungstenite::WebSocketStream::from_raw_socket(
                hyper_util::rt::TokioIo::new(io),
                Role::Server,
                Some(socket_config()),
            )
            .await,
        ),
        Err(error) => {
            tracing::debug!(%error, "a WebSocket upgrade did not complete");
            None
        }
    }
}

/// One subscriber's feed, not yet polled: the place it holds among its token's streams, the
/// messages it sends, and the sender of its subscription (a newer one replaces one the feed has
/// not taken up yet; the feed ends when the sender goes).
struct Subscription<F> {
    _slot: super::StreamSlot,
    out_rx: mpsc::Receiver<Out>,
    control_tx: watch::Sender<Scope>,
    feeding: F,
}

fn subscription(
    state: &ApiState,
    who: Subscriber,
) -> Subscription<impl std::future::Future<Output = ()>> {
    let (out_tx, out_rx) = mpsc::channel::<Out>(64);
    let (control_tx, control_rx) = watch::channel(who.scope.clone());
    let reason = if who.resync { "resync" } else { "subscribed" };
    let feeding = feed_from(
        state.hub.subscribe(),
        snapshots(state, who.tenant),
        who.tenant,
        who.scope,
        reason,
        out_tx,
        control_rx,
    );
    Subscription {
        _slot: who.slot,
        out_rx,
        control_tx,
        feeding,
    }
}

/// One WebSocket subscriber: the feed's messages out, subscribe messages in. Everything of one
/// subscriber runs in this one task, and what it waits on (the stop, the token's revocation)
/// is set up once, not again for each message: with ten thousand subscribers, each message
/// handed between two tasks and each wait set up anew were most of the fan-out's time.
pub async fn websocket(state: ApiState, who: Subscriber, mut socket: Socket) {
    let (tenant, token) = (who.tenant, who.token);
    let Subscription {
        _slot,
        mut out_rx,
        control_tx,
        feeding,
    } = subscription(&state, who);
    let closing = state.closing.clone();
    let stopping = closing.cancelled();
    let revoked = token_gone(&state, token);
    tokio::pin!(feeding, stopping, revoked);
    let mut fed = false;
    let mut close_reason = None;
    loop {
        tokio::select! {
            _ = &mut stopping => {
                close_reason = Some((1001u16, "the service is stopping"));
                break;
            }
            _ = &mut revoked => {
                close_reason = Some((1008u16, "the token was revoked or expired"));
                break;
            }
            // The hub is gone: the service is stopping, and `stopping` says so.
            _ = &mut feeding, if !fed => fed = true,
            message = out_rx.recv() => {
                let Some(message) = message else { break };
                let (_, _, text) = message.render();
                if socket.send(Message::Text(text)).await.is_err() {
                    break;
                }
                message.delivered(&state.limits.metrics);
            }
            // Read in place, not through a split stream and sink: only one branch's body runs
            // at a time, and a split puts a lock in front of every read and write.
            received = socket.next() => {
                let Some(Ok(received)) = received else { break };
                if received.is_close() {
                    break;
                }
                let Ok(text) = received.to_text() else { continue };
                let asked = async {
                    let m = serde_json::from_str::<SubscribeMessage>(text)
                        .map_err(|e| ApiError::invalid(format!("not a subscribe message: {e}")))?;
                    if m.kind != "subscribe" {
                        return Err(ApiError::invalid("type must be subscribe"));
                    }
                    let _ = m.since;
                    let scope = scope_of(m.campaign_id, m.trackers)?;
                    check_scope(&state, tenant, &scope).await?;
                    Ok(scope)
                }
                .await;
                match asked {
                    Ok(scope) => {
                        control_tx.send_replace(scope);
                    }
                    Err(e) => {
                        let (_, _, text) = Out::Error(e.body()).render();
                        if socket.send(Message::Text(text)).await.is_err() {
                            break;
                        }
                    }
                }
            }
        }
    }
    if let Some((code, reason)) = close_reason {
        // 1001: going away (the client reconnects later and gets a fresh snapshot); 1008:
        // policy, the token no longer holds.
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        };
        let _ = socket.send(Message::Close(Some(frame))).await;
    }
    let _ = SinkExt::close(&mut socket).await;
}

/// One SSE subscriber: the feed as `text/event-stream`, `id` being each message's `seq`.
pub fn sse(
    state: ApiState,
    who: Subscriber,
) -> impl futures::Stream<Item = Result<warp::sse::Event, std::convert::Infallible>> {
    let (out_tx, out_rx) = mpsc::channel::<Out>(64);
    let (control_tx, control_rx) = watch::channel(who.scope.clone());
    let reason = if who.resync { "resync" } else { "subscribed" };
    let metrics = Arc::clone(&state.limits.metrics);
    let feeding = tokio::spawn(feed(
        state, who.tenant, who.token, who.scope, reason, out_tx, control_rx,
    ));
    // The control sender lives as long as the stream, and the feed ends with it.
    let guard = (control_tx, AbortOnDrop(feeding), who.slot, metrics);
    futures::stream::unfold((out_rx, guard), |(mut rx, guard)| async move {
        let message = rx.recv().await?;
        let (kind, seq, text) = message.render();
        message.delivered(&guard.3);
        let mut event = warp::sse::Event::default().event(kind).data(text.as_str());
        if let Some(seq) = seq {
            event = event.id(seq.to_string());
        }
        Some((Ok(event), (rx, guard)))
    })
}

/// The head of an SSE answer served on the bare connection: its body ends with the connection.
const SSE_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
cache-control: no-cache\r\nconnection: close\r\n\r\n";

/// How long an SSE stream stays silent before a comment keeps it open (as warp's keep-alive
/// does), so that proxies and clients do not take it for dead.
const SSE_IDLE: std::time::Duration = std::time::Duration::from_secs(15);

/// One message as an SSE block, fields in the order warp writes them.
fn sse_block(kind: &str, seq: Option<u64>, text: &str) -> Vec<u8> {
    let mut block = Vec::with_capacity(text.len() + 48);
    block.extend_from_slice(b"event:");
    block.extend_from_slice(kind.as_bytes());
    block.extend_from_slice(b"\ndata:");
    block.extend_from_slice(text.as_bytes());
    block.push(b'\n');
    if let Some(seq) = seq {
        block.extend_from_slice(format!("id:{seq}\n").as_bytes());
    }
    block.push(b'\n');
    block
}

/// One SSE subscriber on its bare connection, which `server::Takeover` handed over with its
/// request head (`head_len` bytes) still unread: the head is consumed, the answer's head
/// written, then the feed's messages until the client goes away, its token no longer holds or
/// the service stops. Like `websocket`, everything runs in this one task; through hyper, the
/// same stream also held hyper's two 8 KiB buffers and a second task.
pub async fn sse_connection(
    state: ApiState,
    who: Subscriber,
    mut stream: tokio::net::TcpStream,
    head_len: usize,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Read into a buffer that goes away at once: one kept in the task would be kept per
    // subscriber.
    if stream.read_exact(&mut vec![0; head_len]).await.is_err()
        || stream.write_all(SSE_HEAD).await.is_err()
    {
        return;
    }
    let token = who.token;
    let Subscription {
        _slot,
        mut out_rx,
        control_tx: _control,
        feeding,
    } = subscription(&state, who);
    let closing = state.closing.clone();
    let stopping = closing.cancelled();
    let revoked = token_gone(&state, token);
    let idle = tokio::time::sleep(SSE_IDLE);
    tokio::pin!(feeding, stopping, revoked, idle);
    let mut fed = false;
    // A client sends nothing after its request; what it does send is read and dropped, so
    // that its going away is seen.
    let mut scratch = [0u8; 64];
    loop {
        tokio::select! {
            _ = &mut stopping => break,
            _ = &mut revoked => break,
            _ = &mut feeding, if !fed => fed = true,
            message = out_rx.recv() => {
                let Some(message) = message else { break };
                let (kind, seq, text) = message.render();
                if stream.write_all(&sse_block(kind, seq, text.as_str())).await.is_err() {
                    break;
                }
                message.delivered(&state.limits.metrics);
                idle.as_mut().reset(tokio::time::Instant::now() + SSE_IDLE);
            }
            read = stream.read(&mut scratch) => match read {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            },
            _ = &mut idle => {
                if stream.write_all(b":\n\n").await.is_err() {
                    break;
                }
                idle.as_mut().reset(tokio::time::Instant::now() + SSE_IDLE);
            }
        }
    }
    let _ = stream.shutdown().await;
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::events::{Hub, Payload};

    fn tracker(id: Id, status: TrackerStatus) -> Payload {
        Payload::Tracker(Arc::new(domain::fixtures::tracker(id, status)))
    }

    fn snapshot_reason(o: &Out) -> Option<String> {
        match o {
            Out::Snapshot(v) => Some(v.reason.clone()),
            _ => None,
        }
    }

    /// Feeds tenant 1's whole activity from `hub`'s events published so far (and after).
    fn start_feed(
        events: broadcast::Receiver<Arc<Event>>,
    ) -> (mpsc::Receiver<Out>, tokio::task::JoinHandle<()>) {
        let (out, received) = mpsc::channel(16);
        let (control_tx, control) = watch::channel(Scope::Tenant);
        let snap = |scope: Scope, why: &'static str| async move {
            Out::Snapshot(crate::answers::Snapshot {
                kind: "snapshot".into(),
                seq: 0,
                reason: why.to_string(),
                scope: crate::answers::FeedScope::from(&scope),
                trackers: Vec::new(),
                unread_notifications: 0,
            })
        };
        let feeding = tokio::spawn(async move {
            let _control = control_tx;
            feed_from(events, snap, 1, Scope::Tenant, "subscribed", out, control).await
        });
        (received, feeding)
    }

    async fn next_event(received: &mut mpsc::Receiver<Out>) -> Arc<Event> {
        match received.recv().await.unwrap() {
            Out::Event(e) => e,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_subscriber_that_fell_behind_gets_a_fresh_snapshot_then_the_rest_in_order() {
        let hub = Hub::new(2);
        let events = hub.subscribe();
        // Five events for a buffer of two: the subscriber has missed three before it reads.
        for t in 1..=5 {
            hub.publish(1, tracker(t, TrackerStatus::Active));
        }
        let (mut received, feeding) = start_feed(events);
        let first = received.recv().await.unwrap();
        assert_eq!(snapshot_reason(&first).as_deref(), Some("subscribed"));
        let second = received.recv().await.unwrap();
        assert_eq!(snapshot_reason(&second).as_deref(), Some("lagged"));
        assert_eq!(next_event(&mut received).await.seq, 4);
        assert_eq!(next_event(&mut received).await.seq, 5);
        feeding.abort();
    }

    #[tokio::test]
    async fn another_tenants_events_never_reach_a_subscriber() {
        let hub = Hub::new(8);
        let events = hub.subscribe();
        hub.publish(2, tracker(1, TrackerStatus::Active));
        hub.publish(1, tracker(2, TrackerStatus::Active));
        let (mut received, feeding) = start_feed(events);
        received.recv().await.unwrap();
        let e = next_event(&mut received).await;
        assert_eq!((e.seq, e.tenant_id), (2, 1));
        feeding.abort();
    }
}
