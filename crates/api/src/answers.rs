//! The API's answers as types. Each is built from domain values and sent as it is serialized,
//! and the OpenAPI document takes its schema from the same type (`ToSchema`), so a field cannot
//! be documented otherwise than it is sent. Answers move here one at a time from `views` (JSON
//! written by hand) and `openapi::schema` (schemas that are never built).

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use domain::clock::rfc3339;

use crate::input::{AttributeInput, MercadoLibreInput};

#[derive(Debug, Serialize, ToSchema)]
pub struct RateLimit {
    pub per_second: u32,
    pub per_minute: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
}

/// What was done, for people.
#[derive(Debug, Serialize, ToSchema)]
pub struct Message {
    pub message: &'static str,
}

/// A marketplace connection; its credentials are never shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct Connection {
    pub id: u64,
    #[schema(pattern = "^(jumpseller|mercadolibre|shopify|woocommerce)$")]
    pub system: String,
    pub name: String,
    pub base_url: String,
    pub rate_limit: RateLimit,
    pub max_in_flight: u32,
    pub settings: BTreeMap<String, String>,
    pub created_at: String,
}

impl From<&domain::Connection> for Connection {
    fn from(c: &domain::Connection) -> Connection {
        Connection {
            id: c.id,
            system: c.system.as_str().to_string(),
            name: c.name.clone(),
            base_url: c.base_url.clone(),
            rate_limit: RateLimit {
                per_second: c.rate_limit.per_second,
                per_minute: c.rate_limit.per_minute,
            },
            max_in_flight: c.max_in_flight,
            settings: c.settings.clone(),
            created_at: rfc3339(c.created_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionList {
    pub data: Vec<Connection>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Variant {
    pub sku: String,
    pub price: f64,
    pub stock: i64,
    pub options: BTreeMap<String, String>,
    pub barcode: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Image {
    pub url: String,
    pub position: u32,
}

/// What one marketplace alone needs of the product.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProductMarketplaces {
    pub mercadolibre: Option<MercadoLibreInput>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Product {
    pub id: u64,
    pub sku: String,
    pub name: String,
    pub description: String,
    pub price: f64,
    pub stock: i64,
    pub variants: Vec<Variant>,
    pub images: Vec<Image>,
    pub brand: Option<String>,
    pub barcode: Option<String>,
    pub marketplaces: ProductMarketplaces,
    pub updated_at: String,
}

impl From<&domain::Product> for Product {
    fn from(p: &domain::Product) -> Product {
        let mercadolibre = p.details.mercadolibre.as_ref().map(|m| MercadoLibreInput {
            attributes: m
                .attributes
                .iter()
                .map(|a| AttributeInput {
                    id: a.id.clone(),
                    value_name: a.value_name.clone(),
                })
                .collect(),
            category_id: m.category_id.clone(),
            listing_type_id: m.listing_type_id.clone(),
        });
        Product {
            id: p.id,
            sku: p.sku.clone(),
            name: p.name.clone(),
            description: p.description.clone(),
            price: p.price,
            stock: p.stock,
            variants: p
                .variants
                .iter()
                .map(|v| Variant {
                    sku: v.sku.clone(),
                    price: v.price,
                    stock: v.stock,
                    options: v.options.clone(),
                    barcode: v.barcode.clone(),
                })
                .collect(),
            images: p
                .images
                .iter()
                .map(|i| Image {
                    url: i.url.clone(),
                    position: i.position,
                })
                .collect(),
            brand: p.details.brand.clone(),
            barcode: p.details.barcode.clone(),
            marketplaces: ProductMarketplaces { mercadolibre },
            updated_at: rfc3339(p.updated_at),
        }
    }
}

/// A page of a list: its items, where it is, and how many there are in all.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProductPage {
    pub data: Vec<Product>,
    pub page: u64,
    pub per_page: u64,
    pub total: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProductRef {
    pub id: u64,
    pub sku: String,
}

/// An upload's outcome: how many products were new and how many updated, and each one's id.
#[derive(Debug, Serialize, ToSchema)]
pub struct Upserted {
    pub created: u64,
    pub updated: u64,
    pub products: Vec<ProductRef>,
}

/// A campaign's next dated step.
#[derive(Debug, Serialize, ToSchema)]
pub struct NextStep {
    #[schema(pattern = "^(presale|start|end)$")]
    pub step: &'static str,
    pub action: Option<&'static str>,
    pub at: String,
    /// Set while the due step waits for the action that holds the campaign.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting_for_tracker_id: Option<u64>,
}

/// A step of a campaign's schedule that was taken or passed over.
#[derive(Debug, Serialize, ToSchema)]
pub struct TakenStep {
    pub step: &'static str,
    pub due_at: String,
    pub taken_at: String,
    pub action: Option<&'static str>,
    pub tracker_id: Option<u64>,
    pub skipped: Option<String>,
}

impl From<&domain::StepRecord> for TakenStep {
    fn from(r: &domain::StepRecord) -> TakenStep {
        TakenStep {
            step: r.step.as_str(),
            due_at: rfc3339(r.due_at),
            taken_at: rfc3339(r.at),
            action: r.action.map(domain::Action::as_str),
            tracker_id: r.tracker_id,
            skipped: r.skipped.clone(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Campaign {
    pub id: u64,
    pub name: String,
    #[schema(
        value_type = String,
        pattern = "^(pending|publishing|published|pausing|paused|finishing|finished)$"
    )]
    pub status: domain::CampaignStatus,
    /// Whether the last run ended in failure.
    pub error: bool,
    pub marketplace_ids: Vec<u64>,
    pub presale_at: Option<String>,
    pub starts_at: Option<String>,
    pub ends_at: Option<String>,
    pub notify_scheduled: bool,
    pub next_scheduled: Option<NextStep>,
    pub scheduled_steps: Vec<TakenStep>,
    /// The period of the campaign's drift check, when the scheduler runs one.
    pub drift_every_hours: Option<u32>,
    pub next_drift_check_at: Option<String>,
    /// The last drift check the scheduler started or passed over (`step` is `drift`).
    pub last_periodic_drift_check: Option<TakenStep>,
    pub created_at: String,
    pub updated_at: String,
    /// Only in `GET /api/campaigns/{id}`: products by status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_counts: Option<BTreeMap<String, u64>>,
    /// Only in `GET /api/campaigns/{id}`: the run holding the campaign (`null`: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<u64>)]
    pub running_tracker_id: Option<Option<u64>>,
}

/// The status a campaign will have once the run it is in ends well.
fn settled(status: domain::CampaignStatus) -> domain::CampaignStatus {
    use domain::CampaignStatus::*;
    match status {
        Publishing => Published,
        Pausing => Paused,
        Finishing => Finished,
        s => s,
    }
}

impl Campaign {
    /// A campaign with its schedule, as a list shows it.
    pub fn of(c: &domain::Campaign, schedule: Option<&domain::Schedule>) -> Campaign {
        let date = |d: Option<i64>| d.map(rfc3339);
        let next = schedule
            .and_then(domain::Schedule::next)
            .map(|(step, at)| NextStep {
                step: step.as_str(),
                action: step
                    .action(settled(c.status))
                    .ok()
                    .map(domain::Action::as_str),
                at: rfc3339(at),
                waiting_for_tracker_id: None,
            });
        let drift = schedule.and_then(|s| s.drift.as_ref());
        Campaign {
            id: c.id,
            name: c.name.clone(),
            status: c.status,
            error: c.error,
            marketplace_ids: c.marketplace_ids.clone(),
            presale_at: date(schedule.and_then(|s| s.presale_at)),
            starts_at: date(schedule.and_then(|s| s.starts_at)),
            ends_at: date(schedule.and_then(|s| s.ends_at)),
            notify_scheduled: schedule.is_none_or(|s| s.notify),
            next_scheduled: next,
            scheduled_steps: schedule
                .map(|s| s.steps.as_slice())
                .unwrap_or_default()
                .iter()
                .map(TakenStep::from)
                .collect(),
            drift_every_hours: drift.map(|d| d.every_hours),
            next_drift_check_at: drift.map(|d| rfc3339(d.next_at)),
            last_periodic_drift_check: drift.and_then(|d| d.last.as_ref()).map(TakenStep::from),
            created_at: rfc3339(c.created_at),
            updated_at: rfc3339(c.updated_at),
            product_counts: None,
            running_tracker_id: None,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignList {
    pub data: Vec<Campaign>,
}

/// One phase's counts of a run.
#[derive(Debug, Serialize, ToSchema)]
pub struct PhaseStatus {
    pub total: u64,
    pub processed: u64,
    pub successful: u64,
    pub failed: u64,
    pub skipped: u64,
}

/// Each phase's counts, by the phase's name.
fn phases_status(phases: &[domain::PhaseCount]) -> BTreeMap<String, PhaseStatus> {
    phases
        .iter()
        .map(|p| {
            let counts = PhaseStatus {
                total: p.total,
                processed: p.processed(),
                successful: p.successful,
                failed: p.failed,
                skipped: p.skipped,
            };
            (p.phase.as_str().to_string(), counts)
        })
        .collect()
}

/// A run's progress on one of its connections.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionProgress {
    pub marketplace_id: u64,
    pub system: String,
    pub progress: f64,
    pub phases_status: BTreeMap<String, PhaseStatus>,
    pub error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TrackerMetadata {
    pub campaign_name: String,
    pub total_products: u64,
    pub started_at: String,
    pub chunk_size: u32,
    pub fail_fast: bool,
    pub force: bool,
    pub product_level: bool,
    pub events: Vec<String>,
    pub notify: bool,
    pub scheduled: bool,
    pub step: Option<&'static str>,
    #[schema(pattern = "^(regular|presale|sale)$")]
    pub prices: &'static str,
}

/// A run: its progress by phase and by connection (the seed's tracker, with its field names).
#[derive(Debug, Serialize, ToSchema)]
pub struct Tracker {
    pub id: u64,
    pub campaign_id: u64,
    pub marketplace_id: Option<u64>,
    pub action: &'static str,
    #[schema(value_type = String, pattern = "^(active|completed|failed)$")]
    pub status: domain::TrackerStatus,
    pub progress: f64,
    pub phases_status: BTreeMap<String, PhaseStatus>,
    pub connections: Vec<ConnectionProgress>,
    pub metadata: TrackerMetadata,
    pub has_failures: bool,
    pub error_message: Option<String>,
    pub started_at: String,
    pub completed_at: Option<String>,
    pub updated_at: String,
}

impl From<&domain::Tracker> for Tracker {
    fn from(t: &domain::Tracker) -> Tracker {
        let m = &t.metadata;
        Tracker {
            id: t.id,
            campaign_id: t.campaign_id,
            marketplace_id: t.marketplace_id,
            action: t.action.as_str(),
            status: t.status,
            progress: t.progress(),
            phases_status: phases_status(&domain::progress::by_phase(&t.connections)),
            connections: t
                .connections
                .iter()
                .map(|c| ConnectionProgress {
                    marketplace_id: c.connection_id,
                    system: c.system.as_str().to_string(),
                    progress: domain::progress::percent(std::slice::from_ref(c)),
                    phases_status: phases_status(&c.phases),
                    error: c.error.clone(),
                })
                .collect(),
            metadata: TrackerMetadata {
                campaign_name: m.campaign_name.clone(),
                total_products: m.total_products,
                started_at: rfc3339(t.started_at),
                chunk_size: m.chunk_size,
                fail_fast: m.fail_fast,
                force: m.force,
                product_level: m.product_level,
                events: m.events.clone(),
                notify: m.notify,
                scheduled: m.scheduled.is_some(),
                step: m.scheduled.map(|s| s.as_str()),
                prices: m.prices.as_str(),
            },
            has_failures: t.has_failures(),
            error_message: t.error_message.clone(),
            started_at: rfc3339(t.started_at),
            completed_at: t.completed_at.map(rfc3339),
            updated_at: rfc3339(t.updated_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TrackerList {
    pub data: Vec<Tracker>,
}

/// A run's progress, in the seed's envelope.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrackerAnswer {
    pub success: bool,
    pub data: Tracker,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Added {
    pub added: u64,
    pub already_in_campaign: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Updated {
    pub updated: u64,
}

/// An action started: its run's tracker.
#[derive(Debug, Serialize, ToSchema)]
pub struct Started {
    pub message: String,
    pub tracker_id: u64,
    /// On product-level actions and retries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_products: Option<u64>,
    /// On retries: the action retried.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<&'static str>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Reset {
    pub message: &'static str,
    pub cleared_trackers: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Marked {
    pub marked: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Revoked {
    pub message: &'static str,
    pub id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A campaign in a list leaves out what only `GET /api/campaigns/{id}` says; there, a
    /// campaign that no run holds says so with `null`.
    #[test]
    fn a_campaign_says_its_counts_and_running_run_only_when_asked_alone() {
        let stored = domain::Campaign {
            id: 9,
            tenant_id: 1,
            name: "c".into(),
            status: domain::CampaignStatus::Publishing,
            error: false,
            marketplace_ids: vec![2],
            status_before_run: None,
            created_at: 0,
            updated_at: 0,
        };
        let listed = serde_json::to_value(Campaign::of(&stored, None)).expect("serializes");
        assert_eq!(listed["status"], "publishing");
        assert!(listed.get("product_counts").is_none(), "{listed}");
        assert!(listed.get("running_tracker_id").is_none(), "{listed}");
        let mut alone = Campaign::of(&stored, None);
        alone.product_counts = Some(BTreeMap::new());
        alone.running_tracker_id = Some(None);
        let alone = serde_json::to_value(alone).expect("serializes");
        assert_eq!(alone["running_tracker_id"], serde_json::Value::Null);
        assert!(alone["product_counts"].is_object(), "{alone}");
    }

    /// A product's answer carries what was stored, its MercadoLibre details included, as the
    /// upload gave them.
    #[test]
    fn a_product_answers_what_was_stored() {
        let stored = domain::Product {
            id: 4,
            tenant_id: 1,
            sku: "S-1".into(),
            name: "Shirt".into(),
            description: String::new(),
            price: 10.0,
            stock: 2,
            variants: vec![domain::Variant {
                sku: "S-1-M".into(),
                price: 10.0,
                stock: 1,
                options: [("Size".to_string(), "M".to_string())].into(),
                barcode: None,
            }],
            images: vec![],
            updated_at: 0,
            details: domain::Details {
                brand: Some("B".into()),
                barcode: None,
                mercadolibre: Some(domain::MercadoLibreDetails {
                    attributes: vec![domain::Attribute {
                        id: "MODEL".into(),
                        value_name: "X1".into(),
                    }],
                    category_id: Some("MLC1234".into()),
                    listing_type_id: None,
                }),
            },
        };
        let answer = serde_json::to_value(Product::from(&stored)).expect("serializes");
        assert_eq!(answer["variants"][0]["options"]["Size"], "M");
        assert_eq!(answer["brand"], "B");
        assert_eq!(
            answer["marketplaces"]["mercadolibre"]["attributes"][0]["value_name"],
            "X1"
        );
        assert_eq!(answer["updated_at"], "1970-01-01T00:00:00.000Z");
    }
}
