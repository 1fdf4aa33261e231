//! Live progress: `GET /api/ws` (WebSocket) and `GET /api/events` (Server-Sent Events) deliver the
//! same messages. A subscriber follows chosen trackers (`trackers=1,2`), a campaign
//! (`campaign_id=3`) or all of its tenant's activity (neither); over WebSocket it may change that
//! at any time by sending `{"type": "subscribe", ...}` with the same fields. It first receives a
//! `snapshot` (read from the store, numbered with the last event's `seq`), then `tracker` and
//! `notification` messages with increasing `seq`. One that falls behind, or reconnects (with
//! `since=SEQ` or SSE's `Last-Event-ID`), gets a fresh snapshot, so it never shows a wrong total.
//! The token goes in the Authorization header or, for browsers, in `token=`.

use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};
use warp::ws::{Message, WebSocket};

use super::{token_hash, views, ApiError, ApiState};
use crate::actors::notifier::notification_json;
use crate::domain::{Id, Tracker, TrackerStatus};
use crate::events::{Coalescer, Event, Payload, Scope, COALESCE};

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
    Snapshot(Value),
    Event(Arc<Event>),
    Error(Value),
}

impl Out {
    /// The message's type, number (for SSE's id) and JSON text.
    pub fn render(&self) -> (&'static str, Option<u64>, String) {
        match self {
            Out::Snapshot(v) => ("snapshot", v["seq"].as_u64(), v.to_string()),
            Out::Error(v) => ("error", None, v.to_string()),
            Out::Event(e) => {
                let kind = match &e.payload {
                    Payload::Tracker(_) => "tracker",
                    Payload::Notification(_) => "notification",
                };
                // Rendered once, however many subscribers receive it.
                let text = e.wire.get_or_init(|| match &e.payload {
                    Payload::Tracker(t) => {
                        json!({"type": "tracker", "seq": e.seq, "tracker": views::tracker(t)})
                            .to_string()
                    }
                    Payload::Notification(n) => json!({
                        "type": "notification", "seq": e.seq, "notification": notification_json(n)
                    })
                    .to_string(),
                });
                (kind, Some(e.seq), text.clone())
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
    let scope = match scope {
        Scope::Tenant => json!({"all": true}),
        Scope::Campaign(c) => json!({"campaign_id": c}),
        Scope::Trackers(t) => json!({"trackers": t}),
    };
    Ok(Out::Snapshot(json!({
        "type": "snapshot", "seq": seq, "reason": reason, "scope": scope,
        "trackers": trackers.iter().map(views::tracker).collect::<Vec<_>>(),
        "unread_notifications": unread,
    })))
}

/// How often an open stream checks that its token still holds (a revocation on another node,
/// or by the CLI, or an expiry); one on this node ends it at once.
const TOKEN_RECHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// Resolves when the token is revoked or expires.
pub async fn token_gone(state: &ApiState, token: [u8; 32]) {
    let mut revoked = state.revocations.subscribe();
    loop {
        tokio::select! {
            r = revoked.recv() => match r {
                Ok(hash) if hash == token => return,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
            },
            _ = tokio::time::sleep(TOKEN_RECHECK) => {
                let live = state.limits.token_holds(state, &token, TOKEN_RECHECK).await;
                // A store out of reach says nothing about the token: keep the stream.
                if matches!(live, Ok(false)) {
                    return;
                }
            }
        }
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
    control: mpsc::Receiver<Scope>,
) {
    let events = state.hub.subscribe();
    let closing = state.closing.clone();
    let watch = state.clone();
    let snap = move |scope: Scope, why: &'static str| {
        let state = state.clone();
        async move {
            match snapshot(&state, tenant, &scope, why).await {
                Ok(s) => s,
                Err(e) => Out::Error(e.body()),
            }
        }
    };
    tokio::select! {
        _ = feed_from(events, snap, tenant, scope, first_reason, out, control) => {}
        _ = closing.cancelled() => {}
        _ = token_gone(&watch, token) => {}
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
    mut control: mpsc::Receiver<Scope>,
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
            changed = control.recv() => match changed {
                Some(new) => {
                    scope = new;
                    reason = Some("subscribed");
                }
                // The client side is gone; its sender goes with it.
                None => return,
            },
        }
    }
}

/// One WebSocket subscriber: the feed's messages out, subscribe messages in.
pub async fn websocket(state: ApiState, who: Subscriber, socket: WebSocket) {
    let Subscriber {
        tenant,
        token,
        slot: _slot,
        scope,
        resync,
    } = who;
    let (mut sink, mut incoming) = socket.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Out>(64);
    let (control_tx, control_rx) = mpsc::channel::<Scope>(4);
    let reason = if resync { "resync" } else { "subscribed" };
    let feed_state = state.clone();
    let feeding = tokio::spawn(feed(
        feed_state,
        tenant,
        token,
        scope,
        reason,
        out_tx.clone(),
        control_rx,
    ));
    let mut close_reason = None;
    loop {
        tokio::select! {
            _ = state.closing.cancelled() => {
                close_reason = Some((1001u16, "the service is stopping"));
                break;
            }
            _ = token_gone(&state, token) => {
                close_reason = Some((1008u16, "the token was revoked or expired"));
                break;
            }
            message = out_rx.recv() => {
                let Some(message) = message else { break };
                let (_, _, text) = message.render();
                if sink.send(Message::text(text)).await.is_err() {
                    break;
                }
            }
            received = incoming.next() => {
                let Some(Ok(received)) = received else { break };
                if received.is_close() {
                    break;
                }
                let Ok(text) = received.to_str() else { continue };
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
                        if control_tx.send(scope).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        if out_tx.send(Out::Error(e.body())).await.is_err() {
                            break;
                        }
                    }
                }
            }
        }
    }
    feeding.abort();
    if let Some((code, reason)) = close_reason {
        // 1001: going away (the client reconnects later and gets a fresh snapshot); 1008:
        // policy, the token no longer holds.
        let _ = sink.send(Message::close_with(code, reason)).await;
    }
    let _ = sink.close().await;
}

/// One SSE subscriber: the feed as `text/event-stream`, `id` being each message's `seq`.
pub fn sse(
    state: ApiState,
    who: Subscriber,
) -> impl futures::Stream<Item = Result<warp::sse::Event, std::convert::Infallible>> {
    let (out_tx, out_rx) = mpsc::channel::<Out>(64);
    let (control_tx, control_rx) = mpsc::channel::<Scope>(1);
    let reason = if who.resync { "resync" } else { "subscribed" };
    let feeding = tokio::spawn(feed(
        state, who.tenant, who.token, who.scope, reason, out_tx, control_rx,
    ));
    // The control sender lives as long as the stream, and the feed ends with it.
    let guard = (control_tx, AbortOnDrop(feeding), who.slot);
    futures::stream::unfold((out_rx, guard), |(mut rx, guard)| async move {
        let message = rx.recv().await?;
        let (kind, seq, text) = message.render();
        let mut event = warp::sse::Event::default().event(kind).data(text);
        if let Some(seq) = seq {
            event = event.id(seq.to_string());
        }
        Some((Ok(event), (rx, guard)))
    })
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
    use crate::events::{tests::tracker, Hub};

    fn snapshot_reason(o: &Out) -> Option<String> {
        match o {
            Out::Snapshot(v) => v["reason"].as_str().map(str::to_string),
            _ => None,
        }
    }

    /// Feeds tenant 1's whole activity from `hub`'s events published so far (and after).
    fn start_feed(
        events: broadcast::Receiver<Arc<Event>>,
    ) -> (mpsc::Receiver<Out>, tokio::task::JoinHandle<()>) {
        let (out, received) = mpsc::channel(16);
        let (control_tx, control) = mpsc::channel(1);
        let snap =
            |_: Scope, why: &'static str| async move { Out::Snapshot(json!({"reason": why})) };
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
