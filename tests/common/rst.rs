//! WS-Trust 1.3 usernamemixed requests written the way MSAL Python writes them, at a given
//! instant (tests with a `ManualClock` need timestamps in the service's time).
#![allow(dead_code)]

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// A WS-Trust 1.3 RST to `to`, created at `now`; `message_id` `None` leaves it out.
pub fn rst13(
    to: &str,
    username: &str,
    password: &str,
    now: OffsetDateTime,
    message_id: Option<&str>,
) -> String {
    let now = now.replace_nanosecond(0).unwrap();
    let created = now.format(&Rfc3339).unwrap();
    let expires = (now + time::Duration::minutes(10))
        .format(&Rfc3339)
        .unwrap();
    let message_id = message_id
        .map(|id| format!("<wsa:MessageID>{}</wsa:MessageID>", escape(id)))
        .unwrap_or_default();
    let (username, password) = (escape(username), escape(password));
    format!(
        r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:wsa="http://www.w3.org/2005/08/addressing" xmlns:wsu="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd">
  <s:Header>
    <wsa:Action s:mustUnderstand="1">http://docs.oasis-open.org/ws-sx/ws-trust/200512/RST/Issue</wsa:Action>
    {message_id}
    <wsa:ReplyTo><wsa:Address>http://www.w3.org/2005/08/addressing/anonymous</wsa:Address></wsa:ReplyTo>
    <wsa:To s:mustUnderstand="1">{to}</wsa:To>
    <wsse:Security s:mustUnderstand="1" xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd">
      <wsu:Timestamp wsu:Id="_0"><wsu:Created>{created}</wsu:Created><wsu:Expires>{expires}</wsu:Expires></wsu:Timestamp>
      <wsse:UsernameToken wsu:Id="ADALUsernameToken"><wsse:Username>{username}</wsse:Username><wsse:Password>{password}</wsse:Password></wsse:UsernameToken>
    </wsse:Security>
  </s:Header>
  <s:Body>
    <wst:RequestSecurityToken xmlns:wst="http://docs.oasis-open.org/ws-sx/ws-trust/200512">
      <wsp:AppliesTo xmlns:wsp="http://schemas.xmlsoap.org/ws/2004/09/policy"><wsa:EndpointReference><wsa:Address>urn:federation:MicrosoftOnline</wsa:Address></wsa:EndpointReference></wsp:AppliesTo>
      <wst:KeyType>http://docs.oasis-open.org/ws-sx/ws-trust/200512/Bearer</wst:KeyType>
      <wst:RequestType>http://docs.oasis-open.org/ws-sx/ws-trust/200512/Issue</wst:RequestType>
    </wst:RequestSecurityToken>
  </s:Body>
</s:Envelope>"#
    )
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
