//! Where a webhook may point. A rule must not become a way to reach the
//! services next to rta: loopback, link-local, private and other
//! non-public addresses are refused unless `--allow-private-webhooks`.
//! A name is checked again when it is resolved for each call (the server's
//! resolver drops such addresses), so DNS cannot point it inward later.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An http(s) URL with a host, checked against the address policy.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookUrl(reqwest::Url);

impl WebhookUrl {
    pub fn parse(text: &str, allow_private: bool) -> Result<Self, String> {
        let url =
            reqwest::Url::parse(text.trim()).map_err(|e| format!("`{text}` is not a URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("`{text}` is not an http or https URL"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(
                "put no credentials in the webhook URL; use a secret path or query instead".into(),
            );
        }
        let Some(host) = url.host() else {
            return Err(format!("`{text}` has no host"));
        };
        if !allow_private {
            let inward = match host {
                url::Host::Ipv4(ip) => !is_public(IpAddr::V4(ip)),
                url::Host::Ipv6(ip) => !is_public(IpAddr::V6(ip)),
                url::Host::Domain(name) => {
                    let name = name.trim_end_matches('.').to_ascii_lowercase();
                    name == "localhost" || name.ends_with(".localhost")
                }
            };
            if inward {
                return Err(format!(
                    "`{text}` points at a loopback, link-local or private address; \
                     start the server with --allow-private-webhooks to allow that"
                ));
            }
        }
        Ok(Self(url))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn url(&self) -> &reqwest::Url {
        &self.0
    }
}

/// Whether `ip` is an address on the public internet: not loopback,
/// unspecified, link-local, private (RFC 1918, unique local), shared
/// (100.64/10), documentation, benchmarking, broadcast or multicast; an
/// IPv4 address inside IPv6 is judged as IPv4.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => is_public_v4(ip),
        IpAddr::V6(ip) => match embedded_v4(ip) {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(ip),
        },
    }
}

/// The IPv4 address an IPv6 address carries and is routed to: mapped
/// (`::ffff:a.b.c.d`), translated (`::ffff:0:a.b.c.d`), NAT64
/// (`64:ff9b::a.b.c.d`) or 6to4 (`2002:AABB:CCDD::`).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let last =
        |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    if s[..4] == [0, 0, 0, 0] && s[4] == 0xffff && s[5] == 0 {
        return Some(last(s[6], s[7]));
    }
    if s[0] == 0x0064 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return Some(last(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return Some(last(s[1], s[2]));
    }
    None
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (18..20).contains(&b))
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        // fc00::/7 unique local, fe80::/10 link-local, 2001:db8::/32 documentation
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        // fec0::/10 site-local (deprecated, still routed inward)
        || (first & 0xffc0) == 0xfec0
        || (first == 0x2001 && ip.segments()[1] == 0x0db8)
        // 64:ff9b:1::/48 local NAT64, ::/96 IPv4-compatible
        || (first == 0x0064 && ip.segments()[1] == 0xff9b && ip.segments()[2] == 1)
        || ip.segments()[..6].iter().all(|s| *s == 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inward_addresses_are_refused_and_public_ones_taken() {
        for inward in [
            "http://127.0.0.1:9000/hook",
            "http://127.8.9.10/",
            "http://localhost/",
            "http://api.localhost./",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://172.31.255.255/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://100.64.0.1/",
            "http://0.0.0.0/",
            "http://[::1]/",
            "http://[::]/",
            "http://[fe80::1]/",
            "http://[fd00::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:10.0.0.1]/",
            "http://[::ffff:0:127.0.0.1]/",
            "http://[64:ff9b::10.0.0.1]/",
            "http://[64:ff9b::7f00:1]/",
            "http://[2002:c0a8:0101::1]/",
            "http://[2002:7f00:1::]/",
            "http://[fec0::1]/",
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0177.0.0.1/",
        ] {
            let refused = WebhookUrl::parse(inward, false).unwrap_err();
            assert!(
                refused.contains("--allow-private-webhooks"),
                "{inward}: {refused}"
            );
            assert!(
                WebhookUrl::parse(inward, true).is_ok(),
                "{inward} when allowed"
            );
        }
        for public in [
            "https://hooks.example/rta",
            "http://93.184.215.14/",
            "https://[2606:4700::1111]/x",
            "http://172.32.0.1/",
            "http://100.128.0.1/",
            "http://[64:ff9b::5db8:d70e]/",
            "http://[2002:5db8:d70e::1]/",
        ] {
            assert!(WebhookUrl::parse(public, false).is_ok(), "{public}");
        }
    }

    #[test]
    fn only_http_urls_with_a_host_and_no_credentials() {
        for bad in [
            "ftp://hooks.example/",
            "file:///etc/passwd",
            "hooks.example/rta",
            "https://user:pw@hooks.example/",
            "",
        ] {
            assert!(WebhookUrl::parse(bad, true).is_err(), "{bad}");
        }
    }
}
