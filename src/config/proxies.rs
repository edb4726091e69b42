//! `[server] trusted_proxies`: the proxies whose forwarding headers are believed (the runtime
//! list is `policy::TrustedProxies`, parsed with the same [`Cidr`]).

use super::ConfigProblem;
use crate::net::Cidr;

/// Problems of `server.trusted_proxies`: the first entry that is not a CIDR block.
pub fn trusted_proxy_problems(entries: &[String]) -> Vec<ConfigProblem> {
    match entries.iter().find(|e| Cidr::parse(e).is_err()) {
        None => Vec::new(),
        Some(bad) => vec![ConfigProblem::new(
            "server.trusted_proxies",
            format!("`{bad}` is not an IP address or CIDR block"),
            "write e.g. [\"10.0.0.0/8\", \"192.0.2.10\"]",
        )],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_entry_that_is_no_block_is_named() {
        assert!(trusted_proxy_problems(&["10.0.0.0/8".into(), "192.0.2.10".into()]).is_empty());
        assert_eq!(
            trusted_proxy_problems(&["10.0.0.0/8".into(), "nope".into()])[0].to_string(),
            "server.trusted_proxies: `nope` is not an IP address or CIDR block — write e.g. [\"10.0.0.0/8\", \"192.0.2.10\"]"
        );
    }
}
