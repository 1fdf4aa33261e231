//! The egress policy: where the service may send requests on a tenant's behalf (webhooks, and
//! marketplace calls to a tenant-given base URL), checked in one place. Only http(s), no
//! userinfo, and no loopback, private, link-local, unique-local, multicast, unspecified or
//! otherwise special address unless the operator allows private addresses for that use. A URL
//! is checked when it is stored, and again at every send after its name is resolved; the HTTP
//! clients' resolver drops refused addresses as well (a name that changes its answer between
//! the check and the connect), and no client follows redirects.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use reqwest::Url;

use serde::Deserialize;

/// Where tenant-given URLs may lead (see `egress`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressConfig {
    /// Webhooks may go to loopback and private addresses.
    pub webhooks_allow_private: bool,
    /// Marketplace calls may go to loopback and private addresses (a WooCommerce site on the
    /// shop's own network).
    pub marketplaces_allow_private: bool,
    /// Jumpseller, MercadoLibre and Shopify connections may name other hosts than theirs.
    pub marketplaces_allow_custom_hosts: bool,
}

impl EgressConfig {
    /// Everything allowed: simulators on loopback (the demo, tests, benchmarks).
    pub fn loopback_trials() -> EgressConfig {
        EgressConfig {
            webhooks_allow_private: true,
            marketplaces_allow_private: true,
            marketplaces_allow_custom_hosts: true,
        }
    }
}

/// What a URL is used for: each has its own allowance of private addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Webhooks,
    Marketplaces,
}

/// The policy for one purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub purpose: Purpose,
    pub allow_private: bool,
}

impl Policy {
    pub fn of(config: &EgressConfig, purpose: Purpose) -> Policy {
        Policy {
            purpose,
            allow_private: match purpose {
                Purpose::Webhooks => config.webhooks_allow_private,
                Purpose::Marketplaces => config.marketplaces_allow_private,
            },
        }
    }

    fn setting(self) -> &'static str {
        match self.purpose {
            Purpose::Webhooks => "egress.webhooks_allow_private",
            Purpose::Marketplaces => "egress.marketplaces_allow_private",
        }
    }
}

/// Why an address is not one the service sends to, if it is not.
pub fn special(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return special_v4(v4);
            }
            let first = v6.segments()[0];
            if v6.is_loopback() {
                Some("a loopback address")
            } else if v6.is_unspecified() {
                Some("the unspecified address")
            } else if v6.is_multicast() {
                Some("a multicast address")
            } else if first & 0xfe00 == 0xfc00 {
                Some("a unique-local address")
            } else if first & 0xffc0 == 0xfe80 {
                Some("a link-local address")
            } else if first == 0x2001 && v6.segments()[1] == 0x0db8 {
                Some("a documentation address")
            } else if v6.segments()[..6] == [0, 0, 0, 0, 0, 0] {
                // IPv4-compatible (deprecated) forms of any v4 address.
                Some("an IPv4-compatible address")
            } else {
                None
            }
        }
    }
}

fn special_v4(v4: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = v4.octets();
    if v4.is_loopback() {
        Some("a loopback address")
    } else if v4.is_unspecified() || a == 0 {
        Some("the unspecified address")
    } else if v4.is_private() {
        Some("a private address")
    } else if v4.is_link_local() {
        Some("a link-local address (such as a cloud metadata service)")
    } else if v4.is_multicast() || a >= 240 {
        Some("a multicast or reserved address")
    } else if v4.is_broadcast() {
        Some("the broadcast address")
    } else if a == 100 && (64..128).contains(&b) {
        Some("a shared (carrier-grade NAT) address")
    } else if v4.is_documentation() || (a == 198 && (b == 18 || b == 19)) {
        Some("a documentation or benchmarking address")
    } else {
        None
    }
}

/// Checks what can be checked without resolving: the scheme, the absence of userinfo, a host,
/// and the address when the host is one (numeric forms such as `2130706433` are addresses).
pub fn check_url(url: &Url, policy: Policy) -> Result<(), String> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "{} URLs are not allowed, only http and https",
            url.scheme()
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("a URL may not carry a user name or password".to_string());
    }
    let ip = match url.host() {
        None => return Err("the URL has no host".to_string()),
        Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
        Some(url::Host::Domain(_)) => return Ok(()),
    };
    check_ip(ip, policy)
}

fn check_ip(ip: IpAddr, policy: Policy) -> Result<(), String> {
    match special(ip) {
        Some(why) if !policy.allow_private => Err(format!(
            "{ip} is {why}, which the service does not send to (the operator may allow it with {})",
            policy.setting()
        )),
        _ => Ok(()),
    }
}

/// `check_url`, then the host's name resolved: every address it resolves to must be allowed.
pub async fn check_resolved(url: &Url, policy: Policy) -> Result<(), String> {
    check_url(url, policy)?;
    let Some(url::Host::Domain(name)) = url.host() else {
        return Ok(());
    };
    if policy.allow_private {
        return Ok(());
    }
    let port = url.port_or_known_default().unwrap_or(443);
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name, port))
        .await
        .map_err(|e| format!("{name} could not be resolved: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("{name} resolves to no address"));
    }
    for addr in addrs {
        check_ip(addr.ip(), policy).map_err(|why| format!("{name} resolves to {why}"))?;
    }
    Ok(())
}

/// A resolver for the HTTP clients that keeps only allowed addresses, so a name whose answer
/// changed after `check_resolved` still cannot lead a request to a refused address.
pub struct Resolver {
    pub policy: Policy,
}

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| check_ip(a.ip(), policy).is_ok())
                .collect();
            if addrs.is_empty() {
                return Err(
                    format!("{host} resolves to no address the service may send to").into(),
                );
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: Policy = Policy {
        purpose: Purpose::Webhooks,
        allow_private: false,
    };

    fn refused(url: &str) -> bool {
        check_url(&Url::parse(url).expect("a URL"), STRICT).is_err()
    }

    #[test]
    fn addresses_inside_the_network_are_refused_in_every_spelling() {
        for url in [
            "http://127.0.0.1/",
            "http://127.1.2.3:8080/x",
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0177.0.0.1/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://0.0.0.0/",
            "http://[::]/",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://100.64.0.1/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://224.0.0.1/",
            "http://255.255.255.255/",
            "ftp://example.com/",
            "file:///etc/passwd",
            "http://user:pass@example.com/",
            "http://user@example.com/",
        ] {
            assert!(refused(url), "{url} should be refused");
        }
        for url in [
            "https://example.com/hook",
            "http://93.184.215.14/",
            "https://[2606:4700::1111]/",
        ] {
            assert!(!refused(url), "{url} should pass");
        }
        let open = Policy {
            allow_private: true,
            ..STRICT
        };
        assert!(check_url(&Url::parse("http://127.0.0.1/").unwrap(), open).is_ok());
        assert!(check_url(&Url::parse("http://u:p@127.0.0.1/").unwrap(), open).is_err());
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_loopback_is_refused() {
        let url = Url::parse("http://localhost:9/hook").expect("a URL");
        let why = check_resolved(&url, STRICT).await.expect_err("refused");
        assert!(why.contains("loopback"), "{why}");
    }
}
