//! Finding what a store already lists before a run creates anything (`Marketplace::find_listed`):
//! the pieces the adapters share, whichever way each marketplace is asked.

use std::collections::HashMap;

use futures::future::BoxFuture;

use super::MarketError;
use domain::{Id, Product};

/// The products whose SKU a store's listing (SKU → remote id) holds, by product id.
pub fn in_listing(skus: &HashMap<String, String>, products: &[&Product]) -> HashMap<Id, String> {
    products
        .iter()
        .filter_map(|p| Some((p.id, skus.get(&p.sku)?.clone())))
        .collect()
}

/// Each product looked up by its SKU with `find`, one request each: those found, by product id.
pub async fn one_by_one<'a>(
    products: &[&Product],
    find: impl Fn(String) -> BoxFuture<'a, Result<Option<String>, MarketError>>,
) -> Result<HashMap<Id, String>, MarketError> {
    let mut found = HashMap::new();
    for p in products {
        if let Some(id) = find(p.sku.clone()).await? {
            found.insert(p.id, id);
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_finds_the_products_whose_sku_it_holds() {
        let product = |id, sku: &str| Product {
            id,
            tenant_id: 1,
            sku: sku.to_string(),
            name: String::new(),
            description: String::new(),
            price: 1.0,
            stock: 0,
            variants: Vec::new(),
            images: Vec::new(),
            updated_at: 0,
            details: Default::default(),
        };
        let (a, b) = (product(1, "A"), product(2, "B"));
        let skus = HashMap::from([("B".to_string(), "9".to_string())]);
        assert_eq!(
            in_listing(&skus, &[&a, &b]),
            HashMap::from([(2, "9".to_string())])
        );
    }
}
