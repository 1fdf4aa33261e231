//! The settle window. A store keeps working on a request whose client is gone: a Rails or PHP
//! store finishes a create or an update after the connection dropped, or after a gateway in front
//! of it answered 504. So a write that left without an answer telling its end (a timeout, a cut
//! connection, a stop of the process while it was under way) may still land, and until it may
//! no longer, nothing else is written to that product: a create of unknown outcome is looked up
//! only once the window has passed (a look-up before it finds nothing yet, and the create that
//! follows makes a second listing), and an update is sent again only then (one sent before it
//! could be overtaken by the late one, leaving the store other than campaignd says).
//!
//! The window counts from the moment the request was given up on (so at least the HTTP timeout
//! after it was sent), or, after a stop of the process or a node's lease taken over, from the
//! moment the run was resumed, since the request may have left until the process died.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::MarketError;
use domain::clock::Clock;
use domain::{MarketplaceInfo, Millis};
use metrics::{ConnLabels, Metrics};
use store::SharedStore;

/// What `apply_once` needs to keep a write from overtaking one the store may still carry out.
#[derive(Clone)]
pub struct Settle {
    pub clock: Arc<dyn Clock>,
    /// How long after a request was given up on the store may still carry it out
    /// (`runs.settle_ms`).
    pub window: Duration,
    /// Where the mark put on a product before its write leaves is made durable: a mark lost to
    /// a crash would let the write's product be looked up or written again at once.
    pub store: SharedStore,
    pub metrics: Arc<Metrics>,
    pub labels: ConnLabels,
    /// The run's token: a wait ends when the run stops.
    pub stop: CancellationToken,
}

/// When a `window` after the product's last unsettled write ends, if it is still open at `now`.
pub fn open_until(info: &MarketplaceInfo, window: Duration, now: Millis) -> Option<Millis> {
    let until = info.unsettled_at?.saturating_add(window.as_millis() as i64);
    (until > now).then_some(until)
}

impl Settle {
    /// When the window of the product's last unsettled write ends, if it has not yet.
    pub fn open_until(&self, info: &MarketplaceInfo) -> Option<Millis> {
        open_until(info, self.window, self.clock.now_ms())
    }

    /// Waits until no earlier write to the product can still land, counting the wait. A stop
    /// of the run ends the wait with nothing sent.
    pub async fn wait(&self, info: &MarketplaceInfo) -> Result<(), MarketError> {
        let Some(until) = self.open_until(info) else {
            return Ok(());
        };
        let left = Duration::from_millis((until - self.clock.now_ms()).max(0) as u64);
        tracing::info!(
            system = %self.labels.system,
            connection_id = %self.labels.connection,
            product_id = info.product_id.as_deref().unwrap_or(""),
            wait_ms = left.as_millis() as u64,
            "waiting for an earlier request of unknown outcome to settle before writing again"
        );
        let started = tokio::time::Instant::now();
        let stopped = tokio::select! {
            _ = tokio::time::sleep(left) => false,
            _ = self.stop.cancelled() => true,
        };
        self.metrics.settle_waits.get_or_create(&self.labels).inc();
        self.metrics
            .settle_wait
            .get_or_create(&self.labels)
            .inc_by(started.elapsed().as_secs_f64());
        if stopped {
            return Err(MarketError::Transient(
                "not sent: the run was stopped while an earlier request settled".to_string(),
            ));
        }
        Ok(())
    }

    /// Makes every write so far survive a crash.
    pub async fn durable(&self) -> Result<(), MarketError> {
        self.store
            .flush()
            .await
            .map_err(|e| MarketError::Local(format!("could not save progress: {e}")))
    }

    /// The mark a write leaves on its product once it has failed: the moment it was given up
    /// on when the store may still carry it out, none otherwise (it was answered, refused, or
    /// never left).
    pub fn after(&self, result: &Result<(), MarketError>) -> Option<Millis> {
        match result {
            Err(e) if e.may_land_late() => Some(self.clock.now_ms()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use futures::future::BoxFuture;
    use tokio::time::Instant;

    use super::*;
    use crate::{apply_once, Marketplace, PhaseCall};
    use domain::clock::FakeClock;
    use domain::{Action, Offer, Phase, Product};

    /// A marketplace answering each call as scripted, and noting when calls came.
    struct Scripted {
        answers: Mutex<Vec<Result<(), MarketError>>>,
        applied: Mutex<Vec<Instant>>,
        reconciled: Mutex<Vec<Instant>>,
        /// A call moves this clock on by this many milliseconds (the time it takes).
        takes: Option<(Arc<FakeClock>, i64)>,
    }

    impl Scripted {
        fn new(answers: Vec<Result<(), MarketError>>) -> Scripted {
            Scripted {
                answers: Mutex::new(answers),
                applied: Mutex::new(Vec::new()),
                reconciled: Mutex::new(Vec::new()),
                takes: None,
            }
        }
    }

    #[async_trait]
    impl Marketplace for Scripted {
        async fn apply(&self, _call: PhaseCall<'_>) -> Result<(), MarketError> {
            self.applied.lock().unwrap().push(Instant::now());
            if let Some((clock, ms)) = &self.takes {
                clock.advance(*ms);
            }
            self.answers.lock().unwrap().remove(0)
        }

        async fn reconcile(
            &self,
            _: Action,
            _: &Product,
            _: &mut MarketplaceInfo,
        ) -> Result<(), MarketError> {
            self.reconciled.lock().unwrap().push(Instant::now());
            Ok(())
        }
    }

    fn product() -> Product {
        Product {
            id: 1,
            tenant_id: 1,
            sku: "SKU-1".into(),
            name: "Shirt".into(),
            description: String::new(),
            price: 10.0,
            stock: 1,
            variants: Vec::new(),
            images: Vec::new(),
            updated_at: 0,
            details: Default::default(),
        }
    }

    /// A 2 s window, over a store in a directory that lives as long as the answer's guard.
    fn settle(clock: Arc<FakeClock>) -> (Settle, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("a directory");
        let keys = Arc::new(store::secrets::Keys::generate());
        let store =
            store::sled::SledStore::open(&dir.path().join("db"), 1 << 20, keys).expect("a store");
        let settle = Settle {
            clock,
            window: Duration::from_secs(2),
            store: Arc::new(store),
            metrics: Arc::new(Metrics::new()),
            labels: Metrics::conn("jumpseller", 1),
            stop: CancellationToken::new(),
        };
        (settle, dir)
    }

    /// Runs one call through `apply_once`, answering what each checkpoint saved.
    async fn call(
        marketplace: &Scripted,
        info: &mut MarketplaceInfo,
        settle: &Settle,
    ) -> (Result<(), MarketError>, Vec<MarketplaceInfo>) {
        let saved = Arc::new(Mutex::new(Vec::new()));
        let into = Arc::clone(&saved);
        let checkpoint = move |i: &MarketplaceInfo| -> BoxFuture<'static, Result<(), MarketError>> {
            into.lock().unwrap().push(i.clone());
            Box::pin(async { Ok(()) })
        };
        let product = product();
        let result = apply_once(
            marketplace,
            PhaseCall {
                action: Action::Publish,
                phase: Phase::ProductData,
                product: &product,
                offer: Offer::of(&product, None),
                prices_only: false,
                info,
                checkpoint: &checkpoint,
            },
            settle,
        )
        .await;
        let saved = saved.lock().unwrap().clone();
        (result, saved)
    }

    #[tokio::test(start_paused = true)]
    async fn a_create_of_unknown_outcome_is_looked_up_only_once_its_window_has_passed() {
        let clock = Arc::new(FakeClock::new(10_000));
        let (settle, _dir) = settle(Arc::clone(&clock));
        let marketplace = Scripted::new(vec![Ok(())]);
        // Given up on 1 s ago: 1 s of its 2 s window is left.
        let mut info = MarketplaceInfo {
            create_sent: true,
            unsettled_at: Some(9_000),
            ..MarketplaceInfo::default()
        };
        let start = Instant::now();
        let (result, _) = call(&marketplace, &mut info, &settle).await;
        assert!(result.is_ok());
        let reconciled = marketplace.reconciled.lock().unwrap().clone();
        assert_eq!(reconciled.len(), 1);
        assert_eq!(reconciled[0] - start, Duration::from_secs(1));
        assert_eq!(info.unsettled_at, None, "answered: nothing left to settle");
        let waits = settle
            .metrics
            .settle_waits
            .get_or_create(&settle.labels)
            .get();
        assert_eq!(waits, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_whose_window_has_passed_or_never_opened_goes_at_once() {
        let clock = Arc::new(FakeClock::new(10_000));
        let (settle, _dir) = settle(Arc::clone(&clock));
        for unsettled_at in [None, Some(8_000)] {
            let marketplace = Scripted::new(vec![Ok(())]);
            let mut info = MarketplaceInfo {
                unsettled_at,
                ..MarketplaceInfo::default()
            };
            let start = Instant::now();
            let (result, _) = call(&marketplace, &mut info, &settle).await;
            assert!(result.is_ok());
            let applied = marketplace.applied.lock().unwrap().clone();
            assert_eq!(applied, vec![start], "{unsettled_at:?}");
        }
        let waits = settle
            .metrics
            .settle_waits
            .get_or_create(&settle.labels)
            .get();
        assert_eq!(waits, 0);
    }

    /// The product is marked before the write leaves (a crash then leaves the mark); after it,
    /// only a failure the store may still carry out keeps a mark, from the moment of failure.
    #[tokio::test(start_paused = true)]
    async fn a_write_is_marked_before_it_leaves_and_stays_marked_only_when_it_may_land_late() {
        let table = [
            (Ok(()), None),
            (
                Err(MarketError::Unanswered("timed out".into())),
                Some(10_500),
            ),
            (Err(MarketError::Transient("HTTP 429".into())), None),
            (
                Err(MarketError::Rejected {
                    status: 422,
                    message: "no".into(),
                }),
                None,
            ),
        ];
        for (answer, after) in table {
            let clock = Arc::new(FakeClock::new(10_000));
            let (settle, _dir) = settle(Arc::clone(&clock));
            let failed = answer.is_err();
            let mut marketplace = Scripted::new(vec![answer]);
            // The write takes half a second.
            marketplace.takes = Some((Arc::clone(&clock), 500));
            let mut info = MarketplaceInfo::default();
            let (result, saved) = call(&marketplace, &mut info, &settle).await;
            assert_eq!(result.is_err(), failed);
            assert_eq!(saved[0].unsettled_at, Some(10_000), "marked before it left");
            assert_eq!(info.unsettled_at, after, "{result:?}");
            if failed {
                assert_eq!(saved.last().map(|i| i.unsettled_at), Some(after));
            }
        }
    }
}
