//! JSON views of stored records still written by hand (campaign products and drift findings),
//! until they move to `answers` as types. Field names follow the seed where it has them;
//! credentials are never part of any view.

use serde_json::{json, Value};

use domain::clock::rfc3339;
use domain::{CampaignProduct, Product};

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
