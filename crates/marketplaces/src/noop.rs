//! A marketplace that does nothing and answers at once, for benchmarks of the engine itself
//! (actors, store, tracker) without HTTP or rate limits. Having no remote effect to protect,
//! it does not checkpoint: the worker still stores each product's state after the call.

use std::sync::Arc;

use async_trait::async_trait;

use super::{AdapterFactory, Gate, MarketError, Marketplace, PhaseCall};
use domain::{Action, Connection, MarketplaceInfo, Product};

pub struct Noop;

#[async_trait]
impl Marketplace for Noop {
    async fn apply(&self, call: PhaseCall<'_>) -> Result<(), MarketError> {
        match call.action {
            Action::Finish | Action::Delete => call.info.product_id = None,
            _ => call.info.product_id = Some(call.product.id.to_string()),
        }
        Ok(())
    }

    /// Nothing is anywhere, so nothing differs.
    async fn drift(
        &self,
        _: &Product,
        _: domain::Offer,
        _: domain::ProductStatus,
        _: &MarketplaceInfo,
    ) -> Result<Vec<domain::drift::Difference>, MarketError> {
        Ok(Vec::new())
    }

    async fn reconcile(
        &self,
        _: Action,
        _: &Product,
        _info: &mut MarketplaceInfo,
    ) -> Result<(), MarketError> {
        Ok(())
    }
}

/// Builds a `Noop` for every connection.
pub struct NoopAdapters;

impl AdapterFactory for NoopAdapters {
    fn build(&self, _connection: &Connection, _gate: Gate) -> Arc<dyn Marketplace> {
        Arc::new(Noop)
    }
}
