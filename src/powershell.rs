//! The PowerShell an administrator runs to federate a custom domain with this STS
//! (served as text on `GET /wsfed/{app}/commands` and printed by `fedsts commands`).
//!
//! Every value comes from [`FederationSettings`], which the caller fills from the same
//! configuration that drives MEX and the issued assertions, so what Entra is told agrees with
//! what we serve (docs/protocol-notes.md#domain-federation-settings).

use std::fmt::Write as _;

/// Everything the PowerShell lines need; values come from config so they agree with MEX and assertions.
#[derive(Clone, Debug)]
pub struct FederationSettings {
    /// The verified custom domain to federate, e.g. `contoso.com`.
    pub domain: String,
    /// Display name (Graph `displayName`, MSOnline `FederationBrandName`).
    pub display_name: String,
    /// Issuer URI; equals the SAML `Issuer` of our assertions for this domain.
    pub issuer_uri: String,
    /// Passive WS-Federation sign-in URL for browsers.
    pub passive_sign_in_uri: String,
    /// Active WS-Trust endpoint, `…/trust/2005/usernamemixed`.
    pub active_sign_in_uri: String,
    /// MEX URL.
    pub metadata_exchange_uri: String,
    /// Sign-out URL (MSOnline `LogOffUri`).
    pub sign_out_uri: String,
    /// Federation metadata URL (mentioned for reference and rollover tooling).
    pub metadata_uri: String,
    /// Base64 of the DER token-signing certificate (no PEM armour).
    pub signing_certificate_b64: String,
    /// Base64 of the DER next token-signing certificate, during a rollover.
    pub next_signing_certificate_b64: Option<String>,
}

/// The complete PowerShell script (comments and commands) for `settings`.
pub fn render(settings: &FederationSettings) -> String {
    let mut script = String::new();
    write_header(&mut script, settings);
    write_graph_create(&mut script, settings);
    write_graph_update(&mut script, settings);
    write_msonline(&mut script, settings);
    write_verification(&mut script, settings);
    script
}

fn write_header(script: &mut String, settings: &FederationSettings) {
    let lines = [
        format!("# Federate the domain {} with this STS.", settings.domain),
        "# Requirements:".to_owned(),
        "# - The domain must be a verified custom domain of the tenant (*.onmicrosoft.com cannot be federated).".to_owned(),
        "# - Every user must have onPremisesImmutableId equal to the ImmutableID this STS sends".to_owned(),
        "#   and a userPrincipalName in this domain.".to_owned(),
        "# - Changes can take up to two hours to take effect.".to_owned(),
        format!("# Federation metadata: {}", settings.metadata_uri),
        String::new(),
    ];
    push_lines(script, &lines);
}

fn write_graph_create(script: &mut String, settings: &FederationSettings) {
    push_lines(
        script,
        &[
            "# A. Microsoft Graph PowerShell, the domain is still managed: create the federation configuration.".to_owned(),
            "Connect-MgGraph -Scopes \"Domain.ReadWrite.All\"".to_owned(),
        ],
    );
    let mut parameters = vec![
        ("DomainId", quote(&settings.domain)),
        ("DisplayName", quote(&settings.display_name)),
        ("IssuerUri", quote(&settings.issuer_uri)),
        ("PassiveSignInUri", quote(&settings.passive_sign_in_uri)),
        ("ActiveSignInUri", quote(&settings.active_sign_in_uri)),
        (
            "MetadataExchangeUri",
            quote(&settings.metadata_exchange_uri),
        ),
        ("SignOutUri", quote(&settings.sign_out_uri)),
    ];
    parameters.extend(certificate_parameters(settings));
    parameters.extend([
        ("PreferredAuthenticationProtocol", quote("wsFed")),
        (
            "FederatedIdpMfaBehavior",
            quote("acceptIfMfaDoneByFederatedIdp"),
        ),
        ("PromptLoginBehavior", quote("nativeSupport")),
    ]);
    write_command(script, "New-MgDomainFederationConfiguration", &parameters);
    script.push('\n');
}

fn write_graph_update(script: &mut String, settings: &FederationSettings) {
    push_lines(
        script,
        &[
            "# B. The domain is already federated, or the signing certificate rolls over: run this instead of A.".to_owned(),
        ],
    );
    let domain = quote(&settings.domain);
    let mut parameters = vec![
        ("DomainId", domain.clone()),
        (
            "InternalDomainFederationId",
            format!("(Get-MgDomainFederationConfiguration -DomainId {domain}).Id"),
        ),
    ];
    parameters.extend(certificate_parameters(settings));
    write_command(
        script,
        "Update-MgDomainFederationConfiguration",
        &parameters,
    );
    script.push('\n');
}

fn write_msonline(script: &mut String, settings: &FederationSettings) {
    push_lines(
        script,
        &[
            "# C. Legacy MSOnline equivalent of A (the MSOnline module is retired and may no longer work);".to_owned(),
            "#    uncomment to use.".to_owned(),
            "# Connect-MsolService".to_owned(),
        ],
    );
    let mut parameters = vec![
        ("DomainName", quote(&settings.domain)),
        ("Authentication", "Federated".to_owned()),
        ("FederationBrandName", quote(&settings.display_name)),
        ("IssuerUri", quote(&settings.issuer_uri)),
        ("PassiveLogOnUri", quote(&settings.passive_sign_in_uri)),
        ("ActiveLogOnUri", quote(&settings.active_sign_in_uri)),
        (
            "MetadataExchangeUri",
            quote(&settings.metadata_exchange_uri),
        ),
        ("LogOffUri", quote(&settings.sign_out_uri)),
    ];
    parameters.extend(certificate_parameters(settings));
    parameters.extend([
        ("PreferredAuthenticationProtocol", "WsFed".to_owned()),
        ("SupportsMfa", "$true".to_owned()),
    ]);
    let mut command = String::new();
    write_command(&mut command, "Set-MsolDomainAuthentication", &parameters);
    for line in command.lines() {
        let _ = writeln!(script, "# {line}");
    }
    script.push('\n');
}

fn write_verification(script: &mut String, settings: &FederationSettings) {
    let domain = quote(&settings.domain);
    push_lines(
        script,
        &[
            "# Verify: AuthenticationType must be Federated.".to_owned(),
            format!("Get-MgDomain -DomainId {domain} | Select Id, AuthenticationType"),
            format!("Get-MgDomainFederationConfiguration -DomainId {domain}"),
            "# Legacy MSOnline check:".to_owned(),
            format!("# Get-MsolDomain -DomainName {domain}"),
        ],
    );
}

/// `-SigningCertificate` and, during a rollover, `-NextSigningCertificate`.
fn certificate_parameters(settings: &FederationSettings) -> Vec<(&'static str, String)> {
    let mut parameters = vec![(
        "SigningCertificate",
        quote(&settings.signing_certificate_b64),
    )];
    if let Some(next) = &settings.next_signing_certificate_b64 {
        parameters.push(("NextSigningCertificate", quote(next)));
    }
    parameters
}

/// A command with one parameter per line, joined by PowerShell backtick continuations.
fn write_command(script: &mut String, command: &str, parameters: &[(&str, String)]) {
    script.push_str(command);
    for (name, value) in parameters {
        let _ = write!(script, " `\n    -{name} {value}");
    }
    script.push('\n');
}

fn push_lines(script: &mut String, lines: &[String]) {
    for line in lines {
        script.push_str(line);
        script.push('\n');
    }
}

/// A PowerShell double-quoted string literal whose content is taken literally: the backtick
/// (escape character), `$` (variable expansion) and every character PowerShell treats as a
/// double quote (`"` and the typographic `“` `”` `„`) are each escaped with a backtick.
fn quote(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars() {
        if matches!(c, '`' | '$' | '"' | '\u{201C}' | '\u{201D}' | '\u{201E}') {
            quoted.push('`');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> FederationSettings {
        FederationSettings {
            domain: "contoso.com".to_owned(),
            display_name: "Contoso STS".to_owned(),
            issuer_uri: "https://sts.contoso.com/wsfed/contoso".to_owned(),
            passive_sign_in_uri: "https://sts.contoso.com/wsfed/contoso".to_owned(),
            active_sign_in_uri: "https://sts.contoso.com/wsfed/contoso/trust/2005/usernamemixed"
                .to_owned(),
            metadata_exchange_uri: "https://sts.contoso.com/wsfed/contoso/mex".to_owned(),
            sign_out_uri: "https://sts.contoso.com/wsfed/contoso/signout".to_owned(),
            metadata_uri: "https://sts.contoso.com/wsfed/contoso/FederationMetadata.xml".to_owned(),
            signing_certificate_b64: "MIIBcurrent==".to_owned(),
            next_signing_certificate_b64: None,
        }
    }

    const GOLDEN: &str = r#"# Federate the domain contoso.com with this STS.
# Requirements:
# - The domain must be a verified custom domain of the tenant (*.onmicrosoft.com cannot be federated).
# - Every user must have onPremisesImmutableId equal to the ImmutableID this STS sends
#   and a userPrincipalName in this domain.
# - Changes can take up to two hours to take effect.
# Federation metadata: https://sts.contoso.com/wsfed/contoso/FederationMetadata.xml

# A. Microsoft Graph PowerShell, the domain is still managed: create the federation configuration.
Connect-MgGraph -Scopes "Domain.ReadWrite.All"
New-MgDomainFederationConfiguration `
    -DomainId "contoso.com" `
    -DisplayName "Contoso STS" `
    -IssuerUri "https://sts.contoso.com/wsfed/contoso" `
    -PassiveSignInUri "https://sts.contoso.com/wsfed/contoso" `
    -ActiveSignInUri "https://sts.contoso.com/wsfed/contoso/trust/2005/usernamemixed" `
    -MetadataExchangeUri "https://sts.contoso.com/wsfed/contoso/mex" `
    -SignOutUri "https://sts.contoso.com/wsfed/contoso/signout" `
    -SigningCertificate "MIIBcurrent==" `
    -PreferredAuthenticationProtocol "wsFed" `
    -FederatedIdpMfaBehavior "acceptIfMfaDoneByFederatedIdp" `
    -PromptLoginBehavior "nativeSupport"

# B. The domain is already federated, or the signing certificate rolls over: run this instead of A.
Update-MgDomainFederationConfiguration `
    -DomainId "contoso.com" `
    -InternalDomainFederationId (Get-MgDomainFederationConfiguration -DomainId "contoso.com").Id `
    -SigningCertificate "MIIBcurrent=="

# C. Legacy MSOnline equivalent of A (the MSOnline module is retired and may no longer work);
#    uncomment to use.
# Connect-MsolService
# Set-MsolDomainAuthentication `
#     -DomainName "contoso.com" `
#     -Authentication Federated `
#     -FederationBrandName "Contoso STS" `
#     -IssuerUri "https://sts.contoso.com/wsfed/contoso" `
#     -PassiveLogOnUri "https://sts.contoso.com/wsfed/contoso" `
#     -ActiveLogOnUri "https://sts.contoso.com/wsfed/contoso/trust/2005/usernamemixed" `
#     -MetadataExchangeUri "https://sts.contoso.com/wsfed/contoso/mex" `
#     -LogOffUri "https://sts.contoso.com/wsfed/contoso/signout" `
#     -SigningCertificate "MIIBcurrent==" `
#     -PreferredAuthenticationProtocol WsFed `
#     -SupportsMfa $true

# Verify: AuthenticationType must be Federated.
Get-MgDomain -DomainId "contoso.com" | Select Id, AuthenticationType
Get-MgDomainFederationConfiguration -DomainId "contoso.com"
# Legacy MSOnline check:
# Get-MsolDomain -DomainName "contoso.com"
"#;

    #[test]
    fn renders_the_golden_script() {
        assert_eq!(render(&settings()), GOLDEN);
    }

    #[test]
    fn next_certificate_follows_the_current_one_in_every_command() {
        let with_next = FederationSettings {
            next_signing_certificate_b64: Some("MIIBnext==".to_owned()),
            ..settings()
        };
        let script = render(&with_next);
        let pair =
            "-SigningCertificate \"MIIBcurrent==\" `\n    -NextSigningCertificate \"MIIBnext==\"";
        assert_eq!(script.matches(pair).count(), 2, "New- and Update-");
        let msonline_pair =
            "-SigningCertificate \"MIIBcurrent==\" `\n#     -NextSigningCertificate \"MIIBnext==\"";
        assert_eq!(script.matches(msonline_pair).count(), 1);
        assert!(script.contains("-NextSigningCertificate \"MIIBnext==\"\n\n# C."));
    }

    #[test]
    fn values_are_escaped_for_powershell_double_quotes() {
        let hostile = FederationSettings {
            display_name: "Contoso \"$(Remove-Item C:\\)\" `x".to_owned(),
            ..settings()
        };
        let script = render(&hostile);
        let escaped = "\"Contoso `\"`$(Remove-Item C:\\)`\" ``x\"";
        assert!(script.contains(&format!("-DisplayName {escaped} `\n")));
        assert!(script.contains(&format!("-FederationBrandName {escaped} `\n")));
        assert!(!script.contains("\"$("));
    }

    #[test]
    fn typographic_quotes_are_escaped_too() {
        assert_eq!(
            quote("a\u{201C}b\u{201D}c\u{201E}"),
            "\"a`\u{201C}b`\u{201D}c`\u{201E}\""
        );
        assert_eq!(quote("plain"), "\"plain\"");
    }
}
