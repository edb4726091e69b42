//! Sign-in name forms of an LDAP / Active Directory directory: `user@upn-suffix` (searched by
//! userPrincipalName), and, as the admin enables them, `DOMAIN\name` (NetBIOS domain form) and
//! bare `name` (both searched by sAMAccountName). A form that is not enabled is searched as a
//! UPN, exactly as before the forms existed, so it finds nobody.
//!
//! The lockout and the audit must count one account once whatever form is typed, and they
//! decide before the directory is asked, so [`SignInNames::canonical`] maps the short forms
//! syntactically to `name@upn_suffix`: `CONTOSO\alice`, `alice` and `alice@contoso.test` share
//! one counter. An account whose sAMAccountName differs from its UPN's local part (`jdoe`,
//! `john.doe@…`) is resolved to its real UPN by the LDAP directory before the lockout decides
//! (`LdapDirectory::canonical_name`); this syntactic mapping keys names nobody has, and a
//! directory that cannot answer refuses the sign-in instead of falling back to it.

use crate::config::LdapConfig;
use crate::config::ldap::NameForm;

/// What a typed name is searched by.
#[derive(Debug, PartialEq, Eq)]
pub enum NameLookup<'a> {
    /// The user filter, with the name as the UPN.
    Upn(&'a str),
    /// The account filter, with the sAMAccountName.
    Account(&'a str),
}

/// The accepted forms and what the short forms need (from the directory's config).
#[derive(Clone, Copy, Debug)]
pub struct SignInNames<'a> {
    /// Forms accepted.
    pub forms: &'a [NameForm],
    /// NetBIOS domain name of the `DOMAIN\name` form (compared case-insensitively).
    pub netbios_domain: Option<&'a str>,
    /// UPN suffix the short forms stand for (the lockout and audit key).
    pub upn_suffix: Option<&'a str>,
}

impl<'a> SignInNames<'a> {
    /// The forms `config` accepts.
    pub fn of(config: &'a LdapConfig) -> Self {
        Self {
            forms: &config.sign_in_forms,
            netbios_domain: config.netbios_domain.as_deref(),
            upn_suffix: config.upn_suffix.as_deref(),
        }
    }

    /// How `typed` is searched; a form not enabled (or a sAMAccountName ending in `$`, a
    /// computer's) is searched as a UPN, which finds nobody.
    pub fn lookup<'t>(&self, typed: &'t str) -> NameLookup<'t> {
        self.account_name(typed)
            .map_or(NameLookup::Upn(typed), NameLookup::Account)
    }

    /// The name the lockout and audit key on: the UPN form, short forms mapped to
    /// `name@upn_suffix` in lower case.
    pub fn canonical(&self, typed: &str) -> String {
        match (self.account_name(typed), self.upn_suffix) {
            (Some(sam), Some(suffix)) => format!("{sam}@{suffix}").to_lowercase(),
            _ => typed.to_owned(),
        }
    }

    /// The sAMAccountName of an enabled short form.
    fn account_name<'t>(&self, typed: &'t str) -> Option<&'t str> {
        let (form, sam) = match typed.split_once('\\') {
            Some((domain, sam)) => {
                let ours = self
                    .netbios_domain
                    .is_some_and(|d| d.eq_ignore_ascii_case(domain));
                (NameForm::Netbios, ours.then_some(sam)?)
            }
            None if typed.contains('@') => return None,
            None => (NameForm::Bare, typed),
        };
        let plain = !sam.is_empty() && !sam.contains(['\\', '@']) && !sam.ends_with('$');
        (plain && self.forms.contains(&form)).then_some(sam)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [NameForm; 3] = [NameForm::Upn, NameForm::Netbios, NameForm::Bare];

    fn names(forms: &[NameForm]) -> SignInNames<'_> {
        SignInNames {
            forms,
            netbios_domain: Some("CONTOSO"),
            upn_suffix: Some("contoso.test"),
        }
    }

    #[test]
    fn short_forms_search_the_account_only_when_enabled() {
        let all = names(&ALL);
        assert_eq!(all.lookup(r"contoso\Alice"), NameLookup::Account("Alice"));
        assert_eq!(all.lookup("alice"), NameLookup::Account("alice"));
        assert_eq!(
            all.lookup("alice@contoso.test"),
            NameLookup::Upn("alice@contoso.test")
        );
        for typed in [
            r"FABRIKAM\alice",
            r"CONTOSO\",
            r"CONTOSO\a\b",
            "WS01$",
            r"CONTOSO\WS01$",
        ] {
            assert_eq!(all.lookup(typed), NameLookup::Upn(typed), "{typed}");
        }
        let upn_only = names(&[NameForm::Upn]);
        assert_eq!(
            upn_only.lookup(r"CONTOSO\alice"),
            NameLookup::Upn(r"CONTOSO\alice")
        );
        assert_eq!(upn_only.lookup("alice"), NameLookup::Upn("alice"));
    }

    #[test]
    fn every_form_of_one_account_has_one_canonical_name() {
        let all = names(&ALL);
        for typed in [r"CONTOSO\alice", r"contoso\ALICE", "Alice"] {
            assert_eq!(all.canonical(typed), "alice@contoso.test", "{typed}");
        }
        assert_eq!(names(&[NameForm::Upn]).canonical("alice"), "alice");
    }
}
