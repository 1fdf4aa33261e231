//! The operator's commands: what the store holds (`status`, `campaigns`, `trackers`, `failed`,
//! `export`, `check`), copies of it (`backup`, `restore`), and what needs the running engine,
//! through its API (`retry`, `force-reset`, `import`). Each read gives a table for people or
//! JSON for scripts; nothing here changes a record except `restore` and the API's own actions.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use serde_json::{json, Value};

use crate::input::{validate_products, ProductInput};
use domain::clock::rfc3339;
use domain::{Campaign, CampaignStatus, Id, ProductStatus, TrackerStatus};
use store::{self, Store, StoreError};

type Result<T> = std::result::Result<T, StoreError>;

/// Every campaign of every tenant, with its tenant's name.
async fn all_campaigns(store: &dyn Store) -> Result<Vec<(String, Campaign)>> {
    let mut out = Vec::new();
    for tenant in store.tenants().await? {
        for c in store.campaigns(tenant.id).await? {
            out.push((tenant.name.clone(), c));
        }
    }
    Ok(out)
}

/// A campaign by id, whoever's it is.
async fn find_campaign(store: &dyn Store, id: Id) -> Result<Campaign> {
    for tenant in store.tenants().await? {
        if let Some(c) = store.campaign(tenant.id, id).await? {
            return Ok(c);
        }
    }
    Err(StoreError::Missing {
        kind: "campaign",
        id,
    })
}

/// `campaignd status`: runs, locks, queues and the store's size.
pub async fn status(store: &dyn Store, now: i64) -> Result<Value> {
    let locks = store.all_locks().await?;
    let mut runs = Vec::new();
    for lock in &locks {
        let tracker = store.tracker(lock.tracker_id).await?;
        runs.push(json!({
            "campaign_id": lock.campaign_id,
            "tracker_id": lock.tracker_id,
            "action": tracker.as_ref().map(|t| t.action.as_str()),
            "progress": tracker.as_ref().map(|t| t.progress()),
            "status": tracker.as_ref().map(|t| t.status),
            "lock_owner": lock.owner,
            "lock_expires_at": rfc3339(lock.expires_at),
            "lock_expired": lock.expires_at <= now,
        }));
    }
    let work = store.open_work().await?;
    let outbox = store.outbox().await?;
    Ok(json!({
        "tenants": store.tenants().await?.len(),
        "campaigns": all_campaigns(store).await?.len(),
        "running": runs,
        "open_work_items": work.len(),
        "webhook_deliveries_pending": outbox.len(),
        "live_nodes": store.live_nodes(now).await?,
        "store_bytes": store.size_bytes().await?,
    }))
}

/// `campaignd campaigns`.
pub async fn campaigns(store: &dyn Store) -> Result<Value> {
    let mut list = Vec::new();
    for (tenant, c) in all_campaigns(store).await? {
        let mut counts = BTreeMap::<&str, u64>::new();
        store::for_each_campaign_product(store, c.id, |cp| {
            *counts.entry(cp.status.as_str()).or_default() += 1;
        })
        .await?;
        list.push(json!({
            "id": c.id, "tenant": tenant, "name": c.name, "status": c.status,
            "marketplace_ids": c.marketplace_ids, "products": counts,
            "updated_at": rfc3339(c.updated_at),
        }));
    }
    Ok(Value::Array(list))
}

/// `campaignd trackers CAMPAIGN`: the campaign's runs, newest first.
pub async fn trackers(store: &dyn Store, campaign: Id) -> Result<Value> {
    let c = find_campaign(store, campaign).await?;
    let list = store
        .campaign_trackers(c.id)
        .await?
        .iter()
        .map(|t| {
            json!({
                "id": t.id, "action": t.action.as_str(), "status": t.status,
                "progress": t.progress(), "started_at": rfc3339(t.started_at),
                "duration_secs": t.completed_at.map(|end| (end - t.started_at) as f64 / 1000.0),
                "has_failures": t.has_failures(), "error_message": t.error_message,
            })
        })
        .collect();
    Ok(Value::Array(list))
}

/// `campaignd failed CAMPAIGN`: errored products with their messages.
pub async fn failed(store: &dyn Store, campaign: Id) -> Result<Value> {
    let c = find_campaign(store, campaign).await?;
    let mut cps = Vec::new();
    store::for_each_campaign_product(store, c.id, |cp| {
        if cp.status == ProductStatus::Errored {
            cps.push(cp);
        }
    })
    .await?;
    let mut list = Vec::new();
    for cp in cps {
        let sku = store
            .product(c.tenant_id, cp.product_id)
            .await?
            .map(|p| p.sku);
        list.push(json!({
            "product_id": cp.product_id, "sku": sku, "marketplace_id": cp.connection_id,
            "error_message": cp.error_message,
            "tracker_id": cp.run.map(|r| r.tracker_id),
        }));
    }
    Ok(Value::Array(list))
}

/// `campaignd export`: every record of every tenant as JSON (credentials never included).
pub async fn export(store: &dyn Store) -> Result<Value> {
    let mut tenants = Vec::new();
    for tenant in store.tenants().await? {
        let connections: Vec<Value> = store
            .connections(tenant.id)
            .await?
            .iter()
            .map(|c| answer(crate::answers::Connection::from(c)))
            .collect();
        let mut products = Vec::new();
        let mut offset = 0;
        loop {
            let page = store.products_page(tenant.id, offset, 1000).await?;
            let n = page.items.len() as u64;
            products.extend(
                page.items
                    .iter()
                    .map(|p| answer(crate::answers::Product::from(p))),
            );
            if n < 1000 {
                break;
            }
            offset += n;
        }
        let mut campaigns = Vec::new();
        for c in store.campaigns(tenant.id).await? {
            let schedule = store.schedule(c.id).await?;
            let mut view = answer(crate::answers::Campaign::of(&c, schedule.as_ref()));
            let mut cps = Vec::new();
            store::for_each_campaign_product(store, c.id, |cp| {
                cps.push(answer(crate::answers::CampaignProduct::of(&cp, None)));
            })
            .await?;
            view["products"] = Value::Array(cps);
            view["trackers"] = store
                .campaign_trackers(c.id)
                .await?
                .iter()
                .map(|t| answer(crate::answers::Tracker::from(t)))
                .collect();
            campaigns.push(view);
        }
        tenants.push(json!({
            "id": tenant.id, "name": tenant.name, "connections": connections,
            "products": products, "campaigns": campaigns,
        }));
    }
    Ok(json!({ "tenants": tenants }))
}

/// `campaignd check`: the store's invariants, each broken one as a sentence.
pub async fn check(store: &dyn Store) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let locks = store.all_locks().await?;
    let locked: HashSet<Id> = locks.iter().map(|l| l.campaign_id).collect();
    for lock in &locks {
        match store.tracker(lock.tracker_id).await? {
            None => problems.push(format!(
                "campaign {} is locked by tracker {}, which does not exist",
                lock.campaign_id, lock.tracker_id
            )),
            Some(t) if t.status != TrackerStatus::Active => problems.push(format!(
                "campaign {} is locked by tracker {}, which is {:?}",
                lock.campaign_id, lock.tracker_id, t.status
            )),
            // A stopped service leaves its runs' locks for the next start to resume: fine.
            Some(_) => {}
        }
    }
    for tenant in store.tenants().await? {
        let connections: HashSet<Id> = store
            .connections(tenant.id)
            .await?
            .iter()
            .map(|c| c.id)
            .collect();
        for c in store.campaigns(tenant.id).await? {
            let moving = matches!(
                c.status,
                CampaignStatus::Publishing | CampaignStatus::Pausing | CampaignStatus::Finishing
            );
            if moving && !locked.contains(&c.id) {
                problems.push(format!(
                    "campaign {} is {} but no run holds it",
                    c.id,
                    c.status.as_str()
                ));
            }
            for m in &c.marketplace_ids {
                if !connections.contains(m) {
                    problems.push(format!(
                        "campaign {} names connection {m}, which does not exist",
                        c.id
                    ));
                }
            }
            let mut cps = Vec::new();
            store::for_each_campaign_product(store, c.id, |cp| cps.push(cp)).await?;
            let mut by_connection: HashMap<Id, u64> = HashMap::new();
            for cp in &cps {
                *by_connection.entry(cp.connection_id).or_default() += 1;
                if store.product(tenant.id, cp.product_id).await?.is_none() {
                    problems.push(format!(
                        "campaign {} holds product {}, which does not exist",
                        c.id, cp.product_id
                    ));
                }
                if !connections.contains(&cp.connection_id) {
                    problems.push(format!(
                        "campaign {} holds product {} on connection {}, which does not exist",
                        c.id, cp.product_id, cp.connection_id
                    ));
                }
            }
            for t in store.campaign_trackers(c.id).await? {
                if t.status == TrackerStatus::Active && !locked.contains(&c.id) {
                    problems.push(format!(
                        "tracker {} of campaign {} is active but holds no lock",
                        t.id, c.id
                    ));
                }
                for conn in &t.connections {
                    for phase in &conn.phases {
                        if phase.processed() > phase.total {
                            problems.push(format!(
                                "tracker {} counts {} processed of {} in {} on connection {}",
                                t.id,
                                phase.processed(),
                                phase.total,
                                phase.phase.as_str(),
                                conn.connection_id
                            ));
                        }
                    }
                    // A whole-campaign run's totals are the products it found on the connection.
                    let stored = by_connection.get(&conn.connection_id).copied().unwrap_or(0);
                    let counted = conn.phases.first().map_or(0, |p| p.total);
                    if !t.metadata.product_level && !t.metadata.retry && counted > stored {
                        problems.push(format!(
                            "tracker {} counts {counted} products on connection {} where the campaign holds {stored}",
                            t.id, conn.connection_id
                        ));
                    }
                }
            }
        }
    }
    Ok(problems)
}

/// `check` as `campaignd check --json` and `/admin/check` show it: `{"ok", "problems"}`.
pub async fn check_report(store: &dyn Store) -> Result<Value> {
    let problems = check(store).await?;
    Ok(json!({ "ok": problems.is_empty(), "problems": problems }))
}

/// Products read from a JSON array or a CSV file (`sku,name,price` and optionally
/// `description,stock`; one row per product, no variants or images).
pub fn read_products(path: &Path) -> std::result::Result<Vec<ProductInput>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let is_csv = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let products: Vec<ProductInput> = if is_csv {
        csv_products(&text)?
    } else {
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
    };
    // The same checks as the API's, before anything is sent.
    validate_products_in_chunks(&products)?;
    Ok(products)
}

fn validate_products_in_chunks(products: &[ProductInput]) -> std::result::Result<(), String> {
    let per = crate::input::MAX_PRODUCTS_PER_REQUEST;
    for (n, chunk) in products.chunks(per).enumerate() {
        validate_products(chunk.to_vec())
            .map_err(|e| format!("products from {}: {}", n * per, e.message))?;
    }
    Ok(())
}

/// A CSV line's fields; quotes may hold commas and doubled quotes.
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(ch) = chars.next() {
        match (ch, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    fields.push(field);
    fields
}

fn csv_products(text: &str) -> std::result::Result<Vec<ProductInput>, String> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<String> = csv_fields(lines.next().ok_or("the CSV file is empty")?)
        .into_iter()
        .map(|h| h.trim().to_lowercase())
        .collect();
    let column = |name: &str| header.iter().position(|h| h == name);
    let (sku, name, price) = match (column("sku"), column("name"), column("price")) {
        (Some(s), Some(n), Some(p)) => (s, n, p),
        _ => return Err("the CSV header must name sku, name and price".to_string()),
    };
    let (description, stock) = (column("description"), column("stock"));
    let (brand, barcode) = (column("brand"), column("barcode"));
    lines
        .enumerate()
        .map(|(i, line)| {
            let f = csv_fields(line);
            let at = |c: usize| f.get(c).map(|v| v.trim().to_string()).unwrap_or_default();
            let row = i + 2;
            let given = |c: Option<usize>| c.map(at).filter(|v| !v.is_empty());
            let mut value = json!({
                "sku": at(sku),
                "name": at(name),
                "price": at(price).parse::<f64>().map_err(|_| format!("line {row}: price {:?} is not a number", at(price)))?,
                "description": description.map(at).unwrap_or_default(),
                "stock": match stock.map(at).filter(|s| !s.is_empty()) {
                    None => 0,
                    Some(s) => s.parse::<i64>().map_err(|_| format!("line {row}: stock {s:?} is not a whole number"))?,
                },
            });
            // Optional columns: an empty cell leaves the field out.
            for (field, c) in [("brand", brand), ("barcode", barcode)] {
                if let Some(v) = given(c) {
                    value[field] = json!(v);
                }
            }
            serde_json::from_value(value).map_err(|e| format!("line {row}: {e}"))
        })
        .collect()
}

/// An answer as the JSON the export writes (an answer always serializes: its fields are
/// strings, numbers and maps of strings).
fn answer(a: impl serde::Serialize) -> Value {
    serde_json::to_value(a).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_become_products_with_quotes_and_optional_columns() {
        let text = "SKU,Name,Price,Stock,Brand,Barcode\nA-1,\"Shirt, blue\",10.5,3,Acme,4006381333931\nA-2,\"Say \"\"hi\"\"\",2,,,\n";
        let products = csv_products(text).unwrap();
        assert_eq!(products.len(), 2);
        assert_eq!(products[0].brand.as_deref(), Some("Acme"));
        assert_eq!(products[0].barcode.as_deref(), Some("4006381333931"));
        assert_eq!(
            (products[1].brand.as_deref(), products[1].barcode.as_deref()),
            (None, None)
        );
        assert_eq!(products[0].name, "Shirt, blue");
        assert_eq!(products[0].stock, 3);
        assert_eq!(products[1].name, "Say \"hi\"");
        assert_eq!(products[1].stock, 0);
        assert!(
            csv_products("sku,name\nA,B\n").is_err(),
            "price is required"
        );
        let bad = csv_products("sku,name,price\nA,B,cheap\n").unwrap_err();
        assert!(bad.contains("line 2"), "{bad}");
    }
}
