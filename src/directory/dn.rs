//! Distinguished names as RFC 4514 writes them, parsed enough to compare them the way a
//! directory does: attribute types and values case-insensitively (AD's `cn` is caseIgnore),
//! escaped commas and hex pairs (`\,` `\2C`) unescaped, spaces around separators ignored.
//!
//! Group memberships come from the directory as DNs (`CN=Sales\, EMEA,OU=Groups,…`); a
//! device-trust policy names groups by CN (`staff`) or by full DN. [`group_matches`] is the one
//! place that decides whether they name the same group, so that a spelling difference never
//! lets a covered user through without a device.

/// One relative distinguished name's first attribute: type (lower case) and unescaped value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rdn {
    /// Attribute type, lower-cased (`cn`).
    pub attr: String,
    /// Attribute value with RFC 4514 escapes undone.
    pub value: String,
}

/// Parses `text` as an RFC 4514 DN; `None` when it is not one (no `type=value` first RDN,
/// a dangling escape, or an empty component). Multi-valued RDNs (`+`) keep their first part.
pub fn parse(text: &str) -> Option<Vec<Rdn>> {
    let mut rdns = Vec::new();
    for component in split_unescaped(text, ',')? {
        let first = split_unescaped(&component, '+')?.into_iter().next()?;
        let (attr, value) = first.split_once('=')?;
        let attr = attr.trim();
        if attr.is_empty()
            || !attr
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            return None;
        }
        rdns.push(Rdn {
            attr: attr.to_ascii_lowercase(),
            value: unescape(value.trim())?,
        });
    }
    (!rdns.is_empty()).then_some(rdns)
}

/// The value of the first RDN (`CN=Sales\, EMEA,OU=x` → `Sales, EMEA`), or `None` when `text`
/// is not a DN.
pub fn first_value(text: &str) -> Option<String> {
    parse(text).and_then(|rdns| rdns.into_iter().next().map(|rdn| rdn.value))
}

/// Whether a policy's group (`wanted`: a CN such as `staff`, an RDN such as `cn=staff`, or a
/// full DN) names the directory group `member` (a DN, or a plain name from a backend without
/// DNs). Names compare case-insensitively with the member's first RDN value, an RDN with its
/// first RDN, a DN RDN by RDN. Matching errs towards covering: a policy that fails to match
/// would let its user through without a device.
pub fn group_matches(wanted: &str, member: &str) -> bool {
    let member_dn = parse(member);
    match (parse(wanted).filter(|_| wanted.contains('=')), member_dn) {
        (Some(wanted_dn), Some(member_dn)) if wanted_dn.len() > 1 => {
            same_dn(&wanted_dn, &member_dn)
        }
        (Some(wanted_dn), Some(member_dn)) => same_dn(&wanted_dn, &member_dn[..1]),
        (Some(_), None) => false,
        (None, member_dn) => {
            let name = member_dn
                .and_then(|rdns| rdns.into_iter().next().map(|rdn| rdn.value))
                .unwrap_or_else(|| member.to_owned());
            caseless_eq(wanted.trim(), name.trim())
        }
    }
}

fn same_dn(a: &[Rdn], b: &[Rdn]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.attr == y.attr && caseless_eq(&x.value, &y.value))
}

fn caseless_eq(a: &str, b: &str) -> bool {
    a.to_lowercase() == b.to_lowercase()
}

/// Splits at `separator` where it is not escaped by a backslash; `None` on a trailing `\`.
fn split_unescaped(text: &str, separator: char) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            current.push(c);
            current.push(chars.next()?);
        } else if c == separator {
            parts.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    parts.push(current);
    parts.iter().all(|p| !p.trim().is_empty()).then_some(parts)
}

/// Undoes RFC 4514 escapes: `\` before a special character, or two hex digits (UTF-8 bytes).
fn unescape(value: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(value.len());
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buffer = [0u8; 4];
            bytes.extend_from_slice(c.encode_utf8(&mut buffer).as_bytes());
            continue;
        }
        let next = chars.next()?;
        match (next.to_digit(16), chars.peek().and_then(|c| c.to_digit(16))) {
            (Some(high), Some(low)) => {
                chars.next();
                bytes.push(u8::try_from(high * 16 + low).ok()?);
            }
            _ => {
                let mut buffer = [0u8; 4];
                bytes.extend_from_slice(next.encode_utf8(&mut buffer).as_bytes());
            }
        }
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_commas_stay_in_the_value() {
        assert_eq!(
            first_value(r"CN=Sales\, EMEA,OU=Groups,DC=contoso,DC=test").as_deref(),
            Some("Sales, EMEA")
        );
        assert_eq!(
            first_value(r"CN=Sales\2C EMEA,DC=test").as_deref(),
            Some("Sales, EMEA")
        );
        assert_eq!(first_value("staff"), None);
        assert_eq!(first_value(r"CN=x\"), None);
    }

    #[test]
    fn groups_match_by_name_in_any_case() {
        let staff = "CN=Staff,CN=Users,DC=contoso,DC=test";
        assert!(group_matches("staff", staff));
        assert!(group_matches("STAFF", staff));
        assert!(group_matches("Sales, EMEA", r"CN=Sales\, EMEA,DC=test"));
        assert!(!group_matches("Sales", r"CN=Sales\, EMEA,DC=test"));
        assert!(group_matches("staff", "Staff"));
        assert!(!group_matches("staf", staff));
    }

    #[test]
    fn groups_match_by_full_dn_in_any_spelling() {
        let staff = "CN=Staff,CN=Users,DC=contoso,DC=test";
        assert!(group_matches(
            "cn=staff, cn=users, dc=contoso, dc=test",
            staff
        ));
        assert!(group_matches(
            r"cn=st\61ff,cn=users,dc=contoso,dc=test",
            staff
        ));
        assert!(!group_matches(
            "cn=staff,cn=users,dc=fabrikam,dc=test",
            staff
        ));
        assert!(group_matches("cn=staff", staff));
        assert!(!group_matches("ou=staff", staff));
    }
}
