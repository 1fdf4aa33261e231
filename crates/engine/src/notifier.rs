//! The Notifier: delivers the webhook POSTs waiting in the outbox (written in the same
//! transaction that ended their run), signed in the style of Standard Webhooks: headers
//! `webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature: v1,<base64 of
//! HMAC-SHA256 over "id.timestamp.body">`, keyed by the tenant's `whsec_` secret. A delivery is
//! removed once its receiver answers 2xx; otherwise it is tried again with exponential backoff
//! and jitter, up to `max_attempts`. The outbox is in sled, so a pending delivery survives a
//! restart.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;
use tokio::sync::Notify;

use crate::config::WebhookConfig;
use domain::clock::Clock;
use domain::{Delivery, Id};
use store::{SharedStore, StoreError};

/// A new signing secret: `whsec_` and the base64 of 24 random bytes.
pub fn new_secret() -> String {
    let key: [u8; 24] = rand::rng().random();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

/// The `webhook-signature` value of a delivery: `v1,` and the base64 HMAC-SHA256, keyed by the
/// secret's decoded bytes, of `{id}.{timestamp}.{body}`.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &str) -> Option<String> {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    Some(format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    ))
}

pub struct Notifier {
    pub store: SharedStore,
    pub clock: Arc<dyn Clock>,
    pub config: WebhookConfig,
    pub client: reqwest::Client,
    /// Where webhooks may go; checked again before every attempt.
    pub policy: net::egress::Policy,
    pub metrics: Arc<metrics::Metrics>,
    /// Woken when a delivery is queued.
    pub wake: Arc<Notify>,
}

impl Notifier {
    /// Delivers until the process stops: every due delivery, then waits for the next one to be
    /// due or for a new one.
    pub async fn run(self) {
        loop {
            let next = match self.round().await {
                Ok(next) => next,
                Err(error) => {
                    tracing::error!(%error, "could not read the webhook outbox");
                    Some(self.clock.now_ms() + 5_000)
                }
            };
            let wait = next.map_or(Duration::from_secs(3600), |at| {
                Duration::from_millis(at.saturating_sub(self.clock.now_ms()).max(0) as u64)
            });
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Sends every due delivery once; answers when the next one is due.
    async fn round(&self) -> Result<Option<i64>, StoreError> {
        let now = self.clock.now_ms();
        let mut next = None::<i64>;
        for (n, delivery) in self.store.outbox().await? {
            let due_again = if delivery.next_attempt_at > now {
                Some(delivery.next_attempt_at)
            } else {
                self.attempt(n, delivery).await?
            };
            next = next.into_iter().chain(due_again).min();
        }
        Ok(next)
    }

    fn count(&self, outcome: &str) {
        self.metrics
            .webhooks
            .get_or_create(&metrics::OutcomeLabels {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// One attempt; answers when the delivery is due again, if it stays.
    async fn attempt(&self, n: Id, mut d: Delivery) -> Result<Option<i64>, StoreError> {
        let Some(hook) = self.store.webhook(d.tenant_id).await? else {
            // The tenant removed its webhook: nobody to tell any more.
            self.store.remove_delivery(n).await?;
            return Ok(None);
        };
        let timestamp = self.clock.now_ms() / 1000;
        let allowed = match reqwest::Url::parse(&d.url) {
            Ok(url) => net::egress::check_resolved(&url, self.policy)
                .await
                .map_err(|why| format!("refused by the egress policy: {why}")),
            Err(e) => Err(format!("the webhook URL is not a URL: {e}")),
        };
        let result = match (allowed, sign(&hook.secret, &d.id, timestamp, &d.body)) {
            (Err(why), _) => Err(why),
            (Ok(()), None) => Err("the webhook secret is not valid base64".to_string()),
            (Ok(()), Some(signature)) => self
                .client
                .post(&d.url)
                .timeout(Duration::from_secs(self.config.timeout_secs.max(1)))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header("webhook-id", &d.id)
                .header("webhook-timestamp", timestamp.to_string())
                .header("webhook-signature", signature)
                .body(d.body.clone())
                .send()
                .await
                .map_err(|e| format!("could not reach the receiver: {e}"))
                .and_then(|r| {
                    if r.status().is_success() {
                        Ok(())
                    } else if r.status().is_redirection() {
                        Err(format!(
                            "the receiver answered {}, a redirect, which is never followed",
                            r.status()
                        ))
                    } else {
                        Err(format!("the receiver answered {}", r.status()))
                    }
                }),
        };
        d.attempts += 1;
        match result {
            Ok(()) => {
                self.count("delivered");
                tracing::info!(delivery = %d.id, tenant_id = d.tenant_id, attempts = d.attempts, "webhook delivered");
                self.store.remove_delivery(n).await?;
                Ok(None)
            }
            Err(error) if d.attempts >= self.config.max_attempts.max(1) => {
                self.count("given_up");
                tracing::warn!(delivery = %d.id, tenant_id = d.tenant_id, %error, "webhook given up");
                self.store.remove_delivery(n).await?;
                Ok(None)
            }
            Err(error) => {
                self.count("retried");
                let base = self.config.retry_min_ms.max(1);
                let doubled = base.saturating_mul(1u64 << (d.attempts - 1).min(30));
                let delay = doubled.min(self.config.retry_max_ms.max(base));
                // Up to a fifth more, so receivers that failed together are not hit together.
                let jitter = rand::rng().random_range(0..=delay / 5);
                d.next_attempt_at = self.clock.now_ms() + (delay + jitter) as i64;
                tracing::info!(delivery = %d.id, tenant_id = d.tenant_id, attempts = d.attempts, %error, "webhook will be retried");
                d.last_error = Some(error);
                self.store.put_delivery(n, &d).await?;
                Ok(Some(d.next_attempt_at))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_follow_standard_webhooks() {
        // The example of the Standard Webhooks specification.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            sign(secret, id, 1614265330, body).as_deref(),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
    }

    #[test]
    fn new_secrets_are_different_and_usable() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert!(sign(&a, "msg_1", 1, "{}").is_some());
    }
}
