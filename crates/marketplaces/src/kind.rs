//! Connection kinds: what one marketplace's connections are made of (its credentials, its
//! settings with their defaults) and how they are checked, each owned by that marketplace's
//! module. The API hands a new connection's maps to `credentials` and `settings` and learns
//! nothing of any marketplace; adding one is a module and a line in `kind`.

use std::collections::BTreeMap;

use domain::{Credentials, RateLimit, System};

/// What a marketplace's connections are made of.
pub trait ConnectionKind: Sync {
    /// The credential keys it uses, every one required.
    fn credential_keys(&self) -> &'static [&'static str];
    /// Its credentials from their values (present and trimmed), in `credential_keys` order; it
    /// may refuse their shape.
    fn credentials(&self, values: Vec<String>) -> Result<Credentials, String>;
    /// The settings it takes besides `request_gap_ms`, which every marketplace takes.
    fn setting_keys(&self) -> &'static [&'static str] {
        &[]
    }
    /// Checks its settings (known keys, not empty) and fills in their defaults.
    fn settings(&self, _given: &mut BTreeMap<String, String>) -> Result<(), String> {
        Ok(())
    }
    /// Whether `url` is the marketplace's official API host, for a connection's base URL; `Err`
    /// says what it must be. A marketplace without one (a WooCommerce site is the shop's own
    /// host) takes any.
    fn official_host(&self, _url: &reqwest::Url) -> Result<(), &'static str> {
        Ok(())
    }
    /// What this marketplace would refuse of `product` in `action`, or show otherwise than the
    /// campaign meant, found before sending (a dry run's problems beyond the common ones);
    /// `sends_data`: the action sends the product's data (publish, republish).
    fn plan_problems(
        &self,
        _action: domain::Action,
        _sends_data: bool,
        _product: &domain::Product,
        _info: &domain::MarketplaceInfo,
    ) -> Vec<super::plan::Problem> {
        Vec::new()
    }
    /// The windows of a connection that names none, with its checked settings: what the
    /// marketplace documents.
    fn default_rate_limit(
        &self,
        system: System,
        _settings: &BTreeMap<String, String>,
    ) -> RateLimit {
        system.default_rate_limit()
    }
}

/// The windows of a new connection that names none.
pub fn default_rate_limit(system: System, settings: &BTreeMap<String, String>) -> RateLimit {
    kind(system).default_rate_limit(system, settings)
}

/// The registry: each marketplace's kind.
pub fn kind(system: System) -> &'static dyn ConnectionKind {
    match system {
        System::Jumpseller => &super::jumpseller::KIND,
        System::Mercadolibre => &super::mercadolibre::KIND,
        System::Shopify => &super::shopify::KIND,
        System::Woocommerce => &super::woocommerce::KIND,
    }
}

/// A new connection's base URL on its marketplace's official API host, unless the operator
/// allows others (`egress.marketplaces_allow_custom_hosts`).
pub fn check_official_host(
    system: System,
    url: &reqwest::Url,
    allow_custom_hosts: bool,
) -> Result<(), String> {
    if allow_custom_hosts {
        return Ok(());
    }
    kind(system).official_host(url).map_err(|expected| {
        format!(
            "a {} base_url must be {expected} (the operator may allow other hosts with \
             egress.marketplaces_allow_custom_hosts)",
            system.as_str()
        )
    })
}

/// Whether `url` is `https` on exactly `host`.
pub fn https_on(url: &reqwest::Url, host: &str) -> bool {
    url.scheme() == "https" && url.host_str().is_some_and(|h| h.eq_ignore_ascii_case(host))
}

/// A new connection's credentials, checked by its marketplace: no key it does not use, every
/// key it uses present. The message names the field.
pub fn credentials(
    system: System,
    given: &BTreeMap<String, String>,
) -> Result<Credentials, String> {
    let kind = kind(system);
    let keys = kind.credential_keys();
    if let Some(k) = given.keys().find(|k| !keys.contains(&k.as_str())) {
        return Err(format!(
            "credentials.{k} is not used by this marketplace (expected {})",
            keys.join(", ")
        ));
    }
    let values = keys
        .iter()
        .map(|key| match given.get(*key) {
            Some(v) if !v.trim().is_empty() => Ok(v.trim().to_string()),
            _ => Err(format!("credentials.{key} is required")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    kind.credentials(values)
}

/// A new connection's settings, checked by its marketplace and completed with their defaults.
/// The message names the marketplace and the setting.
pub fn settings(
    system: System,
    mut given: BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, String> {
    let kind = kind(system);
    let bad = |m: String| format!("{} connection: {m}", system.as_str());
    let allowed = kind.setting_keys();
    for (key, value) in &given {
        if key != "request_gap_ms" && !allowed.contains(&key.as_str()) {
            let expected = if allowed.is_empty() {
                "only request_gap_ms".to_string()
            } else {
                format!("request_gap_ms, {}", allowed.join(", "))
            };
            return Err(bad(format!(
                "settings.{key} is not a setting of {} connections (they take {expected})",
                system.as_str()
            )));
        }
        if value.trim() != value || value.is_empty() {
            return Err(bad(format!(
                "settings.{key} must not be empty or padded with spaces"
            )));
        }
    }
    if let Some(gap) = given.get("request_gap_ms") {
        if !gap.parse::<u64>().is_ok_and(|ms| ms <= 60_000) {
            return Err(bad(
                "settings.request_gap_ms must be a whole number of milliseconds up to 60000"
                    .to_string(),
            ));
        }
    }
    kind.settings(&mut given).map_err(bad)?;
    Ok(given)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A marketplace with an official API host keeps its connections to it (over https, the
    /// host itself and not a look-alike), unless the operator allows other hosts.
    #[test]
    fn marketplaces_with_an_official_host_keep_to_it() {
        let check = |system, url: &str, allow_custom| {
            let url = reqwest::Url::parse(url).expect("a URL");
            check_official_host(system, &url, allow_custom).is_ok()
        };
        let cases = [
            (System::Jumpseller, "https://api.jumpseller.com/v1", true),
            (System::Jumpseller, "https://API.jumpseller.com/v1", true),
            (System::Jumpseller, "http://api.jumpseller.com/v1", false),
            (
                System::Jumpseller,
                "https://api.jumpseller.com.evil.example/v1",
                false,
            ),
            (System::Mercadolibre, "https://api.mercadolibre.com", true),
            (System::Mercadolibre, "https://api.mercadolibre.co", false),
            (System::Shopify, "https://my-shop.myshopify.com", true),
            (System::Shopify, "https://a.b.myshopify.com", false),
            (System::Shopify, "https://myshopify.com", false),
            (
                System::Woocommerce,
                "https://shop.example/wp-json/wc/v3",
                true,
            ),
        ];
        for (system, url, expected) in cases {
            assert_eq!(check(system, url, false), expected, "{url}");
        }
        assert!(check(System::Jumpseller, "http://127.0.0.1:9/v1", true));
        let why = check_official_host(
            System::Shopify,
            &reqwest::Url::parse("https://evil.example").expect("a URL"),
            false,
        )
        .expect_err("refused");
        assert!(why.contains("https://SHOP.myshopify.com"), "{why}");
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// (marketplace, credentials given) → accepted, or the message.
    type CredentialCase = (
        System,
        &'static [(&'static str, &'static str)],
        Result<(), &'static str>,
    );

    #[test]
    fn each_marketplace_checks_its_own_credentials() {
        let cases: &[CredentialCase] = &[
            (
                System::Jumpseller,
                &[("login", "l"), ("authtoken", " t ")],
                Ok(()),
            ),
            (
                System::Jumpseller,
                &[("login", "l")],
                Err("credentials.authtoken is required"),
            ),
            (
                System::Shopify,
                &[("access_token", "x"), ("login", "l")],
                Err("credentials.login is not used by this marketplace (expected access_token)"),
            ),
            (
                System::Woocommerce,
                &[("consumer_key", "key"), ("consumer_secret", "cs_1")],
                Err("WooCommerce keys start with ck_ (consumer_key) and cs_ (consumer_secret)"),
            ),
        ];
        for (system, given, expect) in cases {
            let got = credentials(*system, &map(given)).map(|_| ());
            assert_eq!(got, expect.map_err(str::to_string), "{system:?} {given:?}");
        }
        assert_eq!(
            credentials(
                System::Jumpseller,
                &map(&[("login", "l"), ("authtoken", " t ")])
            ),
            Ok(Credentials::Jumpseller {
                login: "l".into(),
                authtoken: "t".into()
            })
        );
    }

    #[test]
    fn each_marketplace_checks_its_own_settings_and_fills_their_defaults() {
        let shop = settings(System::Shopify, map(&[])).expect("defaults");
        let today = chrono::Utc::now().date_naive();
        assert_eq!(
            shop.get("api_version"),
            Some(&crate::shopify::current_api_version(today))
        );
        let old = settings(System::Shopify, map(&[("api_version", "2025-01")]));
        assert!(
            old.as_ref().is_err_and(|e| e.contains("out of support")),
            "{old:?}"
        );
        let ml = settings(
            System::Mercadolibre,
            map(&[
                ("site_id", "MLC"),
                ("user_id", "7"),
                ("category_id", "MLC12"),
            ]),
        )
        .expect("a valid seller");
        assert_eq!(ml.get("currency_id").map(String::as_str), Some("CLP"));
        assert_eq!(
            ml.get("listing_type_id").map(String::as_str),
            Some("gold_special")
        );
        let refused = [
            (System::Jumpseller, map(&[("batch_size", "5")])),
            (System::Woocommerce, map(&[("batch_size", "101")])),
            (System::Shopify, map(&[("api_version", "2025-02")])),
            (System::Mercadolibre, map(&[("site_id", "XXX")])),
            (System::Jumpseller, map(&[("request_gap_ms", "soon")])),
        ];
        for (system, given) in refused {
            let got = settings(system, given.clone());
            assert!(
                got.as_ref().is_err_and(|m| m.starts_with(system.as_str())),
                "{system:?} {given:?}: {got:?}"
            );
        }
    }
}
