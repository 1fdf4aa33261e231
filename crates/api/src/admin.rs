//! Administration of tenants and their API tokens, for the CLI (on a stopped service's store)
//! and the API (a tenant's own tokens). A token is shown once; the store keeps only its
//! SHA-256, and a token is named by the start of that hash (`token_id`).

use rand::RngCore;

use domain::token_hash;
use domain::{token_id, ApiToken, Id, Millis};
use store::{Store, StoreError};

/// A token just made: the token itself (shown once) and its record.
pub struct NewToken {
    pub token: String,
    pub id: String,
    pub record: ApiToken,
}

/// Makes a random token for a tenant.
pub async fn new_token(
    store: &dyn Store,
    tenant_id: Id,
    name: &str,
    expires_at: Option<Millis>,
    now: Millis,
) -> Result<NewToken, StoreError> {
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    let token = format!("cmpd_{}", hex::encode(bytes));
    let hash = token_hash(&token);
    let record = ApiToken {
        tenant_id,
        created_at: now,
        name: name.to_string(),
        expires_at,
    };
    store.put_token(&hash, &record).await?;
    Ok(NewToken {
        token,
        id: token_id(&hash),
        record,
    })
}

/// Creates a random token for `tenant` (created if needed) and returns it.
pub async fn create_token(store: &dyn Store, tenant: &str, now: i64) -> Result<String, StoreError> {
    let tenant = store.ensure_tenant(tenant, now).await?;
    Ok(new_token(store, tenant.id, "", None, now).await?.token)
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
                name: String::new(),
                expires_at: None,
            },
        )
        .await
}

/// Removes the token named `id` (of `tenant`, when given); answers the hash of the token
/// removed, if there was one.
pub async fn revoke_token(
    store: &dyn Store,
    tenant: Option<Id>,
    id: &str,
) -> Result<Option<[u8; 32]>, StoreError> {
    for (hash, _) in store.tokens(tenant).await? {
        if token_id(&hash) == id {
            store.remove_token(&hash).await?;
            return Ok(Some(hash));
        }
    }
    Ok(None)
}
