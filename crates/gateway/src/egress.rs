//! Where the gateway may connect (DESIGN.md §9): never to link-local or cloud-metadata addresses,
//! nor to unspecified, multicast or broadcast ones; to loopback and private networks only when the
//! deployment allows it (self-hosted GenieACS usually lives on a private network).
//!
//! The check runs on the address actually dialled: IP literals before the request is sent (the
//! URL parser has already turned forms like `http://2852039166/` into `169.254.169.254`), and
//! names inside the resolver the HTTP client uses, so a name that resolves (or later re-resolves,
//! DNS rebinding) to a refused address is never connected to.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// The egress rule of one gateway replica.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Egress {
    pub(crate) allow_private: bool,
}

impl Egress {
    /// `Err(why)` when the gateway must not connect to `ip`.
    pub(crate) fn check(self, ip: IpAddr) -> Result<(), &'static str> {
        let ip = match ip {
            // An IPv4-mapped IPv6 address reaches the IPv4 host it maps.
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        match ip {
            IpAddr::V4(v4) => self.check_v4(v4),
            IpAddr::V6(v6) => self.check_v6(v6),
        }
    }

    fn check_v4(self, ip: Ipv4Addr) -> Result<(), &'static str> {
        let [a, b, c, d] = ip.octets();
        if ip.is_link_local() {
            return Err("a link-local address (cloud metadata services live there)");
        }
        // Alibaba Cloud's metadata service sits in the shared (CGNAT) range.
        if [a, b, c, d] == [100, 100, 100, 200] {
            return Err("a cloud metadata address");
        }
        if ip.is_unspecified() || a == 0 || ip.is_broadcast() || ip.is_multicast() || a >= 240 {
            return Err("an unspecified, broadcast, multicast or reserved address");
        }
        let private = ip.is_loopback() || ip.is_private() || (a == 100 && (64..128).contains(&b));
        if private && !self.allow_private {
            return Err(
                "a loopback or private address, and this deployment does not allow private upstreams",
            );
        }
        Ok(())
    }

    fn check_v6(self, ip: Ipv6Addr) -> Result<(), &'static str> {
        let first = ip.segments()[0];
        if (first & 0xffc0) == 0xfe80 {
            return Err("a link-local address (cloud metadata services live there)");
        }
        // AWS's IPv6 metadata service.
        if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
            return Err("a cloud metadata address");
        }
        if ip.is_unspecified() || ip.is_multicast() {
            return Err("an unspecified or multicast address");
        }
        let private = ip.is_loopback() || (first & 0xfe00) == 0xfc00;
        if private && !self.allow_private {
            return Err(
                "a loopback or private address, and this deployment does not allow private upstreams",
            );
        }
        Ok(())
    }

    /// Checks the host of an upstream URL when it is an IP literal; names are checked by
    /// [`GuardedResolver`] when they are resolved.
    pub(crate) fn check_url(self, url: &reqwest::Url) -> Result<(), String> {
        let Some(host) = url.host_str() else {
            return Err("the upstream URL has no host".into());
        };
        // The URL parser has normalised IP literals (decimal, hex, IPv6 in brackets).
        let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        else {
            return Ok(());
        };
        self.check(ip)
            .map_err(|why| format!("the upstream address {ip} is {why}"))
    }
}

/// The HTTP client's resolver: the system's, with every refused address removed.
#[derive(Debug)]
pub(crate) struct GuardedResolver {
    pub(crate) egress: Egress,
}

impl GuardedResolver {
    pub(crate) fn new(egress: Egress) -> Arc<Self> {
        Arc::new(Self { egress })
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let egress = self.egress;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|addr| match egress.check(addr.ip()) {
                    Ok(()) => true,
                    Err(why) => {
                        refused = Some((addr.ip(), why));
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                let why = match refused {
                    Some((ip, why)) => format!("{host} resolves to {ip}, which is {why}"),
                    None => format!("{host} does not resolve"),
                };
                return Err(why.into());
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(allow_private: bool, ip: &str) -> bool {
        Egress { allow_private }.check(ip.parse().unwrap()).is_err()
    }

    #[test]
    fn metadata_link_local_and_reserved_are_always_refused() {
        for ip in [
            "169.254.169.254",
            "169.254.0.1",
            "100.100.100.200",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "240.0.0.1",
            "fe80::1",
            "fd00:ec2::254",
            "::",
            "ff02::1",
            "::ffff:169.254.169.254",
            "::ffff:a9fe:a9fe",
        ] {
            assert!(
                refused(true, ip),
                "{ip} must be refused even when private upstreams are allowed"
            );
        }
    }

    #[test]
    fn private_and_loopback_only_when_allowed() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "::1",
            "fd12::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(refused(false, ip), "{ip} refused by default");
            assert!(
                !refused(true, ip),
                "{ip} allowed when the deployment allows private upstreams"
            );
        }
        for ip in [
            "93.184.216.34",
            "2606:2800:220:1::1",
            "100.128.0.1",
            "172.32.0.1",
        ] {
            assert!(!refused(false, ip), "{ip} is public");
        }
    }

    #[test]
    fn ip_literal_urls_are_checked_after_normalisation() {
        let egress = Egress {
            allow_private: true,
        };
        for url in [
            "http://2852039166/latest/meta-data/",
            "http://0xa9.0xfe.0xa9.0xfe/",
            "http://169.254.169.254/",
            "http://[::ffff:a9fe:a9fe]/",
            "http://[fe80::1]/",
        ] {
            let parsed: reqwest::Url = url.parse().unwrap();
            assert!(egress.check_url(&parsed).is_err(), "{url} ({parsed})");
        }
        assert!(
            egress
                .check_url(&"http://genieacs.internal:7557/mcp".parse().unwrap())
                .is_ok()
        );
    }

    #[tokio::test]
    async fn the_resolver_drops_refused_addresses() {
        let strict = GuardedResolver::new(Egress {
            allow_private: false,
        });
        let err = match strict.resolve("localhost".parse().unwrap()).await {
            Ok(_) => panic!("localhost resolves to loopback, refused by default"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("localhost resolves to"), "{err}");
        let open = GuardedResolver::new(Egress {
            allow_private: true,
        });
        let addrs: Vec<SocketAddr> = open
            .resolve("localhost".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()) && !addrs.is_empty());
    }
}
