//! JSON views of stored records. Field names follow the seed where it has them (tracker progress,
//! phases_status, metadata); credentials are never part of any view.

use serde_json::{json, Map, Value};

use domain::clock::rfc3339;
use domain::progress::{by_phase, percent};
use domain::{
    Action, Campaign, CampaignProduct, CampaignStatus, Connection, PhaseCount, Product, Schedule,
    Tracker,
};

fn phases_status(phases: &[PhaseCount]) -> Value {
    let mut map = Map::new();
    for p in phases {
        map.insert(
            p.phase.as_str().to_string(),
            json!({
                "total": p.total,
                "processed": p.processed(),
                "successful": p.successful,
                "failed": p.failed,
                "skipped": p.skipped,
            }),
        );
    }
    Value::Object(map)
}

pub fn tracker(t: &Tracker) -> Value {
    json!({
        "id": t.id,
        "campaign_id": t.campaign_id,
        "marketplace_id": t.marketplace_id,
        "action": t.action.as_str(),
        "status": t.status,
        "progress": t.progress(),
        "phases_status": phases_status(&by_phase(&t.connections)),
        "connections": t.connections.iter().map(|c| json!({
            "marketplace_id": c.connection_id,
            "system": c.system.as_str(),
            "progress": percent(std::slice::from_ref(c)),
            "phases_status": phases_status(&c.phases),
            "error": c.error,
        })).collect::<Vec<_>>(),
        "metadata": {
            "campaign_name": t.metadata.campaign_name,
            "total_products": t.metadata.total_products,
            "started_at": rfc3339(t.started_at),
            "chunk_size": t.metadata.chunk_size,
            "fail_fast": t.metadata.fail_fast,
            "force": t.metadata.force,
            "product_level": t.metadata.product_level,
            "events": t.metadata.events,
            "notify": t.metadata.notify,
            "scheduled": t.metadata.scheduled.is_some(),
            "step": t.metadata.scheduled.map(|s| s.as_str()),
            "prices": t.metadata.prices.as_str(),
        },
        "has_failures": t.has_failures(),
        "error_message": t.error_message,
        "started_at": rfc3339(t.started_at),
        "completed_at": t.completed_at.map(rfc3339),
        "updated_at": rfc3339(t.updated_at),
    })
}

pub fn connection(c: &Connection) -> Value {
    json!({
        "id": c.id,
        "system": c.system.as_str(),
        "name": c.name,
        "base_url": c.base_url,
        "rate_limit": {"per_second": c.rate_limit.per_second, "per_minute": c.rate_limit.per_minute},
        "max_in_flight": c.max_in_flight,
        "settings": c.settings,
        "created_at": rfc3339(c.created_at),
    })
}

pub fn product(p: &Product) -> Value {
    json!({
        "id": p.id,
        "sku": p.sku,
        "name": p.name,
        "description": p.description,
        "price": p.price,
        "stock": p.stock,
        "variants": p.variants.iter().map(|v| json!({
            "sku": v.sku, "price": v.price, "stock": v.stock, "options": v.options,
            "barcode": v.barcode,
        })).collect::<Vec<_>>(),
        "images": p.images.iter().map(|i| json!({"url": i.url, "position": i.position})).collect::<Vec<_>>(),
        "brand": p.details.brand,
        "barcode": p.details.barcode,
        "marketplaces": {
            "mercadolibre": p.details.mercadolibre.as_ref().map(|m| json!({
                "attributes": m.attributes.iter().map(|a| json!({"id": a.id, "value_name": a.value_name})).collect::<Vec<_>>(),
                "category_id": m.category_id,
                "listing_type_id": m.listing_type_id,
            })),
        },
        "updated_at": rfc3339(p.updated_at),
    })
}

/// The status a campaign will have once the run it is in ends well.
fn settled(status: CampaignStatus) -> CampaignStatus {
    match status {
        CampaignStatus::Publishing => CampaignStatus::Published,
        CampaignStatus::Pausing => CampaignStatus::Paused,
        CampaignStatus::Finishing => CampaignStatus::Finished,
        s => s,
    }
}

pub fn campaign(c: &Campaign, schedule: Option<&Schedule>) -> Value {
    let date = |d: Option<i64>| d.map(rfc3339);
    let next = schedule.and_then(Schedule::next).map(|(step, at)| {
        json!({
            "step": step.as_str(),
            "action": step.action(settled(c.status)).ok().map(Action::as_str),
            "at": rfc3339(at),
        })
    });
    let taken = |r: &domain::StepRecord| {
        json!({
            "step": r.step.as_str(),
            "due_at": rfc3339(r.due_at),
            "taken_at": rfc3339(r.at),
            "action": r.action.map(Action::as_str),
            "tracker_id": r.tracker_id,
            "skipped": r.skipped,
        })
    };
    let steps: Vec<_> = schedule
        .map(|s| s.steps.as_slice())
        .unwrap_or_default()
        .iter()
        .map(taken)
        .collect();
    let drift = schedule.and_then(|s| s.drift.as_ref());
    json!({
        "id": c.id,
        "name": c.name,
        "status": c.status,
        "error": c.error,
        "marketplace_ids": c.marketplace_ids,
        "presale_at": date(schedule.and_then(|s| s.presale_at)),
        "starts_at": date(schedule.and_then(|s| s.starts_at)),
        "ends_at": date(schedule.and_then(|s| s.ends_at)),
        "notify_scheduled": schedule.is_none_or(|s| s.notify),
        "next_scheduled": next,
        "scheduled_steps": steps,
        "drift_every_hours": drift.map(|d| d.every_hours),
        "next_drift_check_at": drift.map(|d| rfc3339(d.next_at)),
        "last_periodic_drift_check": drift.and_then(|d| d.last.as_ref()).map(taken),
        "created_at": rfc3339(c.created_at),
        "updated_at": rfc3339(c.updated_at),
    })
}

fn pairs(pairs: &[(String, String)]) -> Value {
    Value::Object(
        pairs
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect(),
    )
}

/// One difference of a drift check: its kind and what each side holds.
pub fn difference(d: &domain::drift::Difference) -> Value {
    use domain::drift::Difference as D;
    let mut v = match d {
        D::Missing => json!({}),
        D::Adopted { stored, found } => json!({"stored": stored, "found": found}),
        D::Status { expected, found } => json!({"expected": expected, "found": found}),
        D::Price {
            sku,
            expected,
            found,
        } => json!({"sku": sku, "expected": expected, "found": found}),
        D::Stock {
            sku,
            expected,
            found,
        } => json!({"sku": sku, "expected": expected, "found": found}),
        D::Variants { missing, unknown } => json!({"missing": missing, "unknown": unknown}),
        D::Images { expected, found } => json!({"expected": expected, "found": found}),
        D::Copies { sku, ids } => json!({"sku": sku, "ids": ids}),
    };
    v["kind"] = json!(d.kind());
    v
}

/// A campaign product of a drift report.
pub fn drifted(cp: &CampaignProduct, product: Option<&Product>) -> Value {
    let check = cp.drift.as_ref();
    json!({
        "product_id": cp.product_id,
        "sku": product.map(|p| p.sku.as_str()),
        "marketplace_id": cp.connection_id,
        "status": cp.status,
        "remote_id": cp.marketplace_info.product_id,
        "checked_at": check.map(|c| rfc3339(c.checked_at)),
        "error": check.and_then(|c| c.error.as_deref()),
        "differences": check.map_or_else(Vec::new, |c| c.differences.iter().map(difference).collect()),
        "repaired": check.map_or_else(Vec::new, |c| c.repaired.iter().map(difference).collect()),
    })
}

pub fn campaign_product(cp: &CampaignProduct, product: Option<&Product>) -> Value {
    let info = &cp.marketplace_info;
    json!({
        "product_id": cp.product_id,
        "sku": product.map(|p| p.sku.as_str()),
        "name": product.map(|p| p.name.as_str()),
        "marketplace_id": cp.connection_id,
        "status": cp.status,
        "marketplace_info": {
            "product_id": info.product_id,
            "variant_ids": pairs(&info.variant_ids),
            "image_ids": pairs(&info.image_ids),
            "remote_status": info.remote_status,
        },
        "error_message": cp.error_message,
        "published_at": cp.published_at.map(rfc3339),
        "updated_at": rfc3339(cp.updated_at),
        "last_tracker_id": cp.run.map(|r| r.tracker_id),
        "price": product.map(|p| p.price),
        "sale_price": cp.sale_price,
        "presale_price": cp.presale_price,
        "on_sale": info.sent.is_some_and(|s| s.on_sale),
    })
}
