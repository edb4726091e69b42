//! The signed WS-Federation metadata document
//! (`/wsfed/{app}/federationmetadata/2007-06/federationmetadata.xml`,
//! docs/protocol-notes.md#passive-ws-federation).
//!
//! `EntityDescriptor` (entityID = the app's issuer) holds, after its enveloped signature (first
//! child, like ADFS), a `RoleDescriptor` of type `fed:SecurityTokenServiceType` with the signing
//! keys, the token types, the WS-Trust endpoint and the passive endpoint, then an
//! `IDPSSODescriptor` with the same keys. During a rollover both the current and the next
//! certificate are listed, current first.
//!
//! The document is written in exclusive-canonical form and signed as written. `xsi:type` names
//! the `fed` prefix only inside an attribute value, which exclusive c14n does not count as a use,
//! so `xmlns:fed` is added to the root start tag after signing: the canonical form drops it
//! there again and the digest still matches, while schema-aware readers can resolve the type.

use crate::crypto::SigningIdentity;
use crate::protocol::ns::WSA;
use crate::protocol::xmldsig::{
    CanonicalWriter, SignaturePlacement, XMLDSIG_NS, XmlDsigError, sign_enveloped,
};

const MD_NS: &str = "urn:oasis:names:tc:SAML:2.0:metadata";
const FED_NS: &str = "http://docs.oasis-open.org/wsfed/federation/200706";
const XSI_NS: &str = "http://www.w3.org/2001/XMLSchema-instance";
const STS_PROTOCOLS: &str = "http://docs.oasis-open.org/ws-sx/ws-trust/200512 http://schemas.xmlsoap.org/ws/2005/02/trust http://docs.oasis-open.org/wsfed/federation/200706";
const SAML2_PROTOCOL: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
const SAML11_TOKEN: &str = "urn:oasis:names:tc:SAML:1.0:assertion";
const NAMEID_UNSPECIFIED: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified";
const NAMEID_PERSISTENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent";
const REDIRECT_BINDING: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";

/// What the metadata advertises.
#[derive(Clone, Debug)]
pub struct MetadataInput<'a> {
    /// `entityID`: the app's issuer URI.
    pub issuer: &'a str,
    /// Passive sign-in URL (`PassiveRequestorEndpoint`, IDP SSO/SLO location).
    pub passive_url: &'a str,
    /// WS-Trust endpoint (`SecurityTokenServiceEndpoint`).
    pub sts_url: &'a str,
    /// MEX URL (referenced from the STS endpoint).
    pub mex_url: &'a str,
    /// Base64 DER of each signing certificate, current first.
    pub signing_certificates: Vec<String>,
}

/// Builds and signs the document with `identity` (the current token-signing key).
pub fn signed_document(
    input: &MetadataInput<'_>,
    document_id: &str,
    identity: &SigningIdentity,
) -> Result<String, XmlDsigError> {
    let canonical = canonical_document(input, document_id);
    let signed = sign_enveloped(
        &canonical,
        document_id,
        SignaturePlacement::FirstChild,
        identity,
    )?;
    let root = "<EntityDescriptor";
    Ok(match signed.strip_prefix(root) {
        Some(rest) => format!(r#"{root} xmlns:fed="{FED_NS}"{rest}"#),
        None => signed,
    })
}

fn canonical_document(input: &MetadataInput<'_>, document_id: &str) -> String {
    let mut w = CanonicalWriter::new();
    w.start(
        "EntityDescriptor",
        &[
            ("xmlns", MD_NS),
            ("ID", document_id),
            ("entityID", input.issuer),
        ],
    );
    sts_role(&mut w, input);
    idp_sso(&mut w, input);
    w.finish()
}

fn sts_role(w: &mut CanonicalWriter, input: &MetadataInput<'_>) {
    w.start(
        "RoleDescriptor",
        &[
            ("xmlns:xsi", XSI_NS),
            ("protocolSupportEnumeration", STS_PROTOCOLS),
            ("xsi:type", "fed:SecurityTokenServiceType"),
        ],
    );
    key_descriptors(w, &input.signing_certificates);
    w.start("fed:TokenTypesOffered", &[("xmlns:fed", FED_NS)]);
    w.text_element("fed:TokenType", &[("Uri", SAML11_TOKEN)], "");
    w.end();
    w.start("fed:SecurityTokenServiceEndpoint", &[("xmlns:fed", FED_NS)]);
    endpoint_reference(w, input.sts_url, Some(input.mex_url));
    w.end();
    w.start("fed:PassiveRequestorEndpoint", &[("xmlns:fed", FED_NS)]);
    endpoint_reference(w, input.passive_url, None);
    w.end();
    w.end();
}

fn idp_sso(w: &mut CanonicalWriter, input: &MetadataInput<'_>) {
    w.start(
        "IDPSSODescriptor",
        &[("protocolSupportEnumeration", SAML2_PROTOCOL)],
    );
    key_descriptors(w, &input.signing_certificates);
    w.text_element(
        "SingleLogoutService",
        &[
            ("Binding", REDIRECT_BINDING),
            ("Location", input.passive_url),
        ],
        "",
    );
    w.text_element("NameIDFormat", &[], NAMEID_UNSPECIFIED);
    w.text_element("NameIDFormat", &[], NAMEID_PERSISTENT);
    w.text_element(
        "SingleSignOnService",
        &[
            ("Binding", REDIRECT_BINDING),
            ("Location", input.passive_url),
        ],
        "",
    );
    w.end();
}

fn key_descriptors(w: &mut CanonicalWriter, certificates: &[String]) {
    for certificate in certificates {
        w.start("KeyDescriptor", &[("use", "signing")]);
        w.start("KeyInfo", &[("xmlns", XMLDSIG_NS)]);
        w.start("X509Data", &[]);
        w.text_element("X509Certificate", &[], certificate);
        w.end();
        w.end();
        w.end();
    }
}

/// `wsa:EndpointReference` with an address and, optionally, a MEX reference.
fn endpoint_reference(w: &mut CanonicalWriter, address: &str, mex: Option<&str>) {
    w.start("wsa:EndpointReference", &[("xmlns:wsa", WSA)]);
    w.text_element("wsa:Address", &[], address);
    if let Some(mex) = mex {
        w.start("wsa:Metadata", &[]);
        w.start(
            "wsx:Metadata",
            &[("xmlns:wsx", "http://schemas.xmlsoap.org/ws/2004/09/mex")],
        );
        w.start(
            "wsx:MetadataSection",
            &[("Dialect", "http://schemas.xmlsoap.org/ws/2004/09/mex")],
        );
        w.start("wsx:MetadataReference", &[]);
        w.text_element("wsa:Address", &[], mex);
        w.end();
        w.end();
        w.end();
        w.end();
    }
    w.end();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> MetadataInput<'static> {
        MetadataInput {
            issuer: "example.com",
            passive_url: "https://sts.example.com/wsfed/a",
            sts_url: "https://sts.example.com/wsfed/a/trust/2005/usernamemixed",
            mex_url: "https://sts.example.com/wsfed/a/mex",
            signing_certificates: vec!["CURRENT".into(), "NEXT".into()],
        }
    }

    #[test]
    fn shape_and_key_order() {
        let doc = canonical_document(&input(), "_m1");
        assert!(doc.starts_with(
            r#"<EntityDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata" ID="_m1" entityID="example.com"><RoleDescriptor xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" protocolSupportEnumeration="#
        ));
        let current = doc.find("<X509Certificate>CURRENT").unwrap();
        let next = doc.find("<X509Certificate>NEXT").unwrap();
        assert!(current < next);
        assert_eq!(doc.matches(r#"<KeyDescriptor use="signing">"#).count(), 4);
        assert!(doc.contains(r#"<fed:PassiveRequestorEndpoint xmlns:fed="http://docs.oasis-open.org/wsfed/federation/200706"><wsa:EndpointReference xmlns:wsa="http://www.w3.org/2005/08/addressing"><wsa:Address>https://sts.example.com/wsfed/a</wsa:Address>"#));
        assert!(doc.find("<RoleDescriptor").unwrap() < doc.find("<IDPSSODescriptor").unwrap());
    }
}
