//! `[apps.kerberos]`: windowstransport for one app — keytab, SPN, intranet networks, realm →
//! domain map. The SPNEGO acceptor and the principal mapping are `kerberos`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigProblem;
use crate::net::Cidr;

/// `[apps.kerberos]`: windowstransport for one app.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KerberosConfig {
    /// Keytab holding the service key of `spn` (MIT krb5 reads it through `KRB5_KTNAME`).
    pub keytab: PathBuf,
    /// Service principal clients ask tickets for, e.g. `HTTP/sts.example.com`; advertised in MEX.
    pub spn: String,
    /// CIDRs allowed to use windowstransport; requests from elsewhere get 403.
    pub allowed_networks: Vec<String>,
    /// Kerberos realm → federated domain, e.g. `"EXAMPLE.COM" = "example.com"`. Principals of
    /// realms not listed are refused.
    pub realms: BTreeMap<String, String>,
    /// Value of the `issuerid` claim (multi-domain federation), e.g.
    /// `http://example.com/adfs/services/trust/`.
    #[serde(default)]
    pub issuer_id: Option<String>,
}

impl KerberosConfig {
    /// Every structural problem, keys under `prefix` (e.g. `apps[0].kerberos`).
    pub fn problems(&self, prefix: &str) -> Vec<ConfigProblem> {
        let key = |field: &str| format!("{prefix}.{field}");
        let mut problems = Vec::new();
        if !cfg!(feature = "kerberos") {
            problems.push(ConfigProblem::new(
                prefix,
                "this fedsts was built without the `kerberos` feature",
                "rebuild with `cargo build --release --features kerberos` (needs libkrb5-dev), or remove [apps.kerberos]",
            ));
        }
        if self.keytab.as_os_str().is_empty() {
            problems.push(ConfigProblem::new(
                key("keytab"),
                "is empty",
                "point it at the keytab holding the SPN's key",
            ));
        }
        if !is_valid_spn(&self.spn) {
            problems.push(ConfigProblem::new(
                key("spn"),
                format!("`{}` is not a service principal name", self.spn),
                "write SERVICE/host, e.g. \"HTTP/sts.example.com\"",
            ));
        }
        if self.allowed_networks.is_empty() {
            problems.push(ConfigProblem::new(
                key("allowed_networks"),
                "is empty",
                "list the intranet CIDRs, e.g. [\"10.0.0.0/8\"] (windowstransport bypasses lockout)",
            ));
        }
        for (i, network) in self.allowed_networks.iter().enumerate() {
            if let Err(e) = Cidr::parse(network) {
                problems.push(ConfigProblem::new(
                    format!("{prefix}.allowed_networks[{i}]"),
                    e.to_string(),
                    "write ADDRESS/PREFIX, e.g. \"10.0.0.0/8\" or \"fd00::/8\"",
                ));
            }
        }
        if self.realms.is_empty() {
            problems.push(ConfigProblem::new(
                key("realms"),
                "is empty",
                "map each realm to its domain, e.g. realms = { \"EXAMPLE.COM\" = \"example.com\" }",
            ));
        }
        for (realm, domain) in &self.realms {
            if realm.is_empty() || domain.is_empty() || domain.contains(['@', '/', ' ']) {
                problems.push(ConfigProblem::new(
                    format!("{prefix}.realms.{realm}"),
                    format!("`{realm}` = `{domain}` is not a realm → domain mapping"),
                    "write \"EXAMPLE.COM\" = \"example.com\"",
                ));
            }
        }
        problems
    }

    /// The configured networks (invalid entries are reported by [`Self::problems`]).
    pub fn networks(&self) -> Vec<Cidr> {
        self.allowed_networks
            .iter()
            .filter_map(|n| Cidr::parse(n).ok())
            .collect()
    }

    /// The domain of `realm` (compared case-insensitively).
    pub fn domain_of(&self, realm: &str) -> Option<&str> {
        self.realms
            .iter()
            .find(|(r, _)| r.eq_ignore_ascii_case(realm))
            .map(|(_, d)| d.as_str())
    }
}

fn is_valid_spn(spn: &str) -> bool {
    match spn.split_once('/') {
        Some((service, host)) => {
            !service.is_empty()
                && !host.is_empty()
                && !spn.contains(char::is_whitespace)
                && !spn.contains(['<', '>', '&', '"'])
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_problems() {
        let config: KerberosConfig = toml::from_str(
            "keytab = \"k\"\nspn = \"HTTP\"\nallowed_networks = [\"10.0.0.0/99\"]\nrealms = {}\n",
        )
        .unwrap();
        let keys: Vec<String> = config
            .problems("apps[0].kerberos")
            .into_iter()
            .map(|p| p.key)
            .filter(|k| k != "apps[0].kerberos")
            .collect();
        assert_eq!(
            keys,
            [
                "apps[0].kerberos.spn",
                "apps[0].kerberos.allowed_networks[0]",
                "apps[0].kerberos.realms"
            ]
        );
        let feature_problem = config
            .problems("apps[0].kerberos")
            .into_iter()
            .any(|p| p.key == "apps[0].kerberos" && p.problem.contains("`kerberos` feature"));
        assert_eq!(feature_problem, !cfg!(feature = "kerberos"));
    }
}
