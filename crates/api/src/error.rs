//! API errors: every failure answers JSON `{"error": code, "message": text}` (plus a few extra
//! fields where a client needs them, such as the running `tracker_id` on a 409), mapped to its
//! HTTP status in one place.

use warp::http::StatusCode;

use engine::ActionError;
use store::StoreError;

/// Every error's stable code, which clients match on; its HTTP status is the code's.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    ActionInProgress,
    BadRequest,
    Forbidden,
    Internal,
    InvalidJson,
    InvalidSettings,
    InvalidState,
    MethodNotAllowed,
    NotFound,
    /// A marketplace the request names is not one of the campaign's (409: the campaign's
    /// marketplaces are its state; the campaign itself is there).
    NotInCampaign,
    NothingToDo,
    PayloadTooLarge,
    RateLimited,
    RequestTimeout,
    RouteNotFound,
    ScheduleChanged,
    ShuttingDown,
    StoreUnavailable,
    TooManySubscribers,
    Unauthorized,
    Unavailable,
    UrlRefused,
    ValidationFailed,
    WebsocketRequired,
}

impl ErrorCode {
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::ActionInProgress => StatusCode::CONFLICT,
            ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::InvalidJson => StatusCode::BAD_REQUEST,
            ErrorCode::InvalidSettings => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::InvalidState => StatusCode::CONFLICT,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::NotInCampaign => StatusCode::CONFLICT,
            ErrorCode::NothingToDo => StatusCode::CONFLICT,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorCode::RouteNotFound => StatusCode::NOT_FOUND,
            ErrorCode::ScheduleChanged => StatusCode::CONFLICT,
            ErrorCode::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::TooManySubscribers => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::UrlRefused => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::ValidationFailed => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::WebsocketRequired => StatusCode::BAD_REQUEST,
        }
    }
}

#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// What the client can act on, beside the code and message (`retry_after_secs`, ...).
    pub extra: Extra,
}

/// The fields some errors carry beside their code and message.
#[derive(Debug, Default)]
pub struct Extra {
    pub retry_after_secs: Option<u64>,
    pub campaign_status: Option<&'static str>,
    pub tracker_id: Option<u64>,
    pub allow: Option<Vec<&'static str>>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            extra: Extra::default(),
        }
    }

    /// A marketplace the request's scope names is not there (or not the tenant's): 404, as a
    /// path naming it would answer. (A product named by an item of a list is that item's
    /// fault, 422 with the item's place.)
    pub fn missing(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::NotFound, message)
    }

    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    /// Over the token's request rate: 429, with when to try again (`Retry-After`).
    pub fn rate_limited(retry_after_secs: u64) -> ApiError {
        ApiError {
            extra: Extra {
                retry_after_secs: Some(retry_after_secs),
                ..Extra::default()
            },
            ..ApiError::new(
                ErrorCode::RateLimited,
                "too many requests with this token; slow down",
            )
        }
    }

    /// A URL the egress policy refuses: 422 `url_refused`, with the reason.
    pub fn url_refused(field: &str, why: String) -> ApiError {
        ApiError::new(ErrorCode::UrlRefused, format!("{field} is refused: {why}"))
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::ValidationFailed, message)
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(ErrorCode::Unauthorized, "a valid bearer token is required")
    }

    pub fn too_large(limit: u64) -> ApiError {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("the request body is larger than {limit} bytes"),
        )
    }

    pub fn internal(error: impl std::fmt::Display) -> ApiError {
        tracing::error!(%error, "internal error while answering a request");
        ApiError::new(
            ErrorCode::Internal,
            "the service failed to answer; see its log",
        )
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    pub fn body(&self) -> crate::answers::ErrorAnswer {
        crate::answers::ErrorAnswer {
            error: self.code,
            message: self.message.clone(),
            retry_after_secs: self.extra.retry_after_secs,
            campaign_status: self.extra.campaign_status.map(Into::into),
            tracker_id: self.extra.tracker_id,
            allow: self
                .extra
                .allow
                .as_ref()
                .map(|methods| methods.iter().map(|m| (*m).into()).collect()),
        }
    }
}

impl From<domain::commands::Refusal> for ApiError {
    fn from(r: domain::commands::Refusal) -> Self {
        use domain::commands::Refusal;
        match r {
            Refusal::Invalid(m) => ApiError::invalid(m),
            Refusal::InvalidState(m) => ApiError::new(ErrorCode::InvalidState, m),
            Refusal::NothingToDo(m) => ApiError::new(ErrorCode::NothingToDo, m),
            Refusal::NotInCampaign(m) => ApiError::new(ErrorCode::NotInCampaign, m),
        }
    }
}

impl From<StoreError> for ApiError {
    /// The database being away is a 503 the client can retry; anything else is ours.
    fn from(e: StoreError) -> Self {
        if e.is_unavailable() {
            return ApiError::new(
                ErrorCode::StoreUnavailable,
                format!("the store is out of reach; try again shortly ({e})"),
            );
        }
        ApiError::internal(e)
    }
}

impl From<ActionError> for ApiError {
    fn from(e: ActionError) -> Self {
        let message = e.to_string();
        match e {
            ActionError::NotFound(what) => ApiError::not_found(what),
            ActionError::InvalidState { status, .. } => ApiError {
                extra: Extra {
                    campaign_status: Some(status.as_str()),
                    ..Extra::default()
                },
                ..ApiError::new(ErrorCode::InvalidState, message)
            },
            ActionError::InProgress { tracker_id } => ApiError {
                extra: Extra {
                    tracker_id: Some(tracker_id),
                    ..Extra::default()
                },
                ..ApiError::new(ErrorCode::ActionInProgress, message)
            },
            ActionError::ShuttingDown => ApiError::new(ErrorCode::ShuttingDown, message),
            ActionError::NothingToDo(_) => ApiError::new(ErrorCode::NothingToDo, message),
            ActionError::NotInCampaign(m) => ApiError::new(ErrorCode::NotInCampaign, m),
            ActionError::Conflict => ApiError::new(ErrorCode::ActionInProgress, message),
            ActionError::Store(e) => ApiError::from(e),
            ActionError::Internal(m) => ApiError::internal(m),
        }
    }
}

impl From<actix::MailboxError> for ApiError {
    fn from(e: actix::MailboxError) -> Self {
        tracing::error!(error = %e, "an actor did not answer");
        ApiError::new(
            ErrorCode::Unavailable,
            "the service is shutting down or overloaded; try again",
        )
    }
}

/// The answer to a body that is empty or not JSON: 400 `invalid_json`, never 422.
fn not_json(body: &[u8]) -> Option<ApiError> {
    let invalid = |message: String| ApiError::new(ErrorCode::InvalidJson, message);
    if body.iter().all(u8::is_ascii_whitespace) {
        return Some(invalid("a JSON body is required".to_string()));
    }
    // Checks the syntax without building anything.
    serde_json::from_slice::<serde::de::IgnoredAny>(body)
        .err()
        .map(|e| invalid(format!("the body is not valid JSON: {e}")))
}

/// Reads a body of the JSON type that starts with `open` (`{` or `[`, named `what`) straight
/// into `T`: malformed JSON is 400; valid JSON of another type, or of the wrong shape, is 422.
/// Nothing is built but `T` itself: a 5,000-product upload read as a `serde_json::Value` first
/// took some 23 MB, four times the products it holds.
fn parse_as<T: serde::de::DeserializeOwned>(
    body: &[u8],
    open: u8,
    what: &str,
) -> Result<T, ApiError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&open) {
        return Err(not_json(body)
            .unwrap_or_else(|| ApiError::invalid(format!("the body must be a JSON {what}"))));
    }
    serde_json::from_slice(body).map_err(|e| {
        // A shape error may come before a syntax error further on: the syntax one wins.
        not_json(body).unwrap_or_else(|| ApiError::invalid(shape_message(&e)))
    })
}

/// serde's message without the position it appends (`… at line 1 column 52`), which means
/// nothing to a client that did not lay out the body itself.
fn shape_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rsplit_once(" at line ") {
        Some((message, _)) if e.line() > 0 => message.to_string(),
        _ => text,
    }
}

/// Parses a JSON object body: malformed JSON is 400; anything but an object (an array, which
/// serde would otherwise read field by field), or an object of the wrong shape, is 422.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    parse_as(body, b'{', "object")
}

/// Parses a JSON array body, as `parse_json` does objects.
pub fn parse_json_list<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<Vec<T>, ApiError> {
    parse_as(body, b'[', "array")
}

/// Like `parse_json`, but an empty body means "no options".
pub fn parse_optional_json<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    parse_json(body)
}
