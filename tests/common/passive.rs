//! A cookie-keeping client standing in for a browser on the passive endpoint, and helpers to
//! read and fill the server-rendered pages.
#![allow(dead_code)]

use std::collections::BTreeMap;

use super::server::TestServer;

/// `wtrealm` Entra ID sends.
pub const REALM: &str = "urn:federation:MicrosoftOnline";
/// Entra's wctx shape with characters that must survive encoding both ways.
pub const WCTX: &str = "LoginOptions=3&estsredirect=2&estsrequest=rQQIARAAjZ<\"é'>+/=";

pub fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

pub fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// `name → value` of every `<input … name="…" value="…">` in a page.
pub fn inputs(html: &str) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    for chunk in html.split("<input").skip(1) {
        let tag = chunk.split('>').next().unwrap();
        let attr = |name: &str| {
            tag.split(&format!(" {name}=\""))
                .nth(1)
                .map(|rest| unescape(rest.split('"').next().unwrap()))
        };
        if let Some(name) = attr("name") {
            found.insert(name, attr("value").unwrap_or_default());
        }
    }
    found
}

pub fn form_action(html: &str) -> String {
    let rest = html
        .split("<form method=\"post\" action=\"")
        .nth(1)
        .unwrap();
    unescape(rest.split('"').next().unwrap())
}

/// A cookie-keeping client.
pub struct Browser<'a> {
    pub server: &'a TestServer,
    pub jar: BTreeMap<String, String>,
    /// Headers sent with every request (user agent, forwarded-for).
    pub headers: Vec<(String, String)>,
}

pub struct Page {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl<'a> Browser<'a> {
    pub fn new(server: &'a TestServer) -> Self {
        Self {
            server,
            jar: BTreeMap::new(),
            headers: Vec::new(),
        }
    }

    pub async fn send(&mut self, method: &str, path: &str, body: String) -> Page {
        let cookie = self
            .jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut headers = vec![("content-type", "application/x-www-form-urlencoded")];
        if !cookie.is_empty() {
            headers.push(("cookie", cookie.as_str()));
        }
        headers.extend(self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let reply = self
            .server
            .request(method, path, &headers, body.into_bytes())
            .await;
        for set in reply.headers.get_all("set-cookie") {
            let set = set.to_str().unwrap();
            let (pair, attributes) = set.split_once(';').unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if attributes.contains("Max-Age=0") {
                self.jar.remove(name);
            } else {
                self.jar.insert(name.to_owned(), value.to_owned());
            }
        }
        Page {
            status: reply.status,
            headers: reply.headers,
            body: reply.body,
        }
    }

    pub async fn get(&mut self, query: &str) -> Page {
        let path = format!("/wsfed/{}?{query}", self.server.app_id);
        self.send("GET", &path, String::new()).await
    }

    pub async fn post(&mut self, fields: &BTreeMap<String, String>) -> Page {
        let pairs: Vec<(&str, &str)> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let path = format!("/wsfed/{}", self.server.app_id);
        self.send("POST", &path, form(&pairs)).await
    }

    /// Fills the sign-in form of `page` and posts it.
    pub async fn sign_in(&mut self, page: &Page, username: &str, password: &str) -> Page {
        let mut fields = inputs(&page.body);
        fields.insert("username".into(), username.into());
        fields.insert("password".into(), password.into());
        self.post(&fields).await
    }

    pub async fn enter_code(&mut self, page: &Page, code: &str) -> Page {
        let mut fields = inputs(&page.body);
        fields.insert("totp".into(), code.into());
        self.post(&fields).await
    }
}

pub fn sign_in_query(extra: &[(&str, &str)]) -> String {
    let mut fields = vec![("wa", "wsignin1.0"), ("wtrealm", REALM), ("wctx", WCTX)];
    fields.extend_from_slice(extra);
    form(&fields)
}

pub fn header(page: &Page, name: &str) -> String {
    page.headers
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

pub fn assert_response_page(page: &Page, reply_to: &str, wctx: &str) -> String {
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(form_action(&page.body), reply_to);
    let fields = inputs(&page.body);
    assert_eq!(fields["wa"], "wsignin1.0");
    assert_eq!(fields["wctx"], wctx, "wctx echoed byte for byte");
    let csp = header(page, "content-security-policy");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(csp.contains("script-src 'nonce-"), "{csp}");
    assert!(page.body.contains("<noscript>"));
    fields["wresult"].clone()
}
