//! The rules of the API's commands, as plain functions over domain values: what a new campaign
//! needs, how an action's choice of products and connections is read, the bounds of a chunk,
//! which connections products may be added on, and what a retry of errored products runs. The
//! API parses requests into these inputs and renders what they answer; it decides nothing.

use super::{Action, Campaign, CampaignProduct, CampaignStatus, Id};

/// Why a command is refused; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The input is wrong (422 `validation_failed`).
    Invalid(String),
    /// The campaign's state does not allow it (409 `invalid_state`).
    InvalidState(String),
    /// Nothing matches (409 `nothing_to_do`).
    NothingToDo(String),
    /// A marketplace it names is not one of the campaign's (409 `not_in_campaign`).
    NotInCampaign(String),
}

fn invalid(message: impl Into<String>) -> Refusal {
    Refusal::Invalid(message.into())
}

/// A new campaign's name (trimmed, not empty) and its connections (each once, at least one).
pub fn new_campaign(name: &str, marketplace_ids: Vec<Id>) -> Result<(String, Vec<Id>), Refusal> {
    let name = name.trim().to_string();
    if name.is_empty() {
        return Err(invalid("name must not be empty"));
    }
    if name.chars().count() > 255 || name.chars().any(char::is_control) {
        return Err(invalid(
            "name must be at most 255 characters, without control characters",
        ));
    }
    let mut seen = std::collections::HashSet::new();
    let ids: Vec<Id> = marketplace_ids
        .into_iter()
        .filter(|id| seen.insert(*id))
        .collect();
    if ids.is_empty() {
        return Err(invalid(
            "marketplace_ids must name at least one marketplace",
        ));
    }
    Ok((name, ids))
}

/// What an action is limited to: these products (sorted, each once) and these connections, or
/// all of the campaign's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionScope {
    pub product_ids: Option<Vec<Id>>,
    pub connection_ids: Option<Vec<Id>>,
}

/// The products and connections an action is limited to, if any; an empty list is refused
/// rather than read as "all".
pub fn action_scope(
    product_ids: Option<Vec<Id>>,
    marketplace_ids: Option<Vec<Id>>,
) -> Result<ActionScope, Refusal> {
    let products = match product_ids {
        Some(mut ids) if !ids.is_empty() => {
            ids.sort_unstable();
            ids.dedup();
            Some(ids)
        }
        Some(_) => return Err(invalid("product_ids must not be empty")),
        None => None,
    };
    if marketplace_ids.as_ref().is_some_and(Vec::is_empty) {
        return Err(invalid("marketplace_ids must not be empty"));
    }
    Ok(ActionScope {
        product_ids: products,
        connection_ids: marketplace_ids,
    })
}

/// The chunk size asked for, or the default, within 1 and `max`.
pub fn chunk_size(asked: Option<u32>, default: u32, max: u32) -> Result<usize, Refusal> {
    let n = asked.unwrap_or(default);
    if n == 0 || n > max {
        return Err(invalid(format!("chunk_size must be between 1 and {max}")));
    }
    Ok(n as usize)
}

/// The connections products are added on: the given ones, each of the campaign, or all of the
/// campaign's. A finished campaign takes no products.
pub fn adding_products(
    campaign: &Campaign,
    marketplace_ids: Option<Vec<Id>>,
) -> Result<Vec<Id>, Refusal> {
    if campaign.status == CampaignStatus::Finished {
        return Err(Refusal::InvalidState(
            "cannot add products to a finished campaign".to_string(),
        ));
    }
    match marketplace_ids {
        Some(ids) => {
            campaign
                .marketplaces_of(&ids)
                .map_err(Refusal::NotInCampaign)?;
            Ok(ids)
        }
        None => Ok(campaign.marketplace_ids.clone()),
    }
}

/// What a retry runs: the action that failed the chosen products, and those products.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPlan {
    pub action: Action,
    pub product_ids: Vec<Id>,
}

/// Chooses among a campaign's errored products (each with the action of the run that failed
/// it) those a retry takes: the given products and connections, or all. They must all have
/// failed in one known action.
pub fn retry_plan(
    errored: &[(CampaignProduct, Option<Action>)],
    product_ids: Option<&[Id]>,
    marketplace_ids: Option<&[Id]>,
) -> Result<RetryPlan, Refusal> {
    let chosen: Vec<&(CampaignProduct, Option<Action>)> = errored
        .iter()
        .filter(|(cp, _)| {
            product_ids.is_none_or(|ids| ids.contains(&cp.product_id))
                && marketplace_ids.is_none_or(|ids| ids.contains(&cp.connection_id))
        })
        .collect();
    let Some((_, first)) = chosen.first() else {
        return Err(Refusal::NothingToDo(
            "no errored product of this campaign matches; nothing to retry".to_string(),
        ));
    };
    let mut by_action: std::collections::BTreeMap<&str, usize> = Default::default();
    for (_, action) in &chosen {
        *by_action
            .entry(action.map_or("unknown", Action::as_str))
            .or_default() += 1;
    }
    let action = match (by_action.len(), first) {
        (1, Some(action)) => *action,
        _ => {
            let counts: Vec<String> = by_action.iter().map(|(a, n)| format!("{a}: {n}")).collect();
            return Err(invalid(format!(
                "the errored products failed in different actions ({}); retry them separately with product_ids",
                counts.join(", ")
            )));
        }
    };
    let mut ids: Vec<Id> = chosen.iter().map(|(cp, _)| cp.product_id).collect();
    ids.sort_unstable();
    ids.dedup();
    Ok(RetryPlan {
        action,
        product_ids: ids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MarketplaceInfo, ProductStatus};

    fn errored(product_id: Id, connection_id: Id) -> CampaignProduct {
        CampaignProduct {
            campaign_id: 1,
            connection_id,
            product_id,
            status: ProductStatus::Errored,
            marketplace_info: MarketplaceInfo::default(),
            error_message: Some("refused".into()),
            published_at: None,
            updated_at: 0,
            run: None,
            sale_price: None,
            presale_price: None,
            drift: None,
        }
    }

    fn campaign(status: CampaignStatus) -> Campaign {
        Campaign {
            id: 1,
            tenant_id: 1,
            name: "c".into(),
            status,
            error: false,
            marketplace_ids: vec![2, 3],
            status_before_run: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    /// (name, marketplaces) → (name, marketplaces), or the refusal's message.
    type CampaignCase = (
        &'static str,
        Vec<Id>,
        Result<(&'static str, Vec<Id>), &'static str>,
    );

    /// (products, connections) → (action, products), or "invalid" / "nothing".
    type RetryCase = (
        Option<&'static [Id]>,
        Option<&'static [Id]>,
        Result<(Action, Vec<Id>), &'static str>,
    );

    #[test]
    fn a_new_campaign_needs_a_name_and_a_marketplace_each_once() {
        let cases: &[CampaignCase] = &[
            (" Spring ", vec![2, 2, 3], Ok(("Spring", vec![2, 3]))),
            ("  ", vec![2], Err("name must not be empty")),
            (
                "x",
                vec![],
                Err("marketplace_ids must name at least one marketplace"),
            ),
        ];
        for (name, ids, expect) in cases {
            let got = new_campaign(name, ids.clone());
            let expect = expect
                .clone()
                .map(|(n, i)| (n.to_string(), i))
                .map_err(|m| Refusal::Invalid(m.to_string()));
            assert_eq!(got, expect, "{name:?} {ids:?}");
        }
    }

    #[test]
    fn an_action_scope_is_sorted_and_never_empty() {
        let scope = |p: Option<Vec<Id>>, c: Option<Vec<Id>>| ActionScope {
            product_ids: p,
            connection_ids: c,
        };
        assert_eq!(
            action_scope(Some(vec![3, 1, 3]), None),
            Ok(scope(Some(vec![1, 3]), None))
        );
        assert_eq!(
            action_scope(None, Some(vec![2])),
            Ok(scope(None, Some(vec![2])))
        );
        assert!(matches!(
            action_scope(Some(vec![]), None),
            Err(Refusal::Invalid(_))
        ));
        assert!(matches!(
            action_scope(None, Some(vec![])),
            Err(Refusal::Invalid(_))
        ));
    }

    #[test]
    fn a_chunk_is_between_one_and_the_maximum() {
        let cases = [
            (None, Ok(50)),
            (Some(1), Ok(1)),
            (Some(1000), Ok(1000)),
            (Some(0), Err(())),
            (Some(1001), Err(())),
        ];
        for (asked, expect) in cases {
            assert_eq!(
                chunk_size(asked, 50, 1000).map_err(|_| ()),
                expect,
                "{asked:?}"
            );
        }
    }

    #[test]
    fn products_join_only_the_campaigns_marketplaces_and_never_a_finished_campaign() {
        let open = campaign(CampaignStatus::Published);
        assert_eq!(adding_products(&open, None), Ok(vec![2, 3]));
        assert_eq!(adding_products(&open, Some(vec![3])), Ok(vec![3]));
        assert_eq!(
            adding_products(&open, Some(vec![9])),
            Err(Refusal::NotInCampaign(
                "marketplace 9 is not a marketplace of this campaign".to_string()
            ))
        );
        assert!(matches!(
            adding_products(&campaign(CampaignStatus::Finished), None),
            Err(Refusal::InvalidState(_))
        ));
    }

    #[test]
    fn a_retry_takes_the_chosen_errored_products_of_one_action() {
        let rows = vec![
            (errored(1, 2), Some(Action::Publish)),
            (errored(2, 2), Some(Action::Publish)),
            (errored(2, 3), Some(Action::Publish)),
            (errored(5, 3), Some(Action::Pause)),
            (errored(6, 3), None),
        ];
        let cases: &[RetryCase] = &[
            (Some(&[1, 2]), None, Ok((Action::Publish, vec![1, 2]))),
            (None, Some(&[2]), Ok((Action::Publish, vec![1, 2]))),
            (Some(&[5]), None, Ok((Action::Pause, vec![5]))),
            (Some(&[2, 5]), None, Err("invalid")),
            (Some(&[6]), None, Err("invalid")),
            (Some(&[9]), None, Err("nothing")),
        ];
        for (products, connections, expect) in cases {
            let got = retry_plan(&rows, *products, *connections);
            match (got, expect) {
                (Ok(plan), Ok((action, ids))) => {
                    assert_eq!((plan.action, plan.product_ids), (*action, ids.clone()));
                }
                (Err(Refusal::Invalid(_)), Err("invalid")) => {}
                (Err(Refusal::NothingToDo(_)), Err("nothing")) => {}
                (got, expect) => {
                    panic!("{products:?} {connections:?}: {got:?}, expected {expect:?}")
                }
            }
        }
    }
}
