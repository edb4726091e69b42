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

/// An RST for endpoint `to` of `version` ("13" or "2005"); with `credentials` a usernamemixed
/// request (Security header with timestamp and UsernameToken), without a windowstransport one.
pub fn rst(version: &str, to: &str, credentials: Option<(&str, &str)>) -> String {
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
            let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
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
    let id = uuid::Uuid::new_v4();
    format!(
        r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:wsa="http://www.w3.org/2005/08/addressing" xmlns:wsu="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"><s:Header><wsa:Action s:mustUnderstand="1">{action}</wsa:Action><wsa:MessageID>urn:uuid:{id}</wsa:MessageID><wsa:ReplyTo><wsa:Address>http://www.w3.org/2005/08/addressing/anonymous</wsa:Address></wsa:ReplyTo><wsa:To s:mustUnderstand="1">{to}</wsa:To>{security}</s:Header><s:Body><wst:RequestSecurityToken xmlns:wst="{trust}"><wsp:AppliesTo xmlns:wsp="http://schemas.xmlsoap.org/ws/2004/09/policy"><wsa:EndpointReference><wsa:Address>urn:federation:MicrosoftOnline</wsa:Address></wsa:EndpointReference></wsp:AppliesTo><wst:KeyType>{key_type}</wst:KeyType><wst:RequestType>{request_type}</wst:RequestType></wst:RequestSecurityToken></s:Body></s:Envelope>"#
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
