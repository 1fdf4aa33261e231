//! The API's answers as types. Each is built from domain values and sent as it is serialized,
//! and the OpenAPI document takes its schema from the same type (`ToSchema`), so a field cannot
//! be documented otherwise than it is sent. The live feeds' messages and the webhook's body are
//! answers too.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use domain::clock::rfc3339;

/// A text an answer carries, often a fixed word (`publish`, `completed`): owned, so that a
/// client reads an answer back into the same type.
pub type Text = String;

/// A count by fixed word, as an answer carries it.
pub fn texts(counts: BTreeMap<&'static str, u64>) -> BTreeMap<Text, u64> {
    counts.into_iter().map(|(k, n)| (k.into(), n)).collect()
}

use crate::input::{AttributeInput, MercadoLibreInput};

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RateLimit {
    pub per_second: u32,
    pub per_minute: u32,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: Text,
}

/// What was done, for people.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Message {
    pub message: Text,
}

/// A marketplace connection; its credentials are never shown.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
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

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConnectionList {
    pub data: Vec<Connection>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Variant {
    pub sku: String,
    pub price: f64,
    pub stock: i64,
    pub options: BTreeMap<String, String>,
    pub barcode: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Image {
    pub url: String,
    pub position: u32,
}

/// What one marketplace alone needs of the product.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProductMarketplaces {
    pub mercadolibre: Option<MercadoLibreInput>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProductPage {
    pub data: Vec<Product>,
    pub page: u64,
    pub per_page: u64,
    pub total: u64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProductRef {
    pub id: u64,
    pub sku: String,
}

/// An upload's outcome: how many products were new and how many updated, and each one's id.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Upserted {
    pub created: u64,
    pub updated: u64,
    pub products: Vec<ProductRef>,
}

/// A campaign's next dated step.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NextStep {
    #[schema(pattern = "^(presale|start|end)$")]
    pub step: Text,
    pub action: Option<Text>,
    pub at: String,
    /// Set while the due step waits for the action that holds the campaign.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting_for_tracker_id: Option<u64>,
}

/// A step of a campaign's schedule that was taken or passed over.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TakenStep {
    pub step: Text,
    pub due_at: String,
    pub taken_at: String,
    pub action: Option<Text>,
    pub tracker_id: Option<u64>,
    pub skipped: Option<String>,
}

impl From<&domain::StepRecord> for TakenStep {
    fn from(r: &domain::StepRecord) -> TakenStep {
        TakenStep {
            step: r.step.as_str().into(),
            due_at: rfc3339(r.due_at),
            taken_at: rfc3339(r.at),
            action: r.action.map(domain::Action::as_str).map(Into::into),
            tracker_id: r.tracker_id,
            skipped: r.skipped.clone(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
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

impl Campaign {
    /// A campaign with its schedule, as a list shows it.
    pub fn of(c: &domain::Campaign, schedule: Option<&domain::Schedule>) -> Campaign {
        let date = |d: Option<i64>| d.map(rfc3339);
        let next = schedule
            .and_then(domain::Schedule::next)
            .map(|(step, at)| NextStep {
                step: step.as_str().into(),
                action: step
                    .action(c.status.settled())
                    .ok()
                    .map(domain::Action::as_str)
                    .map(Into::into),
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

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CampaignList {
    pub data: Vec<Campaign>,
}

/// One phase's counts of a run.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConnectionProgress {
    pub marketplace_id: u64,
    pub system: String,
    pub progress: f64,
    pub phases_status: BTreeMap<String, PhaseStatus>,
    pub error: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
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
    pub step: Option<Text>,
    #[schema(pattern = "^(regular|presale|sale)$")]
    pub prices: Text,
}

/// A run: its progress by phase and by connection (the seed's tracker, with its field names).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Tracker {
    pub id: u64,
    pub campaign_id: u64,
    pub marketplace_id: Option<u64>,
    pub action: Text,
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
            action: t.action.as_str().into(),
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
                step: m.scheduled.map(|s| s.as_str()).map(Into::into),
                prices: m.prices.as_str().into(),
            },
            has_failures: t.has_failures(),
            error_message: t.error_message.clone(),
            started_at: rfc3339(t.started_at),
            completed_at: t.completed_at.map(rfc3339),
            updated_at: rfc3339(t.updated_at),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TrackerList {
    pub data: Vec<Tracker>,
}

/// A run's progress, in the seed's envelope.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TrackerAnswer {
    pub success: bool,
    pub data: Tracker,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Added {
    pub added: u64,
    pub already_in_campaign: u64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Updated {
    pub updated: u64,
}

/// An action started: its run's tracker.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Started {
    pub message: String,
    pub tracker_id: u64,
    /// On product-level actions and retries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_products: Option<u64>,
    /// On retries: the action retried.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<Text>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Reset {
    pub message: Text,
    pub cleared_trackers: u64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Marked {
    pub marked: u64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Revoked {
    pub message: Text,
    pub id: String,
}

/// Every error: a stable code, a message for people, and, for some codes, what the client can
/// act on.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorAnswer {
    /// The stable code.
    pub error: crate::error::ErrorCode,
    pub message: String,
    /// With `rate_limited`: seconds to wait (also in `Retry-After`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
    /// With `invalid_state`: the campaign's status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub campaign_status: Option<Text>,
    /// With `action_in_progress`: the run that holds the campaign.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracker_id: Option<u64>,
    /// With `method_not_allowed`: the methods the path answers (also in `Allow`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<Text>>,
}

/// What a campaign product holds on its marketplace.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MarketplaceInfo {
    pub product_id: Option<String>,
    /// The remote id of each variant, by SKU.
    pub variant_ids: BTreeMap<String, String>,
    /// The remote id of each image, by URL.
    pub image_ids: BTreeMap<String, String>,
    pub remote_status: Option<String>,
}

/// A product in a campaign, on one of its marketplaces.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CampaignProduct {
    pub product_id: u64,
    pub sku: Option<String>,
    pub name: Option<String>,
    pub marketplace_id: u64,
    #[schema(
        value_type = String,
        pattern = "^(pending|published|paused|errored|finished)$"
    )]
    pub status: domain::ProductStatus,
    pub marketplace_info: MarketplaceInfo,
    pub error_message: Option<String>,
    pub published_at: Option<String>,
    pub updated_at: String,
    pub last_tracker_id: Option<u64>,
    pub price: Option<f64>,
    pub sale_price: Option<f64>,
    pub presale_price: Option<f64>,
    pub on_sale: bool,
}

fn pairs(pairs: &[(String, String)]) -> BTreeMap<String, String> {
    pairs.iter().cloned().collect()
}

impl CampaignProduct {
    /// A campaign product with what its catalogue product says (`None`: it was deleted).
    pub fn of(cp: &domain::CampaignProduct, product: Option<&domain::Product>) -> CampaignProduct {
        let info = &cp.marketplace_info;
        CampaignProduct {
            product_id: cp.product_id,
            sku: product.map(|p| p.sku.clone()),
            name: product.map(|p| p.name.clone()),
            marketplace_id: cp.connection_id,
            status: cp.status,
            marketplace_info: MarketplaceInfo {
                product_id: info.product_id.clone(),
                variant_ids: pairs(&info.variant_ids),
                image_ids: pairs(&info.image_ids),
                remote_status: info.remote_status.clone(),
            },
            error_message: cp.error_message.clone(),
            published_at: cp.published_at.map(rfc3339),
            updated_at: rfc3339(cp.updated_at),
            last_tracker_id: cp.run.map(|r| r.tracker_id),
            price: product.map(|p| p.price),
            sale_price: cp.sale_price,
            presale_price: cp.presale_price,
            on_sale: info.sent.is_some_and(|s| s.on_sale),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CampaignProductPage {
    pub data: Vec<CampaignProduct>,
    pub page: u64,
    pub per_page: u64,
    pub total: u64,
}

/// One difference of a drift check: its kind and what each side holds.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DriftDifference {
    /// Not on the marketplace under its stored id, and no product holds its SKU there.
    Missing,
    /// Another remote product holds its SKU: the `stored` and `found` ids.
    Adopted {
        stored: String,
        found: String,
    },
    /// The marketplace's own words for the status.
    Status {
        expected: String,
        found: String,
    },
    /// A price as shown: the product's (`sku` null) or a variant's.
    Price {
        sku: Option<String>,
        expected: f64,
        found: f64,
    },
    Stock {
        sku: Option<String>,
        expected: i64,
        found: i64,
    },
    /// Variants by SKU: campaignd's the marketplace lacks, and the marketplace's campaignd
    /// does not know.
    Variants {
        missing: Vec<String>,
        unknown: Vec<String>,
    },
    Images {
        expected: u32,
        found: u32,
    },
    /// Other remote products holding the SKU beside the one campaignd tracks.
    Copies {
        sku: String,
        ids: Vec<String>,
    },
}

impl From<&domain::drift::Difference> for DriftDifference {
    fn from(d: &domain::drift::Difference) -> DriftDifference {
        use domain::drift::Difference as D;
        match d.clone() {
            D::Missing => DriftDifference::Missing,
            D::Adopted { stored, found } => DriftDifference::Adopted { stored, found },
            D::Status { expected, found } => DriftDifference::Status { expected, found },
            D::Price {
                sku,
                expected,
                found,
            } => DriftDifference::Price {
                sku,
                expected,
                found,
            },
            D::Stock {
                sku,
                expected,
                found,
            } => DriftDifference::Stock {
                sku,
                expected,
                found,
            },
            D::Variants { missing, unknown } => DriftDifference::Variants { missing, unknown },
            D::Images { expected, found } => DriftDifference::Images { expected, found },
            D::Copies { sku, ids } => DriftDifference::Copies { sku, ids },
        }
    }
}

/// A campaign product a drift check found different, could not read, or a reconcile repaired.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Drifted {
    pub product_id: u64,
    pub sku: Option<String>,
    pub marketplace_id: u64,
    #[schema(value_type = String)]
    pub status: domain::ProductStatus,
    pub remote_id: Option<String>,
    pub checked_at: Option<String>,
    /// Why the product could not be read.
    pub error: Option<String>,
    pub differences: Vec<DriftDifference>,
    /// What a reconcile repaired since the check.
    pub repaired: Vec<DriftDifference>,
}

impl Drifted {
    pub fn of(cp: &domain::CampaignProduct, product: Option<&domain::Product>) -> Drifted {
        let check = cp.drift.as_ref();
        let all = |of: fn(&domain::drift::DriftCheck) -> &Vec<domain::drift::Difference>| {
            check.map_or_else(Vec::new, |c| {
                of(c).iter().map(DriftDifference::from).collect()
            })
        };
        Drifted {
            product_id: cp.product_id,
            sku: product.map(|p| p.sku.clone()),
            marketplace_id: cp.connection_id,
            status: cp.status,
            remote_id: cp.marketplace_info.product_id.clone(),
            checked_at: check.map(|c| rfc3339(c.checked_at)),
            error: check.and_then(|c| c.error.clone()),
            differences: all(|c| &c.differences),
            repaired: all(|c| &c.repaired),
        }
    }
}

/// The last drift check of a campaign.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DriftReport {
    /// The drift check's run; null before the first.
    pub tracker: Option<Tracker>,
    /// Products it read (or tried to).
    pub checked: u64,
    /// Products that still differ or could not be read (a repaired product is listed with
    /// what was repaired).
    pub differing: u64,
    pub unreadable: u64,
    /// Products a reconcile repaired since the check.
    pub repaired: u64,
    /// Differences by kind: missing, adopted, status, price, stock, variants, images, copies.
    pub counts: BTreeMap<Text, u64>,
    pub data: Vec<Drifted>,
    pub page: u64,
    pub per_page: u64,
    pub total: u64,
}

/// The last run of a campaign (of an action), in the seed's envelope.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProgressAnswer {
    pub success: bool,
    pub data: LatestProgress,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LatestProgress {
    pub tracker_id: u64,
    pub action: Text,
    pub progress: f64,
    #[schema(value_type = String, pattern = "^(active|completed|failed)$")]
    pub status: domain::TrackerStatus,
    pub error_message: Option<String>,
}

impl From<&domain::Tracker> for LatestProgress {
    fn from(t: &domain::Tracker) -> LatestProgress {
        LatestProgress {
            tracker_id: t.id,
            action: t.action.as_str().into(),
            progress: t.progress(),
            status: t.status,
            error_message: t.error_message.clone(),
        }
    }
}

/// An errored product of a campaign, with the run that failed it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FailedProduct {
    pub product_id: u64,
    pub sku: Option<String>,
    pub marketplace_id: u64,
    pub error_message: Option<String>,
    pub action: Option<Text>,
    pub tracker_id: Option<u64>,
    pub failed_phase: Option<u8>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FailedList {
    pub data: Vec<FailedProduct>,
}

/// The notice of a run that ended.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Notification {
    pub id: u64,
    pub campaign_id: u64,
    pub tracker_id: u64,
    pub action: Text,
    #[schema(pattern = "^(completed|failed)$")]
    pub status: Text,
    pub title: String,
    pub message: String,
    pub created_at: String,
    pub read: bool,
}

impl From<&domain::Notification> for Notification {
    fn from(n: &domain::Notification) -> Notification {
        Notification {
            id: n.id,
            campaign_id: n.campaign_id,
            tracker_id: n.tracker_id,
            action: n.action.as_str().into(),
            status: match n.status {
                domain::TrackerStatus::Failed => "failed".into(),
                _ => "completed".into(),
            },
            title: n.title.clone(),
            message: n.message.clone(),
            created_at: rfc3339(n.created_at),
            read: n.read,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NotificationList {
    pub data: Vec<Notification>,
    pub unread: u64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NotificationAnswer {
    pub data: Notification,
}

/// The body of a webhook delivery: the event's type, when, and the notification.
#[derive(Debug, Serialize, Deserialize)]
pub struct WebhookEvent {
    /// `run.completed` or `run.failed`.
    #[serde(rename = "type")]
    pub kind: Text,
    pub timestamp: String,
    pub data: Notification,
}

/// The body a webhook delivery of `notification` sends, fixed when its run ends so that every
/// attempt sends the same bytes.
pub fn webhook_body(notification: &domain::Notification) -> String {
    let event = WebhookEvent {
        kind: match notification.status {
            domain::TrackerStatus::Failed => "run.failed".into(),
            _ => "run.completed".into(),
        },
        timestamp: rfc3339(notification.created_at),
        data: Notification::from(notification),
    };
    // Strings, numbers and booleans only: serializing it cannot fail.
    serde_json::to_string(&event).unwrap_or_default()
}

/// A webhook delivery waiting for its next attempt.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PendingDelivery {
    pub id: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub next_attempt_at: String,
}

/// The tenant's webhook; its secret is shown only when it is set.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Webhook {
    pub url: String,
    pub created_at: String,
    /// Only in `GET`: deliveries waiting for their next attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending: Option<Vec<PendingDelivery>>,
    /// Only in the answer to `PUT`: the signing secret, shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// An API token of the tenant; the token itself is shown once, when it is made.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Token {
    #[schema(pattern = "^[0-9a-f]{16}$")]
    pub id: String,
    pub name: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub expired: bool,
    /// Only in the answer to `POST`: the token itself, shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl Token {
    pub fn of(id: String, t: &domain::ApiToken, now: i64) -> Token {
        Token {
            id,
            name: t.name.clone(),
            created_at: rfc3339(t.created_at),
            expires_at: t.expires_at.map(rfc3339),
            expired: !t.live(now),
            token: None,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenList {
    pub data: Vec<Token>,
}

/// What this node uses.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ServiceUse {
    pub version: Text,
    pub resident_memory_bytes: u64,
    /// The store's size, read every 5 s.
    pub store_bytes: u64,
    pub live_subscribers: u64,
}

/// A connection as this node sees it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConnectionHealth {
    pub marketplace_id: u64,
    pub system: Text,
    pub name: String,
    pub per_second: u32,
    pub per_minute: u32,
    pub requests_last_second: u32,
    pub requests_last_minute: u32,
    /// 429s since this node started.
    pub throttled: u64,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    /// Set while the connection's requests wait (a 429, a spent quota).
    pub paused_until: Option<String>,
}

/// This node's view of the service and of the tenant's connections, for the dashboard.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ServiceStatus {
    pub service: ServiceUse,
    pub connections: Vec<ConnectionHealth>,
}

/// A dry run's answer: the plan of the action, per marketplace and product. Nothing was
/// started, sent (but MercadoLibre's validation, with `"validate"`) or written.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Plan {
    pub dry_run: bool,
    #[schema(pattern = "^(plan|validate)$")]
    pub mode: Text,
    pub action: Text,
    pub campaign_id: u64,
    /// The prices the run would send: regular, presale or sale.
    pub prices: Text,
    /// The products the run would take.
    pub total_products: u64,
    /// The requests the run would send (a batch request counted once).
    pub requests: u64,
    /// The least time the accounts' limits give those requests (marketplaces run side by
    /// side: the longest of theirs).
    pub estimated_seconds: f64,
    pub problems: u64,
    pub marketplaces: Vec<PlanMarketplace>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PlanMarketplace {
    pub marketplace_id: u64,
    pub system: Text,
    pub products: u64,
    /// Products of the campaign the action leaves alone (in `plan` with their reason).
    pub skipped: u64,
    /// Products by operation: create, update, status, delete, read, skip, error.
    pub operations: BTreeMap<Text, u64>,
    pub requests: u64,
    pub estimated_seconds: f64,
    pub rate_limit: RateLimit,
    pub batch_size: u64,
    pub problems: u64,
    pub plan: Vec<PlanProduct>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PlanProduct {
    pub product_id: u64,
    /// Absent for a product the action skips or that no longer exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    #[schema(pattern = "^(create|update|status|delete|read|skip|error)$")]
    pub operation: Text,
    pub reason: Option<String>,
    pub problems: Vec<PlanProblem>,
    pub requests: Vec<PlanRequest>,
}

/// Something the marketplace would refuse, found before sending: missing_price,
/// price_not_below_regular, missing_title, title_too_long, closed_item, too_many_options,
/// too_many_variants, marketplace_refused (validation), not_validated.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PlanProblem {
    pub code: Text,
    pub message: String,
}

/// One request the run would send; `{new}` in a path stands for the id a create before it
/// gives.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PlanRequest {
    pub method: Text,
    pub path: String,
    /// This product's item of a batch request shared with other products.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<Text>,
    /// The GraphQL operation, and the points it asks for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub graphql: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
    /// With `?detail=true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub body: Option<serde_json::Value>,
}

impl From<engine::dry_run::Plan> for Plan {
    fn from(p: engine::dry_run::Plan) -> Plan {
        Plan {
            dry_run: true,
            mode: if p.mode.validate {
                "validate".into()
            } else {
                "plan".into()
            },
            action: p.action.as_str().into(),
            campaign_id: p.campaign_id,
            prices: p.prices.as_str().into(),
            total_products: p.total_products,
            requests: p.requests,
            estimated_seconds: p.estimated.as_secs_f64(),
            problems: p.problems,
            marketplaces: p
                .connections
                .into_iter()
                .map(PlanMarketplace::from)
                .collect(),
        }
    }
}

impl From<engine::dry_run::ConnectionPlan> for PlanMarketplace {
    fn from(c: engine::dry_run::ConnectionPlan) -> PlanMarketplace {
        PlanMarketplace {
            marketplace_id: c.connection_id,
            system: c.system.as_str().into(),
            products: c.products,
            skipped: c.skipped,
            operations: texts(c.operations),
            requests: c.requests,
            estimated_seconds: c.estimated.as_secs_f64(),
            rate_limit: RateLimit {
                per_second: c.rate_limit.per_second,
                per_minute: c.rate_limit.per_minute,
            },
            batch_size: c.batch_size as u64,
            problems: c.problems,
            plan: c
                .products_planned
                .into_iter()
                .map(|p| PlanProduct {
                    product_id: p.product_id,
                    sku: p.sku,
                    operation: p.operation.as_str().into(),
                    reason: p.reason,
                    problems: p
                        .problems
                        .into_iter()
                        .map(|x| PlanProblem {
                            code: x.code.into(),
                            message: x.message,
                        })
                        .collect(),
                    requests: p
                        .requests
                        .into_iter()
                        .map(|r| PlanRequest {
                            method: r.method.into(),
                            path: r.path,
                            item: r.item.map(Into::into),
                            graphql: r.graphql,
                            cost: r.cost,
                            body: r.body,
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

/// What a live feed watches, as its snapshot says it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FeedScope {
    /// The tenant's whole activity: `{"all": true}`.
    All {
        all: bool,
    },
    Campaign {
        campaign_id: u64,
    },
    Trackers {
        trackers: Vec<u64>,
    },
}

impl From<&engine::events::Scope> for FeedScope {
    fn from(scope: &engine::events::Scope) -> FeedScope {
        use engine::events::Scope;
        match scope {
            Scope::Tenant => FeedScope::All { all: true },
            Scope::Campaign(c) => FeedScope::Campaign { campaign_id: *c },
            Scope::Trackers(t) => FeedScope::Trackers {
                trackers: t.clone(),
            },
        }
    }
}

/// A live feed's first message, and its message after it fell behind or changed scope: the
/// runs in its scope as they are, numbered so that every later event is newer.
#[derive(Debug, Serialize, Deserialize)]
pub struct Snapshot {
    /// `snapshot`.
    #[serde(rename = "type")]
    pub kind: Text,
    pub seq: u64,
    pub reason: String,
    pub scope: FeedScope,
    pub trackers: Vec<Tracker>,
    pub unread_notifications: u64,
}

/// A live feed's message of a run that changed.
#[derive(Debug, Serialize, Deserialize)]
pub struct TrackerEvent {
    /// `tracker`.
    #[serde(rename = "type")]
    pub kind: Text,
    pub seq: u64,
    pub tracker: Tracker,
}

/// A live feed's message of a run's notification.
#[derive(Debug, Serialize, Deserialize)]
pub struct NotificationEvent {
    /// `notification`.
    #[serde(rename = "type")]
    pub kind: Text,
    pub seq: u64,
    pub notification: Notification,
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
