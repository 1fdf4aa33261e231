//! The domain: plain records and the rules of actions, phases and progress. Nothing here does I/O;
//! the store persists these records as they are, and the API renders views of them.
//!
//! Records are encoded with postcard (positional), so none of them may use serde attributes that
//! omit fields; enum variants are only ever appended.
//!
//! # Layout
//! Records and their rules are here; beside them:
//! - `commands`: what each action takes, refuses and leaves; `work`: work items, leases, nodes
//!   and the fair share of a cluster; `progress`: phase counts.
//! - `schedule` and `pricing`: a campaign's dates and steps, and its sale prices.
//! - `drift`: what a drift check compares and what a reconcile repairs.
//! - `clock`: wall-clock time behind a trait; `fixtures`: sample records for tests (feature
//!   `test-support`).

pub mod clock;
pub mod commands;
pub mod drift;
#[cfg(any(test, feature = "test-support"))]
pub mod fixtures;
pub mod pricing;
pub mod progress;
pub mod schedule;
pub mod work;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use pricing::{Offer, PriceChange, PriceMode, Sent};
pub use progress::{ConnProgress, PhaseCount};
pub use schedule::{PeriodicDrift, Schedule, Step, StepRecord};

pub use work::{all_done, fair_share, run_failure, Lease, Node, TrackerPatch, WorkItem};

/// Every record id. Ids are allocated per kind from 1 upwards by the store.
pub type Id = u64;

/// Milliseconds since the Unix epoch, UTC.
pub type Millis = i64;

/// The marketplaces the service can publish to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum System {
    Jumpseller,
    Mercadolibre,
    Shopify,
    Woocommerce,
}

impl System {
    pub fn parse(s: &str) -> Option<System> {
        match s {
            "jumpseller" => Some(System::Jumpseller),
            "mercadolibre" => Some(System::Mercadolibre),
            "shopify" => Some(System::Shopify),
            "woocommerce" => Some(System::Woocommerce),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            System::Jumpseller => "jumpseller",
            System::Mercadolibre => "mercadolibre",
            System::Shopify => "shopify",
            System::Woocommerce => "woocommerce",
        }
    }

    /// The phases an action goes through on this marketplace (the seed's `getProcessPhases`):
    /// Jumpseller publishes data, then variants, then images; everything else is one phase.
    pub fn phases(self, action: Action) -> &'static [Phase] {
        match (self, action) {
            (System::Jumpseller, Action::Publish | Action::Republish) => {
                &[Phase::ProductData, Phase::Variants, Phase::Images]
            }
            _ => &[Phase::Processing],
        }
    }

    /// The account limits the marketplace documents, used when a connection gives none.
    pub fn default_rate_limit(self) -> RateLimit {
        match self {
            System::Jumpseller => RateLimit {
                per_second: 20,
                per_minute: 800,
            },
            // Shopify's standard plan leaks 2 requests a second from a bucket of 40. The minute
            // quota holds the sustained rate at the leak rate; the bucket absorbs the short
            // bursts that 4 a second allows, so no margin of the per-second window is lost.
            System::Shopify => RateLimit {
                per_second: 4,
                per_minute: 120,
            },
            // Neither publishes a number; stay polite by default.
            System::Mercadolibre | System::Woocommerce => RateLimit {
                per_second: 10,
                per_minute: 600,
            },
        }
    }
}

/// A user action on a campaign or on some of its products.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Publish,
    Republish,
    Pause,
    Finish,
    Delete,
    /// A read-only run: each product's remote state, read by its stored ids, against
    /// campaignd's (a drift report).
    Drift,
    /// Brings each marketplace back to campaignd's state where the last drift check found it
    /// differs, with ordinary phase calls (`drift::repairs`).
    Reconcile,
}

impl Action {
    /// Pause, finish and delete take products off sale (a shop that must stop selling now):
    /// their requests go ahead of publishing work on the same connection.
    pub fn is_protective(self) -> bool {
        matches!(self, Action::Pause | Action::Finish | Action::Delete)
    }

    pub fn parse(s: &str) -> Option<Action> {
        match s {
            "publish" => Some(Action::Publish),
            "republish" => Some(Action::Republish),
            "pause" => Some(Action::Pause),
            "finish" => Some(Action::Finish),
            "delete" => Some(Action::Delete),
            "drift" => Some(Action::Drift),
            "reconcile" => Some(Action::Reconcile),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Publish => "publish",
            Action::Republish => "republish",
            Action::Pause => "pause",
            Action::Finish => "finish",
            Action::Delete => "delete",
            Action::Drift => "drift",
            Action::Reconcile => "reconcile",
        }
    }

    /// Which campaign products the action takes (DESIGN.md's table).
    pub fn takes(self, status: ProductStatus) -> bool {
        use ProductStatus::*;
        match self {
            Action::Publish => matches!(status, Pending | Errored | Paused),
            Action::Republish => matches!(status, Published | Paused | Errored),
            Action::Pause => matches!(status, Published),
            Action::Finish => matches!(status, Published | Paused),
            Action::Delete => true,
            // What was sent to the marketplace and left there.
            Action::Drift | Action::Reconcile => matches!(status, Published | Paused | Finished),
        }
    }

    /// What a product that passed every phase is left as.
    pub fn product_result(self) -> Outcome {
        match self {
            Action::Publish | Action::Republish => Outcome::Becomes(ProductStatus::Published),
            Action::Pause => Outcome::Becomes(ProductStatus::Paused),
            Action::Finish => Outcome::Becomes(ProductStatus::Finished),
            Action::Delete => Outcome::Removed,
            Action::Drift | Action::Reconcile => Outcome::Unchanged,
        }
    }

    /// Whether the action only reads the marketplaces: its products keep their status, and a
    /// product it cannot read is not errored.
    pub fn reads_only(self) -> bool {
        self == Action::Drift
    }

    /// Whether a campaign-wide action may start from this campaign status.
    pub fn campaign_allows(self, status: CampaignStatus) -> bool {
        use CampaignStatus::*;
        match self {
            Action::Publish => matches!(status, Pending | Paused),
            Action::Republish => matches!(status, Published | Paused),
            Action::Pause => matches!(status, Published),
            Action::Finish => matches!(status, Published | Paused),
            Action::Delete | Action::Drift | Action::Reconcile => true,
        }
    }

    /// The campaign's status while a campaign-wide action runs, and once it completed.
    pub fn campaign_transition(self) -> Option<(CampaignStatus, CampaignStatus)> {
        use CampaignStatus::*;
        match self {
            Action::Publish | Action::Republish => Some((Publishing, Published)),
            Action::Pause => Some((Pausing, Paused)),
            Action::Finish => Some((Finishing, Finished)),
            Action::Delete | Action::Drift | Action::Reconcile => None,
        }
    }

    /// What the action does to a product, as in "can be published".
    pub fn done_to(self) -> &'static str {
        match self {
            Action::Publish => "published",
            Action::Republish => "republished",
            Action::Pause => "paused",
            Action::Finish => "finished",
            Action::Delete => "deleted",
            Action::Drift => "checked for drift",
            Action::Reconcile => "reconciled",
        }
    }

    /// The seed's message for a campaign-wide action that was started.
    pub fn started_message(self) -> &'static str {
        match self {
            Action::Publish => "Campaign publishing started",
            Action::Republish => "Campaign republishing started",
            Action::Pause => "Campaign pausing started",
            Action::Finish => "Campaign finishing started",
            Action::Delete => "Campaign deleting started",
            Action::Drift => "Drift check started",
            Action::Reconcile => "Reconcile started",
        }
    }

    /// The seed's (Spanish) message for an action on chosen products.
    pub fn product_started_message(self) -> &'static str {
        match self {
            Action::Finish | Action::Delete => "Se notificará al finalizar la eliminación.",
            _ => "Se notificará al finalizar.",
        }
    }
}

/// What an action leaves a product that passed every phase as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Becomes(ProductStatus),
    /// Taken out of the campaign.
    Removed,
    /// As it was (a read-only run).
    Unchanged,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CampaignStatus {
    Pending,
    Publishing,
    Published,
    Pausing,
    Paused,
    Finishing,
    Finished,
}

impl CampaignStatus {
    pub fn as_str(self) -> &'static str {
        use CampaignStatus::*;
        match self {
            Pending => "pending",
            Publishing => "publishing",
            Published => "published",
            Pausing => "pausing",
            Paused => "paused",
            Finishing => "finishing",
            Finished => "finished",
        }
    }

    /// The status the campaign will have once the run it is in ends well (the second half of
    /// `Action::campaign_transition`); a settled status is its own.
    pub fn settled(self) -> CampaignStatus {
        [Action::Publish, Action::Pause, Action::Finish]
            .into_iter()
            .filter_map(Action::campaign_transition)
            .find(|(during, _)| *during == self)
            .map_or(self, |(_, after)| after)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProductStatus {
    Pending,
    Published,
    Paused,
    Errored,
    Finished,
}

impl ProductStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ProductStatus::Pending => "pending",
            ProductStatus::Published => "published",
            ProductStatus::Paused => "paused",
            ProductStatus::Errored => "errored",
            ProductStatus::Finished => "finished",
        }
    }

    pub fn parse(s: &str) -> Option<ProductStatus> {
        match s {
            "pending" => Some(ProductStatus::Pending),
            "published" => Some(ProductStatus::Published),
            "paused" => Some(ProductStatus::Paused),
            "errored" => Some(ProductStatus::Errored),
            "finished" => Some(ProductStatus::Finished),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    ProductData,
    Variants,
    Images,
    Processing,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::ProductData => "product_data",
            Phase::Variants => "variants",
            Phase::Images => "images",
            Phase::Processing => "processing",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrackerStatus {
    Active,
    Completed,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: Id,
    pub name: String,
    pub created_at: Millis,
}

/// An API token's record; the store keys it by the SHA-256 of the token, never the token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiToken {
    pub tenant_id: Id,
    pub created_at: Millis,
    /// A name for people ("ci", "dashboard of Ana"), added in record version 2.
    pub name: String,
    /// When it stops being accepted (version 2).
    pub expires_at: Option<Millis>,
}

impl ApiToken {
    pub fn live(&self, now: Millis) -> bool {
        self.expires_at.is_none_or(|at| now < at)
    }
}

/// The SHA-256 of a token: the only form in which tokens are stored.
pub fn token_hash(token: &str) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(token.as_bytes()).into()
}

/// A token's public id: the start of its SHA-256, enough to name it and nothing to use it.
pub fn token_id(sha256: &[u8; 32]) -> String {
    hex::encode(&sha256[..8])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    pub per_second: u32,
    pub per_minute: u32,
}

/// What a connection authenticates with. Never rendered by the API.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub enum Credentials {
    /// HTTP Basic `login:authtoken`.
    Jumpseller { login: String, authtoken: String },
    /// HTTP Basic `ck_...:cs_...`.
    Woocommerce {
        consumer_key: String,
        consumer_secret: String,
    },
    /// OAuth 2: the app's client id and secret, and the seller's current tokens. The access
    /// token is short-lived; a refresh replaces both tokens and the record is saved again.
    Mercadolibre {
        client_id: String,
        client_secret: String,
        access_token: String,
        refresh_token: String,
    },
    /// A custom app's Admin API access token (`X-Shopify-Access-Token`).
    Shopify { access_token: String },
}

impl Drop for Credentials {
    /// Credentials leave no copy in freed memory.
    fn drop(&mut self) {
        use zeroize::Zeroize;
        match self {
            Credentials::Jumpseller { login, authtoken } => {
                login.zeroize();
                authtoken.zeroize();
            }
            Credentials::Woocommerce {
                consumer_key,
                consumer_secret,
            } => {
                consumer_key.zeroize();
                consumer_secret.zeroize();
            }
            Credentials::Mercadolibre {
                client_id,
                client_secret,
                access_token,
                refresh_token,
            } => {
                client_id.zeroize();
                client_secret.zeroize();
                access_token.zeroize();
                refresh_token.zeroize();
            }
            Credentials::Shopify { access_token } => access_token.zeroize(),
        }
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Credentials never reach a log line.
        f.write_str("Credentials(..)")
    }
}

/// One account on one marketplace (a Jumpseller store, a WooCommerce site, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Connection {
    pub id: Id,
    pub tenant_id: Id,
    pub system: System,
    pub name: String,
    pub base_url: String,
    pub credentials: Credentials,
    pub rate_limit: RateLimit,
    /// Requests in flight at once on this account.
    pub max_in_flight: u32,
    /// Marketplace-specific settings (site, currency, API version, ...).
    pub settings: BTreeMap<String, String>,
    pub created_at: Millis,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    pub sku: String,
    pub price: f64,
    pub stock: i64,
    pub options: BTreeMap<String, String>,
    /// The variant's GTIN (EAN, UPC, ISBN), when it has its own (added in product version 2).
    pub barcode: Option<String>,
}

/// What marketplaces ask of a product beyond its name, prices and pictures: its brand and
/// GTIN, which each marketplace takes in a field of its own, and what one marketplace alone
/// needs (added in product version 2).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Details {
    pub brand: Option<String>,
    /// The product's GTIN (EAN, UPC, ISBN): 8, 12, 13 or 14 digits with a valid check digit.
    pub barcode: Option<String>,
    pub mercadolibre: Option<MercadoLibreDetails>,
}

impl Details {
    pub fn is_empty(&self) -> bool {
        *self == Details::default()
    }
}

/// What a MercadoLibre item of this product needs that no other marketplace does.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MercadoLibreDetails {
    /// Attributes of the item's category (`{"id": "MODEL", "value_name": "X1"}`), sent
    /// beside BRAND and GTIN (from `brand` and `barcode`) and SELLER_SKU.
    pub attributes: Vec<Attribute>,
    /// The item's category and listing type, where they are not the connection's (added in
    /// product record version 3).
    pub category_id: Option<String>,
    pub listing_type_id: Option<String>,
}

/// An attribute of a MercadoLibre category, by its id, with its value as text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attribute {
    pub id: String,
    pub value_name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Image {
    pub url: String,
    pub position: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    pub id: Id,
    pub tenant_id: Id,
    pub sku: String,
    pub name: String,
    pub description: String,
    pub price: f64,
    pub stock: i64,
    pub variants: Vec<Variant>,
    pub images: Vec<Image>,
    pub updated_at: Millis,
    pub details: Details,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Campaign {
    pub id: Id,
    pub tenant_id: Id,
    pub name: String,
    pub status: CampaignStatus,
    /// Set when the last campaign-wide run failed or left products errored.
    pub error: bool,
    pub marketplace_ids: Vec<Id>,
    /// The status the campaign returns to when a campaign-wide run fails.
    pub status_before_run: Option<CampaignStatus>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

impl Campaign {
    /// Refuses `ids` naming a marketplace that is not one of the campaign's. The request is
    /// well formed and the campaign is there: it conflicts with the campaign's marketplaces.
    pub fn marketplaces_of(&self, ids: &[Id]) -> Result<(), String> {
        match ids.iter().find(|id| !self.marketplace_ids.contains(id)) {
            Some(bad) => Err(format!(
                "marketplace {bad} is not a marketplace of this campaign"
            )),
            None => Ok(()),
        }
    }
}

/// The remote ids of a product on one marketplace: what makes later calls updates, not creates.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MarketplaceInfo {
    pub product_id: Option<String>,
    /// (variant sku, remote variant id)
    pub variant_ids: Vec<(String, String)>,
    /// (image url, remote image id)
    pub image_ids: Vec<(String, String)>,
    /// A create was sent whose outcome may be unknown; look the SKU up before creating again.
    pub create_sent: bool,
    /// The last status the marketplace reported or was told.
    pub remote_status: Option<String>,
    /// What was last sent by a publish or republish (added in record version 2).
    pub sent: Option<Sent>,
    /// A write to the product left without an answer that tells its end (a timeout, a cut
    /// connection, a stop of the process while it was under way): from this moment (Unix
    /// milliseconds) the store may still carry it out for a settle window, and nothing is
    /// written to the product again before that window has passed (added in record version 4).
    pub unsettled_at: Option<Millis>,
    /// Creates sent whose answer never came (a timeout, a crash while one was under way):
    /// each may have made a product campaignd does not know of, even after its settle window.
    /// A drift check looks the SKU up for such copies, and a reconcile removes them (added in
    /// record version 5).
    pub unanswered_creates: u32,
}

impl MarketplaceInfo {
    /// A create may have been sent whose outcome nobody stored (it is about to leave, it went
    /// unanswered, a run resumes, a look-up found a product or an item is gone): the product is
    /// looked up, by its SKU or its id, before anything is created for it again. With
    /// `create_outcome_known`, the only writer of `create_sent`.
    pub fn create_outcome_unknown(&mut self) {
        self.create_sent = true;
    }

    /// The create's outcome is known: it was answered (its ids adopted) or refused, or what
    /// exists was reconciled.
    pub fn create_outcome_known(&mut self) {
        self.create_sent = false;
    }
}

impl MarketplaceInfo {
    /// The remote product id as a number, for marketplaces whose ids are numbers.
    pub fn remote_number(&self) -> Option<u64> {
        self.product_id.as_deref().and_then(|id| id.parse().ok())
    }

    pub fn variant_id(&self, sku: &str) -> Option<&str> {
        self.variant_ids
            .iter()
            .find(|(s, _)| s == sku)
            .map(|(_, id)| id.as_str())
    }

    pub fn image_id(&self, url: &str) -> Option<&str> {
        self.image_ids
            .iter()
            .find(|(u, _)| u == url)
            .map(|(_, id)| id.as_str())
    }

    /// Keeps the remote ids of the product's images, matched by position: the marketplace
    /// answers them in the order they were sent (the product's, by `position`); an answer
    /// without an id (`None`) leaves its image without one.
    pub fn images_by_position<I>(&mut self, p: &Product, theirs: I)
    where
        I: IntoIterator<Item = Option<String>>,
    {
        let mut ours: Vec<_> = p.images.iter().collect();
        ours.sort_by_key(|i| i.position);
        self.image_ids = ours
            .iter()
            .zip(theirs)
            .filter_map(|(mine, id)| Some((mine.url.clone(), id?)))
            .collect();
    }

    pub fn set_variant_id(&mut self, sku: &str, id: String) {
        match self.variant_ids.iter_mut().find(|(s, _)| s == sku) {
            Some(entry) => entry.1 = id,
            None => self.variant_ids.push((sku.to_string(), id)),
        }
    }
}

/// Where a product stands in the run that last took it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunMark {
    pub tracker_id: Id,
    /// How many of the run's phases this product has passed.
    pub phases_done: u8,
    /// The phase (index) in which it failed, if it did.
    pub failed_phase: Option<u8>,
}

impl RunMark {
    pub fn new(tracker_id: Id) -> RunMark {
        RunMark {
            tracker_id,
            phases_done: 0,
            failed_phase: None,
        }
    }
}

/// A product assigned to one marketplace connection in a campaign (the seed's
/// campaign_marketplace_products).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignProduct {
    pub campaign_id: Id,
    pub connection_id: Id,
    pub product_id: Id,
    pub status: ProductStatus,
    pub marketplace_info: MarketplaceInfo,
    pub error_message: Option<String>,
    pub published_at: Option<Millis>,
    pub updated_at: Millis,
    pub run: Option<RunMark>,
    /// The campaign's prices for this product, in force from the start and during the
    /// presale (added in record version 2).
    pub sale_price: Option<f64>,
    pub presale_price: Option<f64>,
    /// The last drift check of the product on this marketplace (added in record version 3).
    pub drift: Option<drift::DriftCheck>,
}

/// What the tracker remembers of how a run was asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackerMeta {
    pub campaign_name: String,
    pub total_products: u64,
    pub chunk_size: u32,
    pub fail_fast: bool,
    pub force: bool,
    /// True for an action on chosen products rather than the whole campaign.
    pub product_level: bool,
    /// Notable events in the run's life (force take-over, reset), oldest first.
    pub events: Vec<String>,
    /// The chosen products (sorted) of an action on some products; empty for all.
    pub product_ids: Vec<Id>,
    /// A retry of errored products: the run takes the chosen products that are errored,
    /// whatever the action's own rule (added in record version 2).
    pub retry: bool,
    /// Whether the run's end writes a notification and queues a webhook (version 3).
    pub notify: bool,
    /// The scheduled step that started the run, if the scheduler did (version 3).
    pub scheduled: Option<Step>,
    /// The prices the run sends (version 3).
    pub prices: PriceMode,
}

/// What a tenant is told when a run ends (the seed's front end notified the user).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub id: Id,
    pub tenant_id: Id,
    pub campaign_id: Id,
    pub tracker_id: Id,
    pub action: Action,
    /// The tracker's end: completed or failed.
    pub status: TrackerStatus,
    pub title: String,
    pub message: String,
    pub created_at: Millis,
    pub read: bool,
}

impl Notification {
    /// The notice of a tracker that ended.
    /// The notification of a run that ended; a drift check's says what it found (`drift`).
    pub fn of_run(id: Id, t: &Tracker, drift: Option<&drift::Tally>, now: Millis) -> Notification {
        let verb = match t.action {
            Action::Publish => "publishing",
            Action::Republish => "republishing",
            Action::Pause => "pausing",
            Action::Finish => "finishing",
            Action::Delete => "deleting",
            Action::Drift => "drift check",
            Action::Reconcile => "reconciling",
        };
        let (reached, failed) = t.connections.iter().fold((0, 0), |(r, f), c| {
            let last = c.phases.last();
            (
                r + last.map_or(0, |p| p.successful),
                f + c.phases.iter().map(|p| p.failed).sum::<u64>(),
            )
        });
        let total: u64 = t
            .connections
            .iter()
            .map(|c| c.phases.first().map_or(0, |p| p.total))
            .sum();
        let ended = if t.status == TrackerStatus::Failed {
            "failed"
        } else {
            "completed"
        };
        let on = format!(
            "{} marketplace{}",
            t.connections.len(),
            if t.connections.len() == 1 { "" } else { "s" }
        );
        let mut message = match drift {
            Some(tally) => format!("{}: {} on {on}", t.metadata.campaign_name, tally.summary()),
            None => format!(
                "{}: {reached} of {total} products done on {on}",
                t.metadata.campaign_name
            ),
        };
        if failed > 0 && drift.is_none() {
            message.push_str(&format!(", {failed} errored"));
        }
        if let Some(e) = &t.error_message {
            message.push_str(&format!(" ({e})"));
        }
        Notification {
            id,
            tenant_id: t.tenant_id,
            campaign_id: t.campaign_id,
            tracker_id: t.id,
            action: t.action,
            status: t.status,
            title: format!("Campaign {verb} {ended}"),
            message,
            created_at: now,
            read: false,
        }
    }
}

/// Where a tenant's notifications are also POSTed, signed with `secret` (Standard Webhooks:
/// `whsec_` and the base64 of the key).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Webhook {
    pub url: String,
    pub secret: String,
    pub created_at: Millis,
}

impl Drop for Webhook {
    /// The signing secret leaves no copy in freed memory.
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.secret.zeroize();
    }
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret never reaches a log line.
        f.debug_struct("Webhook").field("url", &self.url).finish()
    }
}

/// One webhook POST waiting in the outbox: the body is fixed when the notification is made, so
/// every attempt sends the same bytes under the same id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// The webhook-id header: the same on every attempt, so receivers can drop repeats.
    pub id: String,
    pub tenant_id: Id,
    pub url: String,
    pub body: String,
    pub attempts: u32,
    pub next_attempt_at: Millis,
    pub last_error: Option<String>,
}

/// Progress of one action (the seed's campaign_trackers row).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tracker {
    pub id: Id,
    pub tenant_id: Id,
    pub campaign_id: Id,
    /// Set when the run targets a single connection.
    pub marketplace_id: Option<Id>,
    pub action: Action,
    pub status: TrackerStatus,
    pub connections: Vec<ConnProgress>,
    pub metadata: TrackerMeta,
    pub error_message: Option<String>,
    pub started_at: Millis,
    pub completed_at: Option<Millis>,
    pub updated_at: Millis,
}

impl Tracker {
    /// Percentage of (product, phase) steps processed, two decimals.
    pub fn progress(&self) -> f64 {
        progress::percent(&self.connections)
    }

    pub fn has_failures(&self) -> bool {
        self.connections
            .iter()
            .any(|c| c.error.is_some() || c.phases.iter().any(|p| p.failed > 0))
    }

    pub fn connection_mut(&mut self, connection_id: Id) -> Option<&mut ConnProgress> {
        self.connections
            .iter_mut()
            .find(|c| c.connection_id == connection_id)
    }
}

/// A campaign's lock: held by the run of `tracker_id` until it ends or `expires_at` passes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lock {
    pub campaign_id: Id,
    pub tracker_id: Id,
    /// The process instance that holds it.
    pub owner: String,
    pub expires_at: Millis,
}

/// Sets a campaign's status once a campaign-wide run of `action` ended. A run that failed still
/// moves the campaign forward when some product reached the action's result (the marketplace
/// changed), and otherwise returns it to the status it had before the run.
pub fn campaign_after_run(
    campaign: &mut Campaign,
    action: Action,
    failed: bool,
    reached_target: bool,
    has_failures: bool,
    now: Millis,
) {
    let Some((during, done)) = action.campaign_transition() else {
        return;
    };
    if campaign.status != during {
        return;
    }
    campaign.status = if !failed || reached_target {
        done
    } else {
        campaign.status_before_run.unwrap_or(campaign.status)
    };
    campaign.error = failed || has_failures;
    campaign.status_before_run = None;
    campaign.updated_at = now;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A campaign in a run settles where the run leaves it when it ends well; a settled one
    /// stays.
    #[test]
    fn a_running_campaign_settles_where_its_run_leaves_it() {
        use CampaignStatus::*;
        let cases = [
            (Publishing, Published),
            (Pausing, Paused),
            (Finishing, Finished),
            (Pending, Pending),
            (Published, Published),
            (Paused, Paused),
            (Finished, Finished),
        ];
        for (now, settled) in cases {
            assert_eq!(now.settled(), settled, "{now:?}");
        }
    }

    #[test]
    fn actions_take_the_products_design_md_lists() {
        use ProductStatus::*;
        let all = [Pending, Published, Paused, Errored, Finished];
        let taken = |a: Action| {
            all.iter()
                .copied()
                .filter(|s| a.takes(*s))
                .collect::<Vec<_>>()
        };
        assert_eq!(taken(Action::Publish), vec![Pending, Paused, Errored]);
        assert_eq!(taken(Action::Republish), vec![Published, Paused, Errored]);
        assert_eq!(taken(Action::Pause), vec![Published]);
        assert_eq!(taken(Action::Finish), vec![Published, Paused]);
        assert_eq!(taken(Action::Delete), all.to_vec());
    }

    #[test]
    fn campaign_states_gate_campaign_actions() {
        use CampaignStatus::*;
        assert!(Action::Publish.campaign_allows(Pending));
        assert!(Action::Publish.campaign_allows(Paused));
        assert!(!Action::Publish.campaign_allows(Published));
        assert!(!Action::Pause.campaign_allows(Pending));
        assert!(!Action::Finish.campaign_allows(Finished));
        assert!(Action::Republish.campaign_allows(Paused));
        assert!(!Action::Republish.campaign_allows(Publishing));
    }

    #[test]
    fn only_jumpseller_publishing_has_three_phases() {
        assert_eq!(System::Jumpseller.phases(Action::Publish).len(), 3);
        assert_eq!(System::Jumpseller.phases(Action::Republish).len(), 3);
        assert_eq!(
            System::Jumpseller.phases(Action::Pause),
            &[Phase::Processing]
        );
        assert_eq!(
            System::Woocommerce.phases(Action::Publish),
            &[Phase::Processing]
        );
    }

    fn publishing() -> Campaign {
        Campaign {
            id: 1,
            tenant_id: 1,
            name: "c".into(),
            status: CampaignStatus::Publishing,
            error: false,
            marketplace_ids: vec![1],
            status_before_run: Some(CampaignStatus::Pending),
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn a_failed_run_that_changed_nothing_returns_the_campaign_to_its_old_status() {
        let mut c = publishing();
        campaign_after_run(&mut c, Action::Publish, true, false, true, 5);
        assert_eq!((c.status, c.error), (CampaignStatus::Pending, true));
        let mut c = publishing();
        campaign_after_run(&mut c, Action::Publish, true, true, true, 5);
        assert_eq!((c.status, c.error), (CampaignStatus::Published, true));
        let mut c = publishing();
        campaign_after_run(&mut c, Action::Publish, false, true, false, 5);
        assert_eq!((c.status, c.error), (CampaignStatus::Published, false));
        assert_eq!(c.status_before_run, None);
    }
}
