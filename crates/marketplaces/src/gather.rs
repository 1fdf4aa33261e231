//! Reads gathered into batch requests. A drift check reads products one at a time; a
//! marketplace that reads many in one request (MercadoLibre's multiget, WooCommerce's
//! `include=`, Shopify's `nodes`) gets them gathered: a batch leaves when it holds `size` ids,
//! when nothing more arrived for `LINGER`, or at the latest `MAX_LINGER` after its first, and
//! each reader waits for its own product's answer. The gatherer's task ends when the adapter is
//! dropped.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::http::Gate;
use super::plan::{Operation, Recorder, Request};
use super::MarketError;

/// How long a batch waits for its next item (a drift check's reads here, a WooCommerce batch's
/// products too) before it leaves. Products reach the batch as fast as the store hands them
/// out, so a batch keeps filling while they keep coming, not only for a fixed window after the
/// first: on a busy PostgreSQL a fixed 10 ms window cut 150 products into seven batches.
const LINGER: Duration = Duration::from_millis(10);

/// The longest a batch waits for items after its first, however steadily they arrive: one
/// slot of a 10-requests-a-second account, so filling a batch never costs more than the
/// request it saves.
const MAX_LINGER: Duration = Duration::from_millis(100);

/// A product's answer: its remote record, or `None` when the marketplace has nothing under
/// that id.
pub type Answer = Result<Option<Value>, MarketError>;

/// One batch request: the records found, by key (a product's id, or what else the read needs
/// to know of it).
pub type Fetch<K = String> =
    Arc<dyn Fn(Vec<K>) -> BoxFuture<'static, Result<HashMap<K, Value>, MarketError>> + Send + Sync>;

type Queued<K> = (K, oneshot::Sender<Answer>);

pub struct Gatherer<K = String> {
    size: usize,
    fetch: Fetch<K>,
    queue: OnceLock<mpsc::UnboundedSender<Queued<K>>>,
    /// On a dry run's gate: where each read is recorded instead, and what it is answered.
    plan: Option<PlannedRead<K>>,
}

/// A dry run's gathered read: recorded as this product's item of a batch read (`request`),
/// and answered as planned (`answer` of the key: the record as the run left it).
struct PlannedRead<K> {
    recorder: Arc<Recorder>,
    request: fn(&K) -> Request,
    answer: fn(&K) -> Value,
}

impl<K> Gatherer<K>
where
    K: Clone + Ord + std::hash::Hash + Send + Sync + 'static,
{
    pub fn new(size: usize, fetch: Fetch<K>) -> Gatherer<K> {
        Gatherer {
            size: size.max(1),
            fetch,
            queue: OnceLock::new(),
            plan: None,
        }
    }

    /// The same gatherer on `gate`: on a dry run's, each read is recorded as `request` of
    /// its key (its item of a batch read) and answered `answer` of its key.
    pub fn planned(
        mut self,
        gate: &Gate,
        request: fn(&K) -> Request,
        answer: fn(&K) -> Value,
    ) -> Self {
        self.plan = gate.recorder().map(|recorder| PlannedRead {
            recorder: Arc::clone(recorder),
            request,
            answer,
        });
        self
    }

    /// The most ids one request reads.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The record under `key` as a `T` (`what` names it in the error when it is not one).
    pub async fn get_as<T: serde::de::DeserializeOwned>(
        &self,
        key: K,
        what: &str,
    ) -> Result<Option<T>, MarketError> {
        self.get(key)
            .await?
            .map(|v| {
                serde_json::from_value(v).map_err(|e| MarketError::Protocol(format!("{what}: {e}")))
            })
            .transpose()
    }

    /// The record under `key`, read in the next batch.
    pub async fn get(&self, key: K) -> Answer {
        if let Some(plan) = &self.plan {
            plan.recorder.record(Operation::Read, (plan.request)(&key));
            return Ok(Some((plan.answer)(&key)));
        }
        // Started on first use, on the runtime of the worker that uses it.
        let queue = self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(gather(Arc::clone(&self.fetch), rx, self.size));
            tx
        });
        let (reply, answer) = oneshot::channel();
        let lost = || MarketError::Local("the read gatherer stopped".to_string());
        queue.send((key, reply)).map_err(|_| lost())?;
        answer.await.map_err(|_| lost())?
    }
}

/// The next batch from `queue`: its first item, then each that arrives within `LINGER` of the
/// one before, up to `size` items and `MAX_LINGER` after the first; `None` once the queue is
/// closed.
pub async fn next_batch<T>(queue: &mut mpsc::UnboundedReceiver<T>, size: usize) -> Option<Vec<T>> {
    let first = queue.recv().await?;
    let mut items = vec![first];
    let last_call = tokio::time::Instant::now() + MAX_LINGER;
    while items.len() < size {
        let deadline = (tokio::time::Instant::now() + LINGER).min(last_call);
        match tokio::time::timeout_at(deadline, queue.recv()).await {
            Ok(Some(item)) => items.push(item),
            Ok(None) | Err(_) => break,
        }
    }
    Some(items)
}

async fn gather<K>(fetch: Fetch<K>, mut queue: mpsc::UnboundedReceiver<Queued<K>>, size: usize)
where
    K: Clone + Ord + std::hash::Hash + Send + Sync + 'static,
{
    while let Some(items) = next_batch(&mut queue, size).await {
        // Batches go out concurrently, as the connection's limiter allows.
        tokio::spawn(send(Arc::clone(&fetch), items));
    }
}

async fn send<K>(fetch: Fetch<K>, items: Vec<Queued<K>>)
where
    K: Clone + Ord + std::hash::Hash,
{
    let mut ids: Vec<K> = items.iter().map(|(id, _)| id.clone()).collect();
    ids.sort();
    ids.dedup();
    match fetch(ids).await {
        Ok(found) => {
            for (id, reply) in items {
                let _ = reply.send(Ok(found.get(&id).cloned()));
            }
        }
        Err(error) => {
            for (_, reply) in items {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[tokio::test(start_paused = true)]
    async fn reads_are_gathered_into_batches_and_each_reader_gets_its_own_answer() {
        let batches: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
        let seen = Arc::clone(&batches);
        let fetch: Fetch = Arc::new(move |ids: Vec<String>| {
            seen.lock().unwrap().push(ids.clone());
            Box::pin(async move {
                Ok(ids
                    .into_iter()
                    .filter(|id| id != "gone")
                    .map(|id| (id.clone(), Value::String(format!("record {id}"))))
                    .collect())
            })
        });
        let reads = Gatherer::new(2, fetch);
        let (a, b, c, gone) = tokio::join!(
            reads.get("a".to_string()),
            reads.get("b".to_string()),
            reads.get("c".to_string()),
            reads.get("gone".to_string())
        );
        assert_eq!(a.unwrap(), Some(Value::String("record a".into())));
        assert_eq!(b.unwrap(), Some(Value::String("record b".into())));
        assert_eq!(c.unwrap(), Some(Value::String("record c".into())));
        assert_eq!(gone.unwrap(), None, "nothing under that id");
        let mut sent = batches.lock().unwrap().clone();
        sent.sort();
        assert_eq!(sent, vec![vec!["a", "b"], vec!["c", "gone"]]);
    }

    /// Sends `count` items `gap` apart, from a task of its own, and returns the sizes of the
    /// batches `next_batch` makes of them.
    async fn batches_of(count: usize, gap: Duration, size: usize) -> Vec<usize> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            for n in 0..count {
                tx.send(n).expect("the receiver is open");
                tokio::time::sleep(gap).await;
            }
        });
        let mut sizes = Vec::new();
        while let Some(batch) = next_batch(&mut rx, size).await {
            sizes.push(batch.len());
        }
        sizes
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_fills_while_items_keep_coming_up_to_its_size_and_longest_wait() {
        // 4 ms apart: 25 arrive within the longest wait (0 to 96 ms), however long the run.
        assert_eq!(
            batches_of(60, Duration::from_millis(4), 100).await,
            [25, 25, 10]
        );
        // Its size ends a batch first when items come faster.
        assert_eq!(batches_of(30, Duration::from_millis(1), 20).await, [20, 10]);
        // A quiet gap longer than `LINGER` ends it.
        assert_eq!(
            batches_of(3, Duration::from_millis(11), 100).await,
            [1, 1, 1]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_batch_fails_each_of_its_readers() {
        let fetch: Fetch =
            Arc::new(|_| Box::pin(async { Err(MarketError::Transient("503".to_string())) }));
        let reads = Gatherer::new(10, fetch);
        let (a, b) = tokio::join!(reads.get("a".to_string()), reads.get("b".to_string()));
        assert!(a.unwrap_err().is_retriable());
        assert!(b.unwrap_err().is_retriable());
    }
}
