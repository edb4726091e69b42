//! `check-config --online` for one LDAP directory: connects with the configured TLS, binds the
//! service account, finds the probe user and reports what sign-ins will see of the entry —
//! each mapped attribute in the server's spelling, the ImmutableID. It binds the service
//! account once per run, so a wrong service password costs one bad-password count, never a
//! lockout. Sign-in code is untouched: this reuses the directory's connect, search and
//! ImmutableID rules, so the report cannot disagree with a real sign-in.

use ldap3::{Ldap, Scope, SearchEntry};

use super::{LdapDirectory, RC_INVALID_CREDENTIALS, ad_bind_failure, health_message};
use crate::config::ConfigProblem;

/// LDAP result code `strongerAuthRequired`: AD refuses simple binds without TLS.
const RC_STRONGER_AUTH_REQUIRED: u32 = 8;

/// What the online probe of one directory (or one app's keytab) found.
#[derive(Debug)]
pub struct ProbeReport {
    /// The config key stem, e.g. `directories.corp`.
    prefix: String,
    /// What was seen, one line each (never a secret).
    pub findings: Vec<String>,
    /// Defects sign-ins would hit: `check-config --online` exits non-zero on any.
    pub problems: Vec<ConfigProblem>,
    /// Things that may be intended (an attribute the probe user lacks, a disabled probe user).
    pub warnings: Vec<ConfigProblem>,
}

impl ProbeReport {
    /// An empty report for keys under `prefix`.
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            findings: Vec::new(),
            problems: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// The config key stem, e.g. `directories.corp`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Adds a problem at `prefix.field`.
    pub(crate) fn problem(
        &mut self,
        field: &str,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) {
        let key = format!("{}.{field}", self.prefix);
        self.problems.push(ConfigProblem::new(key, problem, fix));
    }

    /// Adds a warning at `prefix.field`.
    pub(crate) fn warning(
        &mut self,
        field: &str,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) {
        let key = format!("{}.{field}", self.prefix);
        self.warnings.push(ConfigProblem::new(key, problem, fix));
    }
}

/// The attribute keys whose absence on the probe user only warns: users without groups, or
/// directories without AD's computer attributes, are normal.
const OPTIONAL_ATTRIBUTES: [&str; 5] = [
    "groups_attr",
    "display_name_attr",
    "sam_account_name_attr",
    "object_guid_attr",
    "object_sid_attr",
];

impl LdapDirectory {
    /// Probes the directory as `check-config --online` does; keys are under `prefix`.
    pub async fn probe(&self, prefix: &str, probe_user: Option<&str>) -> ProbeReport {
        let mut report = ProbeReport::new(prefix);
        let Some(mut ldap) = self.probe_connect(&mut report).await else {
            return report;
        };
        if self.probe_bind(&mut ldap, &mut report).await
            && let Some(user) = probe_user
        {
            self.probe_user(&mut ldap, user, &mut report).await;
        }
        let _ = ldap.unbind().await;
        report
    }

    async fn probe_connect(&self, report: &mut ProbeReport) -> Option<Ldap> {
        let config = &self.settings.config;
        match self.connect().await {
            Ok(ldap) => {
                let transport = match (config.url.starts_with("ldaps://"), config.starttls) {
                    (true, _) => "LDAPS, server certificate accepted",
                    (false, true) => "StartTLS, server certificate accepted",
                    (false, false) => "no TLS",
                };
                report
                    .findings
                    .push(format!("connected to {} ({transport})", config.url));
                Some(ldap)
            }
            Err(e) => {
                let text = health_message(&e);
                let (problem, fix) = text
                    .split_once(" — ")
                    .unwrap_or((text.as_str(), "check the host, the port and the firewall"));
                let field = if fix.contains("set ca_file") {
                    "ca_file"
                } else {
                    "url"
                };
                report.problem(field, problem, fix);
                None
            }
        }
    }

    /// Binds the service account once (no retry); true when it bound.
    async fn probe_bind(&self, ldap: &mut Ldap, report: &mut ProbeReport) -> bool {
        let config = &self.settings.config;
        let dn = config.bind_dn.as_deref().unwrap_or("");
        let password = self.settings.bind_password.as_deref().unwrap_or("");
        let answer = match ldap
            .with_timeout(self.settings.timeout)
            .simple_bind(dn, password)
            .await
        {
            Ok(answer) => answer,
            Err(e) => {
                report.problem(
                    "url",
                    format!("service bind: {e}"),
                    "check that the server answers LDAP at url",
                );
                return false;
            }
        };
        let who = if dn.is_empty() {
            "anonymous bind".to_owned()
        } else {
            format!("service account {dn}")
        };
        match answer.rc {
            0 => {
                report.findings.push(format!("{who}: bound"));
                return true;
            }
            RC_STRONGER_AUTH_REQUIRED => report.problem(
                "url",
                format!(
                    "the server refuses simple binds without TLS (strongerAuthRequired: {})",
                    answer.text.trim()
                ),
                "use ldaps:// or set starttls = true",
            ),
            RC_INVALID_CREDENTIALS => {
                let reason = ad_bind_failure(&answer.text)
                    .map(|(_, why)| why)
                    .unwrap_or("invalid credentials");
                report.problem(
                    self.password_key(),
                    format!("{who} was refused ({reason})"),
                    "set the service account's current password (this check bound once: one \
                     bad-password count, never a lockout)",
                );
            }
            rc => report.problem(
                "bind_dn",
                format!("{who} was refused: rc {rc} {}", answer.text.trim()),
                "check bind_dn and that the account may bind",
            ),
        }
        false
    }

    /// The key that holds the service password (or `bind_dn` when there is none).
    fn password_key(&self) -> &'static str {
        let config = &self.settings.config;
        if config.bind_password_file.is_some() {
            "bind_password_file"
        } else if config.bind_password_env.is_some() {
            "bind_password_env"
        } else if config.bind_password.is_some() {
            "bind_password"
        } else {
            "bind_dn"
        }
    }

    async fn probe_user(&self, ldap: &mut Ldap, user: &str, report: &mut ProbeReport) {
        let config = &self.settings.config;
        let filter = self.filter_for(&config.user_filter, "{upn}", user);
        let entries = match self
            .search(ldap, &config.user_base, Scope::Subtree, &filter)
            .await
        {
            Ok(entries) => entries,
            Err(e) => {
                report.problem(
                    "user_base",
                    health_message(&e),
                    "check user_base and that the service account may search it",
                );
                return;
            }
        };
        match entries.as_slice() {
            [entry] => self.probe_entry(ldap, entry, report).await,
            [] => report.problem(
                "user_filter",
                format!("no entry under user_base matches {filter} (--probe-user {user})"),
                "check user_base and user_filter, or name an existing user",
            ),
            _ => report.problem(
                "user_filter",
                format!("{filter} matches more than one entry: sign-ins refuse such users"),
                "make user_filter match one entry per user",
            ),
        }
    }

    async fn probe_entry(&self, ldap: &mut Ldap, entry: &SearchEntry, report: &mut ProbeReport) {
        let config = &self.settings.config;
        report.findings.push(format!("probe user: {}", entry.dn));
        let mapped = [
            ("upn_attr", &config.upn_attr),
            ("groups_attr", &config.groups_attr),
            ("display_name_attr", &config.display_name_attr),
            ("sam_account_name_attr", &config.sam_account_name_attr),
            ("object_guid_attr", &config.object_guid_attr),
            ("object_sid_attr", &config.object_sid_attr),
        ];
        for (field, attr) in mapped {
            if field == "groups_attr" && config.nested_groups {
                continue;
            }
            self.probe_attribute(entry, field, attr, report);
        }
        self.probe_immutable_id(entry, report);
        match self.is_enabled(ldap, entry).await {
            Ok(true) => {}
            Ok(false) => report.warning(
                "enabled_filter",
                format!(
                    "the probe user {} is disabled: sign-ins refuse them",
                    entry.dn
                ),
                "probe with an enabled user",
            ),
            Err(e) => report.problem(
                "enabled_filter",
                health_message(&e),
                "write a filter the server accepts",
            ),
        }
        match self.groups_of(ldap, entry).await {
            Ok(groups) => {
                report
                    .findings
                    .push(format!("groups: {} ({})", groups.len(), groups.join("; ")))
            }
            Err(e) => report.problem(
                "nested_groups",
                health_message(&e),
                "set nested_groups = false",
            ),
        }
    }

    fn probe_attribute(
        &self,
        entry: &SearchEntry,
        field: &str,
        attr: &str,
        report: &mut ProbeReport,
    ) {
        match server_spelling(entry, attr) {
            Some(spelling) => report.findings.push(format!(
                "{field} = \"{attr}\": found, the server spells it {spelling}"
            )),
            None if OPTIONAL_ATTRIBUTES.contains(&field) => report.warning(
                field,
                format!("\"{attr}\" is missing on the probe user {}", entry.dn),
                "check the attribute's name in the server's schema (or the user has no value)",
            ),
            None => report.problem(
                field,
                format!("\"{attr}\" is missing on the probe user {}", entry.dn),
                "set it to the attribute the server has (names compare case-insensitively)",
            ),
        }
    }

    fn probe_immutable_id(&self, entry: &SearchEntry, report: &mut ProbeReport) {
        let config = &self.settings.config;
        let source = match server_spelling(entry, &config.immutable_id_attr) {
            Some(spelling) => spelling.to_owned(),
            None => match server_spelling(entry, &config.object_guid_attr) {
                Some(guid) => format!(
                    "{guid}: the entry has no {}, so it falls back to {guid} as Entra Connect does",
                    config.immutable_id_attr
                ),
                None => String::new(),
            },
        };
        match self.immutable_id(entry) {
            Ok(id) => report
                .findings
                .push(format!("ImmutableID it would issue: {id} (from {source})")),
            Err(e) => report.problem(
                "immutable_id_attr",
                health_message(&e),
                "set immutable_id_attr to the sourceAnchor Entra Connect used (objectGUID or \
                 mS-DS-ConsistencyGuid)",
            ),
        }
    }
}

/// How the server spells `attr` on `entry` (AD answers with its schema's spelling).
fn server_spelling<'a>(entry: &'a SearchEntry, attr: &str) -> Option<&'a str> {
    entry
        .attrs
        .keys()
        .chain(entry.bin_attrs.keys())
        .find(|name| name.eq_ignore_ascii_case(attr))
        .map(String::as_str)
}
