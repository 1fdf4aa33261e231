//! Administration that needs no running server: tenants and their API tokens. A token is shown
//! once; the store keeps only its SHA-256.

use rand::RngCore;

use crate::api::token_hash;
use crate::domain::ApiToken;
use crate::store::{Store, StoreError};

/// Creates a random token for `tenant` (created if needed) and returns it.
pub async fn create_token(store: &dyn Store, tenant: &str, now: i64) -> Result<String, StoreError> {
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    let token = format!("cmpd_{}", hex::encode(bytes));
    add_token(store, tenant, &token, now).await?;
    Ok(token)
}

/// Registers a token chosen by the caller (the demo's CAMPAIGND_DEMO_TOKEN).
pub async fn add_token(
    store: &dyn Store,
    tenant: &str,
    token: &str,
    now: i64,
) -> Result<(), StoreError> {
    let tenant = store.ensure_tenant(tenant, now).await?;
    store
        .put_token(
            &token_hash(token),
            &ApiToken {
                tenant_id: tenant.id,
                created_at: now,
            },
        )
        .await
}
