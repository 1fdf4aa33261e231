//! The MercadoLibre simulator: OAuth 2 bearer tokens that expire (`POST /oauth/token` answers
//! the refresh grant with a new access token and a new single-use refresh token), items with
//! pictures, the SELLER_SKU attribute and variations, statuses active/paused/closed where closed
//! is final (only `{"deleted":"true"}` is accepted after it), the seller's item search by
//! `seller_sku`, a requests-per-second and per-minute limit answered with 429, and MercadoLibre's
//! error shape `{"message", "error", "status", "cause": [{"code", "message"}]}`. A seller may be
//! on the User Products model (`user_products`): each item is one variant, named by a
//! `family_name`, with neither `title` nor `variations`.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use warp::http::{Method, StatusCode};

use crate::sim::{Knobs, SimApi, SimRequest, SimResponse, SimStats, SlidingLimit};

#[derive(Debug, Clone)]
pub struct MlItem {
    pub id: String,
    /// The item's title: sent by a classic seller; made by MercadoLibre from the family name
    /// and the variant's attributes on a User Products seller's item.
    pub title: String,
    /// A User Products seller's item: its `family_name`, which groups it with the other
    /// variants of one product, and its user product (`MLCU…`).
    pub family_name: Option<String>,
    pub user_product_id: Option<String>,
    pub category_id: String,
    pub price: f64,
    pub currency_id: String,
    pub available_quantity: i64,
    pub status: String,
    pub deleted: bool,
    pub seller_sku: String,
    /// The listing type the item was created with.
    pub listing_type_id: String,
    /// Units sold: once an item has sold, its title stays ("you will not be able to change the
    /// title if you have already made a sale", developers' "Best practices for listing
    /// items"), and so does a User Products item's family name ("únicamente cuando ninguna de
    /// las condiciones de venta asociadas al User Product tenga ventas", "User Products").
    pub sold_quantity: u64,
    /// The item's attributes as created, by id (`value_name`).
    pub attributes: BTreeMap<String, String>,
    /// The description's `plain_text`: set by the create's `description`, then changed only
    /// through `/items/{id}/description` ("Descripción de artículos": an existing one is
    /// replaced by a PUT; a POST answers 400 `item.description.invalid`, "Item already has a
    /// description, use PUT instead"). A `description` in `PUT /items/{id}` is not applied
    /// (the synchronisation guide: "It's not possible modify, just add a post").
    pub description: Option<String>,
    /// (picture id, source url), in order.
    pub pictures: Vec<(String, String)>,
    pub variations: Vec<MlVariation>,
}

#[derive(Debug, Clone)]
pub struct MlVariation {
    pub id: u64,
    pub seller_sku: String,
    pub price: f64,
    pub available_quantity: i64,
    pub attribute_combinations: Vec<Value>,
}

pub struct MercadoLibreSim {
    client_id: String,
    client_secret: String,
    pub user_id: u64,
    /// The seller's site, and its currency (`MLC` sells in CLP).
    pub site_id: String,
    pub currency_id: String,
    /// How long an access token lives.
    pub token_ttl: Duration,
    access_tokens: HashMap<String, Instant>,
    refresh_token: String,
    pub refreshes: u64,
    pub items: BTreeMap<String, MlItem>,
    /// Items whose price MercadoLibre's price automation manages.
    pub price_automated: std::collections::BTreeSet<String>,
    /// The category's attributes tagged `required` (BRAND, MODEL) and whether GTIN is
    /// (`conditional_required`: a GTIN, or an EMPTY_GTIN_REASON saying why there is none). Most
    /// real categories require them; the simulator's default category requires none, so that
    /// tests about something else need no brand or model.
    pub required: Vec<&'static str>,
    pub gtin_required: bool,
    /// The seller is on the User Products model (`GET /users/{id}` tags it
    /// `user_product_seller`; developers' "Precio por variación").
    pub user_products: bool,
    next_id: u64,
    pub limit: SlidingLimit,
}

/// MercadoLibre's error body.
pub fn error(
    status: StatusCode,
    error: &str,
    message: &str,
    causes: &[(&str, &str)],
) -> SimResponse {
    let cause: Vec<Value> = causes
        .iter()
        .map(
            |(code, m)| json!({"department": "items", "type": "error", "code": code, "message": m}),
        )
        .collect();
    SimResponse::json(
        status,
        json!({"message": message, "error": error, "status": status.as_u16(), "cause": cause}),
    )
}

fn not_found(id: &str) -> SimResponse {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        &format!("Item with id {id} not found"),
        &[],
    )
}

fn invalid(code: &str, message: &str) -> SimResponse {
    error(
        StatusCode::BAD_REQUEST,
        "validation_error",
        "Validation error",
        &[(code, message)],
    )
}

/// The attributes of a body by id, those with a value.
fn given_attributes(attributes: Option<&Value>) -> BTreeMap<String, String> {
    attributes
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|a| {
            let id = a.get("id")?.as_str()?;
            let value = a
                .get("value_name")?
                .as_str()
                .filter(|v| !v.trim().is_empty())?;
            Some((id.to_string(), value.to_string()))
        })
        .collect()
}

fn seller_sku(attributes: Option<&Value>) -> Option<String> {
    attributes?
        .as_array()?
        .iter()
        .find(|a| a.get("id").and_then(Value::as_str) == Some("SELLER_SKU"))?
        .get("value_name")?
        .as_str()
        .map(str::to_string)
}

impl MercadoLibreSim {
    /// A seller account of an app with these client credentials; its first tokens are
    /// `access_token` (valid for `token_ttl`) and `refresh_token`.
    pub fn new(
        client_id: &str,
        client_secret: &str,
        access_token: &str,
        refresh_token: &str,
    ) -> MercadoLibreSim {
        let ttl = Duration::from_secs(6 * 3600);
        MercadoLibreSim {
            client_id: client_id.to_string(),
            client_secret: client_secret.to_string(),
            user_id: 123_456_789,
            site_id: "MLC".to_string(),
            currency_id: "CLP".to_string(),
            token_ttl: ttl,
            access_tokens: HashMap::from([(access_token.to_string(), Instant::now() + ttl)]),
            refresh_token: refresh_token.to_string(),
            refreshes: 0,
            items: BTreeMap::new(),
            price_automated: std::collections::BTreeSet::new(),
            required: Vec::new(),
            gtin_required: false,
            user_products: false,
            next_id: 1_000_000_000,
            limit: SlidingLimit::new(Some((10, 600))),
        }
    }

    /// Expires every access token now (as if hours had passed).
    pub fn expire_tokens(&mut self) {
        let now = Instant::now();
        for until in self.access_tokens.values_mut() {
            *until = now;
        }
    }

    pub fn item_by_sku(&self, sku: &str) -> Option<&MlItem> {
        self.items
            .values()
            .find(|i| i.seller_sku == sku && !i.deleted)
    }

    fn token(&mut self, req: &SimRequest) -> SimResponse {
        let form: HashMap<String, String> =
            serde_urlencoded::from_bytes(&req.body).unwrap_or_default();
        let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
        if field("grant_type") != "refresh_token" {
            return SimResponse::json(
                StatusCode::BAD_REQUEST,
                json!({"error": "unsupported_grant_type", "error_description": "grant_type must be refresh_token or authorization_code", "status": 400, "cause": []}),
            );
        }
        if field("client_id") != self.client_id || field("client_secret") != self.client_secret {
            return SimResponse::json(
                StatusCode::BAD_REQUEST,
                json!({"error": "invalid_client", "error_description": "invalid client_id or client_secret", "status": 400, "cause": []}),
            );
        }
        if field("refresh_token") != self.refresh_token {
            return SimResponse::json(
                StatusCode::BAD_REQUEST,
                json!({"error": "invalid_grant", "error_description": "Error validating grant. Your authorization code or refresh token may be expired or it was already used", "status": 400, "cause": []}),
            );
        }
        self.refreshes += 1;
        let access = format!("APP_USR-{}-{}", self.user_id, self.refreshes);
        self.refresh_token = format!("TG-{}-{}", self.user_id, self.refreshes);
        self.access_tokens
            .insert(access.clone(), Instant::now() + self.token_ttl);
        SimResponse::json(
            StatusCode::OK,
            json!({
                "access_token": access, "token_type": "Bearer",
                "expires_in": self.token_ttl.as_secs(), "scope": "offline_access read write",
                "user_id": self.user_id, "refresh_token": self.refresh_token,
            }),
        )
    }

    fn authorized(&self, req: &SimRequest) -> bool {
        let token = req
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        token
            .and_then(|t| self.access_tokens.get(t.trim()))
            .is_some_and(|until| req.arrived < *until)
    }

    fn route(&mut self, req: &SimRequest, stats: &mut SimStats, knobs: &Knobs) -> SimResponse {
        let parts: Vec<&str> = req.path.trim_matches('/').split('/').collect();
        match (&req.method, parts.as_slice()) {
            (&Method::POST, ["items"]) => self.create(req, stats, knobs),
            (&Method::POST, ["items", "validate"]) => match self.new_item(req, knobs) {
                // As MercadoLibre: 204, no body, nothing listed.
                Ok(_) => SimResponse::json(StatusCode::NO_CONTENT, Value::Null),
                Err(refused) => refused,
            },
            // The multiget: up to 20 items by id, each with its own status code.
            (&Method::GET, ["items"]) => {
                let ids: Vec<&str> = req
                    .query
                    .get("ids")
                    .map(|ids| ids.split(',').filter(|i| !i.is_empty()).collect())
                    .unwrap_or_default();
                if ids.is_empty() || ids.len() > MULTIGET {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "bad_request",
                        &format!("ids must name between 1 and {MULTIGET} items"),
                        &[],
                    );
                }
                let attributes = all_attributes(req);
                let answers: Vec<Value> = ids
                    .iter()
                    .map(|id| match self.items.get(*id) {
                        Some(item) => json!({"code": 200, "body": render(item, attributes)}),
                        None => json!({"code": 404, "body": {
                            "message": format!("Item with id {id} not found"),
                            "error": "not_found", "status": 404, "cause": [],
                        }}),
                    })
                    .collect();
                SimResponse::json(StatusCode::OK, Value::Array(answers))
            }
            (&Method::GET, ["items", id]) => match self.items.get(*id) {
                Some(item) => SimResponse::json(StatusCode::OK, render(item, all_attributes(req))),
                None => not_found(id),
            },
            (&Method::PUT, ["items", id]) => self.update(id, req, stats, knobs),
            (method @ (&Method::PUT | &Method::POST), ["items", id, "description"]) => {
                let Some(item) = self.items.get_mut(*id) else {
                    return not_found(id);
                };
                let text = req.json().and_then(|b| {
                    b.get("plain_text")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                });
                let Some(text) = text else {
                    return invalid("item.description.invalid", "plain_text is required");
                };
                if method == Method::POST && item.description.is_some() {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "item.description.invalid",
                        "Item already has a description, use PUT instead",
                        &[],
                    );
                }
                item.description = Some(text.clone());
                SimResponse::json(StatusCode::OK, json!({"text": "", "plain_text": text}))
            }
            // A category's attributes, each with its tags, an object of flags (developers'
            // "Atributos": "allow_variations … variation_attribute"; `"tags":
            // {"allow_variations": true}`): COLOR and SIZE tell variations apart.
            // `required` and `conditional_required` tags likewise ("Atributos requeridos":
            // an attribute tagged required must be sent; GTIN, conditionally required, may be
            // replaced by EMPTY_GTIN_REASON).
            (&Method::GET, ["categories", _, "attributes"]) => {
                let required = |id: &str| self.required.contains(&id);
                SimResponse::json(
                    StatusCode::OK,
                    json!([
                        {"id": "BRAND", "name": "Marca", "tags": {"required": required("BRAND")},
                         "value_type": "string"},
                        {"id": "MODEL", "name": "Modelo", "tags": {"required": required("MODEL")},
                         "value_type": "string"},
                        {"id": "GTIN", "name": "Código universal de producto",
                         "tags": {"conditional_required": self.gtin_required,
                                  "variation_attribute": true},
                         "value_type": "string"},
                        {"id": "EMPTY_GTIN_REASON", "name": "Motivo de GTIN vacío", "tags": {},
                         "value_type": "list"},
                        {"id": "COLOR", "name": "Color", "tags": {"allow_variations": true},
                         "value_type": "string"},
                        {"id": "SIZE", "name": "Talla", "tags": {"allow_variations": true},
                         "value_type": "string"},
                        {"id": "SELLER_SKU", "name": "SKU", "tags": {"variation_attribute": true},
                         "value_type": "string"},
                    ]),
                )
            }
            // The seller: a User Products seller is told by its tag ("Dichos sellers podrás
            // identificarlo a través del tag user_product_seller en el API de users",
            // developers' "Precio por variación").
            (&Method::GET, ["users", user]) => {
                if user.parse::<u64>().ok() != Some(self.user_id) {
                    return error(StatusCode::NOT_FOUND, "not_found", "User not found", &[]);
                }
                let mut tags = vec!["normal"];
                if self.user_products {
                    tags.push("user_product_seller");
                }
                SimResponse::json(
                    StatusCode::OK,
                    json!({"id": self.user_id, "nickname": "SELLER", "site_id": self.site_id,
                           "tags": tags}),
                )
            }
            (&Method::GET, ["users", user, "items", "search"]) => {
                if user.parse::<u64>().ok() != Some(self.user_id) {
                    return error(
                        StatusCode::FORBIDDEN,
                        "forbidden",
                        "Invalid caller.id for the requested user",
                        &[],
                    );
                }
                // A page of the seller's item ids (`limit`, 50 unless asked; `offset`, up to
                // 1,000, beyond which MercadoLibre asks for `search_type=scan`), with the total.
                let sku = req.query.get("seller_sku");
                let (limit, offset) = (req.number("limit", 50), req.number("offset", 0));
                if limit > 100 || offset > 1000 {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "bad_request",
                        "limit must be at most 100 and offset at most 1000 (use search_type=scan)",
                        &[],
                    );
                }
                let all: Vec<&str> = self
                    .items
                    .values()
                    .filter(|i| !i.deleted && sku.is_none_or(|s| &i.seller_sku == s))
                    .map(|i| i.id.as_str())
                    .collect();
                let results: Vec<&str> = all.iter().skip(offset).take(limit).copied().collect();
                SimResponse::json(
                    StatusCode::OK,
                    json!({
                        "seller_id": self.user_id, "results": results,
                        "paging": {"limit": limit, "offset": offset, "total": all.len()},
                    }),
                )
            }
            _ => error(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("Resource {} not found.", req.path),
                &[],
            ),
        }
    }

    /// The fields of a new item's body once checked as a create checks them, and its SKU.
    fn new_item(
        &self,
        req: &SimRequest,
        knobs: &Knobs,
    ) -> Result<(Map<String, Value>, String), SimResponse> {
        let Some(Value::Object(f)) = req.json() else {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "Malformed JSON",
                &[],
            ));
        };
        self.check_model(&f, true, self.user_products)?;
        for field in [
            "category_id",
            "currency_id",
            "buying_mode",
            "listing_type_id",
            "condition",
        ] {
            if !f.get(field).is_some_and(Value::is_string) {
                return Err(invalid(
                    &format!("item.{field}.missing"),
                    &format!("The field {field} is required and must be a string."),
                ));
            }
        }
        self.check_item(&f)?;
        // A create without an attribute its category requires is refused (400,
        // `item.attributes.missing_required`, cause 147 in MercadoLibre's answers).
        // An attribute counts when the item has it, or when every variation has it among its
        // `attributes` or `attribute_combinations` (the refusal's own words below).
        let mut given = given_attributes(f.get("attributes"));
        let variations: Vec<BTreeMap<String, String>> = variations_of(&f)
            .map(|v| {
                let mut all = given_attributes(v.get("attributes"));
                all.extend(given_attributes(v.get("attribute_combinations")));
                all
            })
            .collect();
        if let Some((first, rest)) = variations.split_first() {
            for (id, value) in first {
                if rest.iter().all(|v| v.contains_key(id)) {
                    given.entry(id.clone()).or_insert_with(|| value.clone());
                }
            }
        }
        let mut missing: Vec<&str> = self
            .required
            .iter()
            .copied()
            .filter(|id| !given.contains_key(*id))
            .collect();
        if self.gtin_required
            && !given.contains_key("GTIN")
            && !given.contains_key("EMPTY_GTIN_REASON")
        {
            missing.push("GTIN");
        }
        if !missing.is_empty() {
            return Err(invalid(
                "item.attributes.missing_required",
                &format!(
                    "The attributes [{}] are required for category {}. Check the attribute is \
                     present in the attributes list or in all variation's attributes_combination \
                     or attributes.",
                    missing.join(", "),
                    f.get("category_id").and_then(Value::as_str).unwrap_or("")
                ),
            ));
        }
        let sku = seller_sku(f.get("attributes")).unwrap_or_default();
        if let Some(message) = knobs.reject_skus.get(&sku) {
            return Err(invalid("item.attributes.invalid", message));
        }
        Ok((f, sku))
    }

    fn create(&mut self, req: &SimRequest, stats: &mut SimStats, knobs: &Knobs) -> SimResponse {
        let (f, sku) = match self.new_item(req, knobs) {
            Ok(checked) => checked,
            Err(refused) => return refused,
        };
        self.next_id += 1;
        let id = format!("MLC{}", self.next_id);
        let mut item = MlItem {
            user_product_id: self.user_products.then(|| format!("MLCU{}", self.next_id)),
            id,
            title: String::new(),
            family_name: None,
            sold_quantity: 0,
            listing_type_id: f
                .get("listing_type_id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            category_id: String::new(),
            price: 0.0,
            currency_id: String::new(),
            available_quantity: 0,
            status: "active".to_string(),
            deleted: false,
            seller_sku: sku.clone(),
            attributes: given_attributes(f.get("attributes")),
            description: f
                .get("description")
                .and_then(|d| d.get("plain_text"))
                .and_then(Value::as_str)
                .map(str::to_string),
            pictures: Vec::new(),
            variations: Vec::new(),
        };
        self.apply(&mut item, &f, stats);
        if !sku.is_empty() {
            stats.created(&sku);
        }
        let body = render(&item, true);
        self.items.insert(item.id.clone(), item);
        SimResponse::json(StatusCode::CREATED, body)
    }

    /// What the seller's model allows in a create (`creating`) or an update. A classic item
    /// has a title. A User Products seller's item has a `family_name` instead ("El nuevo campo
    /// family_name es un campo requerido"; "el campo title no debe ser enviado por el vendedor
    /// ya que Mercado Libre lo completará automáticamente"), at most the domain's title length,
    /// and no `variations` ("no se podrá enviar el array, porque cada una de las variaciones
    /// van a ser User Products diferentes"); the old shape is refused with a 400 (developers'
    /// "Precio por variación" and "User Products"), and so is a change of the title ("Se
    /// dispara un error de tipo bad request"). The pages give no error codes; these are the
    /// simulator's own.
    /// `user_product`: the item is (or, created now, will be) a user product. A seller moved to
    /// the model keeps the classic items it had: "both models will coexist" (developers'
    /// "Precio por variación"); what MercadoLibre does with them later the pages do not say, and
    /// the simulator keeps them classic.
    fn check_model(
        &self,
        f: &Map<String, Value>,
        creating: bool,
        user_product: bool,
    ) -> Result<(), SimResponse> {
        if !user_product {
            if creating && !f.get("title").is_some_and(Value::is_string) {
                return Err(invalid(
                    "item.title.missing",
                    "The field title is required and must be a string.",
                ));
            }
            return Ok(());
        }
        if f.contains_key("title") {
            return Err(invalid(
                "item.title.not_allowed",
                "A user product seller's item takes no title: MercadoLibre makes it from \
                 family_name.",
            ));
        }
        if f.contains_key("variations") {
            return Err(invalid(
                "item.variations.not_allowed",
                "A user product seller lists each variant as an item of its own.",
            ));
        }
        match f.get("family_name").map(Value::as_str) {
            Some(Some(name)) if !name.trim().is_empty() && name.chars().count() <= 60 => Ok(()),
            Some(_) => Err(invalid(
                "item.family_name.invalid",
                "family_name must have between 1 and 60 characters.",
            )),
            None if creating => Err(invalid(
                "item.family_name.missing",
                "The field family_name is required.",
            )),
            None => Ok(()),
        }
    }

    fn check_item(&self, f: &Map<String, Value>) -> Result<(), SimResponse> {
        if let Some(title) = f.get("title").and_then(Value::as_str) {
            if title.trim().is_empty() || title.chars().count() > 60 {
                return Err(invalid(
                    "item.title.length.invalid",
                    "The title must have between 1 and 60 characters.",
                ));
            }
        }
        if let Some(price) = f.get("price") {
            if !price.as_f64().is_some_and(|p| p > 0.0) || price.is_string() {
                return Err(invalid(
                    "item.price.invalid",
                    "The price must be a positive number.",
                ));
            }
        }
        // A price takes the currency's decimals: `GET /currencies/CLP` answers
        // `"decimal_places": 0`, and so does COP (developers' "Ubicación y monedas"). What
        // MercadoLibre answers to a price with more is not documented: the simulator refuses it
        // as an invalid price, which a shop would not want silently rounded either way.
        let whole = matches!(self.currency_id.as_str(), "CLP" | "COP");
        let prices = f.get("price").into_iter().chain(
            f.get("variations")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|v| v.get("price")),
        );
        // A variation MercadoLibre does not know yet (no `id`) carries its pictures: "Existen
        // propiedades obligatorias a enviar en cada variación … price, available_quantity,
        // pictures y attribute_combinations" (developers' "Variaciones").
        let unpictured = variations_of(f).any(|v| {
            !v.contains_key("id")
                && v.get("picture_ids")
                    .and_then(Value::as_array)
                    .is_none_or(Vec::is_empty)
        });
        if unpictured {
            return Err(invalid(
                "item.variations.picture_ids.missing",
                "A new variation must have picture_ids.",
            ));
        }
        // "El precio deberá ser el mismo para cada variación" (developers' "Variaciones"); the
        // error's code is not documented.
        let variation_prices: Vec<f64> = variations_of(f)
            .filter_map(|v| v.get("price").and_then(Value::as_f64))
            .collect();
        if variation_prices.windows(2).any(|w| w[0] != w[1]) {
            return Err(invalid(
                "item.variations.price.invalid",
                "The price must be the same for each variation.",
            ));
        }
        for price in prices {
            if whole && price.as_f64().is_some_and(|p| p.fract() != 0.0) {
                return Err(invalid(
                    "item.price.invalid",
                    &format!(
                        "The price {price} has decimals, and {} has none.",
                        self.currency_id
                    ),
                ));
            }
        }
        // Listing types on the marketplace: "free, gold_special, gold_pro (puede variar según el
        // site)" (developers' "Tipos de publicación", 2026-06); Uruguay without gold_pro.
        if let Some(listing) = f.get("listing_type_id").and_then(Value::as_str) {
            let allowed: &[&str] = if self.site_id == "MLU" {
                &["free", "gold_special"]
            } else {
                &["free", "gold_special", "gold_pro"]
            };
            if !allowed.contains(&listing) {
                return Err(invalid(
                    "item.listing_type_id.invalid",
                    &format!("The listing type {listing} is not valid for this site."),
                ));
            }
        }
        // A category belongs to one site, named by its prefix (`MLC1234` is Chile's): the seller
        // lists on its own site (developers' "Categorías y publicaciones").
        if let Some(category) = f.get("category_id").and_then(Value::as_str) {
            if !category.starts_with(self.site_id.as_str()) {
                return Err(invalid(
                    "item.category_id.invalid",
                    &format!("Category {category} is not of site {}.", self.site_id),
                ));
            }
        }
        if let Some(currency) = f.get("currency_id").and_then(Value::as_str) {
            if currency != self.currency_id {
                return Err(invalid(
                    "item.currency_id.invalid",
                    &format!(
                        "Currency {currency} is not valid for this site (use {}).",
                        self.currency_id
                    ),
                ));
            }
        }
        if f.get("available_quantity").is_some_and(|q| !q.is_i64()) {
            return Err(invalid(
                "item.available_quantity.invalid",
                "available_quantity must be an integer.",
            ));
        }
        if let Some(status) = f.get("status") {
            if !matches!(status.as_str(), Some("active" | "paused" | "closed")) {
                return Err(invalid(
                    "item.status.invalid",
                    "status must be active, paused or closed.",
                ));
            }
        }
        Ok(())
    }

    fn update(
        &mut self,
        id: &str,
        req: &SimRequest,
        stats: &mut SimStats,
        knobs: &Knobs,
    ) -> SimResponse {
        let Some(Value::Object(f)) = req.json() else {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "Malformed JSON",
                &[],
            );
        };
        let Some(mut item) = self.items.get(id).cloned() else {
            return not_found(id);
        };
        if item.deleted {
            return not_found(id);
        }
        if let Some(message) = knobs.reject_skus.get(&item.seller_sku) {
            return invalid("item.attributes.invalid", message);
        }
        if f.get("deleted").and_then(Value::as_str) == Some("true") {
            if item.status != "closed" {
                return invalid(
                    "item.deleted.invalid",
                    "Only closed items can be deleted; close the item first.",
                );
            }
            item.deleted = true;
            let body = render(&item, true);
            self.items.insert(id.to_string(), item);
            return SimResponse::json(StatusCode::OK, body);
        }
        if item.status == "closed" {
            return error(
                StatusCode::BAD_REQUEST,
                "validation_error",
                "Item in status closed is not editable",
                &[(
                    "item.status.not_modifiable",
                    "A closed item cannot be modified or reactivated; relist it as a new item.",
                )],
            );
        }
        if let Err(r) = self
            .check_model(&f, false, item.user_product_id.is_some())
            .and_then(|()| self.check_item(&f))
        {
            return r;
        }
        // The pages name no error code for a title kept after sales: the simulator's own.
        let renames = |field: &str, now: &str| {
            f.get(field)
                .and_then(Value::as_str)
                .is_some_and(|given| given != now)
        };
        let family = item.family_name.clone().unwrap_or_default();
        if item.sold_quantity > 0
            && (renames("title", &item.title) || renames("family_name", &family))
        {
            return invalid(
                "item.title.not_modifiable",
                "The title of an item with sales cannot be modified.",
            );
        }
        let mut f = f;
        let mut warnings = Vec::new();
        if self.price_automated.contains(id) && touches_price(&f) {
            // Since 2026-03-18, on an item whose price automation manages (developers'
            // "Automatizaciones de precios"): a PUT of the price alone is refused; a PUT of the
            // price beside other fields changes the others, ignores the price, and says so in
            // `warnings`.
            const NOT_MODIFIABLE: &str = "Cannot modify price on items with dynamic pricing";
            if only_prices(&f) {
                return SimResponse::json(
                    StatusCode::BAD_REQUEST,
                    json!({"message": NOT_MODIFIABLE, "error": "item.price.not_modifiable",
                           "status": 400, "cause": []}),
                );
            }
            strip_prices(&mut f);
            warnings.push(json!({
                "department": "items", "cause_id": 502, "code": "item.price.not_modifiable",
                "message": NOT_MODIFIABLE, "references": ["item.price"],
            }));
        }
        self.apply(&mut item, &f, stats);
        let mut body = render(&item, true);
        if !warnings.is_empty() {
            body["warnings"] = Value::Array(warnings);
        }
        self.items.insert(id.to_string(), item);
        SimResponse::json(StatusCode::OK, body)
    }

    fn apply(&mut self, item: &mut MlItem, f: &Map<String, Value>, stats: &mut SimStats) {
        let text = |k: &str| f.get(k).and_then(Value::as_str).map(str::to_string);
        if let Some(v) = text("title") {
            item.title = v;
        }
        if let Some(v) = text("category_id") {
            item.category_id = v;
        }
        if let Some(family) = text("family_name") {
            // "Se crea automáticamente por Meli tras realizar el POST a ítems", and made again
            // when the family name changes: the family name and the variant's own values.
            let values: Vec<&str> = ["COLOR", "SIZE"]
                .iter()
                .filter_map(|id| item.attributes.get(*id).map(String::as_str))
                .collect();
            item.title = std::iter::once(family.as_str())
                .chain(values)
                .collect::<Vec<_>>()
                .join(" ");
            item.family_name = Some(family);
        }
        if let Some(v) = text("currency_id") {
            item.currency_id = v;
        }
        if let Some(v) = text("status") {
            item.status = v;
        }
        if let Some(v) = f.get("price").and_then(Value::as_f64) {
            item.price = v;
        }
        if let Some(v) = f.get("available_quantity").and_then(Value::as_i64) {
            item.available_quantity = v;
        }
        if let Some(Value::Array(pictures)) = f.get("pictures") {
            let mut out = Vec::new();
            for p in pictures {
                if let Some(id) = p.get("id").and_then(Value::as_str) {
                    // A picture id is the picture's, not the item's: pictures are uploaded to
                    // MercadoLibre's servers (`POST /pictures/items/upload`) and then added to
                    // items by id (developers' "Working with pictures"), so any item may name
                    // one another item was given.
                    let known = item
                        .pictures
                        .iter()
                        .chain(self.items.values().flat_map(|i| i.pictures.iter()))
                        .find(|(i, _)| i == id);
                    if let Some(kept) = known {
                        out.push(kept.clone());
                    }
                } else if let Some(source) = p.get("source").and_then(Value::as_str) {
                    self.next_id += 1;
                    out.push((
                        format!("{}-MLC{}_F", self.next_id, item.id),
                        source.to_string(),
                    ));
                }
            }
            item.pictures = out;
        }
        if let Some(Value::Array(variations)) = f.get("variations") {
            let mut out = Vec::new();
            for v in variations {
                let existing = v
                    .get("id")
                    .and_then(Value::as_u64)
                    .and_then(|id| item.variations.iter().find(|x| x.id == id).cloned());
                let mut var = match existing {
                    Some(var) => var,
                    None => {
                        self.next_id += 1;
                        let sku = seller_sku(v.get("attributes")).unwrap_or_default();
                        if !sku.is_empty() {
                            stats.created(&sku);
                        }
                        MlVariation {
                            id: self.next_id,
                            seller_sku: sku,
                            price: 0.0,
                            available_quantity: 0,
                            attribute_combinations: Vec::new(),
                        }
                    }
                };
                if let Some(p) = v.get("price").and_then(Value::as_f64) {
                    var.price = p;
                }
                if let Some(q) = v.get("available_quantity").and_then(Value::as_i64) {
                    var.available_quantity = q;
                }
                if let Some(Value::Array(c)) = v.get("attribute_combinations") {
                    // Only the category's variation attributes, named by id, are kept: "an
                    // attribute outside the category is ignored" (developers' "Variaciones").
                    var.attribute_combinations = c
                        .iter()
                        .filter(|a| {
                            a.get("id")
                                .and_then(Value::as_str)
                                .is_some_and(|id| matches!(id, "COLOR" | "SIZE"))
                        })
                        .cloned()
                        .collect();
                }
                out.push(var);
            }
            item.variations = out;
        }
    }
}

impl SimApi for MercadoLibreSim {
    fn dump(&self) -> Value {
        self.items
            .values()
            .map(|i| {
                let status = if i.deleted {
                    "deleted"
                } else {
                    i.status.as_str()
                };
                json!({"id": i.id, "sku": i.seller_sku, "status": status,
                       "variants": i.variations.len(), "family_name": i.family_name})
            })
            .collect()
    }

    fn handle(&mut self, req: &SimRequest, stats: &mut SimStats, knobs: &Knobs) -> SimResponse {
        if !self.limit.admit(req.arrived, stats) {
            return error(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                "Too many requests",
                &[],
            );
        }
        if req.method == Method::POST && req.path == "/oauth/token" {
            return self.token(req);
        }
        if !self.authorized(req) {
            return error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "invalid access token",
                &[],
            );
        }
        self.route(req, stats, knobs)
    }

    /// What an item's create or update holds that MercadoLibre would not apply:
    /// - a field an item does not have (developers' "Publicar productos" lists the create's;
    ///   "Sincroniza y modifica publicaciones" what a PUT changes);
    /// - a `description` in the PUT, which changes only through `/items/{id}/description` ("It's
    ///   not possible modify, just add a post");
    /// - a variation's field a variation does not have, or a combination named by anything but
    ///   one of the category's `allow_variations` attributes ("Variaciones").
    fn ignored(&self, req: &SimRequest) -> Vec<String> {
        const CREATE: &[&str] = &[
            "title",
            "family_name",
            "category_id",
            "price",
            "currency_id",
            "available_quantity",
            "buying_mode",
            "listing_type_id",
            "condition",
            "description",
            "pictures",
            "attributes",
            "variations",
            "sale_terms",
            "shipping",
            "video_id",
            "site_id",
        ];
        const UPDATE: &[&str] = &[
            "title",
            "family_name",
            "price",
            "available_quantity",
            "pictures",
            "attributes",
            "variations",
            "status",
            "deleted",
            "sale_terms",
            "shipping",
            "video_id",
        ];
        const VARIATION: &[&str] = &[
            "id",
            "price",
            "available_quantity",
            "attribute_combinations",
            "attributes",
            "picture_ids",
        ];
        let Some(Value::Object(f)) = req.json() else {
            return Vec::new();
        };
        let parts: Vec<&str> = req.path.trim_matches('/').split('/').collect();
        let known = match (&req.method, parts.as_slice()) {
            (&Method::POST, ["items"]) => CREATE,
            (&Method::PUT, ["items", _]) => UPDATE,
            _ => return Vec::new(),
        };
        let at = |what: &str| format!("{} {}: {what}", req.method, req.path);
        let mut out: Vec<String> = f
            .keys()
            .filter(|k| !known.contains(&k.as_str()))
            .map(|k| at(k))
            .collect();
        for v in variations_of(&f) {
            out.extend(
                v.keys()
                    .filter(|k| !VARIATION.contains(&k.as_str()))
                    .map(|k| at(&format!("variations.{k}"))),
            );
            let combinations = v.get("attribute_combinations").and_then(Value::as_array);
            for c in combinations.into_iter().flatten() {
                let id = c.get("id").and_then(Value::as_str).unwrap_or_default();
                if !matches!(id, "COLOR" | "SIZE") {
                    out.push(at(&format!("variations.attribute_combinations {id:?}")));
                }
            }
        }
        out
    }

    fn server_error(&self) -> SimResponse {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Internal server error",
            &[],
        )
    }
}

/// The most items one multiget names (MercadoLibre's limit).
pub const MULTIGET: usize = 20;

/// The variations of an item's PUT.
fn variations_of(f: &Map<String, Value>) -> impl Iterator<Item = &Map<String, Value>> {
    f.get("variations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
}

/// Whether a PUT sets a price (the item's, or a variation's).
fn touches_price(f: &Map<String, Value>) -> bool {
    f.contains_key("price") || variations_of(f).any(|v| v.contains_key("price"))
}

/// Whether a PUT sets prices and nothing else (variations named by id, with their price).
fn only_prices(f: &Map<String, Value>) -> bool {
    f.keys().all(|k| k == "price" || k == "variations")
        && variations_of(f).all(|v| v.keys().all(|k| k == "id" || k == "price"))
}

/// The PUT without its prices.
fn strip_prices(f: &mut Map<String, Value>) {
    f.remove("price");
    if let Some(Value::Array(variations)) = f.get_mut("variations") {
        for v in variations.iter_mut().filter_map(Value::as_object_mut) {
            v.remove("price");
        }
    }
}

/// Whether a read asks for every variation's attributes (`include_attributes=all`): "Para ver
/// la propiedad attributes dentro de cada variación, debes agregar el parámetro
/// include_attributes=all" (developers' "Variaciones"). The multiget is held to the same rule
/// (its page is silent on it).
fn all_attributes(req: &SimRequest) -> bool {
    req.query.get("include_attributes").map(String::as_str) == Some("all")
}

/// An item as MercadoLibre answers it; a variation's `attributes` (its SELLER_SKU) only when
/// `attributes` is asked for (a write's answer carries them).
fn render(item: &MlItem, attributes: bool) -> Value {
    let mut sub_status = Vec::new();
    if item.deleted {
        sub_status.push("deleted");
    }
    json!({
        "id": item.id,
        "title": item.title,
        "family_name": item.family_name,
        "user_product_id": item.user_product_id,
        "sold_quantity": item.sold_quantity,
        "category_id": item.category_id,
        "price": item.price,
        "currency_id": item.currency_id,
        "available_quantity": item.available_quantity,
        "status": item.status,
        "sub_status": sub_status,
        "permalink": format!("https://articulo.mercadolibre.cl/{}", item.id),
        "pictures": item.pictures.iter().map(|(id, source)| json!({
            "id": id, "url": format!("http://http2.mlstatic.com/D_{id}.jpg"),
            "secure_url": format!("https://http2.mlstatic.com/D_{id}.jpg"), "source": source,
        })).collect::<Vec<_>>(),
        "attributes": [{"id": "SELLER_SKU", "name": "SKU", "value_name": item.seller_sku}],
        "variations": item.variations.iter().map(|v| {
            let mut shown = json!({
                "id": v.id, "price": v.price, "available_quantity": v.available_quantity,
                "attribute_combinations": v.attribute_combinations,
            });
            if attributes {
                shown["attributes"] = json!([{"id": "SELLER_SKU", "value_name": v.seller_sku}]);
            }
            shown
        }).collect::<Vec<_>>(),
    })
}
