//! Network ranges: the one CIDR type behind every decision made on a client address (trusted
//! proxies, Kerberos intranet networks). Parsing and matching are `ipnet`'s; what is ours is
//! that a single address means a one-host block and that an IPv4-mapped IPv6 peer
//! (`::ffff:10.0.0.1`, what a dual-stack socket reports) is judged as the IPv4 address it is.

use std::net::IpAddr;

use ipnet::IpNet;

/// Why a network range in the configuration was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// The address part is not an IPv4 or IPv6 address.
    #[error("`{0}` has no valid IP address")]
    Address(String),
    /// The prefix length is not a number within the address family's width.
    #[error("`{0}` has a prefix length outside 0..=32 (IPv4) or 0..=128 (IPv6)")]
    Prefix(String),
}

/// A CIDR block such as `10.0.0.0/8` or `2001:db8::/32`, or a single host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr(IpNet);

impl Cidr {
    /// Parses `ADDRESS/PREFIX` or a bare address (a block of one host).
    pub fn parse(text: &str) -> Result<Self, CidrError> {
        let text = text.trim();
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address.trim(), Some(prefix.trim())),
            None => (text, None),
        };
        let address: IpAddr = address
            .parse()
            .map_err(|_| CidrError::Address(text.to_owned()))?;
        let width = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(prefix) => prefix
                .parse::<u8>()
                .map_err(|_| CidrError::Prefix(text.to_owned()))?,
            None => width,
        };
        IpNet::new(address, prefix)
            .map(|net| Self(net.trunc()))
            .map_err(|_| CidrError::Prefix(text.to_owned()))
    }

    /// Whether `ip` is inside the block (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&canonical(ip))
    }
}

/// IPv4-mapped IPv6 addresses as IPv4, so `::ffff:10.0.0.1` matches `10.0.0.0/8`.
pub fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn blocks_hosts_and_mapped_addresses() {
        let net = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(net.contains(ip("10.1.200.3")));
        assert!(net.contains(ip("::ffff:10.1.0.1")));
        assert!(!net.contains(ip("10.2.0.1")));
        let host = Cidr::parse("127.0.0.1").unwrap();
        assert!(host.contains(ip("127.0.0.1")));
        assert!(!host.contains(ip("127.0.0.2")));
        let odd = Cidr::parse("192.168.0.0/23").unwrap();
        assert!(odd.contains(ip("192.168.1.255")));
        assert!(!odd.contains(ip("192.168.2.0")));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(
            !Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains(ip("2001:db8::1"))
        );
        let unaligned = Cidr::parse("10.1.2.3/8").unwrap();
        assert!(unaligned.contains(ip("10.200.0.1")));
    }

    #[test]
    fn malformed_ranges_are_named() {
        assert_eq!(
            Cidr::parse("10.0.0.0/33"),
            Err(CidrError::Prefix("10.0.0.0/33".into()))
        );
        assert_eq!(
            Cidr::parse("ten/8"),
            Err(CidrError::Address("ten/8".into()))
        );
        assert!(Cidr::parse("10.0.0.0/x").is_err());
        assert!(Cidr::parse("::/129").is_err());
    }
}
