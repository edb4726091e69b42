//! Enveloped XML signatures over bytes we emit in exclusive-canonical form.
//!
//! We never re-canonicalize parsed XML. Documents we sign (SAML assertions, federation metadata)
//! are written directly in exclusive-c14n form with [`CanonicalWriter`]: no XML declaration,
//! explicit end tags, namespace declarations then attributes in canonical order, escaped text,
//! no whitespace between elements, and every namespace declared on the element that uses it.
//! [`sign_enveloped`] hashes those bytes (what the enveloped-signature + exc-c14n transforms
//! yield once the Signature is removed again), signs the canonical `SignedInfo`, and inserts an
//! ADFS-style `<Signature xmlns="http://www.w3.org/2000/09/xmldsig#">` at the requested place.

use base64::Engine as _;

use crate::crypto::{CryptoError, SigningIdentity};
use crate::protocol::xml;

/// The XML-DSig namespace, declared as the default namespace on `Signature`.
pub const XMLDSIG_NS: &str = "http://www.w3.org/2000/09/xmldsig#";
/// Exclusive XML canonicalization 1.0 (without comments).
pub const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
/// RSA PKCS#1 v1.5 with SHA-256.
pub const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
/// SHA-256 digest.
pub const SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";
/// The enveloped-signature transform.
pub const ENVELOPED_SIGNATURE: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";

/// Why an element could not be signed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum XmlDsigError {
    /// The input does not start with a start tag.
    #[error(
        "the element to sign does not start with a start tag; sign_enveloped only accepts canonical XML written by fedsts"
    )]
    NotAnElement,
    /// `AfterFirstChild` placement on an element without child elements.
    #[error(
        "the element to sign has no child element to put the Signature after (SAML 2.0 needs saml:Issuer first)"
    )]
    NoChildElement,
    /// The signer failed.
    #[error("signing SignedInfo failed: {0}")]
    Signing(#[from] CryptoError),
}

/// Writes elements directly in exclusive-canonical form.
///
/// Attribute lists may contain namespace declarations (`xmlns`, `xmlns:p`) and unqualified
/// attributes; they are put in canonical order (default namespace, prefixed declarations by
/// prefix, then attributes by name). Qualified attributes (`p:name`) are not supported because
/// their canonical order depends on the namespace URI. The caller declares each namespace on the
/// element that first uses it, so that every subtree it later signs is self-contained.
#[derive(Debug, Default)]
pub struct CanonicalWriter {
    out: String,
    /// Where the name of each open element sits in `out` (its end tag copies it from there, so
    /// a start tag allocates nothing of its own).
    open: Vec<std::ops::Range<usize>>,
}

impl CanonicalWriter {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty writer with room for `bytes` of output (an assertion is written without
    /// growing its buffer when the estimate holds).
    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            out: String::with_capacity(bytes),
            open: Vec::new(),
        }
    }

    /// Writes the start tag `<name …>` with its attributes in canonical order (values escaped).
    pub fn start(&mut self, name: &str, attributes: &[(&str, &str)]) {
        self.out.push('<');
        let name_at = self.out.len();
        self.out.push_str(name);
        self.open.push(name_at..self.out.len());
        // fedsts' own writers list attributes in canonical order: no copy to sort then.
        let sorted_copy;
        let in_order =
            if attributes.is_sorted_by_key(|(attribute, _)| canonical_attribute_order(attribute)) {
                attributes
            } else {
                let mut copy = attributes.to_vec();
                copy.sort_by_key(|(attribute, _)| canonical_attribute_order(attribute));
                sorted_copy = copy;
                &sorted_copy
            };
        for (attribute, value) in in_order {
            self.attribute(attribute, value);
        }
        self.out.push('>');
    }

    /// Writes ` attribute="value"` (value escaped).
    fn attribute(&mut self, attribute: &str, value: &str) {
        self.out.push(' ');
        self.out.push_str(attribute);
        self.out.push_str("=\"");
        xml::push_canonical_attribute(&mut self.out, value);
        self.out.push('"');
    }

    /// Writes escaped text content.
    pub fn text(&mut self, text: &str) {
        xml::push_canonical_text(&mut self.out, text);
    }

    /// Closes the innermost open element (does nothing when none is open).
    pub fn end(&mut self) {
        if let Some(name) = self.open.pop() {
            self.out.push_str("</");
            self.out.extend_from_within(name);
            self.out.push('>');
        }
    }

    /// Writes `<name …>text</name>`.
    pub fn text_element(&mut self, name: &str, attributes: &[(&str, &str)], text: &str) {
        self.start(name, attributes);
        self.text(text);
        self.end();
    }

    /// Closes every element still open and returns the canonical bytes.
    pub fn finish(mut self) -> String {
        while !self.open.is_empty() {
            self.end();
        }
        self.out
    }
}

/// Sort key giving exclusive c14n's order: `xmlns`, then `xmlns:p` by prefix, then attributes.
fn canonical_attribute_order(attribute: &str) -> (u8, &str) {
    match attribute.strip_prefix("xmlns") {
        Some("") => (0, ""),
        Some(rest) if rest.starts_with(':') => (1, rest),
        _ => (2, attribute),
    }
}

/// Where the Signature element goes inside the signed element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignaturePlacement {
    /// Last child of the signed element (SAML 1.1).
    LastChild,
    /// Right after the first child element (SAML 2.0: after `saml:Issuer`).
    AfterFirstChild,
    /// First child of the signed element (federation metadata).
    FirstChild,
}

/// Takes the canonical bytes of an element WITHOUT its Signature, the element's ID (Reference URI "#id"),
/// computes the SHA-256 digest, builds SignedInfo (exc-c14n, rsa-sha256, enveloped-signature + exc-c14n
/// transforms, sha256 digest), signs the canonical SignedInfo AS A STANDALONE SUBTREE (so it carries the
/// xmlns declaration), inserts `<Signature xmlns="http://www.w3.org/2000/09/xmldsig#">…<KeyInfo><X509Data>
/// <X509Certificate>b64</X509Certificate></X509Data></KeyInfo></Signature>` (ADFS style default ns) at the
/// placement, and returns the whole element. The returned bytes are exactly what gets sent.
pub fn sign_enveloped(
    canonical_element: &str,
    id: &str,
    placement: SignaturePlacement,
    identity: &SigningIdentity,
) -> Result<String, XmlDsigError> {
    let position = insertion_point(canonical_element, placement)?;
    let digest =
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical_element.as_bytes());
    let digest_b64 = base64_encode(digest.as_ref());
    let reference_uri = format!("#{id}");
    let standalone = signed_info(&reference_uri, &digest_b64, true);
    let signature_value = identity.signer.sign_rsa_sha256(standalone.as_bytes())?;
    let certificate_b64 = identity.certificate.base64();
    let mut w = CanonicalWriter::with_capacity(
        canonical_element.len() + standalone.len() + certificate_b64.len() + SIGNATURE_OVERHEAD,
    );
    w.out.push_str(&canonical_element[..position]);
    write_signature(
        &mut w,
        &signed_info(&reference_uri, &digest_b64, false),
        &base64_encode(&signature_value),
        certificate_b64,
    );
    w.out.push_str(&canonical_element[position..]);
    Ok(w.out)
}

/// Bytes of a Signature element besides its SignedInfo and certificate: the SignatureValue
/// (344 base64 characters for RSA-2048) and the element tags around them.
const SIGNATURE_OVERHEAD: usize = 512;

fn base64_encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Room for a SignedInfo: about 600 bytes with the namespace and a `#_<uuid>` reference.
const SIGNED_INFO_BYTES: usize = 768;

/// Canonical `SignedInfo`; with `declare_namespace` it is the standalone subtree that gets
/// signed, without it the form embedded under `<Signature xmlns="…xmldsig#">`.
fn signed_info(reference_uri: &str, digest_b64: &str, declare_namespace: bool) -> String {
    let mut w = CanonicalWriter::with_capacity(SIGNED_INFO_BYTES);
    if declare_namespace {
        w.start("SignedInfo", &[("xmlns", XMLDSIG_NS)]);
    } else {
        w.start("SignedInfo", &[]);
    }
    w.text_element("CanonicalizationMethod", &[("Algorithm", EXC_C14N)], "");
    w.text_element("SignatureMethod", &[("Algorithm", RSA_SHA256)], "");
    w.start("Reference", &[("URI", reference_uri)]);
    w.start("Transforms", &[]);
    w.text_element("Transform", &[("Algorithm", ENVELOPED_SIGNATURE)], "");
    w.text_element("Transform", &[("Algorithm", EXC_C14N)], "");
    w.end();
    w.text_element("DigestMethod", &[("Algorithm", SHA256)], "");
    w.text_element("DigestValue", &[], digest_b64);
    w.finish()
}

/// Writes the complete `Signature` element around an embedded `SignedInfo`.
fn write_signature(
    w: &mut CanonicalWriter,
    signed_info: &str,
    signature_b64: &str,
    certificate_b64: &str,
) {
    w.start("Signature", &[("xmlns", XMLDSIG_NS)]);
    w.out.push_str(signed_info);
    w.text_element("SignatureValue", &[], signature_b64);
    w.start("KeyInfo", &[]);
    w.start("X509Data", &[]);
    w.text_element("X509Certificate", &[], certificate_b64);
    w.end();
    w.end();
    w.end();
}

/// Byte offset where the Signature goes. The input is canonical XML we wrote ourselves: it
/// starts with the root start tag, has no comments, PIs, CDATA or empty-element tags, `<` only
/// appears as markup (text and attribute values escape it), and attribute values are in double
/// quotes (so a `>` inside a value is skipped by tracking quotes).
fn insertion_point(xml: &str, placement: SignaturePlacement) -> Result<usize, XmlDsigError> {
    if !xml.starts_with('<') || xml.starts_with("</") {
        return Err(XmlDsigError::NotAnElement);
    }
    let root_start_end = tag_end(xml, 0).ok_or(XmlDsigError::NotAnElement)?;
    match placement {
        SignaturePlacement::FirstChild => Ok(root_start_end),
        SignaturePlacement::LastChild => xml.rfind("</").ok_or(XmlDsigError::NotAnElement),
        SignaturePlacement::AfterFirstChild => {
            first_child_end(xml, root_start_end).ok_or(XmlDsigError::NoChildElement)
        }
    }
}

/// Offset just after the `>` closing the tag that starts at `start`, skipping quoted values.
fn tag_end(xml: &str, start: usize) -> Option<usize> {
    let mut in_quotes = false;
    for (offset, byte) in xml.as_bytes().get(start..)?.iter().enumerate() {
        match byte {
            b'"' => in_quotes = !in_quotes,
            b'>' if !in_quotes => return Some(start + offset + 1),
            _ => {}
        }
    }
    None
}

/// Offset just after the end tag of the first child element, which must start at `from`.
fn first_child_end(xml: &str, from: usize) -> Option<usize> {
    let rest = xml.get(from..)?;
    if !rest.starts_with('<') || rest.starts_with("</") {
        return None;
    }
    let mut depth = 0usize;
    let mut position = from;
    loop {
        let tag_start = position + xml.get(position..)?.find('<')?;
        let is_end_tag = xml.get(tag_start + 1..)?.starts_with('/');
        position = tag_end(xml, tag_start)?;
        if is_end_tag {
            depth = depth.checked_sub(1)?;
            if depth == 0 {
                return Some(position);
            }
        } else {
            depth += 1;
        }
    }
}

/// Helpers shared by the unit tests of the signing modules.
#[cfg(test)]
pub(crate) mod test_support {
    use super::*;
    use crate::crypto::test_support::verify_rsa_sha256;

    const SIGNATURE_START: &str = "<Signature xmlns=\"http://www.w3.org/2000/09/xmldsig#\">";
    const SIGNATURE_END: &str = "</Signature>";

    /// Text between `<tag>` and `</tag>` (first occurrence).
    pub(crate) fn between<'a>(xml: &'a str, start: &str, end: &str) -> &'a str {
        let from = xml.find(start).unwrap() + start.len();
        let to = from + xml[from..].find(end).unwrap();
        &xml[from..to]
    }

    /// Checks an enveloped signature written by [`sign_enveloped`] independently of it: the
    /// digest is recomputed with `sha2` over the document with the Signature removed, and the
    /// SignatureValue is verified over the standalone canonical SignedInfo. Returns the
    /// document without its Signature.
    pub(crate) fn verify_enveloped(
        signed: &str,
        identity: &SigningIdentity,
    ) -> Result<String, String> {
        let start = signed.find(SIGNATURE_START).ok_or("no Signature")?;
        let end = start
            + signed[start..]
                .find(SIGNATURE_END)
                .ok_or("no </Signature>")?;
        let signature = &signed[start..end + SIGNATURE_END.len()];
        let unsigned = format!(
            "{}{}",
            &signed[..start],
            &signed[end + SIGNATURE_END.len()..]
        );
        let digest = <sha2::Sha256 as sha2::Digest>::digest(unsigned.as_bytes());
        let claimed_digest = between(signature, "<DigestValue>", "</DigestValue>");
        if base64_encode(&digest) != claimed_digest {
            return Err("digest mismatch".into());
        }
        let signed_info = format!(
            "<SignedInfo xmlns=\"{XMLDSIG_NS}\">{}</SignedInfo>",
            between(signature, "<SignedInfo>", "</SignedInfo>")
        );
        let signature_value = base64::engine::general_purpose::STANDARD
            .decode(between(signature, "<SignatureValue>", "</SignatureValue>"))
            .map_err(|e| e.to_string())?;
        let spki = identity.certificate.public_key_spki_der();
        if !verify_rsa_sha256(&spki, signed_info.as_bytes(), &signature_value) {
            return Err("bad SignatureValue".into());
        }
        let certificate = between(signature, "<X509Certificate>", "</X509Certificate>");
        if certificate != identity.certificate.base64() {
            return Err("wrong certificate in KeyInfo".into());
        }
        Ok(unsigned)
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{between, verify_enveloped};
    use super::*;
    use crate::crypto::test_support::generated_identity;

    #[test]
    fn escapes_with_and_without_characters_to_escape() {
        assert_eq!(
            xml::escape_canonical_text("plain base64+/="),
            "plain base64+/="
        );
        assert_eq!(
            xml::escape_canonical_text("a&b<c>d\re\"\t"),
            "a&amp;b&lt;c&gt;d&#xD;e\"\t"
        );
        assert_eq!(xml::escape_canonical_attribute("plain > ok"), "plain > ok");
        assert_eq!(
            xml::escape_canonical_attribute("a&b<c\"d\te\nf\rg>"),
            "a&amp;b&lt;c&quot;d&#x9;e&#xA;f&#xD;g>"
        );
        let mut w = CanonicalWriter::new();
        w.text_element("e", &[("v", "x\"y")], "1<2");
        assert_eq!(w.finish(), "<e v=\"x&quot;y\">1&lt;2</e>");
    }

    const DOC: &str = "<a:Root xmlns:a=\"urn:x\" ID=\"_1\" Note=\"x&gt;y\"><a:First Say=\"a>b\"><a:Inner>t</a:Inner></a:First><a:Second></a:Second></a:Root>";

    fn expected_signature(digest: &str, signature_value: &str, certificate: &str) -> String {
        format!(
            "<Signature xmlns=\"http://www.w3.org/2000/09/xmldsig#\"><SignedInfo>\
<CanonicalizationMethod Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"></CanonicalizationMethod>\
<SignatureMethod Algorithm=\"http://www.w3.org/2001/04/xmldsig-more#rsa-sha256\"></SignatureMethod>\
<Reference URI=\"#_1\"><Transforms>\
<Transform Algorithm=\"http://www.w3.org/2000/09/xmldsig#enveloped-signature\"></Transform>\
<Transform Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"></Transform></Transforms>\
<DigestMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#sha256\"></DigestMethod>\
<DigestValue>{digest}</DigestValue></Reference></SignedInfo>\
<SignatureValue>{signature_value}</SignatureValue>\
<KeyInfo><X509Data><X509Certificate>{certificate}</X509Certificate></X509Data></KeyInfo></Signature>"
        )
    }

    fn signed_with(placement: SignaturePlacement) -> (String, String) {
        let identity = generated_identity();
        let signed = sign_enveloped(DOC, "_1", placement, &identity).unwrap();
        assert_eq!(verify_enveloped(&signed, &identity).unwrap(), DOC);
        let digest = base64_encode(&<sha2::Sha256 as sha2::Digest>::digest(DOC.as_bytes()));
        let signature_value = between(&signed, "<SignatureValue>", "</SignatureValue>");
        let signature = expected_signature(&digest, signature_value, identity.certificate.base64());
        (signed, signature)
    }

    #[test]
    fn writer_orders_declarations_then_attributes() {
        let mut w = CanonicalWriter::new();
        w.start(
            "p:E",
            &[
                ("b", "2"),
                ("xmlns:p", "urn:p"),
                ("a", "1\"<"),
                ("xmlns", "urn:d"),
                ("xmlns:a", "urn:a"),
            ],
        );
        w.text_element("p:T", &[], "x<y");
        w.start("p:Open", &[]);
        assert_eq!(
            w.finish(),
            "<p:E xmlns=\"urn:d\" xmlns:a=\"urn:a\" xmlns:p=\"urn:p\" a=\"1&quot;&lt;\" b=\"2\"><p:T>x&lt;y</p:T><p:Open></p:Open></p:E>"
        );
    }

    #[test]
    fn last_child_placement_is_before_the_root_end_tag() {
        let (signed, signature) = signed_with(SignaturePlacement::LastChild);
        let split = DOC.len() - "</a:Root>".len();
        assert_eq!(
            signed,
            format!("{}{signature}{}", &DOC[..split], &DOC[split..])
        );
    }

    #[test]
    fn after_first_child_placement_skips_nested_children_and_quoted_gt() {
        let (signed, signature) = signed_with(SignaturePlacement::AfterFirstChild);
        let split = DOC.find("<a:Second>").unwrap();
        assert_eq!(
            signed,
            format!("{}{signature}{}", &DOC[..split], &DOC[split..])
        );
    }

    #[test]
    fn first_child_placement_is_after_the_root_start_tag() {
        let (signed, signature) = signed_with(SignaturePlacement::FirstChild);
        let split = DOC.find("<a:First").unwrap();
        assert_eq!(
            signed,
            format!("{}{signature}{}", &DOC[..split], &DOC[split..])
        );
    }

    #[test]
    fn tampering_is_detected_by_the_independent_check() {
        let identity = generated_identity();
        let signed = sign_enveloped(DOC, "_1", SignaturePlacement::LastChild, &identity).unwrap();
        let tampered = signed.replace("<a:Inner>t<", "<a:Inner>u<");
        assert_eq!(
            verify_enveloped(&tampered, &identity).unwrap_err(),
            "digest mismatch"
        );
        let other = generated_identity();
        assert_eq!(
            verify_enveloped(&signed, &other).unwrap_err(),
            "bad SignatureValue"
        );
    }

    #[test]
    fn unusable_inputs_are_rejected() {
        let identity = generated_identity();
        let no_child = sign_enveloped(
            "<a>text</a>",
            "x",
            SignaturePlacement::AfterFirstChild,
            &identity,
        );
        assert!(matches!(no_child, Err(XmlDsigError::NoChildElement)));
        let not_element = sign_enveloped("text", "x", SignaturePlacement::LastChild, &identity);
        assert!(matches!(not_element, Err(XmlDsigError::NotAnElement)));
        let unterminated =
            sign_enveloped("<a b=\">", "x", SignaturePlacement::FirstChild, &identity);
        assert!(matches!(unterminated, Err(XmlDsigError::NotAnElement)));
    }
}
