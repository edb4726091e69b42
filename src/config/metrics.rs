//! `[metrics]`: where the Prometheus scrape is served and who may read it. Schema only: the
//! server builds its allow-list (`crate::net::Cidr`) from it.
//!
//! Off unless configured, like the health listener: the counters name refusal reasons per app
//! (`unknown_user` next to `wrong_password`), which a stranger must not read, and an admin
//! upgrading from ADFS expects no new port to open by itself.

use std::net::SocketAddr;

use serde::Deserialize;

use super::ConfigProblem;
use crate::net::Cidr;

/// Paths the metrics path may not shadow (our routes and the ADFS layout).
const RESERVED_PREFIXES: [&str; 4] = ["/wsfed", "/adfs", "/healthz", "/federationmetadata"];
/// Longest metrics path.
const MAX_PATH_BYTES: usize = 128;
/// Most allow-list entries.
const MAX_ALLOW_ENTRIES: usize = 256;

/// `[metrics]`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// A plain-HTTP listener serving only `GET /metrics`, outside the HTTPS connection caps,
    /// e.g. `"127.0.0.1:9464"`.
    #[serde(default)]
    pub listen: Option<String>,
    /// A path on the main HTTPS listener that serves the scrape, e.g. `"/metrics"`.
    #[serde(default)]
    pub path: Option<String>,
    /// Client networks allowed to scrape (on both); the client is the socket peer unless one of
    /// `server.trusted_proxies` forwarded the request. Default: loopback only.
    #[serde(default = "loopback")]
    pub allow: Vec<String>,
}

fn loopback() -> Vec<String> {
    vec!["127.0.0.0/8".into(), "::1".into()]
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: None,
            path: None,
            allow: loopback(),
        }
    }
}

impl MetricsConfig {
    /// Problems of `[metrics]`.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        if let Some(listen) = &self.listen
            && listen.parse::<SocketAddr>().is_err()
        {
            problems.push(ConfigProblem::new(
                "metrics.listen",
                format!("`{listen}` is not a socket address"),
                "write IP:PORT, e.g. \"127.0.0.1:9464\"",
            ));
        }
        if let Some(path) = &self.path
            && let Some(problem) = path_problem(path)
        {
            problems.push(ConfigProblem::new(
                "metrics.path",
                problem,
                "write a path of its own, e.g. \"/metrics\"",
            ));
        }
        if self.allow.is_empty() || self.allow.len() > MAX_ALLOW_ENTRIES {
            problems.push(ConfigProblem::new(
                "metrics.allow",
                format!(
                    "needs 1 to {MAX_ALLOW_ENTRIES} networks, has {}",
                    self.allow.len()
                ),
                "list the Prometheus servers' networks, e.g. [\"10.1.2.0/24\"], or remove the key for loopback only",
            ));
        }
        for entry in &self.allow {
            if let Err(e) = Cidr::parse(entry) {
                problems.push(ConfigProblem::new(
                    "metrics.allow",
                    e.to_string(),
                    "write IP addresses or CIDR blocks, e.g. [\"10.1.2.0/24\", \"::1\"]",
                ));
            }
        }
        problems
    }

    /// A warning when the scrape is served and `allow` admits every address: the counters
    /// tell which user names exist and how many sign-ins fail.
    pub fn warning(&self) -> Option<ConfigProblem> {
        let served = self.listen.is_some() || self.path.is_some();
        let everyone = |network: &Cidr| {
            ["0.0.0.1", "255.255.255.254", "::1", "ffff::1"]
                .chunks(2)
                .any(|ends| {
                    ends.iter()
                        .all(|ip| ip.parse().is_ok_and(|ip| network.contains(ip)))
                })
        };
        (served && self.allowed_networks().iter().any(everyone)).then(|| {
            ConfigProblem::new(
                "metrics.allow",
                "lets every address read the metrics, which count refusals by reason (unknown_user next to wrong_password)",
                "list only the Prometheus servers' networks, e.g. [\"10.1.2.0/24\"]",
            )
        })
    }

    /// The allow-list, parsed (entries that do not parse are [`Self::problems`]).
    pub fn allowed_networks(&self) -> Vec<Cidr> {
        self.allow
            .iter()
            .filter_map(|e| Cidr::parse(e).ok())
            .collect()
    }
}

fn path_problem(path: &str) -> Option<String> {
    let lower = path.to_ascii_lowercase();
    if !path.starts_with('/') || path.len() > MAX_PATH_BYTES || path.contains(['?', '#']) {
        return Some(format!(
            "`{path}` is not an absolute path of at most {MAX_PATH_BYTES} bytes without ? or #"
        ));
    }
    if path == "/"
        || RESERVED_PREFIXES
            .iter()
            .any(|p| lower == *p || lower.starts_with(&format!("{p}/")))
    {
        return Some(format!("`{path}` would hide a sign-in or health path"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(config: &MetricsConfig) -> Vec<String> {
        config.problems().into_iter().map(|p| p.key).collect()
    }

    #[test]
    fn default_is_off_and_loopback_only() {
        let config = MetricsConfig::default();
        assert_eq!(
            (config.listen.as_deref(), config.path.as_deref()),
            (None, None)
        );
        assert!(keys(&config).is_empty());
        let networks = config.allowed_networks();
        assert!(
            networks
                .iter()
                .any(|n| n.contains("127.0.0.1".parse().unwrap()))
        );
        assert!(
            !networks
                .iter()
                .any(|n| n.contains("10.0.0.1".parse().unwrap()))
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let config = MetricsConfig {
            listen: Some("localhost".into()),
            path: Some("/wsfed/metrics".into()),
            allow: vec!["10.0.0.0/33".into()],
        };
        assert_eq!(
            keys(&config),
            ["metrics.listen", "metrics.path", "metrics.allow"]
        );
        let empty = MetricsConfig {
            allow: Vec::new(),
            ..MetricsConfig::default()
        };
        assert_eq!(keys(&empty), ["metrics.allow"]);
        for path in ["metrics", "/", "/ADFS/ls", "/healthz", "/m?x"] {
            assert!(path_problem(path).is_some(), "{path}");
        }
        assert_eq!(path_problem("/metrics"), None);
    }

    #[test]
    fn an_allow_list_of_everyone_is_warned_about_when_served() {
        let open = |allow: &str, listen: Option<&str>| MetricsConfig {
            listen: listen.map(str::to_owned),
            allow: vec![allow.to_owned()],
            ..MetricsConfig::default()
        };
        assert!(
            open("0.0.0.0/0", Some("127.0.0.1:9464"))
                .warning()
                .is_some()
        );
        assert!(open("::/0", Some("127.0.0.1:9464")).warning().is_some());
        assert!(open("0.0.0.0/0", None).warning().is_none(), "not served");
        assert!(
            open("10.0.0.0/8", Some("127.0.0.1:9464"))
                .warning()
                .is_none()
        );
    }
}
