//! MercadoLibre's User Products model ("Precio por variación", "User Products"): a seller on it
//! (`user_product_seller` on `GET /users/{id}`) lists each variant as an item of its own, with
//! its own SKU, price and stock and its variant's values (COLOR, SIZE) among its attributes.
//! Items are grouped into a family by their `family_name` (the product's name), which the item
//! carries instead of a `title` (MercadoLibre makes the title), and no item has `variations`:
//! "el campo title no debe ser enviado por el vendedor ya que Mercado Libre lo completará
//! automáticamente"; "no se podrá enviar el array, porque cada una de las variaciones van a ser
//! User Products diferentes".
//!
//! A product's items are kept as classic variations are: by variant SKU in `variant_ids`, and
//! `product_id` names one of them (a product without variants is one item, `product_id`). Every
//! action goes to each item in turn; a create is one exactly-once create per item, so a create
//! of unknown outcome is settled by looking up the SKUs still without an item.

use std::collections::HashMap;

use reqwest::Method;
use serde::Serialize;

use super::{
    in_currency, is_closed, item_attributes, refused, seller_sku, Attribute, Data, ItemBody,
    MercadoLibre, Naming, Picture, RemoteItem, StatusBody, Via,
};
use crate::plan::Operation;
use crate::{create_once, Checkpoint, MarketError};
use domain::drift::{self, Difference, Shown, ShownVariant};
use domain::{MarketplaceInfo, Offer, Product, ProductStatus, Sent, Variant};

/// What an update of a listed item sends: its price, stock and pictures ("Se debe utilizar el
/// método PUT en el endpoint /items para actualizar el stock en available_quantity", for a
/// seller without multi-origin stock, developers' "Stock distribuido"). Neither the title
/// (refused: "Se dispara un error de tipo bad request") nor the family name (changed only
/// while nothing was sold, and a change moves the item to another family) is sent again.
#[derive(Serialize)]
struct ItemUpdate<'a> {
    price: f64,
    available_quantity: i64,
    pictures: Vec<Picture<'a>>,
}

/// A price change alone.
#[derive(Serialize)]
struct PriceUpdate {
    price: f64,
}

/// One item of a product: the SKU it holds, and the variant it is (none for a product without
/// variants, which is one item).
#[derive(Clone, Copy)]
pub(super) struct Item<'a> {
    pub sku: &'a str,
    variant: Option<&'a Variant>,
}

impl<'a> Item<'a> {
    /// The items a product is listed as: one per variant, or the product itself.
    pub fn of(p: &'a Product) -> Vec<Item<'a>> {
        if p.variants.is_empty() {
            return vec![Item {
                sku: &p.sku,
                variant: None,
            }];
        }
        p.variants
            .iter()
            .map(|v| Item {
                sku: &v.sku,
                variant: Some(v),
            })
            .collect()
    }

    /// The item's id, if it is listed. A product without variants is not listed as the item
    /// of a variant it had (`product_id` names its first one until they are closed).
    pub fn id(&self, info: &MarketplaceInfo) -> Option<String> {
        match self.variant {
            None => info
                .product_id
                .clone()
                .filter(|id| !info.variant_ids.iter().any(|(_, v)| v == id)),
            Some(v) => info.variant_id(&v.sku).map(str::to_string),
        }
    }

    /// Keeps the item's id: `product_id` names the product's first item listed.
    fn set_id(&self, info: &mut MarketplaceInfo, id: String) {
        match self.variant {
            None => info.product_id = Some(id),
            Some(v) => {
                if info.product_id.is_none() {
                    info.product_id = Some(id.clone());
                }
                info.set_variant_id(&v.sku, id);
            }
        }
    }

    /// The price the offer gives the item, in the currency's decimals.
    fn price(&self, offer: &Offer, currency: &str) -> f64 {
        let amount = match self.variant {
            Some(v) => offer.variant(v).0,
            None => offer.price,
        };
        in_currency(currency, amount)
    }

    fn stock(&self, p: &Product) -> i64 {
        self.variant.map_or(p.stock, |v| v.stock)
    }
}

/// The product's items with their ids, listed or not.
fn listed<'a>(p: &'a Product, info: &MarketplaceInfo) -> Vec<(Item<'a>, Option<String>)> {
    Item::of(p)
        .into_iter()
        .map(|item| {
            let id = item.id(info);
            (item, id)
        })
        .collect()
}

/// The items (SKU, id) the product is no longer listed as: those of variants it no longer
/// has (all of them, once it has none), and the item of its own it had before it had variants.
fn left_out(p: &Product, info: &MarketplaceInfo) -> Vec<(String, String)> {
    let mut gone: Vec<(String, String)> = info
        .variant_ids
        .iter()
        .filter(|(sku, _)| !p.variants.iter().any(|v| v.sku == *sku))
        .cloned()
        .collect();
    let own = info
        .product_id
        .as_ref()
        .filter(|id| !info.variant_ids.iter().any(|(_, v)| v == *id));
    if let (false, Some(id)) = (p.variants.is_empty(), own) {
        gone.push((p.sku.clone(), id.clone()));
    }
    gone
}

/// The ids of a product's listed items.
fn ids(p: &Product, info: &MarketplaceInfo) -> Vec<String> {
    listed(p, info)
        .into_iter()
        .filter_map(|(_, id)| id)
        .collect()
}

/// Keeps what an item's answer tells: its id, its status, and its pictures' ids. A closed item
/// never reopens, so one closed item leaves the product closed: no later action but a delete is
/// sent to it.
fn adopt(p: &Product, info: &mut MarketplaceInfo, item: &Item<'_>, remote: &RemoteItem) {
    item.set_id(info, remote.id.to_string());
    if let Some(status) = &remote.status {
        if !is_closed(info) || status == "closed" {
            info.remote_status = Some(status.clone());
        }
    }
    // A picture id is the picture's, whichever item it was given to: the next item names it.
    info.images_by_position(p, remote.pictures.iter().map(|i| Some(i.id.clone())));
}

/// An item's answer; an item MercadoLibre no longer has (404: deleted behind campaignd's back)
/// is forgotten, and the product marked as a create of unknown outcome, so that the retry looks
/// its SKU up and lists it again if nothing holds it (a drift repair).
async fn gone(
    p: &Product,
    info: &mut MarketplaceInfo,
    item: &Item<'_>,
    id: &str,
    answer: Result<RemoteItem, MarketError>,
    checkpoint: Checkpoint<'_>,
) -> Result<RemoteItem, MarketError> {
    match answer {
        Err(MarketError::Rejected { status: 404, .. }) => {
            match item.variant {
                None => info.product_id = None,
                Some(_) => {
                    info.variant_ids.retain(|(sku, _)| sku != item.sku);
                    if info.product_id.as_deref() == Some(id) {
                        info.product_id = ids(p, info).into_iter().next();
                    }
                }
            }
            info.create_outcome_unknown();
            checkpoint(info).await?;
            Err(MarketError::Transient(format!(
                "MercadoLibre no longer has item {id} ({}): it is looked up by its SKU and \
                 listed again",
                item.sku
            )))
        }
        answer => answer,
    }
}

impl MercadoLibre {
    /// An item's attributes: the product's (SELLER_SKU, BRAND, GTIN, its own, the
    /// connection's defaults) with the variant's SKU, its barcode, and its options as the
    /// category's attributes (`{"id": "COLOR", "value_name": "Rojo"}`).
    fn up_attributes<'a>(&'a self, p: &'a Product, item: &Item<'a>) -> Vec<Attribute<'a>> {
        let mut attributes = item_attributes(p, &self.default_attributes);
        let Some(v) = item.variant else {
            return attributes;
        };
        let mut set = |id: String, value: &'a str| {
            match attributes.iter_mut().find(|a| a.id == id) {
                Some(a) => a.value_name = value,
                None => attributes.push(Attribute {
                    id: id.into(),
                    value_name: value,
                }),
            };
        };
        set("SELLER_SKU".to_string(), &v.sku);
        if let Some(code) = &v.barcode {
            set("GTIN".to_string(), code);
        }
        for (name, value) in &v.options {
            set(self.attribute_id(p, name), value);
        }
        attributes
    }

    fn up_new_item<'a>(
        &'a self,
        p: &'a Product,
        item: &Item<'a>,
        offer: &Offer,
        info: &MarketplaceInfo,
    ) -> ItemBody<'a> {
        ItemBody {
            family_name: Some(&p.name),
            price: item.price(offer, &self.currency_id),
            available_quantity: item.stock(p),
            attributes: self.up_attributes(p, item),
            ..self.new_item(p, info)
        }
    }

    fn up_update<'a>(
        &self,
        p: &'a Product,
        item: &Item<'_>,
        offer: &Offer,
        info: &MarketplaceInfo,
    ) -> ItemUpdate<'a> {
        ItemUpdate {
            price: item.price(offer, &self.currency_id),
            available_quantity: item.stock(p),
            pictures: Self::pictures(p, info),
        }
    }

    /// The category's rules for the items this product would be created as (`unlisted`).
    async fn know_items_category(
        &self,
        p: &Product,
        unlisted: &[Item<'_>],
        via: Via,
    ) -> Result<(), MarketError> {
        if !unlisted.is_empty() {
            // The options' attribute ids are read before the bodies name them.
            self.category(self.category_of(p), via).await?;
        }
        let creates: Vec<_> = unlisted
            .iter()
            .map(|item| self.up_attributes(p, item))
            .collect();
        self.know_category(p, &creates, via).await
    }

    /// Publish (`Data::Status`) puts the listed items back on sale; republish sends their data
    /// (`Data::All`) or prices (`Data::Prices`). Either creates the items not listed yet, one
    /// exactly-once create each. A price MercadoLibre's price automation did not apply to one
    /// item does not stop the others: the first such refusal is the product's error.
    pub(super) async fn up_publish(
        &self,
        p: &Product,
        offer: &Offer,
        info: &mut MarketplaceInfo,
        data: Data,
        checkpoint: Checkpoint<'_>,
    ) -> Result<(), MarketError> {
        // A closed product was refused by `apply` (and `up_finish` asks for prices only while
        // open).
        let items = listed(p, info);
        let unlisted: Vec<Item<'_>> = items
            .iter()
            .filter(|(_, id)| id.is_none())
            .map(|(item, _)| *item)
            .collect();
        if !unlisted.is_empty() {
            if let Some(why) = self.listing_refusal(p) {
                return Err(refused(why));
            }
            self.know_items_category(p, &unlisted, Via::Protocol)
                .await?;
        }
        for item in &unlisted {
            let body = self.up_new_item(p, item, offer, info);
            let request = self.request(Method::POST, "/items").json(&body);
            create_once(
                info,
                checkpoint,
                self.api.exchange::<RemoteItem>(Operation::Create, request),
                |info, remote| adopt(p, info, item, &remote),
            )
            .await?;
        }
        let mut not_applied = None;
        for (item, id) in &items {
            let Some(id) = id else { continue };
            let answer = match data {
                Data::Status => {
                    let active = StatusBody { status: "active" };
                    self.put_item(Operation::Status, id, &active, info, checkpoint)
                        .await
                }
                Data::Prices => {
                    let body = PriceUpdate {
                        price: item.price(offer, &self.currency_id),
                    };
                    self.put_item(Operation::Update, id, &body, info, checkpoint)
                        .await
                }
                Data::All => {
                    let body = self.up_update(p, item, offer, info);
                    self.put_item(Operation::Update, id, &body, info, checkpoint)
                        .await
                }
            };
            let remote = gone(p, info, item, id, answer, checkpoint).await?;
            adopt(p, info, item, &remote);
            checkpoint(info).await?;
            if not_applied.is_none() {
                not_applied = remote.price_not_applied();
            }
            if matches!(data, Data::All) {
                if let Err(kept) = self.retitle(id, p, &remote, Naming::Family).await {
                    not_applied.get_or_insert(kept);
                }
                self.replace_description(p, id).await?;
            }
        }
        // Whatever the action sends, the items the product is no longer listed as close.
        self.close_left_out(p, info, checkpoint).await?;
        not_applied.map_or(Ok(()), Err)
    }

    /// The items of variants the product no longer has are closed and forgotten, as
    /// MercadoLibre deletes a classic item's variation that a republish leaves out. One closed
    /// already, or gone, is forgotten as well; the product's other items are not touched.
    async fn close_left_out(
        &self,
        p: &Product,
        info: &mut MarketplaceInfo,
        checkpoint: Checkpoint<'_>,
    ) -> Result<(), MarketError> {
        for (sku, id) in left_out(p, info) {
            let request = self
                .request(Method::PUT, &format!("/items/{id}"))
                .json(&StatusBody { status: "closed" });
            let planned = RemoteItem::planned(&id);
            match self
                .api
                .exchange_raw(Operation::Update, request, planned)
                .await?
            {
                Ok(_) | Err((MarketError::Rejected { status: 404, .. }, _)) => {}
                Err((_, body)) if super::is_closed_refusal(&body) => {}
                Err((e, _)) => return Err(e),
            }
            info.variant_ids.retain(|(held, _)| *held != sku);
            if info.product_id.as_deref() == Some(id.as_str()) {
                info.product_id = ids(p, info).into_iter().next();
            }
            checkpoint(info).await?;
        }
        Ok(())
    }

    /// Every listed item of the product given `status` (paused, closed), which does
    /// `operation` to the product.
    async fn up_status(
        &self,
        operation: Operation,
        p: &Product,
        info: &mut MarketplaceInfo,
        status: &str,
        checkpoint: Checkpoint<'_>,
    ) -> Result<(), MarketError> {
        let items = listed(p, info);
        let left = left_out(p, info);
        if items.iter().all(|(_, id)| id.is_none()) && left.is_empty() {
            return Err(MarketError::Protocol(
                "the product has no MercadoLibre item yet".to_string(),
            ));
        }
        for (item, id) in &items {
            let Some(id) = id else { continue };
            let answer = self
                .put_item(operation, id, &StatusBody { status }, info, checkpoint)
                .await;
            let remote = gone(p, info, item, id, answer, checkpoint).await?;
            adopt(p, info, item, &remote);
            checkpoint(info).await?;
        }
        // The items the product is no longer listed as take the status too, until a publish
        // closes them: a pause leaves nothing of the product on sale. One gone is let be.
        for (_, id) in left {
            let answer = self
                .put_item(operation, &id, &StatusBody { status }, info, checkpoint)
                .await;
            match answer {
                Ok(_) | Err(MarketError::Rejected { status: 404, .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    pub(super) async fn up_pause(
        &self,
        p: &Product,
        info: &mut MarketplaceInfo,
        checkpoint: Checkpoint<'_>,
    ) -> Result<(), MarketError> {
        self.up_status(Operation::Status, p, info, "paused", checkpoint)
            .await
    }

    /// A sale is each item's price itself: the regular prices come back before the items
    /// close, since a closed item can no longer be changed.
    pub(super) async fn up_finish(
        &self,
        p: &Product,
        info: &mut MarketplaceInfo,
        checkpoint: Checkpoint<'_>,
    ) -> Result<(), MarketError> {
        let on_sale = info.sent.is_some_and(|s| s.on_sale);
        if on_sale && !is_closed(info) {
            let regular = Offer::regular(p);
            self.up_publish(p, &regular, info, Data::Prices, checkpoint)
                .await?;
            info.sent = Some(Sent::of(p, &regular));
            checkpoint(info).await?;
        }
        self.up_status(Operation::Status, p, info, "closed", checkpoint)
            .await
    }

    /// Closes each item (unless the product is closed already), then marks each deleted.
    pub(super) async fn up_delete(
        &self,
        p: &Product,
        info: &mut MarketplaceInfo,
        checkpoint: Checkpoint<'_>,
    ) -> Result<(), MarketError> {
        if info.product_id.is_some() {
            if !is_closed(info) {
                self.up_status(Operation::Delete, p, info, "closed", checkpoint)
                    .await?;
            }
            for id in ids(p, info) {
                let deleted = super::DeletedBody { deleted: "true" };
                let answer = self
                    .put_item(Operation::Delete, &id, &deleted, info, checkpoint)
                    .await;
                match answer {
                    Ok(_) | Err(MarketError::Rejected { status: 404, .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        *info = MarketplaceInfo::default();
        info.remote_status = Some("deleted".to_string());
        checkpoint(info).await
    }

    /// After a create of unknown outcome, or an adoption: the items known by id are read
    /// again (a multiget; one not found is forgotten), and each SKU still without an item is
    /// found in the seller's listing when the run read it whole, else looked up, so that no
    /// item is created twice. (The listing is trusted for the items it holds, not for those
    /// it lacks: an item made since it was read is not in it.)
    pub(super) async fn up_reconcile(
        &self,
        p: &Product,
        info: &mut MarketplaceInfo,
    ) -> Result<(), MarketError> {
        let items = Item::of(p);
        let mut known = ids(p, info);
        if let Some(id) = &info.product_id {
            if !known.contains(id) {
                known.push(id.clone());
            }
        }
        let mut read = HashMap::new();
        for some in known.chunks(super::MULTIGET) {
            for body in super::items(&self.api, some).await?.into_values() {
                let Ok(remote) = serde_json::from_value::<RemoteItem>(body) else {
                    continue;
                };
                if remote.sub_status.iter().any(|s| s == "deleted") {
                    continue;
                }
                if let Some(sku) = seller_sku(&remote.attributes) {
                    read.insert(sku.to_string(), remote);
                }
            }
        }
        info.product_id = None;
        info.variant_ids.clear();
        info.remote_status = None;
        for item in &items {
            match read.get(item.sku) {
                Some(remote) => adopt(p, info, item, remote),
                None => {
                    let listed = self.listed_item(item.sku).await;
                    let found = match listed {
                        Some(id) => Some(id),
                        None => self.find_by_sku(item.sku).await?,
                    };
                    if let Some(id) = found {
                        item.set_id(info, id);
                    }
                }
            }
        }
        Ok(())
    }

    /// Each listed item read (gathered into multigets with the check's other reads) and
    /// compared with what campaignd sent: its status, its price and stock (by SKU, as a
    /// variant's when the product has variants), its pictures.
    pub(super) async fn up_drift(
        &self,
        p: &Product,
        offer: Offer,
        status: ProductStatus,
        info: &MarketplaceInfo,
    ) -> Result<Vec<Difference>, MarketError> {
        let items = listed(p, info);
        let first_sku = items.first().map_or(p.sku.as_str(), |(item, _)| item.sku);
        let reads = items.iter().filter_map(|(_, id)| id.clone()).map(|id| {
            let reads = &self.reads;
            async move { reads.get_as::<RemoteItem>(id, "a multiget item").await }
        });
        let found: Vec<RemoteItem> = futures::future::try_join_all(reads)
            .await?
            .into_iter()
            .flatten()
            .filter(|r| !r.sub_status.iter().any(|s| s == "deleted"))
            .collect();
        if found.is_empty() {
            let by_sku = self.find_by_sku(first_sku).await?;
            return Ok(drift::absent(info.product_id.as_deref(), by_sku));
        }
        let expected_status = match status {
            ProductStatus::Paused => "paused",
            ProductStatus::Finished => "closed",
            _ => "active",
        };
        let whole = p.variants.is_empty();
        let expected = Shown {
            status: Some(expected_status.to_string()),
            price: whole.then(|| in_currency(&self.currency_id, offer.price)),
            stock: whole.then_some(p.stock),
            variants: (!whole).then(|| {
                drift::sent_variants(p, &offer)
                    .into_iter()
                    .map(|v| ShownVariant {
                        price: v.price.map(|x| in_currency(&self.currency_id, x)),
                        ..v
                    })
                    .collect()
            }),
            images: Some(p.images.len() as u32),
        };
        let shown_status = found
            .iter()
            .filter_map(|r| r.status.as_deref())
            .find(|s| *s != expected_status)
            .unwrap_or(expected_status);
        let shown = Shown {
            status: Some(shown_status.to_string()),
            price: if whole { found[0].price } else { None },
            stock: if whole {
                found[0].available_quantity
            } else {
                None
            },
            variants: (!whole).then(|| {
                found
                    .iter()
                    .map(|r| ShownVariant {
                        sku: seller_sku(&r.attributes).unwrap_or_default().to_string(),
                        price: r.price,
                        stock: r.available_quantity,
                    })
                    .collect()
            }),
            images: Some(found[0].pictures.len() as u32),
        };
        let mut differences = drift::compare(&expected, &shown);
        // Items a create that went unanswered may have made beside each of the product's.
        if info.unanswered_creates > 0 {
            for (item, id) in &items {
                let held = self.holders(item.sku).await?;
                differences.extend(drift::copies(item.sku, id.as_deref(), held));
            }
        }
        Ok(differences)
    }

    /// The products of `products` whose SKU, or one of whose variants' SKUs, the seller's
    /// listing (SKU → item) holds: one of its items, by product id.
    pub(super) fn up_in_listing(
        skus: &HashMap<String, String>,
        products: &[&Product],
    ) -> HashMap<domain::Id, String> {
        products
            .iter()
            .filter_map(|p| {
                let found = Item::of(p).iter().find_map(|item| skus.get(item.sku))?;
                Some((p.id, found.clone()))
            })
            .collect()
    }

    /// Each product looked up by its items' SKUs until one is found.
    pub(super) async fn up_one_by_one(
        &self,
        products: &[&Product],
    ) -> Result<HashMap<domain::Id, String>, MarketError> {
        let mut found = HashMap::new();
        for p in products {
            for item in Item::of(p) {
                if let Some(id) = self.find_by_sku(item.sku).await? {
                    found.insert(p.id, id);
                    break;
                }
            }
        }
        Ok(found)
    }

    /// What a new item's body would be, for each item not listed yet: checked by
    /// `POST /items/validate`.
    pub(super) async fn up_validate(
        &self,
        p: &Product,
        offer: &Offer,
        info: &MarketplaceInfo,
    ) -> Result<Vec<crate::plan::Problem>, MarketError> {
        use crate::plan::Problem;
        let unlisted: Vec<Item<'_>> = listed(p, info)
            .into_iter()
            .filter(|(_, id)| id.is_none())
            .map(|(item, _)| item)
            .collect();
        if let Err(MarketError::Rejected { message, .. }) =
            self.know_items_category(p, &unlisted, Via::Check).await
        {
            return Ok(vec![Problem::new("category_attributes", message)]);
        }
        for item in &unlisted {
            let body = self.up_new_item(p, item, offer, info);
            let request = self.request(Method::POST, "/items/validate").json(&body);
            match self.api.call_ignoring(request).await {
                Ok(()) => {}
                Err(MarketError::Rejected { message, .. }) => {
                    return Ok(vec![Problem::new(
                        "marketplace_refused",
                        format!("{}: {message}", item.sku),
                    )]);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Vec::new())
    }
}
