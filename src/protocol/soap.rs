//! SOAP 1.2 envelopes: locating Header and Body by exact path, and the one writer of the
//! envelopes we answer with ([`ResponseEnvelope`]: RSTRs and faults).
//!
//! Only SOAP 1.2 (`http://www.w3.org/2003/05/soap-envelope`) is spoken, as by every WS-Trust
//! client of Entra ID; a SOAP 1.1 envelope is recognised and refused as a version mismatch.

use crate::protocol::ns::{SOAP12, WSA};
use crate::protocol::xml::{self, Element, XmlError};
/// The SOAP 1.1 envelope namespace (recognised only to refuse it clearly).
pub const SOAP11_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// WS-Addressing action of every SOAP fault.
pub const FAULT_ACTION: &str = "http://www.w3.org/2005/08/addressing/soap/fault";

/// Why a request is not an acceptable SOAP 1.2 envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SoapError {
    /// The XML itself was refused.
    #[error(transparent)]
    Xml(#[from] XmlError),
    /// The root is a SOAP 1.1 envelope.
    #[error("SOAP 1.1 envelopes are not supported; send SOAP 1.2")]
    VersionMismatch,
    /// The root is not a SOAP envelope at all.
    #[error("the document root is not a SOAP 1.2 Envelope")]
    NotAnEnvelope,
    /// The envelope has more than one Header.
    #[error("the SOAP envelope has more than one Header")]
    DuplicateHeader,
    /// The envelope has no Body.
    #[error("the SOAP envelope has no Body")]
    MissingBody,
    /// The envelope has more than one Body.
    #[error("the SOAP envelope has more than one Body")]
    DuplicateBody,
    /// The envelope has a child other than Header followed by Body.
    #[error("the SOAP envelope has an unexpected child element `{0}`")]
    UnexpectedChild(String),
}

/// A parsed SOAP 1.2 envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope<'d> {
    /// The `s:Header` element, when present.
    pub header: Option<Element<'d>>,
    /// The `s:Body` element.
    pub body: Element<'d>,
}

/// Parses a SOAP 1.2 envelope: at most one Header, then exactly one Body, nothing else.
pub fn parse_envelope<'d>(
    input: &'d [u8],
    limits: &xml::Limits,
) -> Result<Envelope<'d>, SoapError> {
    let root = xml::parse(input, limits)?;
    check_envelope_root(&root)?;
    split_envelope(root)
}

fn check_envelope_root(root: &Element) -> Result<(), SoapError> {
    if root.is(SOAP12, "Envelope") {
        Ok(())
    } else if root.is(SOAP11_NS, "Envelope") {
        Err(SoapError::VersionMismatch)
    } else {
        Err(SoapError::NotAnEnvelope)
    }
}

fn split_envelope(root: Element<'_>) -> Result<Envelope<'_>, SoapError> {
    let mut header = None;
    let mut body = None;
    for child in root.children {
        if child.is(SOAP12, "Header") {
            if header.is_some() {
                return Err(SoapError::DuplicateHeader);
            }
            if body.is_some() {
                return Err(SoapError::UnexpectedChild("Header after Body".to_owned()));
            }
            header = Some(child);
        } else if child.is(SOAP12, "Body") {
            if body.is_some() {
                return Err(SoapError::DuplicateBody);
            }
            body = Some(child);
        } else {
            return Err(SoapError::UnexpectedChild(child.local.into_owned()));
        }
    }
    let body = body.ok_or(SoapError::MissingBody)?;
    Ok(Envelope { header, body })
}

/// The top-level SOAP 1.2 fault code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultCode {
    /// The request was at fault (`s:Sender`).
    Sender,
    /// The server failed (`s:Receiver`).
    Receiver,
}

impl FaultCode {
    fn qname(self) -> &'static str {
        match self {
            Self::Sender => "s:Sender",
            Self::Receiver => "s:Receiver",
        }
    }
}

/// A SOAP 1.2 fault with a namespaced subcode, rendered like ADFS renders it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// Top-level code.
    pub code: FaultCode,
    /// Namespace URI of the subcode QName (e.g. the request's WS-Trust namespace).
    pub subcode_ns: String,
    /// Local name of the subcode QName (e.g. `FailedAuthentication`).
    pub subcode_local: String,
    /// Human-readable reason, sent as `s:Reason/s:Text xml:lang="en-US"`.
    pub reason: String,
    /// The request's MessageID, echoed as `a:RelatesTo` when known.
    pub relates_to: Option<String>,
}

impl Fault {
    /// Renders the fault envelope; the subcode is the prefixed QName `a:<local>` with `a`
    /// declared on its own `s:Value` element, as ADFS does (ADAL splits the value on `:`).
    pub fn to_xml(&self) -> String {
        let body = format!(
            concat!(
                r#"<s:Fault><s:Code><s:Value>{code}</s:Value>"#,
                r#"<s:Subcode><s:Value xmlns:a="{subcode_ns}">a:{subcode_local}</s:Value></s:Subcode></s:Code>"#,
                r#"<s:Reason><s:Text xml:lang="en-US">{reason}</s:Text></s:Reason>"#,
                r#"<s:Detail></s:Detail></s:Fault>"#
            ),
            code = self.code.qname(),
            subcode_ns = xml::escape(&self.subcode_ns),
            subcode_local = xml::escape(&self.subcode_local),
            reason = xml::escape(&self.reason),
        );
        ResponseEnvelope {
            namespaces: &[],
            action: FAULT_ACTION,
            relates_to: self.relates_to.as_deref(),
            headers: "",
            body: &body,
        }
        .to_xml()
    }
}

/// A SOAP 1.2 envelope we answer with, in the shape ADFS writes (compact, no XML declaration):
/// `s` and `a` (WS-Addressing) declared on the root, then `namespaces`; a header with the
/// Action (`s:mustUnderstand="1"`), `a:RelatesTo` when the request's MessageID is known, then
/// `headers`; the body. RSTRs (`protocol::wstrust::build_response`) and faults
/// ([`Fault::to_xml`]) are written by this one writer.
#[derive(Debug, Clone, Copy)]
pub struct ResponseEnvelope<'a> {
    /// Further namespace declarations on the root after `s` and `a`, e.g. `("xmlns:u", WSU)`;
    /// constants, written as they are.
    pub namespaces: &'a [(&'static str, &'static str)],
    /// The WS-Addressing Action (a constant URI, written as it is).
    pub action: &'static str,
    /// The request's MessageID (escaped here), echoed as `a:RelatesTo` when known.
    pub relates_to: Option<&'a str>,
    /// Header blocks after the addressing ones, already XML (the RSTR's `o:Security`).
    pub headers: &'a str,
    /// The body's content, already XML.
    pub body: &'a str,
}

impl ResponseEnvelope<'_> {
    /// The envelope's bytes.
    pub fn to_xml(&self) -> String {
        let relates_to = self.relates_to.map(xml::escape);
        let mut out = String::with_capacity(
            256 + self.headers.len() + self.body.len() + relates_to.as_ref().map_or(0, |r| r.len()),
        );
        out.push_str(r#"<s:Envelope xmlns:s=""#);
        out.push_str(SOAP12);
        out.push_str(r#"" xmlns:a=""#);
        out.push_str(WSA);
        out.push('"');
        for (name, uri) in self.namespaces {
            out.push(' ');
            out.push_str(name);
            out.push_str("=\"");
            out.push_str(uri);
            out.push('"');
        }
        out.push_str(r#"><s:Header><a:Action s:mustUnderstand="1">"#);
        out.push_str(self.action);
        out.push_str("</a:Action>");
        if let Some(id) = &relates_to {
            out.push_str("<a:RelatesTo>");
            out.push_str(id);
            out.push_str("</a:RelatesTo>");
        }
        out.push_str(self.headers);
        out.push_str("</s:Header><s:Body>");
        out.push_str(self.body);
        out.push_str("</s:Body></s:Envelope>");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(input: &str) -> Result<Envelope<'_>, SoapError> {
        parse_envelope(input.as_bytes(), &xml::Limits::default())
    }

    #[test]
    fn splits_header_and_body_with_any_prefix() {
        let envelope = parse(
            r#"<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"><env:Header><h xmlns="urn:h"/></env:Header><env:Body><b xmlns="urn:b"/></env:Body></env:Envelope>"#,
        )
        .unwrap();
        assert_eq!(envelope.header.unwrap().children[0].local, "h");
        assert_eq!(envelope.body.children[0].local, "b");
    }

    #[test]
    fn header_is_optional() {
        let envelope = parse(
            r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body/></s:Envelope>"#,
        )
        .unwrap();
        assert_eq!(envelope.header, None);
        assert!(envelope.body.is(SOAP12, "Body"));
    }

    #[test]
    fn refuses_soap11_and_foreign_roots() {
        assert_eq!(
            parse(
                r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body/></s:Envelope>"#
            ),
            Err(SoapError::VersionMismatch)
        );
        assert_eq!(
            parse(r#"<Envelope><Body/></Envelope>"#),
            Err(SoapError::NotAnEnvelope)
        );
    }

    #[test]
    fn refuses_bad_envelope_structure() {
        let wrap = |inner: &str| {
            format!(
                r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope">{inner}</s:Envelope>"#
            )
        };
        assert_eq!(parse(&wrap("<s:Header/>")), Err(SoapError::MissingBody));
        assert_eq!(
            parse(&wrap("<s:Header/><s:Header/><s:Body/>")),
            Err(SoapError::DuplicateHeader)
        );
        assert_eq!(
            parse(&wrap("<s:Body/><s:Body/>")),
            Err(SoapError::DuplicateBody)
        );
        assert_eq!(
            parse(&wrap("<s:Body/><s:Header/>")),
            Err(SoapError::UnexpectedChild("Header after Body".to_owned()))
        );
        assert_eq!(
            parse(&wrap("<s:Header/><s:Body/><s:Extra/>")),
            Err(SoapError::UnexpectedChild("Extra".to_owned()))
        );
    }

    #[test]
    fn passes_xml_errors_through() {
        assert_eq!(
            parse(r#"<!DOCTYPE x><s:Envelope/>"#),
            Err(SoapError::Xml(XmlError::DoctypeForbidden))
        );
    }

    #[test]
    fn renders_adfs_style_fault() {
        let fault = Fault {
            code: FaultCode::Sender,
            subcode_ns: "http://schemas.xmlsoap.org/ws/2005/02/trust".to_owned(),
            subcode_local: "FailedAuthentication".to_owned(),
            reason: "MSIS7068: Access denied & <nothing> else.".to_owned(),
            relates_to: Some("urn:uuid:1234".to_owned()),
        };
        assert_eq!(
            fault.to_xml(),
            concat!(
                r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://www.w3.org/2005/08/addressing">"#,
                r#"<s:Header><a:Action s:mustUnderstand="1">http://www.w3.org/2005/08/addressing/soap/fault</a:Action>"#,
                r#"<a:RelatesTo>urn:uuid:1234</a:RelatesTo></s:Header>"#,
                r#"<s:Body><s:Fault><s:Code><s:Value>s:Sender</s:Value><s:Subcode>"#,
                r#"<s:Value xmlns:a="http://schemas.xmlsoap.org/ws/2005/02/trust">a:FailedAuthentication</s:Value>"#,
                r#"</s:Subcode></s:Code><s:Reason><s:Text xml:lang="en-US">MSIS7068: Access denied &amp; &lt;nothing&gt; else.</s:Text>"#,
                r#"</s:Reason><s:Detail></s:Detail></s:Fault></s:Body></s:Envelope>"#
            )
        );
    }

    #[test]
    fn fault_without_relates_to_parses_back() {
        let fault = Fault {
            code: FaultCode::Receiver,
            subcode_ns: "http://docs.oasis-open.org/ws-sx/ws-trust/200512".to_owned(),
            subcode_local: "RequestFailed".to_owned(),
            reason: "MSIS3127: The specified request failed.".to_owned(),
            relates_to: None,
        };
        let rendered = fault.to_xml();
        assert!(!rendered.contains("RelatesTo"));
        let envelope = parse(&rendered).unwrap();
        let fault_element = envelope.body.child(SOAP12, "Fault").unwrap().unwrap();
        let code = fault_element.child(SOAP12, "Code").unwrap().unwrap();
        assert_eq!(
            code.child(SOAP12, "Value").unwrap().unwrap().text,
            "s:Receiver"
        );
        let subcode = code.child(SOAP12, "Subcode").unwrap().unwrap();
        assert_eq!(
            subcode.child(SOAP12, "Value").unwrap().unwrap().text,
            "a:RequestFailed"
        );
        let reason = fault_element.child(SOAP12, "Reason").unwrap().unwrap();
        let text = reason.child(SOAP12, "Text").unwrap().unwrap();
        assert_eq!(text.text, "MSIS3127: The specified request failed.");
        assert_eq!(
            text.attribute(Some("http://www.w3.org/XML/1998/namespace"), "lang"),
            Some("en-US")
        );
    }
}
