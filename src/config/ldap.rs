//! `[directories.NAME]` with `kind = "ldap"`: the LDAP / Active Directory server, the service
//! account, the filters and attributes, the sign-in name forms. The backend built from it is
//! `directory::ldap`.

use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigProblem;
use crate::secret::Secret;

/// One user name form a directory accepts at sign-in.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NameForm {
    /// `alice@contoso.com`, searched by userPrincipalName.
    Upn,
    /// `CONTOSO\alice`, searched by sAMAccountName when the domain is `netbios_domain`.
    Netbios,
    /// `alice`, searched by sAMAccountName.
    Bare,
}

/// `[directories.NAME]` with `kind = "ldap"`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapConfig {
    /// `ldap://host:port` or `ldaps://host:port`.
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS.
    #[serde(default)]
    pub starttls: bool,
    /// PEM CA certificates to trust for TLS instead of the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Service account DN for searches; anonymous when absent.
    #[serde(default)]
    pub bind_dn: Option<String>,
    /// Service account password (prefer `bind_password_file` or `bind_password_env`).
    #[serde(default)]
    pub bind_password: Option<Secret>,
    /// File whose content (trailing newline removed) is the service account password.
    #[serde(default)]
    pub bind_password_file: Option<PathBuf>,
    /// Environment variable holding the service account password.
    #[serde(default)]
    pub bind_password_env: Option<String>,
    /// Base DN of user (and computer) searches.
    pub user_base: String,
    /// Filter finding a user by UPN; `{upn}` is replaced by the escaped UPN.
    #[serde(default = "default_user_filter")]
    pub user_filter: String,
    /// Filter finding a user or computer by `sAMAccountName`; `{sam}` is replaced.
    #[serde(default = "default_account_filter")]
    pub account_filter: String,
    /// User name forms accepted at sign-in: `"upn"` (`alice@contoso.com`), `"netbios"`
    /// (`CONTOSO\alice`) and `"bare"` (`alice`); the short forms search `account_filter`.
    #[serde(default = "default_sign_in_forms")]
    pub sign_in_forms: Vec<NameForm>,
    /// NetBIOS domain name of the `"netbios"` form, e.g. `CONTOSO` (case-insensitive).
    #[serde(default)]
    pub netbios_domain: Option<String>,
    /// UPN suffix the short forms stand for in the lockout and audit, e.g. `contoso.com`.
    #[serde(default)]
    pub upn_suffix: Option<String>,
    /// Direct bind instead of search-then-bind: a DN with `{upn}`, e.g. `uid={upn},ou=people,…`.
    #[serde(default)]
    pub bind_dn_template: Option<String>,
    /// Attribute holding the UPN.
    #[serde(default = "default_upn_attr")]
    pub upn_attr: String,
    /// Source of the ImmutableID: `objectGUID` / `mS-DS-ConsistencyGuid` (base64 of the 16 raw
    /// bytes; an entry without `mS-DS-ConsistencyGuid` falls back to `objectGUID`, as Entra
    /// Connect does), `entryUUID` (base64 of the UUID's 16 bytes), or any attribute taken as-is.
    /// Names are case-insensitive (RFC 4512), in every `*_attr` key.
    #[serde(default = "default_immutable_id_attr")]
    pub immutable_id_attr: String,
    /// Attribute listing groups (their DNs; device-trust policies match them by CN or by DN).
    #[serde(default = "default_groups_attr")]
    pub groups_attr: String,
    /// Active Directory: read groups transitively (nested groups) with the in-chain matching
    /// rule 1.2.840.113556.1.4.1941, searching groups under `user_base`, instead of `groups_attr`.
    #[serde(default)]
    pub nested_groups: bool,
    /// Attribute holding the display name.
    #[serde(default = "default_display_name_attr")]
    pub display_name_attr: String,
    /// Attribute holding the pre-Windows 2000 logon name.
    #[serde(default = "default_sam_attr")]
    pub sam_account_name_attr: String,
    /// Attribute holding the binary object GUID (computers' `onpremobjectguid`).
    #[serde(default = "default_object_guid_attr")]
    pub object_guid_attr: String,
    /// Attribute holding the binary SID (computers' `primarysid`).
    #[serde(default = "default_object_sid_attr")]
    pub object_sid_attr: String,
    /// Treat AD `userAccountControl` bit 2 (ACCOUNTDISABLE) as disabled.
    #[serde(default = "default_true")]
    pub user_account_control: bool,
    /// An entry is enabled only when it matches this filter, e.g. `(!(employeeType=disabled))`.
    #[serde(default)]
    pub enabled_filter: Option<String>,
    /// Time limit of every connect and operation, in seconds.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Most connections open at once.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
}

fn default_user_filter() -> String {
    "(&(objectClass=user)(userPrincipalName={upn}))".into()
}
fn default_account_filter() -> String {
    "(&(objectClass=user)(sAMAccountName={sam}))".into()
}
fn default_sign_in_forms() -> Vec<NameForm> {
    vec![NameForm::Upn]
}
fn default_upn_attr() -> String {
    "userPrincipalName".into()
}
fn default_immutable_id_attr() -> String {
    "objectGUID".into()
}
fn default_groups_attr() -> String {
    "memberOf".into()
}
fn default_display_name_attr() -> String {
    "displayName".into()
}
fn default_sam_attr() -> String {
    "sAMAccountName".into()
}
fn default_object_guid_attr() -> String {
    "objectGUID".into()
}
fn default_object_sid_attr() -> String {
    "objectSid".into()
}
fn default_true() -> bool {
    true
}
fn default_timeout_secs() -> u64 {
    5
}
fn default_pool_size() -> usize {
    8
}

impl LdapConfig {
    /// Resolves relative file paths with `resolve`.
    pub fn resolve_paths(&mut self, resolve: impl Fn(&mut PathBuf)) {
        for path in [&mut self.ca_file, &mut self.bind_password_file]
            .into_iter()
            .flatten()
        {
            resolve(path);
        }
    }

    /// Every structural problem, keys under `prefix` (e.g. `directories.corp`).
    pub fn problems(&self, prefix: &str) -> Vec<ConfigProblem> {
        let key = |field: &str| format!("{prefix}.{field}");
        let mut problems = Vec::new();
        problems.extend(self.url_problems(&key("url")));
        let sources = [
            self.bind_password.is_some(),
            self.bind_password_file.is_some(),
            self.bind_password_env.is_some(),
        ]
        .into_iter()
        .filter(|set| *set)
        .count();
        if self.bind_dn.is_some() && sources != 1 {
            problems.push(ConfigProblem::new(
                key("bind_dn"),
                format!("needs exactly one password source, found {sources}"),
                "set one of bind_password, bind_password_file, bind_password_env",
            ));
        }
        if self.bind_dn.is_none() && sources > 0 {
            problems.push(ConfigProblem::new(
                key("bind_password"),
                "a password is set but bind_dn is not",
                "set bind_dn to the service account's DN, or remove the password",
            ));
        }
        if self.user_base.trim().is_empty() {
            problems.push(ConfigProblem::new(
                key("user_base"),
                "is empty",
                "set the DN under which users live, e.g. \"ou=people,dc=example,dc=com\"",
            ));
        }
        for (field, filter, placeholder) in [
            ("user_filter", &self.user_filter, "{upn}"),
            ("account_filter", &self.account_filter, "{sam}"),
        ] {
            problems.extend(filter_problems(&key(field), filter, Some(placeholder)));
        }
        if let Some(filter) = &self.enabled_filter {
            problems.extend(filter_problems(&key("enabled_filter"), filter, None));
        }
        if let Some(template) = &self.bind_dn_template
            && !template.contains("{upn}")
        {
            problems.push(ConfigProblem::new(
                key("bind_dn_template"),
                "does not contain {upn}",
                "write e.g. \"uid={upn},ou=people,dc=example,dc=com\"",
            ));
        }
        problems.extend(self.sign_in_form_problems(prefix));
        if !(1..=60).contains(&self.timeout_secs) {
            problems.push(ConfigProblem::new(
                key("timeout_secs"),
                format!("{} is out of range", self.timeout_secs),
                "use 1..=60 seconds",
            ));
        }
        if !(1..=64).contains(&self.pool_size) {
            problems.push(ConfigProblem::new(
                key("pool_size"),
                format!("{} is out of range", self.pool_size),
                "use 1..=64 connections",
            ));
        }
        problems
    }

    /// Problems of the sign-in name forms' keys under `prefix`; short forms need
    /// search-then-bind (`bind_dn_template` builds a DN from a UPN, so they cannot use it).
    fn sign_in_form_problems(&self, prefix: &str) -> Vec<ConfigProblem> {
        let direct_bind = self.bind_dn_template.is_some();
        let key = |field: &str| format!("{prefix}.{field}");
        let mut problems = Vec::new();
        if self.sign_in_forms.is_empty() {
            problems.push(ConfigProblem::new(
                key("sign_in_forms"),
                "is empty, so nobody can sign in",
                "list at least one of \"upn\", \"netbios\", \"bare\"",
            ));
        }
        let short = self.sign_in_forms.iter().any(|f| *f != NameForm::Upn);
        if self.sign_in_forms.contains(&NameForm::Netbios)
            && !self.netbios_domain.as_deref().is_some_and(|d| {
                !d.is_empty() && d.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            })
        {
            problems.push(ConfigProblem::new(
                key("netbios_domain"),
                "is missing or not a NetBIOS domain name, but sign_in_forms has \"netbios\"",
                "set the domain's NetBIOS name, e.g. netbios_domain = \"CONTOSO\"",
            ));
        }
        if short && !self.upn_suffix.as_deref().is_some_and(is_domain_name) {
            problems.push(ConfigProblem::new(
                key("upn_suffix"),
                "is missing or not a domain name, but sign_in_forms has a short form",
                "set the UPN suffix the short names stand for, e.g. upn_suffix = \"contoso.com\"",
            ));
        }
        if short && direct_bind {
            problems.push(ConfigProblem::new(
                key("sign_in_forms"),
                "short forms need search-then-bind, but bind_dn_template is set",
                "remove bind_dn_template, or keep sign_in_forms = [\"upn\"]",
            ));
        }
        problems
    }

    fn url_problems(&self, key: &str) -> Vec<ConfigProblem> {
        let (tls, rest) = if let Some(rest) = self.url.strip_prefix("ldaps://") {
            (true, rest)
        } else if let Some(rest) = self.url.strip_prefix("ldap://") {
            (false, rest)
        } else {
            return vec![ConfigProblem::new(
                key,
                format!("`{}` is not an ldap:// or ldaps:// URL", self.url),
                "write e.g. \"ldaps://dc1.example.com:636\"",
            )];
        };
        let host = host_of(rest);
        let mut problems = Vec::new();
        if host.is_empty() {
            problems.push(ConfigProblem::new(
                key,
                "has no host",
                "write e.g. \"ldaps://dc1.example.com\"",
            ));
        }
        if tls && self.starttls {
            problems.push(ConfigProblem::new(
                key,
                "ldaps:// with starttls = true",
                "use either ldaps:// or ldap:// with starttls = true",
            ));
        }
        if !tls && !self.starttls && !is_loopback_host(host) {
            problems.push(ConfigProblem::new(
                key,
                "passwords would cross the network in clear text",
                "use ldaps:// or set starttls = true",
            ));
        }
        if !tls && !self.starttls && self.ca_file.is_some() {
            problems.push(ConfigProblem::new(
                key,
                "ca_file is set but the connection does not use TLS",
                "use ldaps:// or set starttls = true",
            ));
        }
        problems
    }
}

fn host_of(rest: &str) -> &str {
    let authority = rest.split('/').next().unwrap_or("");
    if let Some(bracketed) = authority.strip_prefix('[') {
        return bracketed.split(']').next().unwrap_or("");
    }
    authority.split(':').next().unwrap_or("")
}

fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn filter_problems(key: &str, filter: &str, placeholder: Option<&str>) -> Vec<ConfigProblem> {
    let mut problems = Vec::new();
    if !is_balanced_filter(filter) {
        problems.push(ConfigProblem::new(
            key,
            format!("`{filter}` is not a parenthesised LDAP filter"),
            "write e.g. \"(&(objectClass=user)(userPrincipalName={upn}))\"",
        ));
    }
    if let Some(placeholder) = placeholder
        && !filter.contains(placeholder)
    {
        problems.push(ConfigProblem::new(
            key,
            format!("does not contain {placeholder}"),
            format!("put {placeholder} where the looked-up value goes"),
        ));
    }
    problems
}

fn is_balanced_filter(filter: &str) -> bool {
    if !filter.starts_with('(') || !filter.ends_with(')') {
        return false;
    }
    let mut depth: i64 = 0;
    for c in filter.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ => {}
        }
        if depth < 0 {
            return false;
        }
    }
    depth == 0
}

fn is_domain_name(name: &str) -> bool {
    name.contains('.')
        && name.split('.').all(|label| {
            !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> LdapConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn config_problems_name_their_keys() {
        let good = config(
            "url = \"ldaps://dc1.example.com\"\nuser_base = \"dc=example,dc=com\"\nbind_dn = \"cn=svc\"\nbind_password_env = \"P\"\n",
        );
        assert!(good.problems("directories.corp").is_empty());
        let bad = config(
            "url = \"ldap://dc1.example.com\"\nuser_base = \"\"\nbind_dn = \"cn=svc\"\nuser_filter = \"(uid=x)\"\nbind_dn_template = \"uid=x\"\ntimeout_secs = 0\n",
        );
        let shown: Vec<String> = bad
            .problems("directories.corp")
            .iter()
            .map(ToString::to_string)
            .collect();
        let keys: Vec<&str> = shown.iter().map(|s| s.split(':').next().unwrap()).collect();
        assert_eq!(
            keys,
            [
                "directories.corp.url",
                "directories.corp.bind_dn",
                "directories.corp.user_base",
                "directories.corp.user_filter",
                "directories.corp.bind_dn_template",
                "directories.corp.timeout_secs",
            ],
            "{shown:?}"
        );
        assert!(shown[0].contains("clear text"), "{}", shown[0]);
        let loopback = config("url = \"ldap://127.0.0.1:3890\"\nuser_base = \"dc=x\"\n");
        assert!(loopback.problems("d").is_empty());
        let unknown: Result<LdapConfig, _> =
            toml::from_str("url = \"ldap://x\"\nuser_base = \"dc=x\"\nuser_filtre = \"\"\n");
        assert!(unknown.unwrap_err().to_string().contains("user_filtre"));
    }

    #[test]
    fn short_forms_need_their_keys() {
        let bare = config(
            "url = \"ldaps://dc1.example.com\"\nuser_base = \"dc=x\"\nsign_in_forms = [\"upn\", \"netbios\", \"bare\"]\nupn_suffix = \"contoso\"\nbind_dn_template = \"uid={upn},dc=x\"\n",
        );
        let keys: Vec<String> = bare
            .problems("directories.ad")
            .into_iter()
            .map(|p| p.key)
            .collect();
        assert_eq!(
            keys,
            [
                "directories.ad.netbios_domain",
                "directories.ad.upn_suffix",
                "directories.ad.sign_in_forms"
            ]
        );
        let all = config(
            "url = \"ldaps://dc1.example.com\"\nuser_base = \"dc=x\"\nsign_in_forms = [\"upn\", \"netbios\", \"bare\"]\nnetbios_domain = \"CONTOSO\"\nupn_suffix = \"contoso.test\"\n",
        );
        assert!(all.problems("d").is_empty(), "{:?}", all.problems("d"));
        let none =
            config("url = \"ldaps://dc1.example.com\"\nuser_base = \"dc=x\"\nsign_in_forms = []\n");
        assert!(!none.problems("d").is_empty());
    }
}
