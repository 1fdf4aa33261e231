//! Campaign prices: which of a campaign product's prices is in force for a run (`PriceMode`),
//! the prices a marketplace is sent for a product and its variants (`Offer`), and the digests
//! that tell a republish whether only prices changed since the last time a product was sent.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{CampaignProduct, Product, Variant};

/// Which price a run sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PriceMode {
    /// The product's own price, no sale shown.
    Regular,
    /// The campaign product's `presale_price`, where it has one.
    Presale,
    /// The campaign product's `sale_price`, where it has one.
    Sale,
}

impl PriceMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PriceMode::Regular => "regular",
            PriceMode::Presale => "presale",
            PriceMode::Sale => "sale",
        }
    }

    /// The campaign price this mode puts in force for a campaign product, if any.
    pub fn campaign_price(self, cp: &CampaignProduct) -> Option<f64> {
        match self {
            PriceMode::Regular => None,
            PriceMode::Presale => cp.presale_price,
            PriceMode::Sale => cp.sale_price,
        }
    }
}

/// What a marketplace is sent for one product: the price to sell at and, while a campaign price
/// is in force, the regular price beside it (`compare_at`). Variants follow their product's
/// discount: each variant's price is cut by the same ratio, to the cent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Offer {
    pub price: f64,
    pub compare_at: Option<f64>,
    ratio: f64,
}

fn cents(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

impl Offer {
    /// The product at its own price.
    pub fn regular(p: &Product) -> Offer {
        Offer {
            price: p.price,
            compare_at: None,
            ratio: 1.0,
        }
    }

    /// The product with a campaign price, if one is given and below its own price; a campaign
    /// price at or above the product's price (the product's price was lowered since) shows no
    /// sale.
    pub fn of(p: &Product, campaign_price: Option<f64>) -> Offer {
        match campaign_price {
            Some(sale) if sale > 0.0 && sale < p.price => Offer {
                price: sale,
                compare_at: Some(p.price),
                ratio: sale / p.price,
            },
            _ => Offer::regular(p),
        }
    }

    pub fn on_sale(&self) -> bool {
        self.compare_at.is_some()
    }

    /// A variant's (price, compare_at).
    pub fn variant(&self, v: &Variant) -> (f64, Option<f64>) {
        if self.on_sale() {
            let cut = cents(v.price * self.ratio);
            if cut < v.price {
                return (cut, Some(v.price));
            }
        }
        (v.price, None)
    }
}

/// A change of a campaign product's prices: `None` leaves a price as it is, `Some(None)`
/// clears it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PriceChange {
    pub sale_price: Option<Option<f64>>,
    pub presale_price: Option<Option<f64>>,
}

impl PriceChange {
    pub fn is_empty(&self) -> bool {
        self.sale_price.is_none() && self.presale_price.is_none()
    }

    /// Applies the change; answers whether anything changed.
    pub fn apply(&self, cp: &mut CampaignProduct) -> bool {
        let before = (cp.sale_price, cp.presale_price);
        if let Some(p) = self.sale_price {
            cp.sale_price = p;
        }
        if let Some(p) = self.presale_price {
            cp.presale_price = p;
        }
        before != (cp.sale_price, cp.presale_price)
    }
}

/// What was last sent of a product to one marketplace, as digests: a republish whose content is
/// unchanged but whose prices differ sends only the prices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    /// Everything but the prices: name, description, SKU, stock, variants, images.
    pub content: u64,
    /// The prices sent (product and variants, with their compare-at prices).
    pub prices: u64,
    /// Whether a campaign price was in force (a sale shown).
    pub on_sale: bool,
}

fn digest(value: &impl Serialize) -> u64 {
    // postcard of plain data cannot fail; an empty digest would only make the next republish
    // send everything, which is always correct.
    let bytes = postcard::to_allocvec(value).unwrap_or_default();
    let hash = Sha256::digest(&bytes);
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash[..8]);
    u64::from_be_bytes(first)
}

impl Sent {
    pub fn of(p: &Product, offer: &Offer) -> Sent {
        let variants: Vec<_> = p
            .variants
            .iter()
            .map(|v| (&v.sku, v.stock, &v.options))
            .collect();
        let mut content = digest(&(
            &p.name,
            &p.description,
            &p.sku,
            p.stock,
            variants,
            &p.images,
        ));
        // A product without details keeps the digest it had before they existed, so that its
        // next republish still sends its prices alone when only they changed.
        let barcodes: Vec<_> = p.variants.iter().map(|v| &v.barcode).collect();
        if !p.details.is_empty() || barcodes.iter().any(|b| b.is_some()) {
            content = digest(&(content, &p.details, barcodes));
        }
        let variant_prices: Vec<_> = p.variants.iter().map(|v| offer.variant(v)).collect();
        let prices = digest(&(offer.price, offer.compare_at, variant_prices));
        Sent {
            content,
            prices,
            on_sale: offer.on_sale(),
        }
    }

    /// Whether what is about to be sent differs from what was sent only in its prices.
    pub fn only_prices_differ(last: Option<&Sent>, now: &Sent) -> bool {
        last.is_some_and(|l| l.content == now.content && l.prices != now.prices)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn product(price: f64, variants: &[f64]) -> Product {
        Product {
            id: 1,
            tenant_id: 1,
            sku: "A".into(),
            name: "A".into(),
            description: String::new(),
            price,
            stock: 1,
            variants: variants
                .iter()
                .enumerate()
                .map(|(i, p)| Variant {
                    sku: format!("A-{i}"),
                    price: *p,
                    stock: 1,
                    options: BTreeMap::from([("Size".to_string(), i.to_string())]),
                    barcode: None,
                })
                .collect(),
            images: vec![],
            updated_at: 0,
            details: Default::default(),
        }
    }

    #[test]
    fn a_campaign_price_shows_the_regular_price_beside_it_and_variants_follow() {
        let p = product(1000.0, &[1000.0, 1100.0]);
        let o = Offer::of(&p, Some(800.0));
        assert_eq!((o.price, o.compare_at), (800.0, Some(1000.0)));
        assert_eq!(o.variant(&p.variants[0]), (800.0, Some(1000.0)));
        assert_eq!(o.variant(&p.variants[1]), (880.0, Some(1100.0)));
        let none = Offer::of(&p, None);
        assert_eq!((none.price, none.compare_at), (1000.0, None));
        assert_eq!(none.variant(&p.variants[1]), (1100.0, None));
    }

    #[test]
    fn a_campaign_price_not_below_the_products_price_shows_no_sale() {
        let p = product(500.0, &[]);
        assert!(!Offer::of(&p, Some(500.0)).on_sale());
        assert!(!Offer::of(&p, Some(600.0)).on_sale());
        assert_eq!(Offer::of(&p, Some(600.0)).price, 500.0);
    }

    #[test]
    fn digests_tell_a_price_change_from_a_content_change() {
        let p = product(1000.0, &[1000.0]);
        let regular = Sent::of(&p, &Offer::regular(&p));
        let sale = Sent::of(&p, &Offer::of(&p, Some(700.0)));
        assert!(Sent::only_prices_differ(Some(&regular), &sale));
        assert!(!Sent::only_prices_differ(Some(&regular), &regular));
        assert!(!Sent::only_prices_differ(None, &sale));
        let mut renamed = p.clone();
        renamed.name = "B".into();
        let changed = Sent::of(&renamed, &Offer::of(&renamed, Some(700.0)));
        assert!(!Sent::only_prices_differ(Some(&regular), &changed));
        assert!(sale.on_sale && !regular.on_sale);
    }
}
