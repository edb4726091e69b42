//! WS-MetadataExchange (MEX) document: the WSDL that tells WS-Trust clients (MSAL, ADAL,
//! Windows CloudAP, Office) which endpoints we serve and how to talk to them.
//!
//! The document follows the shape ADFS publishes (docs/protocol-notes.md#mex): one `wsp:Policy` per
//! binding first, then `wsdl:types`, messages, the two WS-Trust port types, one `wsdl:binding`
//! per advertised endpoint and finally `wsdl:service` with one port per endpoint. Only endpoints
//! that are configured appear; every policy, binding and port belongs to exactly one endpoint, so
//! nothing dangles when an endpoint is left out.

use crate::protocol::ns::{SOAP12, TRUST_13, TRUST_2005, WSA, WSP, WSU};
use crate::protocol::wstrust::TrustVersion;
use crate::protocol::xml;
use std::fmt::Write as _;

const NS_WSDL: &str = "http://schemas.xmlsoap.org/wsdl/";
const NS_XSD: &str = "http://www.w3.org/2001/XMLSchema";
const NS_SOAP12_WSDL: &str = "http://schemas.xmlsoap.org/wsdl/soap12/";
const NS_WSAW: &str = "http://www.w3.org/2006/05/addressing/wsdl";
const NS_WSX: &str = "http://schemas.xmlsoap.org/ws/2004/09/mex";
const NS_TNS: &str = "http://schemas.microsoft.com/ws/2008/06/identity/securitytokenservice";
const NS_SP_13: &str = "http://docs.oasis-open.org/ws-sx/ws-securitypolicy/200702";
const NS_SP_2005: &str = "http://schemas.xmlsoap.org/ws/2005/07/securitypolicy";
const NS_MSSP: &str = "http://schemas.microsoft.com/ws/2005/07/securitypolicy";
const NS_HTTP_POLICY: &str = "http://schemas.microsoft.com/ws/06/2004/policy/http";
const NS_ADDRESSING_IDENTITY: &str = "http://schemas.xmlsoap.org/ws/2006/02/addressingidentity";

const SOAP_HTTP_TRANSPORT: &str = "http://schemas.xmlsoap.org/soap/http";
const ACTION_GET_RESPONSE: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer/GetResponse";

/// The endpoints this app serves, as absolute https URLs (built by the caller from public_url).
#[derive(Clone, Debug)]
pub struct MexEndpoints {
    /// `…/trust/13/usernamemixed`, when served.
    pub usernamemixed_13: Option<String>,
    /// `…/trust/2005/usernamemixed`, when served.
    pub usernamemixed_2005: Option<String>,
    /// `…/trust/13/windowstransport` (Kerberos/Negotiate), when served.
    pub windowstransport_13: Option<String>,
    /// `…/trust/2005/windowstransport` (Kerberos/Negotiate), when served.
    pub windowstransport_2005: Option<String>,
    /// Kerberos SPN advertised in the windowstransport EPRs (Identity/Spn), when Kerberos is on.
    pub windowstransport_spn: Option<String>,
}

/// The MEX document, root `wsdl:definitions` (served on GET). Advertise only endpoints that are Some.
pub fn definitions(endpoints: &MexEndpoints) -> String {
    let mut w = XmlWriter::default();
    w.raw("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    write_definitions(&mut w, endpoints);
    w.into_string()
}

/// The same document inside a SOAP 1.2 envelope (WS-Transfer GetResponse, served on POST); `relates_to` is the
/// request's MessageID when known. Action http://schemas.xmlsoap.org/ws/2004/09/transfer/GetResponse.
pub fn soap_response(endpoints: &MexEndpoints, relates_to: Option<&str>) -> String {
    let mut w = XmlWriter::default();
    w.open("s:Envelope", &[("xmlns:s", SOAP12), ("xmlns:a", WSA)]);
    w.open("s:Header", &[]);
    w.text_element(
        "a:Action",
        &[("s:mustUnderstand", "1")],
        ACTION_GET_RESPONSE,
    );
    if let Some(message_id) = relates_to {
        w.text_element("a:RelatesTo", &[], message_id);
    }
    w.close("s:Header");
    w.open("s:Body", &[]);
    write_definitions(&mut w, endpoints);
    w.close("s:Body");
    w.close("s:Envelope");
    w.into_string()
}

/// What MEX says about each WS-Trust version: WSDL port type, operation, messages.
impl TrustVersion {
    fn port_type(self) -> &'static str {
        match self {
            Self::V2005 => "IWSTrustFeb2005Async",
            Self::V13 => "IWSTrust13Async",
        }
    }

    fn operation(self) -> &'static str {
        match self {
            Self::V2005 => "TrustFeb2005IssueAsync",
            Self::V13 => "Trust13IssueAsync",
        }
    }

    fn issue_response_action(self) -> &'static str {
        match self {
            Self::V2005 => "http://schemas.xmlsoap.org/ws/2005/02/trust/RSTR/Issue",
            Self::V13 => "http://docs.oasis-open.org/ws-sx/ws-trust/200512/RSTRC/IssueFinal",
        }
    }

    /// Qualified names of the request and response body elements.
    fn message_elements(self) -> (&'static str, &'static str) {
        match self {
            Self::V2005 => ("t:RequestSecurityToken", "t:RequestSecurityTokenResponse"),
            Self::V13 => (
                "trust:RequestSecurityToken",
                "trust:RequestSecurityTokenResponseCollection",
            ),
        }
    }

    fn input_message(self) -> String {
        format!("{}_{}_InputMessage", self.port_type(), self.operation())
    }

    fn output_message(self) -> String {
        format!("{}_{}_OutputMessage", self.port_type(), self.operation())
    }
}

/// How the client authenticates at an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AuthKind {
    /// Username and password in a WS-Security UsernameToken over TLS.
    UsernameMixed,
    /// HTTP Negotiate (Kerberos) at the transport level.
    WindowsTransport,
}

/// One advertised endpoint: its policy, binding and port all derive from it.
struct AdvertisedEndpoint<'a> {
    kind: AuthKind,
    version: TrustVersion,
    address: &'a str,
}

impl AdvertisedEndpoint<'_> {
    /// The binding name ADFS uses for this kind of endpoint; it also names the port.
    fn binding_name(&self) -> String {
        let prefix = match self.kind {
            AuthKind::UsernameMixed => "UserNameWSTrustBinding",
            AuthKind::WindowsTransport => "CustomBinding",
        };
        format!("{prefix}_{}", self.version.port_type())
    }

    fn policy_id(&self) -> String {
        format!("{}_policy", self.binding_name())
    }
}

/// The configured endpoints in the order ADFS lists them (2005 before 1.3).
fn advertised_endpoints(endpoints: &MexEndpoints) -> Vec<AdvertisedEndpoint<'_>> {
    let candidates = [
        (
            AuthKind::WindowsTransport,
            TrustVersion::V2005,
            &endpoints.windowstransport_2005,
        ),
        (
            AuthKind::UsernameMixed,
            TrustVersion::V2005,
            &endpoints.usernamemixed_2005,
        ),
        (
            AuthKind::WindowsTransport,
            TrustVersion::V13,
            &endpoints.windowstransport_13,
        ),
        (
            AuthKind::UsernameMixed,
            TrustVersion::V13,
            &endpoints.usernamemixed_13,
        ),
    ];
    candidates
        .into_iter()
        .filter_map(|(kind, version, address)| {
            address.as_deref().map(|address| AdvertisedEndpoint {
                kind,
                version,
                address,
            })
        })
        .collect()
}

fn write_definitions(w: &mut XmlWriter, endpoints: &MexEndpoints) {
    let advertised = advertised_endpoints(endpoints);
    w.open(
        "wsdl:definitions",
        &[
            ("name", "SecurityTokenService"),
            ("targetNamespace", NS_TNS),
            ("xmlns:wsdl", NS_WSDL),
            ("xmlns:xsd", NS_XSD),
            ("xmlns:t", TRUST_2005),
            ("xmlns:trust", TRUST_13),
            ("xmlns:tns", NS_TNS),
            ("xmlns:soap12", NS_SOAP12_WSDL),
            ("xmlns:wsa10", WSA),
            ("xmlns:wsaw", NS_WSAW),
            ("xmlns:wsx", NS_WSX),
            ("xmlns:wsu", WSU),
            ("xmlns:wsp", WSP),
        ],
    );
    for endpoint in &advertised {
        write_policy(w, endpoint);
    }
    write_types(w);
    for version in [TrustVersion::V2005, TrustVersion::V13] {
        write_messages(w, version);
    }
    for version in [TrustVersion::V2005, TrustVersion::V13] {
        write_port_type(w, version);
    }
    for endpoint in &advertised {
        write_binding(w, endpoint);
    }
    write_service(w, &advertised, endpoints.windowstransport_spn.as_deref());
    w.close("wsdl:definitions");
}

// ---------------------------------------------------------------------------------------------
// Policies (docs/protocol-notes.md#policies-per-endpoint)

fn write_policy(w: &mut XmlWriter, endpoint: &AdvertisedEndpoint<'_>) {
    let id = endpoint.policy_id();
    w.open("wsp:Policy", &[("wsu:Id", &id)]);
    w.open("wsp:ExactlyOne", &[]);
    w.open("wsp:All", &[]);
    match (endpoint.kind, endpoint.version) {
        (AuthKind::WindowsTransport, _) => write_windows_transport_assertions(w),
        (AuthKind::UsernameMixed, TrustVersion::V2005) => write_usernamemixed_2005_assertions(w),
        (AuthKind::UsernameMixed, TrustVersion::V13) => write_usernamemixed_13_assertions(w),
    }
    w.empty("wsaw:UsingAddressing", &[]);
    w.close("wsp:All");
    w.close("wsp:ExactlyOne");
    w.close("wsp:Policy");
}

/// Both windowstransport versions use the 2005 security-policy namespace, as ADFS does
/// (MSAL Python's IWA detection looks for `sp2005:TransportBinding`).
fn write_windows_transport_assertions(w: &mut XmlWriter) {
    w.empty(
        "http:NegotiateAuthentication",
        &[("xmlns:http", NS_HTTP_POLICY)],
    );
    write_transport_binding(w, SecurityPolicy::V2005, false);
}

fn write_usernamemixed_2005_assertions(w: &mut XmlWriter) {
    let sp = SecurityPolicy::V2005;
    write_transport_binding(w, sp, true);
    write_username_token(w, sp, "sp:SignedSupportingTokens");
    w.nested_policy("sp:EndorsingSupportingTokens", &sp.declaration(), |w| {
        w.empty(
            "mssp:RsaToken",
            &[
                ("xmlns:mssp", NS_MSSP),
                ("sp:IncludeToken", &sp.include_token("Never")),
                ("wsp:Optional", "true"),
            ],
        );
        write_signed_to_header(w);
    });
    write_wss11(w, sp);
    write_trust_assertion(w, sp, "sp:Trust10");
}

fn write_usernamemixed_13_assertions(w: &mut XmlWriter) {
    let sp = SecurityPolicy::V13;
    write_transport_binding(w, sp, true);
    write_username_token(w, sp, "sp:SignedEncryptedSupportingTokens");
    w.nested_policy("sp:EndorsingSupportingTokens", &sp.declaration(), |w| {
        w.empty(
            "sp:KeyValueToken",
            &[
                ("sp:IncludeToken", &sp.include_token("Never")),
                ("wsp:Optional", "true"),
            ],
        );
        write_signed_to_header(w);
    });
    write_wss11(w, sp);
    write_trust_assertion(w, sp, "sp:Trust13");
}

/// The WS-SecurityPolicy namespace an assertion is written in; always bound to prefix `sp`.
#[derive(Clone, Copy)]
enum SecurityPolicy {
    V2005,
    V13,
}

impl SecurityPolicy {
    fn namespace(self) -> &'static str {
        match self {
            Self::V2005 => NS_SP_2005,
            Self::V13 => NS_SP_13,
        }
    }

    /// The `xmlns:sp` declaration each top-level assertion carries (ADFS style).
    fn declaration(self) -> [(&'static str, &'static str); 1] {
        [("xmlns:sp", self.namespace())]
    }

    fn include_token(self, mode: &str) -> String {
        format!("{}/IncludeToken/{mode}", self.namespace())
    }
}

/// `sp:TransportBinding`: HTTPS, Basic256, Strict layout, optionally a required timestamp.
/// The 2005 HttpsToken states `RequireClientCertificate="false"`; the 1.3 one has no such
/// attribute (in WS-SP 1.2 client certificates are a nested assertion), exactly like ADFS.
fn write_transport_binding(w: &mut XmlWriter, sp: SecurityPolicy, include_timestamp: bool) {
    w.nested_policy("sp:TransportBinding", &sp.declaration(), |w| {
        w.nested_policy("sp:TransportToken", &[], |w| match sp {
            SecurityPolicy::V2005 => {
                w.empty("sp:HttpsToken", &[("RequireClientCertificate", "false")]);
            }
            SecurityPolicy::V13 => w.empty("sp:HttpsToken", &[]),
        });
        w.nested_policy("sp:AlgorithmSuite", &[], |w| w.empty("sp:Basic256", &[]));
        w.nested_policy("sp:Layout", &[], |w| w.empty("sp:Strict", &[]));
        if include_timestamp {
            w.empty("sp:IncludeTimestamp", &[]);
        }
    });
}

/// `<container><wsp:Policy><sp:UsernameToken …><wsp:Policy><sp:WssUsernameToken10/>…`.
fn write_username_token(w: &mut XmlWriter, sp: SecurityPolicy, container: &str) {
    w.nested_policy(container, &sp.declaration(), |w| {
        let include = sp.include_token("AlwaysToRecipient");
        w.nested_policy("sp:UsernameToken", &[("sp:IncludeToken", &include)], |w| {
            w.empty("sp:WssUsernameToken10", &[]);
        });
    });
}

fn write_signed_to_header(w: &mut XmlWriter) {
    w.open("sp:SignedParts", &[]);
    w.empty("sp:Header", &[("Name", "To"), ("Namespace", WSA)]);
    w.close("sp:SignedParts");
}

fn write_wss11(w: &mut XmlWriter, sp: SecurityPolicy) {
    w.nested_policy("sp:Wss11", &sp.declaration(), |w| {
        for assertion in [
            "sp:MustSupportRefKeyIdentifier",
            "sp:MustSupportRefIssuerSerial",
            "sp:MustSupportRefThumbprint",
            "sp:MustSupportRefEncryptedKey",
        ] {
            w.empty(assertion, &[]);
        }
    });
}

/// `sp:Trust10` (2005) or `sp:Trust13` (1.3) with the issued-token and entropy assertions.
fn write_trust_assertion(w: &mut XmlWriter, sp: SecurityPolicy, name: &str) {
    w.nested_policy(name, &sp.declaration(), |w| {
        for assertion in [
            "sp:MustSupportIssuedTokens",
            "sp:RequireClientEntropy",
            "sp:RequireServerEntropy",
        ] {
            w.empty(assertion, &[]);
        }
    });
}

// ---------------------------------------------------------------------------------------------
// WSDL types, messages, port types, bindings, service

/// Declares the schemas of the message elements by namespace (no schema documents are served).
fn write_types(w: &mut XmlWriter) {
    w.open("wsdl:types", &[]);
    w.open(
        "xsd:schema",
        &[("targetNamespace", &format!("{NS_TNS}/Imports"))],
    );
    for namespace in [TRUST_2005, TRUST_13] {
        w.empty("xsd:import", &[("namespace", namespace)]);
    }
    w.close("xsd:schema");
    w.close("wsdl:types");
}

fn write_messages(w: &mut XmlWriter, version: TrustVersion) {
    let (request, response) = version.message_elements();
    let result_part = format!("{}Result", version.operation());
    for (message, part, element) in [
        (version.input_message(), "request", request),
        (version.output_message(), result_part.as_str(), response),
    ] {
        w.open("wsdl:message", &[("name", &message)]);
        w.empty("wsdl:part", &[("name", part), ("element", element)]);
        w.close("wsdl:message");
    }
}

fn write_port_type(w: &mut XmlWriter, version: TrustVersion) {
    w.open("wsdl:portType", &[("name", version.port_type())]);
    w.open("wsdl:operation", &[("name", version.operation())]);
    let input = format!("tns:{}", version.input_message());
    let output = format!("tns:{}", version.output_message());
    w.empty(
        "wsdl:input",
        &[("wsaw:Action", version.issue_action()), ("message", &input)],
    );
    w.empty(
        "wsdl:output",
        &[
            ("wsaw:Action", version.issue_response_action()),
            ("message", &output),
        ],
    );
    w.close("wsdl:operation");
    w.close("wsdl:portType");
}

fn write_binding(w: &mut XmlWriter, endpoint: &AdvertisedEndpoint<'_>) {
    let version = endpoint.version;
    let port_type = format!("tns:{}", version.port_type());
    w.open(
        "wsdl:binding",
        &[("name", &endpoint.binding_name()), ("type", &port_type)],
    );
    let policy_uri = format!("#{}", endpoint.policy_id());
    w.empty("wsp:PolicyReference", &[("URI", &policy_uri)]);
    w.empty("soap12:binding", &[("transport", SOAP_HTTP_TRANSPORT)]);
    w.open("wsdl:operation", &[("name", version.operation())]);
    w.empty(
        "soap12:operation",
        &[
            ("soapAction", version.issue_action()),
            ("style", "document"),
        ],
    );
    for direction in ["wsdl:input", "wsdl:output"] {
        w.open(direction, &[]);
        w.empty("soap12:body", &[("use", "literal")]);
        w.close(direction);
    }
    w.close("wsdl:operation");
    w.close("wsdl:binding");
}

fn write_service(w: &mut XmlWriter, advertised: &[AdvertisedEndpoint<'_>], spn: Option<&str>) {
    w.open("wsdl:service", &[("name", "SecurityTokenService")]);
    for endpoint in advertised {
        let name = endpoint.binding_name();
        let binding = format!("tns:{name}");
        w.open("wsdl:port", &[("name", &name), ("binding", &binding)]);
        w.empty("soap12:address", &[("location", endpoint.address)]);
        w.open("wsa10:EndpointReference", &[]);
        w.text_element("wsa10:Address", &[], endpoint.address);
        if let (AuthKind::WindowsTransport, Some(spn)) = (endpoint.kind, spn) {
            w.open("Identity", &[("xmlns", NS_ADDRESSING_IDENTITY)]);
            w.text_element("Spn", &[], spn);
            w.close("Identity");
        }
        w.close("wsa10:EndpointReference");
        w.close("wsdl:port");
    }
    w.close("wsdl:service");
}

// ---------------------------------------------------------------------------------------------
// A minimal indenting XML writer; every attribute value and text node is escaped here.

#[derive(Default)]
struct XmlWriter {
    out: String,
    depth: usize,
}

impl XmlWriter {
    fn into_string(self) -> String {
        self.out
    }

    fn raw(&mut self, text: &str) {
        self.out.push_str(text);
    }

    fn start_tag(&mut self, name: &str, attributes: &[(&str, &str)]) {
        self.indent();
        self.out.push('<');
        self.out.push_str(name);
        for (key, value) in attributes {
            // Writing into a String cannot fail.
            let _ = write!(
                self.out,
                " {key}=\"{}\"",
                xml::escape_canonical_attribute(value)
            );
        }
    }

    fn open(&mut self, name: &str, attributes: &[(&str, &str)]) {
        self.start_tag(name, attributes);
        self.out.push_str(">\n");
        self.depth += 1;
    }

    fn empty(&mut self, name: &str, attributes: &[(&str, &str)]) {
        self.start_tag(name, attributes);
        self.out.push_str("/>\n");
    }

    fn close(&mut self, name: &str) {
        self.depth = self.depth.saturating_sub(1);
        self.indent();
        let _ = writeln!(self.out, "</{name}>");
    }

    fn text_element(&mut self, name: &str, attributes: &[(&str, &str)], text: &str) {
        self.start_tag(name, attributes);
        let _ = writeln!(self.out, ">{}</{name}>", xml::escape_canonical_text(text));
    }

    /// `<name attrs><wsp:Policy>body</wsp:Policy></name>`, the shape of every WS-SP assertion
    /// with nested policy.
    fn nested_policy(
        &mut self,
        name: &str,
        attributes: &[(&str, &str)],
        body: impl FnOnce(&mut Self),
    ) {
        self.open(name, attributes);
        self.open("wsp:Policy", &[]);
        body(self);
        self.close("wsp:Policy");
        self.close(name);
    }

    fn indent(&mut self) {
        for _ in 0..self.depth {
            self.out.push_str("  ");
        }
    }
}

#[cfg(test)]
mod tests;
