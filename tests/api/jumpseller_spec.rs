//! Every request the Jumpseller adapter sends, through publish, pause, publish again, republish,
//! finish and a lost create, checked against Jumpseller's official OpenAPI 3.0.3 document
//! (read from `../shared/reference/`, not copied into the project): the path and method exist,
//! the query parameters are declared (and within their enums), the body validates against the
//! operation's request schema, and every field sent is one the schema names.

use serde_json::{json, Map, Value};

use crate::helpers::spawn_app_with;

/// The document's place: `JUMPSELLER_OPENAPI` if set, else `shared/reference/` beside the
/// checkout, where the project's shared material lives (it is not copied into the project).
fn spec() -> Value {
    let path = std::env::var("JUMPSELLER_OPENAPI").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/reference/jumpseller-openapi.json"
        )
        .to_string()
    });
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("Jumpseller's OpenAPI document at {path}: {e}"));
    let mut spec: Value = serde_json::from_str(&text).expect("the document is JSON");
    // The document refers to an `Error` schema it does not define.
    spec["components"]["schemas"]["Error"] = json!({});
    spec
}

/// The document's path template matching a concrete path, preferring literal segments.
fn template<'a>(spec: &'a Value, path: &str) -> Option<&'a str> {
    let path = path.strip_prefix("/v1").unwrap_or(path);
    let parts: Vec<&str> = path.split('/').collect();
    let mut best: Option<(&str, usize)> = None;
    for candidate in spec["paths"].as_object()?.keys() {
        let cparts: Vec<&str> = candidate.split('/').collect();
        if cparts.len() != parts.len() {
            continue;
        }
        let mut literal = 0;
        let fits = cparts.iter().zip(&parts).all(|(c, p)| {
            if c == p {
                literal += 1;
                return true;
            }
            match c.strip_prefix('{') {
                Some(rest) => {
                    let suffix = rest.split_once('}').map(|(_, s)| s).unwrap_or("");
                    p.strip_suffix(suffix)
                        .is_some_and(|v| !v.is_empty() && v.chars().all(|ch| ch.is_ascii_digit()))
                }
                None => false,
            }
        });
        if fits && best.is_none_or(|(_, l)| literal > l) {
            best = Some((candidate.as_str(), literal));
        }
    }
    best.map(|(t, _)| t)
}

fn resolve<'a>(spec: &'a Value, node: &'a Value) -> &'a Value {
    match node.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let pointer = r.trim_start_matches('#');
            resolve(spec, spec.pointer(pointer).unwrap_or(&Value::Null))
        }
        None => node,
    }
}

/// Fields of `body` that the schema does not name, with their paths.
fn unknown_fields(spec: &Value, schema: &Value, body: &Value, at: &str, out: &mut Vec<String>) {
    let schema = resolve(spec, schema);
    match body {
        Value::Object(fields) => {
            let Some(props) = schema.get("properties").and_then(Value::as_object) else {
                return;
            };
            for (k, v) in fields {
                match props.get(k) {
                    Some(sub) => unknown_fields(spec, sub, v, &format!("{at}.{k}"), out),
                    None => out.push(format!("{at}.{k}")),
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    unknown_fields(spec, item, v, &format!("{at}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

fn parameters<'a>(spec: &'a Value, op: &'a Value) -> Vec<&'a Value> {
    op["parameters"]
        .as_array()
        .map(|ps| ps.iter().map(|p| resolve(spec, p)).collect())
        .unwrap_or_default()
}

/// Problems with one request, by the document.
fn check(
    spec: &Value,
    method: &str,
    path: &str,
    query: &Map<String, Value>,
    body: Option<&Value>,
) -> Vec<String> {
    let Some(t) = template(spec, path) else {
        return vec![format!("{method} {path}: no such path in the document")];
    };
    let op = &spec["paths"][t][method.to_lowercase()];
    if op.is_null() {
        return vec![format!("{method} {t}: no such operation")];
    }
    let mut problems = Vec::new();
    let params = parameters(spec, op);
    for (name, value) in query {
        let declared = params
            .iter()
            .find(|p| p["in"] == "query" && p["name"] == name.as_str());
        match declared {
            None => problems.push(format!(
                "{method} {t}: query parameter {name} is not declared"
            )),
            Some(p) => {
                if let Some(allowed) = p["schema"]["enum"].as_array() {
                    if !allowed.contains(value) {
                        problems.push(format!(
                            "{method} {t}: {name}={value} is not one of {allowed:?}"
                        ));
                    }
                }
            }
        }
    }
    for p in &params {
        if p["in"] == "query"
            && p["required"] == true
            && !query.contains_key(p["name"].as_str().unwrap_or(""))
        {
            problems.push(format!(
                "{method} {t}: required query parameter {} is missing",
                p["name"]
            ));
        }
    }
    let schema = &op["requestBody"]["content"]["application/json"]["schema"];
    match (body, schema.is_null()) {
        (Some(body), false) => {
            let mut root = json!({"allOf": [schema.clone()]});
            root["components"] = spec["components"].clone();
            let validator = jsonschema::options()
                .with_draft(jsonschema::Draft::Draft4)
                .build(&root)
                .expect("the request schema compiles");
            for e in validator.iter_errors(body) {
                problems.push(format!("{method} {t}: {e} at {}", e.instance_path()));
            }
            let mut unknown = Vec::new();
            unknown_fields(spec, schema, body, "body", &mut unknown);
            for u in unknown {
                problems.push(format!("{method} {t}: {u} is not in the schema"));
            }
        }
        (Some(_), true) => problems.push(format!(
            "{method} {t}: sent a body the operation does not take"
        )),
        (None, false) if op["requestBody"]["required"] == true => {
            problems.push(format!("{method} {t}: the required body is missing"))
        }
        _ => {}
    }
    problems
}

#[tokio::test]
async fn every_request_the_jumpseller_adapter_sends_is_valid_against_the_official_document() {
    let spec = spec();
    let app = spawn_app_with(|c| {
        c.http.timeout_secs = 1;
        c.runs.retry_min_ms = 10;
    })
    .await;
    let p = app.products("S", 3).await;
    let campaign = app.campaign(&[app.js], &p).await;
    // A store of 350 products, one of which already holds S-3: reading its listing would take
    // more requests than searching three SKUs, so each is searched, and S-3 is adopted.
    app.jumpseller.with_api(|s| {
        use ::marketplaces::sim::jumpseller::SimProduct;
        for n in 0..350u64 {
            let sku = if n == 0 {
                "S-3".to_string()
            } else {
                format!("OTHER-{n}")
            };
            s.products.insert(
                50_000 + n,
                SimProduct {
                    id: 50_000 + n,
                    name: format!("Other {n}"),
                    sku: Some(sku),
                    price: 1.0,
                    compare_at_price: None,
                    stock: 1,
                    description: String::new(),
                    status: "available".to_string(),
                    variants: Vec::new(),
                    images: Vec::new(),
                    barcode: None,
                },
            );
        }
    });
    app.jumpseller.set_knobs(|k| k.hang_next = 1);
    for action in ["publish", "pause", "publish", "republish", "finish"] {
        let t = app.run(campaign, action, json!({})).await;
        assert_eq!(t["status"], "completed", "{action}: {t}");
    }

    let log = app.jumpseller.stats().log;
    let mut seen = std::collections::BTreeSet::new();
    let mut problems = Vec::new();
    for l in &log {
        let query: Map<String, Value> = l
            .query
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect();
        problems.extend(check(&spec, &l.method, &l.path, &query, l.body.as_ref()));
        seen.insert(format!(
            "{} {}",
            l.method,
            template(&spec, &l.path).unwrap_or("?")
        ));
    }
    assert_eq!(problems, Vec::<String>::new());
    let expected = [
        "DELETE /products/{id}.json",
        "GET /products/count.json",
        "GET /products/search.json",
        "GET /products/{id}.json",
        "POST /products.json",
        "POST /products/{id}/images.json",
        "POST /products/{id}/variants.json",
        "PUT /products/{id}.json",
        "PUT /products/{id}/variants/{variant_id}.json",
    ];
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        expected,
        "every kind of call was checked"
    );
}

#[test]
fn the_checker_itself_catches_what_the_document_forbids() {
    let spec = spec();
    let none = Map::new();
    let bad_body = json!({"product": {"name": "x", "price": "12", "colour": "red"}});
    let problems = check(&spec, "POST", "/v1/products.json", &none, Some(&bad_body));
    assert!(problems.iter().any(|p| p.contains("price")), "{problems:?}");
    assert!(
        problems.iter().any(|p| p.contains("colour")),
        "{problems:?}"
    );
    let missing = json!({"product": {"price": 1}});
    assert!(!check(&spec, "POST", "/v1/products.json", &none, Some(&missing)).is_empty());
    let mut query = Map::new();
    query.insert("query".into(), json!("A-1"));
    query.insert("fields".into(), json!("colour"));
    assert!(!check(&spec, "GET", "/v1/products/search.json", &query, None).is_empty());
    assert!(!check(&spec, "PATCH", "/v1/products/1.json", &none, None).is_empty());
    assert!(!check(&spec, "GET", "/v1/widgets.json", &none, None).is_empty());
}
