//! Sample records for tests, here and in the crates above (feature `test-support`).

use crate::{Action, Id, PriceMode, Tracker, TrackerMeta, TrackerStatus};

/// A publish's tracker `id` of tenant 1, campaign 9, with no connections and no events.
pub fn tracker(id: Id, status: TrackerStatus) -> Tracker {
    Tracker {
        id,
        tenant_id: 1,
        campaign_id: 9,
        marketplace_id: None,
        action: Action::Publish,
        status,
        connections: Vec::new(),
        metadata: TrackerMeta {
            campaign_name: String::new(),
            total_products: 0,
            chunk_size: 1,
            fail_fast: false,
            force: false,
            product_level: false,
            events: Vec::new(),
            product_ids: Vec::new(),
            retry: false,
            notify: true,
            scheduled: None,
            prices: PriceMode::Regular,
        },
        error_message: None,
        started_at: 0,
        completed_at: None,
        updated_at: 0,
    }
}
