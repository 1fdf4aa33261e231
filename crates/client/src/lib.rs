//! One typed client of campaignd's API. A call names its operation by its operationId in
//! `api::route::ROUTES`, so the method and path it sends are the ones the server routes; it
//! sends the API's own input types and reads the API's own answer types (`api::input`,
//! `api::answers`), so a field cannot be spelled differently here than the server parses or
//! sends it. A refusal comes back as the server's error answer, code and message.
//!
//! # Layout
//! - `Client`: the base URL, the bearer token and one HTTP client; `call` runs any operation,
//!   and the named methods are the calls the CLI and the demo make.
//! - `ClientError`: unreachable, refused (with the server's `ErrorAnswer`), or an answer that
//!   is not the operation's.

use serde::de::DeserializeOwned;
use serde::Serialize;

use api::answers;
use api::input;
use api::route::{Route, Spec, ROUTES};

/// Why a call did not give its answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("could not reach the service at {url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The service answered with an error: its status and its answer.
    #[error("{status}: {} ({})", .answer.message, code_word(.answer.error))]
    Refused {
        status: u16,
        answer: answers::ErrorAnswer,
    },
    #[error("the answer to {operation} is not its answer type: {why}")]
    Garbled {
        operation: &'static str,
        why: String,
    },
    /// A programming error: the operation is not one of `ROUTES`.
    #[error("{0} is not an operation of the API")]
    UnknownOperation(&'static str),
}

/// The operation that starts `action` on a whole campaign: the one the router routes to it.
fn action_operation(action: domain::Action) -> Result<&'static str, ClientError> {
    const ANY: u64 = 1;
    let wanted = match action {
        domain::Action::Drift => Route::StartDrift(ANY),
        domain::Action::Reconcile => Route::StartReconcile(ANY),
        _ => Route::CampaignAction(ANY, action),
    };
    ROUTES
        .iter()
        .find(|s| (s.route)(ANY, "").is_ok_and(|r| r == wanted))
        .map(|s| s.operation_id)
        .ok_or(ClientError::UnknownOperation(action.as_str()))
}

/// An error code as the answer spells it (`not_found`).
fn code_word(code: api::ErrorCode) -> String {
    match serde_json::to_value(code) {
        Ok(serde_json::Value::String(word)) => word,
        _ => format!("{code:?}"),
    }
}

/// A client of one service, as one tenant (its token).
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

/// The operation named `operation_id`.
fn spec(operation_id: &'static str) -> Result<&'static Spec, ClientError> {
    ROUTES
        .iter()
        .find(|s| s.operation_id == operation_id)
        .ok_or(ClientError::UnknownOperation(operation_id))
}

impl Client {
    /// A client of the service at `base` (such as `http://127.0.0.1:8080`) with `token`.
    pub fn new(base: &str, token: &str) -> Client {
        Client {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
        }
    }

    /// Runs the operation `operation_id` on the record `id` (for a path with `{id}`), with
    /// `body`, and reads its answer as `A`.
    pub async fn call<B: Serialize + ?Sized, A: DeserializeOwned>(
        &self,
        operation_id: &'static str,
        id: Option<u64>,
        body: Option<&B>,
    ) -> Result<A, ClientError> {
        let spec = spec(operation_id)?;
        let path = match id {
            Some(id) => spec.template.replace("{id}", &id.to_string()),
            None => spec.template.to_string(),
        };
        let mut request = self
            .http
            .request(spec.method(), format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(body);
        }
        self.answer(operation_id, request).await
    }

    /// Sends `request` with the token and reads its answer as `A`, or the server's refusal.
    async fn answer<A: DeserializeOwned>(
        &self,
        operation: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<A, ClientError> {
        let unreachable = |source| ClientError::Unreachable {
            url: self.base.clone(),
            source,
        };
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(unreachable)?;
        let garbled = |e: serde_json::Error| ClientError::Garbled {
            operation,
            why: e.to_string(),
        };
        if !status.is_success() {
            return Err(ClientError::Refused {
                status: status.as_u16(),
                answer: serde_json::from_slice(&bytes).map_err(garbled)?,
            });
        }
        serde_json::from_slice(&bytes).map_err(garbled)
    }

    pub async fn health(&self) -> Result<answers::Health, ClientError> {
        self.call::<(), _>("health", None, None).await
    }

    pub async fn create_connection(
        &self,
        connection: &input::ConnectionInput,
    ) -> Result<answers::Connection, ClientError> {
        self.call("create_connection", None, Some(connection)).await
    }

    pub async fn upsert_products(
        &self,
        products: &[input::ProductInput],
    ) -> Result<answers::Upserted, ClientError> {
        self.call("upsert_products", None, Some(products)).await
    }

    pub async fn create_campaign(
        &self,
        campaign: &input::CampaignInput,
    ) -> Result<answers::Campaign, ClientError> {
        self.call("create_campaign", None, Some(campaign)).await
    }

    pub async fn add_campaign_products(
        &self,
        campaign: u64,
        products: &input::AddProductsInput,
    ) -> Result<answers::Added, ClientError> {
        self.call("add_campaign_products", Some(campaign), Some(products))
            .await
    }

    /// Starts `action` on a whole campaign (publish, republish, pause, finish, a drift check
    /// or a reconcile): the operation the router routes to that action.
    pub async fn start(
        &self,
        campaign: u64,
        action: domain::Action,
        options: &input::ActionInput,
    ) -> Result<answers::Started, ClientError> {
        let operation = action_operation(action)?;
        self.call(operation, Some(campaign), Some(options)).await
    }

    pub async fn tracker_progress(
        &self,
        tracker: u64,
    ) -> Result<answers::TrackerAnswer, ClientError> {
        self.call::<(), _>("tracker_progress", Some(tracker), None)
            .await
    }

    pub async fn retry_failed_products(
        &self,
        campaign: u64,
        retry: &input::RetryInput,
    ) -> Result<answers::Started, ClientError> {
        self.call("retry_failed_products", Some(campaign), Some(retry))
            .await
    }

    pub async fn force_reset_campaign(&self, campaign: u64) -> Result<answers::Reset, ClientError> {
        self.call::<(), _>("force_reset_campaign", Some(campaign), None)
            .await
    }

    /// A page beside the routes (the operator's `/admin/...`), as the JSON it is.
    pub async fn page(&self, path: &str) -> Result<serde_json::Value, ClientError> {
        let request = self.http.get(format!("{}{path}", self.base));
        self.answer("page", request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::Action;

    /// Each action a whole campaign takes is started by its own operation, found in the route
    /// table; an action that is not one of them has none.
    #[test]
    fn an_action_is_started_by_the_operation_the_router_routes_to_it() {
        let cases = [
            (Action::Publish, Some("publish_campaign")),
            (Action::Republish, Some("republish_campaign")),
            (Action::Pause, Some("pause_campaign")),
            (Action::Finish, Some("finish_campaign")),
            (Action::Drift, Some("start_drift_check")),
            (Action::Reconcile, Some("reconcile_campaign")),
            (Action::Delete, None),
        ];
        for (action, expected) in cases {
            assert_eq!(action_operation(action).ok(), expected, "{action:?}");
        }
    }

    /// The operations the named calls use are the route table's, with the methods and
    /// templates the server routes.
    #[test]
    fn the_named_calls_are_operations_of_the_route_table() {
        let cases = [
            ("health", "GET", "/health"),
            ("create_connection", "POST", "/api/marketplaces"),
            ("upsert_products", "POST", "/api/products"),
            ("create_campaign", "POST", "/api/campaigns"),
            (
                "add_campaign_products",
                "POST",
                "/api/campaigns/{id}/products",
            ),
            ("tracker_progress", "GET", "/api/tracker/{id}/progress"),
            ("retry_failed_products", "POST", "/api/campaigns/{id}/retry"),
            (
                "force_reset_campaign",
                "POST",
                "/api/campaigns/{id}/force-reset",
            ),
        ];
        for (operation, method, template) in cases {
            let spec = spec(operation).expect("an operation");
            assert_eq!((spec.method().as_str(), spec.template), (method, template));
        }
        assert!(matches!(
            spec("post_api_campaigns_id_action"),
            Err(ClientError::UnknownOperation(_))
        ));
    }

    /// A refusal reads as the server's code and message.
    #[test]
    fn a_refusal_says_the_servers_code_and_message() {
        let answer: answers::ErrorAnswer =
            serde_json::from_str(r#"{"error": "not_found", "message": "campaign not found"}"#)
                .expect("an error answer");
        let refused = ClientError::Refused {
            status: 404,
            answer,
        };
        assert_eq!(refused.to_string(), "404: campaign not found (not_found)");
    }
}
