//! Drift: how a product on a marketplace differs from what campaignd left it as. A drift run
//! reads each product's remote state by its stored ids; each adapter says what the marketplace
//! should show (`Shown` from the product, the prices in force and the product's status) and
//! what it does show, and `compare` lists the differences, which the campaign product keeps
//! (`DriftCheck`) until the next check.

use serde::{Deserialize, Serialize};

use super::{Action, Id, MarketplaceInfo, Millis, Offer, Product, ProductStatus};

/// The last drift check of one product on one marketplace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftCheck {
    pub tracker_id: Id,
    pub checked_at: Millis,
    pub differences: Vec<Difference>,
    /// Why the product could not be read; the check says nothing of it then.
    pub error: Option<String>,
    /// What a reconcile since the check brought back to campaignd's state (the differences
    /// move here once repaired).
    pub repaired: Vec<Difference>,
}

impl DriftCheck {
    /// Whether the check found the product other than campaignd left it, or could not read it.
    pub fn differs(&self) -> bool {
        self.error.is_some() || !self.differences.is_empty()
    }
}

/// The counts of one drift check over a campaign's products.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    pub checked: u64,
    /// Products that differ or could not be read, and that no reconcile repaired since.
    pub differing: u64,
    pub unreadable: u64,
    pub repaired: u64,
    /// Differences by kind.
    pub counts: std::collections::BTreeMap<&'static str, u64>,
}

impl Tally {
    /// Counts a product's check; true when the report lists it (it differs, or was repaired).
    pub fn add(&mut self, check: &DriftCheck) -> bool {
        self.checked += 1;
        self.unreadable += u64::from(check.error.is_some());
        self.repaired += u64::from(!check.repaired.is_empty());
        for d in &check.differences {
            *self.counts.entry(d.kind()).or_default() += 1;
        }
        self.differing += u64::from(check.differs());
        check.differs() || !check.repaired.is_empty()
    }

    /// What a notification of the check says after the campaign's name.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} product{} checked, {} differ{}",
            self.checked,
            if self.checked == 1 { "" } else { "s" },
            self.differing,
            if self.differing == 1 { "s" } else { "" },
        );
        if !self.counts.is_empty() {
            let kinds: Vec<_> = self
                .counts
                .iter()
                .map(|(k, n)| format!("{n} {k}"))
                .collect();
            s.push_str(&format!(" ({})", kinds.join(", ")));
        }
        if self.unreadable > 0 {
            s.push_str(&format!(", {} could not be read", self.unreadable));
        }
        s
    }
}

/// One way a product on a marketplace differs from campaignd's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Difference {
    /// Not on the marketplace under its stored id, and no product holds its SKU there.
    Missing,
    /// Not under its stored id, but another remote product holds its SKU.
    Adopted {
        stored: String,
        found: String,
    },
    /// The marketplace's own words for the status.
    Status {
        expected: String,
        found: String,
    },
    /// A price as shown (the product's, or a variant's by SKU).
    Price {
        sku: Option<String>,
        expected: f64,
        found: f64,
    },
    Stock {
        sku: Option<String>,
        expected: i64,
        found: i64,
    },
    /// Variants by SKU: campaignd's that the marketplace lacks, and the marketplace's that
    /// campaignd does not know.
    Variants {
        missing: Vec<String>,
        unknown: Vec<String>,
    },
    Images {
        expected: u32,
        found: u32,
    },
    /// Other remote products holding the product's SKU beside the one campaignd tracks:
    /// looked for when creates of the product went unanswered (`unanswered_creates`), whose
    /// copies a reconcile removes; more copies than unanswered creates are the shop's doing,
    /// reported and left alone.
    Copies {
        sku: String,
        ids: Vec<String>,
    },
}

impl Difference {
    /// Whether a reconcile removes these copies, for a product with `unanswered_creates`:
    /// no more of them than those creates could have made (see `removable`).
    pub fn removes_with(&self, unanswered_creates: u32) -> bool {
        matches!(self, Difference::Copies { ids, .. } if ids.len() <= unanswered_creates as usize)
    }

    /// The stable name of the kind of difference.
    pub fn kind(&self) -> &'static str {
        match self {
            Difference::Missing => "missing",
            Difference::Adopted { .. } => "adopted",
            Difference::Status { .. } => "status",
            Difference::Price { .. } => "price",
            Difference::Stock { .. } => "stock",
            Difference::Variants { .. } => "variants",
            Difference::Images { .. } => "images",
            Difference::Copies { .. } => "copies",
        }
    }
}

/// A variant as shown: its SKU, price and stock (`None` where the marketplace does not say).
#[derive(Debug, Clone, PartialEq)]
pub struct ShownVariant {
    pub sku: String,
    pub price: Option<f64>,
    pub stock: Option<i64>,
}

/// What a product shows on a marketplace, or should: each field `None` where the marketplace
/// does not say (or campaignd does not send it), which compares with anything.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Shown {
    pub status: Option<String>,
    pub price: Option<f64>,
    pub stock: Option<i64>,
    pub variants: Option<Vec<ShownVariant>>,
    pub images: Option<u32>,
}

/// The variants campaignd sent of a product, with the prices in force and their stock.
pub fn sent_variants(p: &Product, offer: &Offer) -> Vec<ShownVariant> {
    p.variants
        .iter()
        .map(|v| ShownVariant {
            sku: v.sku.clone(),
            price: Some(offer.variant(v).0),
            stock: Some(v.stock),
        })
        .collect()
}

fn differ(a: f64, b: f64) -> bool {
    (a - b).abs() >= 0.005
}

/// The differences between what a product should show and what it shows.
pub fn compare(expected: &Shown, found: &Shown) -> Vec<Difference> {
    let mut out = Vec::new();
    if let (Some(e), Some(f)) = (&expected.status, &found.status) {
        if e != f {
            out.push(Difference::Status {
                expected: e.clone(),
                found: f.clone(),
            });
        }
    }
    if let (Some(e), Some(f)) = (expected.price, found.price) {
        if differ(e, f) {
            out.push(Difference::Price {
                sku: None,
                expected: e,
                found: f,
            });
        }
    }
    if let (Some(e), Some(f)) = (expected.stock, found.stock) {
        if e != f {
            out.push(Difference::Stock {
                sku: None,
                expected: e,
                found: f,
            });
        }
    }
    if let (Some(ours), Some(theirs)) = (&expected.variants, &found.variants) {
        let missing: Vec<String> = ours
            .iter()
            .filter(|o| !theirs.iter().any(|t| t.sku == o.sku))
            .map(|o| o.sku.clone())
            .collect();
        let unknown: Vec<String> = theirs
            .iter()
            .filter(|t| !ours.iter().any(|o| o.sku == t.sku))
            .map(|t| t.sku.clone())
            .collect();
        if !missing.is_empty() || !unknown.is_empty() {
            out.push(Difference::Variants { missing, unknown });
        }
        for o in ours {
            let Some(t) = theirs.iter().find(|t| t.sku == o.sku) else {
                continue;
            };
            if let (Some(e), Some(f)) = (o.price, t.price) {
                if differ(e, f) {
                    out.push(Difference::Price {
                        sku: Some(o.sku.clone()),
                        expected: e,
                        found: f,
                    });
                }
            }
            if let (Some(e), Some(f)) = (o.stock, t.stock) {
                if e != f {
                    out.push(Difference::Stock {
                        sku: Some(o.sku.clone()),
                        expected: e,
                        found: f,
                    });
                }
            }
        }
    }
    if let (Some(e), Some(f)) = (expected.images, found.images) {
        if e != f {
            out.push(Difference::Images {
                expected: e,
                found: f,
            });
        }
    }
    out
}

/// A product not found under its stored id (`stored`; none stored, `None`): `Adopted` when the
/// SKU look-up found another remote product holding it, else `Missing`.
pub fn absent(stored: Option<&str>, found_by_sku: Option<String>) -> Vec<Difference> {
    match found_by_sku {
        Some(found) if Some(found.as_str()) != stored => vec![Difference::Adopted {
            stored: stored.unwrap_or_default().to_string(),
            found,
        }],
        _ => vec![Difference::Missing],
    }
}

/// The copies a drift check found holding the product's SKU (`held` by the other products
/// the marketplace lists under it, beside `tracked`, the one campaignd knows), when the
/// product had creates go unanswered; none otherwise, and none for a product whose SKU the
/// marketplace lists once.
pub fn copies(sku: &str, tracked: Option<&str>, held: Vec<String>) -> Vec<Difference> {
    let ids: Vec<String> = held
        .into_iter()
        .filter(|id| Some(id.as_str()) != tracked)
        .collect();
    match ids.is_empty() {
        true => Vec::new(),
        false => vec![Difference::Copies {
            sku: sku.to_string(),
            ids,
        }],
    }
}

/// The copies a reconcile removes: those of a `Copies` difference, when no more than the
/// product's unanswered creates could have made (any more, and some are the shop's, which
/// campaignd cannot tell apart: all are left, and reported).
pub fn removable(differences: &[Difference], unanswered_creates: u32) -> Vec<(String, String)> {
    differences
        .iter()
        .filter(|d| d.removes_with(unanswered_creates))
        .filter_map(|d| match d {
            Difference::Copies { sku, ids } => Some(
                ids.iter()
                    .map(|id| (sku.clone(), id.clone()))
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        })
        .flatten()
        .collect()
}

/// What a delete of a copy of `p` (`id`, holding `sku`) is given as the product's state: the
/// copy's id, also as the variant's when the SKU is a variant's (a User Products item).
pub fn copy_info(p: &Product, sku: &str, id: &str) -> MarketplaceInfo {
    let variant = p.variants.iter().any(|v| v.sku == sku);
    MarketplaceInfo {
        product_id: Some(id.to_string()),
        variant_ids: match variant {
            true => vec![(sku.to_string(), id.to_string())],
            false => Vec::new(),
        },
        ..MarketplaceInfo::default()
    }
}

/// The ordinary phase calls that bring a product back to campaignd's state (`status`) after
/// a drift check found `differences`, with `info` made ready for them: a product missing
/// remotely is forgotten and marked as a create of unknown outcome, so it is looked up by SKU
/// before it is created again; one adopted under another id takes that id and is read again.
/// Data that differs is sent whole (a republish), then the status put back where it differs
/// or the republish changed it. A finished product only gets its status back.
pub fn repairs(
    status: ProductStatus,
    differences: &[Difference],
    info: &mut MarketplaceInfo,
) -> Vec<Action> {
    let status_call = match status {
        ProductStatus::Paused => Some(Action::Pause),
        ProductStatus::Finished => Some(Action::Finish),
        ProductStatus::Published => Some(Action::Publish),
        ProductStatus::Pending | ProductStatus::Errored => None,
    };
    let mut calls = Vec::new();
    let gone = differences.iter().find_map(|d| match d {
        Difference::Missing => Some(None),
        Difference::Adopted { found, .. } => Some(Some(found.clone())),
        _ => None,
    });
    let data = differences.iter().any(|d| {
        matches!(
            d,
            Difference::Price { .. }
                | Difference::Stock { .. }
                | Difference::Variants { .. }
                | Difference::Images { .. }
        )
    });
    let status_differs = differences
        .iter()
        .any(|d| matches!(d, Difference::Status { .. }));
    if let Some(found) = gone {
        *info = MarketplaceInfo {
            product_id: found,
            ..MarketplaceInfo::default()
        };
        info.create_outcome_unknown();
        calls.push(Action::Republish);
        calls.extend(status_call.filter(|a| *a != Action::Publish));
    } else if data && status != ProductStatus::Finished {
        calls.push(Action::Republish);
        calls.extend(status_call.filter(|a| *a != Action::Publish));
    } else if status_differs {
        calls.extend(status_call);
    }
    calls
}

#[cfg(test)]
mod tests {
    use super::*;

    fn variant(sku: &str, price: f64, stock: i64) -> ShownVariant {
        ShownVariant {
            sku: sku.into(),
            price: Some(price),
            stock: Some(stock),
        }
    }

    #[test]
    fn a_tally_counts_what_differs_and_says_it_in_a_line() {
        let check = |differences, error: Option<&str>, repaired| DriftCheck {
            tracker_id: 1,
            checked_at: 0,
            differences,
            error: error.map(str::to_string),
            repaired,
        };
        let mut tally = Tally::default();
        assert!(!tally.add(&check(vec![], None, vec![])));
        assert_eq!(tally.summary(), "1 product checked, 0 differ");
        assert!(tally.add(&check(vec![Difference::Missing], None, vec![])));
        assert!(tally.add(&check(vec![], Some("timed out"), vec![])));
        assert!(tally.add(&check(vec![], None, vec![Difference::Missing])));
        assert_eq!(
            (
                tally.checked,
                tally.differing,
                tally.unreadable,
                tally.repaired
            ),
            (4, 2, 1, 1)
        );
        assert_eq!(
            tally.summary(),
            "4 products checked, 2 differ (1 missing), 1 could not be read"
        );
    }

    #[test]
    fn each_difference_becomes_the_calls_that_undo_it() {
        let status = Difference::Status {
            expected: "active".into(),
            found: "paused".into(),
        };
        let price = Difference::Price {
            sku: None,
            expected: 1.0,
            found: 2.0,
        };
        let listed = || MarketplaceInfo {
            product_id: Some("7".into()),
            ..MarketplaceInfo::default()
        };
        let cases: Vec<(ProductStatus, Vec<Difference>, Vec<Action>)> = vec![
            (
                ProductStatus::Published,
                vec![status.clone()],
                vec![Action::Publish],
            ),
            (
                ProductStatus::Paused,
                vec![status.clone()],
                vec![Action::Pause],
            ),
            (
                ProductStatus::Published,
                vec![price.clone()],
                vec![Action::Republish],
            ),
            (
                ProductStatus::Paused,
                vec![price.clone()],
                vec![Action::Republish, Action::Pause],
            ),
            (ProductStatus::Finished, vec![price.clone()], vec![]),
            (
                ProductStatus::Finished,
                vec![status.clone(), price],
                vec![Action::Finish],
            ),
            (ProductStatus::Published, vec![], vec![]),
        ];
        for (s, differences, calls) in cases {
            let mut info = listed();
            assert_eq!(
                repairs(s, &differences, &mut info),
                calls,
                "{s:?} {differences:?}"
            );
            assert_eq!(info, listed(), "the stored ids stay");
        }
        let mut info = listed();
        assert_eq!(
            repairs(ProductStatus::Published, &[Difference::Missing], &mut info),
            vec![Action::Republish]
        );
        assert_eq!(
            (info.product_id.as_deref(), info.create_sent),
            (None, true),
            "forgotten, and looked up by SKU before it is created again"
        );
        let mut info = listed();
        let adopted = Difference::Adopted {
            stored: "7".into(),
            found: "9".into(),
        };
        assert_eq!(
            repairs(ProductStatus::Paused, &[adopted], &mut info),
            vec![Action::Republish, Action::Pause]
        );
        assert_eq!(
            (info.product_id.as_deref(), info.create_sent),
            (Some("9"), true)
        );
    }

    #[test]
    fn only_what_both_sides_say_is_compared_and_each_difference_is_named() {
        let ours = Shown {
            status: Some("active".into()),
            price: Some(10.0),
            stock: Some(3),
            variants: Some(vec![variant("A-S", 10.0, 1), variant("A-M", 11.0, 2)]),
            images: Some(2),
        };
        assert!(compare(&ours, &ours).is_empty());
        assert!(
            compare(&ours, &Shown::default()).is_empty(),
            "a marketplace that says nothing differs in nothing"
        );
        let theirs = Shown {
            status: Some("paused".into()),
            price: Some(9.0),
            stock: Some(3),
            variants: Some(vec![variant("A-S", 10.0, 5), variant("A-XL", 12.0, 1)]),
            images: Some(1),
        };
        let kinds: Vec<&str> = compare(&ours, &theirs)
            .iter()
            .map(Difference::kind)
            .collect();
        assert_eq!(kinds, ["status", "price", "variants", "stock", "images"]);
        assert!(compare(&ours, &theirs).contains(&Difference::Variants {
            missing: vec!["A-M".into()],
            unknown: vec!["A-XL".into()],
        }));
        assert!(compare(&ours, &theirs).contains(&Difference::Stock {
            sku: Some("A-S".into()),
            expected: 1,
            found: 5,
        }));
        let cent = Shown {
            price: Some(10.004),
            ..Shown::default()
        };
        assert!(
            compare(&ours, &cent).is_empty(),
            "less than a cent is the same price"
        );
    }

    #[test]
    fn copies_are_the_other_holders_and_only_as_many_as_creates_went_unanswered_are_removed() {
        let held = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            copies("A", Some("1"), held(&["1"])),
            Vec::new(),
            "held once"
        );
        let two = copies("A", Some("1"), held(&["1", "2", "3"]));
        assert_eq!(
            two,
            vec![Difference::Copies {
                sku: "A".into(),
                ids: held(&["2", "3"])
            }]
        );
        assert_eq!(two[0].kind(), "copies");
        assert!(two[0].removes_with(2) && !two[0].removes_with(1));
        assert!(
            !Difference::Missing.removes_with(9),
            "only copies are removed"
        );
        for (unanswered, removed) in [(0, 0), (1, 0), (2, 2), (5, 2)] {
            assert_eq!(
                removable(&two, unanswered).len(),
                removed,
                "{unanswered} unanswered creates"
            );
        }
        assert_eq!(
            removable(&two, 2),
            vec![("A".to_string(), "2".to_string()), ("A".into(), "3".into())]
        );
    }

    #[test]
    fn a_copy_is_deleted_as_a_product_or_as_a_variants_item() {
        let p = Product {
            id: 1,
            tenant_id: 1,
            sku: "P".into(),
            name: "Shirt".into(),
            description: String::new(),
            price: 2.0,
            stock: 1,
            variants: vec![crate::Variant {
                sku: "P-M".into(),
                price: 1.0,
                stock: 1,
                options: Default::default(),
                barcode: None,
            }],
            images: Vec::new(),
            updated_at: 0,
            details: Default::default(),
        };
        let whole = copy_info(&p, "P", "9");
        assert_eq!(
            (whole.product_id.as_deref(), whole.variant_ids.len()),
            (Some("9"), 0)
        );
        let item = copy_info(&p, "P-M", "9");
        assert_eq!(item.variant_ids, vec![("P-M".to_string(), "9".to_string())]);
    }
}
