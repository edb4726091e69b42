//! WS-Trust request bodies the way MSAL writes them, and small readers for replies.
#![allow(dead_code)]

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// `s` escaped for XML text and attributes.
pub fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// An RST for endpoint `to` of `version` ("13" or "2005"), created now with a fresh MessageID;
/// with `credentials` a usernamemixed request (Security header with timestamp and
/// UsernameToken), without a windowstransport one.
pub fn rst(version: &str, to: &str, credentials: Option<(&str, &str)>) -> String {
    let id = message_id();
    rst_at(
        version,
        to,
        credentials,
        OffsetDateTime::now_utc(),
        Some(&id),
    )
}

/// A WS-Trust 1.3 usernamemixed RST created at `now` (the service's clock in tests with a
/// `ManualClock`); `message_id` `None` leaves the MessageID out.
pub fn rst13(
    to: &str,
    username: &str,
    password: &str,
    now: OffsetDateTime,
    message_id: Option<&str>,
) -> String {
    rst_at("13", to, Some((username, password)), now, message_id)
}

/// An RST as [`rst`] describes, created at `now`, with an optional MessageID.
pub fn rst_at(
    version: &str,
    to: &str,
    credentials: Option<(&str, &str)>,
    now: OffsetDateTime,
    message_id: Option<&str>,
) -> String {
    let (trust, action, key_type, request_type) = match version {
        "13" => (
            "http://docs.oasis-open.org/ws-sx/ws-trust/200512",
            "http://docs.oasis-open.org/ws-sx/ws-trust/200512/RST/Issue",
            "http://docs.oasis-open.org/ws-sx/ws-trust/200512/Bearer",
            "http://docs.oasis-open.org/ws-sx/ws-trust/200512/Issue",
        ),
        _ => (
            "http://schemas.xmlsoap.org/ws/2005/02/trust",
            "http://schemas.xmlsoap.org/ws/2005/02/trust/RST/Issue",
            "http://schemas.xmlsoap.org/ws/2005/05/identity/NoProofKey",
            "http://schemas.xmlsoap.org/ws/2005/02/trust/Issue",
        ),
    };
    let security = match credentials {
        Some((username, password)) => {
            let now = now.replace_nanosecond(0).unwrap();
            let created = now.format(&Rfc3339).unwrap();
            let expires = (now + time::Duration::minutes(10))
                .format(&Rfc3339)
                .unwrap();
            format!(
                r#"<wsse:Security s:mustUnderstand="1" xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"><wsu:Timestamp wsu:Id="_0"><wsu:Created>{created}</wsu:Created><wsu:Expires>{expires}</wsu:Expires></wsu:Timestamp><wsse:UsernameToken wsu:Id="ADALUsernameToken"><wsse:Username>{}</wsse:Username><wsse:Password>{}</wsse:Password></wsse:UsernameToken></wsse:Security>"#,
                xml_escape(username),
                xml_escape(password)
            )
        }
        None => String::new(),
    };
    let message_id = message_id
        .map(|id| format!("<wsa:MessageID>{}</wsa:MessageID>", xml_escape(id)))
        .unwrap_or_default();
    format!(
        r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:wsa="http://www.w3.org/2005/08/addressing" xmlns:wsu="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"><s:Header><wsa:Action s:mustUnderstand="1">{action}</wsa:Action>{message_id}<wsa:ReplyTo><wsa:Address>http://www.w3.org/2005/08/addressing/anonymous</wsa:Address></wsa:ReplyTo><wsa:To s:mustUnderstand="1">{to}</wsa:To>{security}</s:Header><s:Body><wst:RequestSecurityToken xmlns:wst="{trust}"><wsp:AppliesTo xmlns:wsp="http://schemas.xmlsoap.org/ws/2004/09/policy"><wsa:EndpointReference><wsa:Address>urn:federation:MicrosoftOnline</wsa:Address></wsa:EndpointReference></wsp:AppliesTo><wst:KeyType>{key_type}</wst:KeyType><wst:RequestType>{request_type}</wst:RequestType></wst:RequestSecurityToken></s:Body></s:Envelope>"#
    )
}

/// The path of an absolute URL.
pub fn path_of(url: &str) -> String {
    let after_scheme = url.split_once("://").unwrap().1;
    format!("/{}", after_scheme.split_once('/').unwrap().1)
}

/// Every `(AttributeNamespace, AttributeName, [values])` of the SAML 1.1 assertion in `xml`.
pub fn saml_attributes(xml: &str) -> Vec<(String, String, Vec<String>)> {
    let mut out = Vec::new();
    for chunk in xml.split("<saml:Attribute ").skip(1) {
        let head = &chunk[..chunk.find('>').unwrap()];
        let attr = |name: &str| {
            let start = head.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
            head[start..start + head[start..].find('"').unwrap()].to_owned()
        };
        let body = &chunk[..chunk.find("</saml:Attribute>").unwrap()];
        let values = body
            .split("<saml:AttributeValue>")
            .skip(1)
            .map(|v| v[..v.find("</saml:AttributeValue>").unwrap()].to_owned())
            .collect();
        out.push((attr("AttributeNamespace"), attr("AttributeName"), values));
    }
    out
}

/// The value of the SAML attribute `name`, when present once with one value.
pub fn saml_attribute(xml: &str, name: &str) -> Option<String> {
    saml_attributes(xml)
        .into_iter()
        .find(|(_, n, _)| n == name)
        .and_then(|(_, _, values)| values.into_iter().next())
}

/// The content of the first element with this local name and a prefix (`<p:local …>…</p:local>`).
pub fn element<'a>(xml: &'a str, local: &str) -> Option<&'a str> {
    let mut from = 0;
    let start = loop {
        let at = from + xml[from..].find(&format!(":{local}"))?;
        let after = xml[at + local.len() + 1..].chars().next()?;
        let tag_start = xml[..at].rfind('<')?;
        let prefix = &xml[tag_start + 1..at];
        if matches!(after, '>' | ' ')
            && !prefix.is_empty()
            && prefix.chars().all(char::is_alphanumeric)
        {
            break tag_start + xml[tag_start..].find('>')? + 1;
        }
        from = at + 1;
    };
    let end = start + xml[start..].find(&format!(":{local}>"))?;
    Some(&xml[start..xml[..end].rfind("</")?])
}

/// A fresh `urn:uuid:` MessageID.
pub fn message_id() -> String {
    format!("urn:uuid:{}", uuid::Uuid::new_v4())
}

/// The `s:Subcode` value's local name of a fault body, e.g. `FailedAuthentication`.
pub fn fault_subcode(body: &str) -> Option<&str> {
    let sub = &body[body.find("<s:Subcode>")?..];
    let value_end = sub.find("</s:Value>")?;
    let value = &sub[..value_end];
    Some(&value[value.rfind(':')? + 1..])
}

/// The fault reason text.
pub fn fault_reason(body: &str) -> Option<&str> {
    let start = body.find("<s:Text xml:lang=\"en-US\">")? + "<s:Text xml:lang=\"en-US\">".len();
    let end = start + body[start..].find("</s:Text>")?;
    Some(&body[start..end])
}
