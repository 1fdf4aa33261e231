//! What the benchmarks share: speaking to the service's API as a client.

use serde_json::Value;

/// POSTs `body` with the bearer token and returns the JSON answer, which must be a success.
pub async fn post(client: &reqwest::Client, url: String, token: &str, body: Value) -> Value {
    let res = client
        .post(&url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("the service answers");
    let status = res.status();
    let v: Value = res.json().await.expect("a JSON answer");
    assert!(status.is_success(), "{url}: {status} {v}");
    v
}
