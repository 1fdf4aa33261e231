//! API errors: every failure answers JSON `{"error": code, "message": text}` (plus a few extra
//! fields where a client needs them, such as the running `tracker_id` on a 409), mapped to its
//! HTTP status in one place.

use serde_json::{json, Value};
use warp::http::StatusCode;

use engine::ActionError;
use store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Extra fields merged into the body.
    pub extra: Option<Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            extra: None,
        }
    }

    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    /// Over the token's request rate: 429, with when to try again (`Retry-After`).
    pub fn rate_limited(retry_after_secs: u64) -> ApiError {
        ApiError {
            extra: Some(json!({ "retry_after_secs": retry_after_secs })),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests with this token; slow down",
            )
        }
    }

    /// A URL the egress policy refuses: 422 `url_refused`, with the reason.
    pub fn url_refused(field: &str, why: String) -> ApiError {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "url_refused",
            format!("{field} is refused: {why}"),
        )
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            message,
        )
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required",
        )
    }

    pub fn too_large(limit: u64) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is larger than {limit} bytes"),
        )
    }

    pub fn internal(error: impl std::fmt::Display) -> ApiError {
        tracing::error!(%error, "internal error while answering a request");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the service failed to answer; see its log",
        )
    }

    pub fn body(&self) -> Value {
        let mut body = json!({"error": self.code, "message": self.message});
        if let (Some(Value::Object(extra)), Some(obj)) = (&self.extra, body.as_object_mut()) {
            for (k, v) in extra {
                obj.insert(k.clone(), v.clone());
            }
        }
        body
    }
}

impl From<domain::commands::Refusal> for ApiError {
    fn from(r: domain::commands::Refusal) -> Self {
        use domain::commands::Refusal;
        match r {
            Refusal::Invalid(m) => ApiError::invalid(m),
            Refusal::InvalidState(m) => ApiError::new(StatusCode::CONFLICT, "invalid_state", m),
            Refusal::NothingToDo(m) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "nothing_to_do", m)
            }
        }
    }
}

impl From<StoreError> for ApiError {
    /// The database being away is a 503 the client can retry; anything else is ours.
    fn from(e: StoreError) -> Self {
        if e.is_unavailable() {
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
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
                extra: Some(json!({"campaign_status": status.as_str()})),
                ..ApiError::new(StatusCode::CONFLICT, "invalid_state", message)
            },
            ActionError::InProgress { tracker_id } => ApiError {
                extra: Some(json!({"tracker_id": tracker_id})),
                ..ApiError::new(StatusCode::CONFLICT, "action_in_progress", message)
            },
            ActionError::ShuttingDown => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", message)
            }
            ActionError::NothingToDo(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "nothing_to_do", message)
            }
            ActionError::BadScope(m) => ApiError::invalid(m),
            ActionError::Conflict => {
                ApiError::new(StatusCode::CONFLICT, "action_in_progress", message)
            }
            ActionError::Store(e) => ApiError::from(e),
            ActionError::Internal(m) => ApiError::internal(m),
        }
    }
}

impl From<actix::MailboxError> for ApiError {
    fn from(e: actix::MailboxError) -> Self {
        tracing::error!(error = %e, "an actor did not answer");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the service is shutting down or overloaded; try again",
        )
    }
}

/// The answer to a body that is empty or not JSON: 400 `invalid_json`, never 422.
fn not_json(body: &[u8]) -> Option<ApiError> {
    let invalid = |message: String| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", message);
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
