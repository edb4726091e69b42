//! The PowerShell an administrator runs to federate a custom domain with this STS
//! (served as text on `GET /wsfed/{app}/commands` and printed by `fedsts commands`).
//!
//! Every value comes from [`FederationSettings`], which the caller fills from the same
//! configuration that drives MEX and the issued assertions, so what Entra is told agrees with
//! what we serve (protocol.md §6).

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
            "# Microsoft Graph PowerShell: federate a domain that is currently managed.".to_owned(),
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
            "# Already federated (or rolling the signing certificate over): update the existing configuration.".to_owned(),
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
            "# Legacy MSOnline equivalent (the MSOnline module is retired; use it only where it still works).".to_owned(),
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
