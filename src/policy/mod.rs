//! Policy and protection: what kind of request this is, who the client is, and whether it may
//! get a token. Every check is a plain function or a small struct over a
//! [`StateStore`](crate::state::StateStore) (the only I/O here) and takes `now` from the caller.
//!
//! Order on both sign-in paths (usernamemixed in `sts::active`, passive sign-in in `sts::passive`; the
//! shared steps are `sts::guard`): [`RequestClass::classify`] →
//! [`ratelimit::RateLimiter::take`] (per client IP) → [`replay::ReplayCache::check`] (active
//! only: MessageID and (Created, username)) → [`lockout::Lockout::check`] (before the password)
//! → password → [`lockout::Lockout::record`] → [`device::evaluate`] (needs the user's groups) →
//! (passive step-up: [`totp_guard::TotpGuard`]) → issue. Every decision is one
//! [`audit::AuditRecord`].
//!
//! Request classification uses spoofable signals (User-Agent, `wtrealm`, `wctx`): they never
//! relax a policy, they only choose which explanation a refusal gets.

pub mod audit;
pub mod device;
pub mod lockout;
pub mod ratelimit;
pub mod replay;
pub mod totp_enrolment;
pub mod totp_guard;

use std::net::IpAddr;
use std::sync::Arc;

use crate::net::{Cidr, canonical};
use crate::protocol::ns::MICROSOFT_ONLINE;
use crate::state::{StateError, StateStore};

/// `User-Agent` prefix of the Windows logon (CloudAP) WS-Trust call.
pub const WINDOWS_LOGON_USER_AGENT_PREFIX: &str = "Windows-AzureAD-Authentication-Provider";

/// What a request looks like it comes from. Chooses explanations only, never grants anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestClass {
    /// Passive sign-in sent by Entra ID (`wtrealm=urn:federation:MicrosoftOnline`, `wctx` with
    /// `estsredirect`): what Windows setup (OOBE Entra join) shows in its web view.
    EntraPassive,
    /// Windows logon (CloudAP) on an active endpoint: `User-Agent` starts with
    /// `Windows-AzureAD-Authentication-Provider`.
    WindowsLogon,
    /// Anything else.
    Other,
}

/// The spoofable signals [`RequestClass::classify`] looks at.
#[derive(Clone, Copy, Debug, Default)]
pub struct Signals<'a> {
    /// `User-Agent` header.
    pub user_agent: Option<&'a str>,
    /// Passive `wtrealm` parameter (None on active endpoints).
    pub wtrealm: Option<&'a str>,
    /// Passive `wctx` parameter, URL-decoded once (None on active endpoints).
    pub wctx: Option<&'a str>,
}

impl RequestClass {
    /// Classifies a request by its signals.
    pub fn classify(signals: &Signals<'_>) -> Self {
        let from_entra = signals.wtrealm == Some(MICROSOFT_ONLINE)
            && signals
                .wctx
                .is_some_and(|w| w.to_ascii_lowercase().contains("estsredirect"));
        if from_entra {
            RequestClass::EntraPassive
        } else if signals
            .user_agent
            .is_some_and(|ua| ua.starts_with(WINDOWS_LOGON_USER_AGENT_PREFIX))
        {
            RequestClass::WindowsLogon
        } else {
            RequestClass::Other
        }
    }

    /// The value in audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestClass::EntraPassive => "entra_passive",
            RequestClass::WindowsLogon => "windows_logon",
            RequestClass::Other => "other",
        }
    }
}

/// The address a client is counted under by the per-address limits (rate buckets, connection
/// caps): an IPv4 address (IPv4-mapped included) itself, an IPv6 address its /64, since one
/// subscriber gets a whole /64 and could otherwise draw a fresh count for every request.
pub(crate) fn subscriber_address(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        v4 => v4,
    }
}

/// Proxies whose forwarding headers we believe (`[server] trusted_proxies`), and whether they
/// set `X-MS-Forwarded-Client-IP` (`[server] trust_ms_forwarded_client_ip`).
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies {
    blocks: Vec<Cidr>,
    set_ms_client_ip: bool,
}

/// Most `X-Forwarded-For` entries read from one request, counted from the right (the end our
/// proxies append to); entries further left are the client's own writing and never read.
pub const MAX_FORWARDED: usize = 16;

impl TrustedProxies {
    /// Parses the configured CIDR list; the error is the first entry that is not a CIDR block.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        entries
            .iter()
            .map(|e| Cidr::parse(e).map_err(|_| e.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map(|blocks| Self {
                blocks,
                set_ms_client_ip: false,
            })
    }

    /// Believes `X-MS-Forwarded-Client-IP` from these proxies: only for proxies that overwrite
    /// it (an Entra application proxy or a load balancer configured so); otherwise a client could
    /// write it himself.
    pub fn with_ms_forwarded_client_ip(mut self, proxy_sets_it: bool) -> Self {
        self.set_ms_client_ip = proxy_sets_it;
        self
    }

    /// Whether `ip` is one of our proxies (exempt from the per-address connection cap, since
    /// all their clients share its address).
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.blocks.iter().any(|c| c.contains(ip))
    }

    /// The client's addresses: the socket peer, plus the forwarded ones only when the peer is a
    /// trusted proxy. `x_forwarded_for` is the raw header (its lines joined by `,`) and
    /// `x_ms_forwarded_client_ip` the raw value of that header.
    ///
    /// `X-Forwarded-For` is walked from the right: each trusted proxy appends the address it
    /// received from, so the entries are believed up to and including the first address that is
    /// not one of our proxies — that is the client. Everything left of it was written by the
    /// client and is ignored. An entry that is not an address stops the walk at the last
    /// believed hop (the request is attributed to that proxy: fail closed).
    pub fn client_addresses(
        &self,
        peer: IpAddr,
        x_forwarded_for: Option<&str>,
        x_ms_forwarded_client_ip: Option<&str>,
    ) -> ClientAddresses {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return ClientAddresses {
                client: peer,
                all: vec![peer],
            };
        }
        let mut all = vec![peer];
        let mut client = peer;
        let hops = x_forwarded_for.unwrap_or("").rsplit(',').map(str::trim);
        for hop in hops.filter(|h| !h.is_empty()).take(MAX_FORWARDED) {
            let Ok(ip) = hop.parse::<IpAddr>().map(canonical) else {
                break;
            };
            push_new(&mut all, ip);
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        if let Some(ms) = self.ms_client_ip(x_ms_forwarded_client_ip) {
            push_new(&mut all, ms);
            client = ms;
        }
        ClientAddresses { client, all }
    }

    fn ms_client_ip(&self, header: Option<&str>) -> Option<IpAddr> {
        if !self.set_ms_client_ip {
            return None;
        }
        let value = header?.trim();
        // The header may carry a port (`ip:port`, `[v6]:port`).
        let ip = value
            .parse::<IpAddr>()
            .ok()
            .or_else(|| value.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))?;
        Some(canonical(ip))
    }
}

fn push_new(addresses: &mut Vec<IpAddr>, ip: IpAddr) {
    if !addresses.contains(&ip) {
        addresses.push(ip);
    }
}

/// Who the client is, network-wise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientAddresses {
    /// The address we attribute the request to (rate limits, audit).
    pub client: IpAddr,
    /// Every address the request presents (peer and believed forwarded ones), for the lockout's
    /// familiar-location test: a request is familiar only if all of them are.
    pub all: Vec<IpAddr>,
}

/// Why a policy refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The client IP's token bucket is empty.
    #[error("rate limited")]
    RateLimited(ratelimit::Limited),
    /// The message was seen before.
    #[error("replayed message ({})", .0.reason())]
    Replay(replay::ReplayKind),
    /// The account is locked for the request's location (enforce mode).
    #[error("account locked for {} locations", .0.as_str())]
    Locked(lockout::Location),
    /// A device-trust policy applies and is not satisfied.
    #[error("device trust: {}", .0.reason())]
    Device(device::DeviceRefusal),
    /// The state store cannot answer: fail closed.
    #[error(transparent)]
    StateUnavailable(#[from] StateError),
}

impl Refusal {
    /// The audit reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::RateLimited(_) => "rate_limited",
            Refusal::Replay(kind) => kind.reason(),
            Refusal::Locked(lockout::Location::Familiar) => "account_locked_familiar",
            Refusal::Locked(lockout::Location::Unfamiliar) => "account_locked_unfamiliar",
            Refusal::Device(d) => d.reason(),
            Refusal::StateUnavailable(_) => "state_unavailable",
        }
    }
}

/// The policies of one running service, over one state store.
#[derive(Debug, Clone)]
pub struct Policies {
    /// Where the shared state lives.
    pub store: Arc<dyn StateStore>,
    /// Proxies whose forwarding headers are believed.
    pub proxies: TrustedProxies,
    /// Per-IP token buckets on the active endpoints.
    pub rate_limit: ratelimit::RateLimiter,
    /// MessageID and (Created, username) replay marks.
    pub replay: replay::ReplayCache,
    /// Extranet smart lockout.
    pub lockout: lockout::Lockout,
    /// TOTP reuse marks and wrong-code counters (passive step-up).
    pub totp: totp_guard::TotpGuard,
    /// Where decisions, lockout and rate-limit events are counted.
    pub metrics: Arc<crate::metrics::Metrics>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_by_signals() {
        let windows = Signals {
            user_agent: Some("Windows-AzureAD-Authentication-Provider/1.0"),
            ..Signals::default()
        };
        assert_eq!(RequestClass::classify(&windows), RequestClass::WindowsLogon);
        let oobe = Signals {
            user_agent: Some("Mozilla/5.0"),
            wtrealm: Some(MICROSOFT_ONLINE),
            wctx: Some("LoginOptions=3&estsredirect=2&estsrequest=rQIIAc"),
        };
        assert_eq!(RequestClass::classify(&oobe), RequestClass::EntraPassive);
        let no_wctx = Signals { wctx: None, ..oobe };
        assert_eq!(RequestClass::classify(&no_wctx), RequestClass::Other);
        let msal = Signals {
            user_agent: Some("python-requests/2.32"),
            ..Signals::default()
        };
        assert_eq!(RequestClass::classify(&msal), RequestClass::Other);
    }

    #[test]
    fn forwarded_headers_only_from_trusted_proxies() {
        let proxies =
            TrustedProxies::parse(&["10.0.0.0/8".into(), "2001:db8::/32".into()]).unwrap();
        let peer: IpAddr = "203.0.113.5".parse().unwrap();
        let direct = proxies.client_addresses(peer, Some("198.51.100.1"), Some("198.51.100.2"));
        assert_eq!(direct.client, peer);
        assert_eq!(direct.all, vec![peer]);

        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        let via = proxies.client_addresses(proxy, Some("198.51.100.1, 10.9.9.9"), None);
        assert_eq!(via.client, "198.51.100.1".parse::<IpAddr>().unwrap());
        assert_eq!(
            via.all,
            vec![
                proxy,
                "10.9.9.9".parse().unwrap(),
                "198.51.100.1".parse().unwrap()
            ]
        );
        let ignored = proxies.client_addresses(proxy, None, Some(" 198.51.100.7 "));
        assert_eq!(
            ignored.client, proxy,
            "the MS header is not believed by default"
        );
        let setting = proxies.clone().with_ms_forwarded_client_ip(true);
        let ms = setting.client_addresses(proxy, Some("garbage"), Some(" 198.51.100.7 "));
        assert_eq!(ms.client, "198.51.100.7".parse::<IpAddr>().unwrap());
        let with_port = setting.client_addresses(proxy, None, Some("[2001:db9::1]:4431"));
        assert_eq!(with_port.client, "2001:db9::1".parse::<IpAddr>().unwrap());
        let mapped = proxies.client_addresses("::ffff:10.0.0.1".parse().unwrap(), None, None);
        assert_eq!(mapped.client, "10.0.0.1".parse::<IpAddr>().unwrap());
        assert!(
            Cidr::parse("2001:db8::/32")
                .unwrap()
                .contains("2001:db8::1".parse().unwrap())
        );
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("1.2.3.4".parse().unwrap())
        );
        assert!(Cidr::parse("10.0.0.0/33").is_err());
    }

    #[test]
    fn forwarded_chain_is_walked_from_the_right() {
        let proxies = TrustedProxies::parse(&["10.0.0.0/8".into()]).unwrap();
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // The client wrote the victim's address first; our proxies appended the real one.
        let spoofed =
            proxies.client_addresses(proxy, Some("192.0.2.99, 203.0.113.7, 10.2.2.2"), None);
        assert_eq!(spoofed.client, ip("203.0.113.7"));
        assert_eq!(spoofed.all, vec![proxy, ip("10.2.2.2"), ip("203.0.113.7")]);
        // An over-long chain: only the rightmost MAX_FORWARDED entries are read.
        let mut chain: Vec<String> = (0..40).map(|i| format!("192.0.2.{i}")).collect();
        chain.push("198.51.100.3".into());
        let long = proxies.client_addresses(proxy, Some(&chain.join(",")), None);
        assert_eq!(long.client, ip("198.51.100.3"));
        let all_trusted: Vec<String> = (0..40).map(|i| format!("10.0.1.{i}")).collect();
        let hops = proxies.client_addresses(proxy, Some(&all_trusted.join(",")), None);
        assert_eq!(hops.all.len(), MAX_FORWARDED + 1);
        assert!(proxies.trusts(hops.client));
        // Garbage stops the walk at the last believed hop.
        let garbage = proxies.client_addresses(proxy, Some("198.51.100.9, junk, 10.3.3.3"), None);
        assert_eq!(garbage.client, ip("10.3.3.3"));
    }
}
