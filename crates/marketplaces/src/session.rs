//! A connection's current credentials, shared by every run on it. Most marketplaces use fixed
//! keys; MercadoLibre's access token expires and a refresh replaces both tokens (its refresh
//! token is single-use), so the refresh happens once under a lock, the new tokens are saved to
//! the connection's record, and a caller that lost the race simply
//! takes the tokens the winner got.

use std::future::Future;
use std::sync::Arc;

use super::MarketError;
use domain::{Credentials, Id};

/// Persists a connection's new credentials: (tenant, connection, credentials), durably before
/// the future resolves.
pub type CredentialSaver = Arc<
    dyn Fn(Id, Id, Credentials) -> futures::future::BoxFuture<'static, Result<(), String>>
        + Send
        + Sync,
>;

pub struct Session {
    tenant_id: Id,
    connection_id: Id,
    current: tokio::sync::Mutex<Credentials>,
    save: Option<CredentialSaver>,
}

impl Session {
    pub fn new(
        tenant_id: Id,
        connection_id: Id,
        credentials: Credentials,
        save: Option<CredentialSaver>,
    ) -> Session {
        Session {
            tenant_id,
            connection_id,
            current: tokio::sync::Mutex::new(credentials),
            save,
        }
    }

    pub async fn current(&self) -> Credentials {
        self.current.lock().await.clone()
    }

    /// Replaces the credentials `used` (which the marketplace refused as expired) with what
    /// `refresh` obtains, saved at once. If another caller refreshed meanwhile, its credentials
    /// are returned and `refresh` is not called.
    pub async fn refresh<F, Fut>(
        &self,
        used: &Credentials,
        refresh: F,
    ) -> Result<Credentials, MarketError>
    where
        F: FnOnce(Credentials) -> Fut,
        Fut: Future<Output = Result<Credentials, MarketError>>,
    {
        let mut current = self.current.lock().await;
        if *current != *used {
            return Ok(current.clone());
        }
        let fresh = refresh(current.clone()).await?;
        // The old refresh token is spent either way: keep the new tokens in memory even when
        // they cannot be saved, so that this process at least goes on working.
        *current = fresh.clone();
        if let Some(save) = &self.save {
            save(self.tenant_id, self.connection_id, fresh.clone())
                .await
                .map_err(|e| {
                    MarketError::Local(format!("could not save the refreshed credentials: {e}"))
                })?;
        }
        tracing::info!(
            connection_id = self.connection_id,
            "connection credentials refreshed"
        );
        Ok(fresh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn shopify(token: &str) -> Credentials {
        Credentials::Shopify {
            access_token: token.to_string(),
        }
    }

    #[tokio::test]
    async fn a_refresh_happens_once_and_is_saved_before_use() {
        let saved = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = Arc::clone(&saved);
        let saver: CredentialSaver = Arc::new(move |tenant, conn, c| {
            log.lock().unwrap().push((tenant, conn, c));
            Box::pin(async { Ok(()) })
        });
        let session = Session::new(1, 2, shopify("old"), Some(saver));
        let calls = AtomicU32::new(0);
        let used = session.current().await;
        let first = session
            .refresh(&used, |_| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok(shopify("new"))
            })
            .await
            .unwrap();
        // A second caller that also saw the old token gets the new one without refreshing.
        let second = session
            .refresh(&used, |_| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok(shopify("newer"))
            })
            .await
            .unwrap();
        assert_eq!(first, shopify("new"));
        assert_eq!(second, shopify("new"));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(*saved.lock().unwrap(), vec![(1, 2, shopify("new"))]);
        assert_eq!(session.current().await, shopify("new"));
    }

    #[tokio::test]
    async fn a_failed_save_is_an_error_but_the_new_tokens_are_used() {
        let saver: CredentialSaver =
            Arc::new(|_, _, _| Box::pin(async { Err("disk full".to_string()) }));
        let session = Session::new(1, 2, shopify("old"), Some(saver));
        let used = session.current().await;
        let result = session
            .refresh(&used, |_| async { Ok(shopify("new")) })
            .await;
        assert!(matches!(result, Err(MarketError::Local(m)) if m.contains("disk full")));
        assert_eq!(session.current().await, shopify("new"));
    }
}
