//! Server-rendered HTML of passive sign-in: the password form, the change-password form, the
//! TOTP form, the TOTP enrolment page (QR code as inline SVG), the auto-submit response form and
//! short message pages.
//!
//! Pages work without JavaScript (the response form has a `<noscript>` button), use labels and a
//! natural focus order, keep text contrast above WCAG AA, and carry their only inline style and
//! script under a per-response CSP nonce. Every value is HTML-escaped here.

/// Escapes text for HTML content and double-quoted attributes. The runs between characters to
/// escape are copied whole: the response form's `wresult` is a signed RSTR of about 7 KiB, and
/// escaping it a character at a time cost more than the rest of the passive response besides
/// its signature (callgrind: 159,000 of 569,000 instructions).
pub fn escape(text: &str) -> String {
    // An RSTR grows by about a quarter (its tags and quoted attributes).
    let mut out = String::with_capacity(text.len() + text.len() / 3);
    let mut copied_to = 0;
    for (at, byte) in text.bytes().enumerate() {
        let entity = match byte {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            b'\'' => "&#39;",
            _ => continue,
        };
        // Every escaped character is ASCII, so `at` is a character boundary.
        out.push_str(&text[copied_to..at]);
        out.push_str(entity);
        copied_to = at + 1;
    }
    out.push_str(&text[copied_to..]);
    out
}

const STYLE: &str = "body{margin:0;font:16px/1.5 system-ui,-apple-system,'Segoe UI',sans-serif;\
color:#1b1b1b;background:#f3f4f6}main{max-width:26rem;margin:8vh auto;padding:2rem;\
background:#fff;border:1px solid #c4c7cc;border-radius:8px}h1{font-size:1.4rem;margin:0 0 1rem}h2{font-size:1.1rem;margin:1.5rem 0 .5rem}\
img{max-height:48px;max-width:100%;display:block;margin-bottom:1rem}label{display:block;\
font-weight:600;margin-top:1rem}input[type=text],input[type=email],input[type=password]{\
box-sizing:border-box;width:100%;padding:.6rem;margin-top:.3rem;font-size:1rem;\
border:1px solid #5f6368;border-radius:4px;color:#1b1b1b}input:focus,button:focus{\
outline:3px solid #0b57d0;outline-offset:2px}button{margin-top:1.5rem;padding:.7rem 1.4rem;\
font-size:1rem;font-weight:600;color:#fff;background:#0b57d0;border:0;border-radius:4px;\
cursor:pointer}.error{color:#a50e0e;background:#fce8e6;border-left:4px solid #a50e0e;\
padding:.6rem .8rem;margin:0 0 1rem}.hint{color:#3c4043;margin:.25rem 0 0}\
.qr{display:block;margin:1rem auto;width:240px;height:240px;border:1px solid #c4c7cc}\
.key{font:1.05rem/1.6 ui-monospace,monospace;letter-spacing:.05em;overflow-wrap:anywhere}\
button.secondary{color:#0b57d0;background:#fff;border:2px solid #0b57d0;margin-left:.5rem}\
a{color:#0b57d0}a:focus{outline:3px solid #0b57d0;outline-offset:2px}\
.tiles{list-style:none;padding:0;margin:1rem 0;display:grid;\
grid-template-columns:repeat(auto-fill,minmax(10rem,1fr));gap:.75rem}.tile{display:flex;\
flex-direction:column;align-items:center;gap:.5rem;padding:1rem .5rem;border:1px solid #5f6368;\
border-radius:8px;color:#1b1b1b;text-decoration:none;font-weight:600;text-align:center}\
.tile:hover{border-color:#0b57d0;background:#eef3fd}.tile img{margin:0}\
.notice{border-left:4px solid #0b57d0;background:#eef3fd;padding:.1rem 1rem;margin:1rem 0}";

/// What every page of an app shows.
#[derive(Clone, Debug)]
pub struct Branding<'a> {
    /// App display name.
    pub display_name: &'a str,
    /// Optional logo URL (https, from config).
    pub logo_url: Option<&'a str>,
}

/// A form posted back to our own endpoint.
#[derive(Clone, Debug)]
pub struct OwnForm<'a> {
    /// Where it posts (`/wsfed/{app}`).
    pub action: &'a str,
    /// Hidden fields: the WS-Federation parameters to carry, the CSRF token, tickets.
    pub hidden: &'a [(&'a str, String)],
}

/// A whole page: `lang`, viewport, the one style under the CSP nonce, logo, heading, content.
pub(crate) fn document(title: &str, nonce: &str, branding: &Branding<'_>, content: &str) -> String {
    let logo = branding
        .logo_url
        .map(|url| format!(r#"<img src="{}" alt="">"#, escape(url)))
        .unwrap_or_default();
    format!(
        concat!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
            "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">",
            "<meta name=\"referrer\" content=\"no-referrer\">",
            "<title>{title} – {name}</title><style nonce=\"{nonce}\">{style}</style></head>",
            "<body><main>{logo}<h1>{title}</h1>{content}</main></body></html>\n"
        ),
        title = escape(title),
        name = escape(branding.display_name),
        nonce = nonce,
        style = STYLE,
        logo = logo,
        content = content,
    )
}

fn hidden_inputs(fields: &[(&str, String)]) -> String {
    let mut inputs = String::new();
    for (name, value) in fields {
        inputs.push_str(r#"<input type="hidden" name=""#);
        inputs.push_str(&escape(name));
        inputs.push_str(r#"" value=""#);
        inputs.push_str(&escape(value));
        inputs.push_str(r#"">"#);
    }
    inputs
}

fn error_block(error: Option<&str>) -> String {
    error
        .map(|e| {
            format!(
                r#"<p class="error" id="error" role="alert">{}</p>"#,
                escape(e)
            )
        })
        .unwrap_or_default()
}

fn described_by(error: Option<&str>) -> &'static str {
    if error.is_some() {
        r#" aria-describedby="error""#
    } else {
        ""
    }
}

/// The user name and password form.
pub fn sign_in(
    branding: &Branding<'_>,
    form: &OwnForm<'_>,
    username: &str,
    error: Option<&str>,
    nonce: &str,
) -> String {
    let (user_focus, password_focus) = if username.is_empty() {
        (" autofocus", "")
    } else {
        ("", " autofocus")
    };
    let content = format!(
        concat!(
            "<p class=\"hint\">Sign in with your {name} account.</p>{error}",
            "<form method=\"post\" action=\"{action}\" autocomplete=\"on\">{hidden}",
            "<input type=\"hidden\" name=\"step\" value=\"password\">",
            "<label for=\"username\">User name</label>",
            "<input type=\"email\" id=\"username\" name=\"username\" value=\"{username}\" ",
            "autocomplete=\"username\" required spellcheck=\"false\"{described}{user_focus}>",
            "<label for=\"password\">Password</label>",
            "<input type=\"password\" id=\"password\" name=\"password\" ",
            "autocomplete=\"current-password\" required{described}{password_focus}>",
            "<button type=\"submit\">Sign in</button></form>"
        ),
        name = escape(branding.display_name),
        error = error_block(error),
        action = escape(form.action),
        hidden = hidden_inputs(form.hidden),
        username = escape(username),
        described = described_by(error),
        user_focus = user_focus,
        password_focus = password_focus,
    );
    document("Sign in", nonce, branding, &content)
}

/// The change-password form: user name, current password, the new one twice. `message` says
/// why the form is shown (again): an expired password, a refusal, a policy rule.
pub fn change_password(
    branding: &Branding<'_>,
    form: &OwnForm<'_>,
    username: &str,
    message: Option<&str>,
    nonce: &str,
) -> String {
    let user_focus = if username.is_empty() {
        " autofocus"
    } else {
        ""
    };
    let old_focus = if username.is_empty() {
        ""
    } else {
        " autofocus"
    };
    let content = format!(
        concat!(
            "<p class=\"hint\">Change the password of your {name} account.</p>{error}",
            "<form method=\"post\" action=\"{action}\" autocomplete=\"on\">{hidden}",
            "<input type=\"hidden\" name=\"step\" value=\"change\">",
            "<label for=\"username\">User name</label>",
            "<input type=\"email\" id=\"username\" name=\"username\" value=\"{username}\" ",
            "autocomplete=\"username\" required spellcheck=\"false\"{described}{user_focus}>",
            "<label for=\"old_password\">Current password</label>",
            "<input type=\"password\" id=\"old_password\" name=\"old_password\" ",
            "autocomplete=\"current-password\" required{described}{old_focus}>",
            "<label for=\"new_password\">New password</label>",
            "<input type=\"password\" id=\"new_password\" name=\"new_password\" ",
            "autocomplete=\"new-password\" required{described}>",
            "<label for=\"confirm_password\">New password again</label>",
            "<input type=\"password\" id=\"confirm_password\" name=\"confirm_password\" ",
            "autocomplete=\"new-password\" required{described}>",
            "<button type=\"submit\">Change password</button></form>"
        ),
        name = escape(branding.display_name),
        error = error_block(message),
        action = escape(form.action),
        hidden = hidden_inputs(form.hidden),
        username = escape(username),
        described = described_by(message),
        user_focus = user_focus,
        old_focus = old_focus,
    );
    document("Change password", nonce, branding, &content)
}

/// The TOTP code form shown after the password (or on step-up from a session); with
/// `offer_new_authenticator`, a second button verifies the code and then sets up a new
/// authenticator (self-enrolment: a current code is the proof).
pub fn totp(
    branding: &Branding<'_>,
    form: &OwnForm<'_>,
    upn: &str,
    error: Option<&str>,
    offer_new_authenticator: bool,
    nonce: &str,
) -> String {
    let new_authenticator = if offer_new_authenticator {
        "<button type=\"submit\" class=\"secondary\" name=\"then\" value=\"enrol\">Verify and set up a new authenticator</button>"
    } else {
        ""
    };
    let content = format!(
        concat!(
            "<p class=\"hint\">Signing in as <strong>{upn}</strong>. Open your authenticator ",
            "app and enter the 6-digit code for {name}.</p>{error}",
            "<form method=\"post\" action=\"{action}\">{hidden}",
            "<input type=\"hidden\" name=\"step\" value=\"totp\">",
            "<label for=\"totp\">Verification code</label>",
            "<input type=\"text\" id=\"totp\" name=\"totp\" inputmode=\"numeric\" ",
            "pattern=\"[0-9]{{6}}\" maxlength=\"6\" autocomplete=\"one-time-code\" required ",
            "autofocus{described}>",
            "<button type=\"submit\">Verify</button>{new_authenticator}</form>"
        ),
        upn = escape(upn),
        name = escape(branding.display_name),
        error = error_block(error),
        action = escape(form.action),
        hidden = hidden_inputs(form.hidden),
        described = described_by(error),
        new_authenticator = new_authenticator,
    );
    document("Verify your identity", nonce, branding, &content)
}

/// What the enrolment page shows of a new TOTP secret.
#[derive(Clone, Debug)]
pub struct NewAuthenticator<'a> {
    /// The user's UPN (the account name in the authenticator).
    pub upn: &'a str,
    /// The `otpauth://totp/…` URI (a link, for a phone's own authenticator).
    pub uri: &'a str,
    /// The QR code of the URI as inline SVG markup (`crate::totp::qr_svg`, no text of a client).
    pub qr_svg: &'a str,
    /// The secret in base32, for typing it in by hand.
    pub secret_base32: &'a str,
}

/// The TOTP enrolment page: the QR code, the key for typing it in, the `otpauth://` link, and
/// the form for the first code (which must verify before the secret is stored).
pub fn enrol(
    branding: &Branding<'_>,
    form: &OwnForm<'_>,
    new: &NewAuthenticator<'_>,
    error: Option<&str>,
    nonce: &str,
) -> String {
    let grouped: Vec<String> = new
        .secret_base32
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    let content = format!(
        concat!(
            "<p class=\"hint\">Signing in as <strong>{upn}</strong>. {name} needs a ",
            "verification code from an authenticator app. Scan this QR code with the app ",
            "(Microsoft Authenticator, Google Authenticator or any TOTP app), then enter the ",
            "6-digit code it shows.</p>{error}",
            "<div class=\"qr\" id=\"qr\">{qr}</div>",
            "<h2>Cannot scan it?</h2>",
            "<p class=\"hint\">Add an account by hand with this key (time-based, 6 digits, ",
            "30 seconds):</p><p class=\"key\" id=\"secret\">{key}</p>",
            "<p class=\"hint\">On this phone: <a href=\"{uri}\" id=\"otpauth\">open in ",
            "the authenticator app</a>.</p>",
            "<form method=\"post\" action=\"{action}\">{hidden}",
            "<input type=\"hidden\" name=\"step\" value=\"enrol\">",
            "<label for=\"totp\">Code from the app</label>",
            "<input type=\"text\" id=\"totp\" name=\"totp\" inputmode=\"numeric\" ",
            "pattern=\"[0-9]{{6}}\" maxlength=\"6\" autocomplete=\"one-time-code\" required ",
            "autofocus{described}>",
            "<button type=\"submit\">Verify and finish</button></form>"
        ),
        upn = escape(new.upn),
        name = escape(branding.display_name),
        error = error_block(error),
        qr = new.qr_svg,
        key = escape(&grouped.join(" ")),
        uri = escape(new.uri),
        action = escape(form.action),
        hidden = hidden_inputs(form.hidden),
        described = described_by(error),
    );
    document("Set up your authenticator", nonce, branding, &content)
}

/// The response: a form that posts `fields` to `reply_to`, submitted by a one-line script, with
/// a button for browsers without JavaScript.
pub fn auto_post(
    branding: &Branding<'_>,
    reply_to: &str,
    fields: &[(&str, String)],
    nonce: &str,
) -> String {
    let content = format!(
        concat!(
            "<form method=\"post\" action=\"{action}\" id=\"response\">{hidden}",
            "<noscript><p>JavaScript is off: press Continue to finish signing in.</p>",
            "<button type=\"submit\">Continue</button></noscript></form>",
            "<script nonce=\"{nonce}\">document.getElementById('response').submit();</script>"
        ),
        action = escape(reply_to),
        hidden = hidden_inputs(fields),
        nonce = nonce,
    );
    document("Signing in…", nonce, branding, &content)
}

/// A page with a title and one paragraph (signed out, errors).
pub fn message(branding: &Branding<'_>, title: &str, text: &str, nonce: &str) -> String {
    let content = format!(r#"<p id="message">{}</p>"#, escape(text));
    document(title, nonce, branding, &content)
}

/// A refusal page: title, one paragraph, and what the administrator can do (when known).
pub fn refusal(
    branding: &Branding<'_>,
    title: &str,
    text: &str,
    admin_actions: &[&str],
    nonce: &str,
) -> String {
    let mut content = format!(r#"<p id="message">{}</p>"#, escape(text));
    if !admin_actions.is_empty() {
        content.push_str("<h2>What your administrator can do</h2><ul id=\"admin-actions\">");
        for action in admin_actions {
            content.push_str(&format!("<li>{}</li>", escape(action)));
        }
        content.push_str("</ul>");
    }
    document(title, nonce, branding, &content)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn branding() -> Branding<'static> {
        Branding {
            display_name: "Ex <&> Inc",
            logo_url: None,
        }
    }

    #[test]
    fn escape_replaces_each_special_character_and_keeps_the_rest_whole() {
        for (text, escaped) in [
            ("", ""),
            ("plain", "plain"),
            ("&", "&amp;"),
            (
                "<a href=\"x\">it's</a>",
                "&lt;a href=&quot;x&quot;&gt;it&#39;s&lt;/a&gt;",
            ),
            ("é<ü>€&\"'ß", "é&lt;ü&gt;€&amp;&quot;&#39;ß"),
            ("trailing text after &", "trailing text after &amp;"),
        ] {
            assert_eq!(escape(text), escaped, "{text}");
        }
    }

    #[test]
    fn values_are_escaped_and_fields_labelled() {
        let hidden = [("wctx", "a\"b<c>&d'".to_owned())];
        let form = OwnForm {
            action: "/wsfed/a",
            hidden: &hidden,
        };
        let html = sign_in(&branding(), &form, "x\"@y", Some("bad <b>"), "N");
        assert!(html.contains(r#"name="wctx" value="a&quot;b&lt;c&gt;&amp;d&#39;""#));
        assert!(html.contains(r#"value="x&quot;@y""#));
        assert!(html.contains("bad &lt;b&gt;"));
        assert!(html.contains("Ex &lt;&amp;&gt; Inc"));
        assert!(html.contains(r#"<label for="username">"#));
        assert!(html.contains(r#"<label for="password">"#));
        assert!(html.contains(r#"<style nonce="N">"#));
        assert!(!html.contains("<script"), "the form needs no script");
        assert!(html.contains(
            r#"autocomplete="current-password" required aria-describedby="error" autofocus"#
        ));
    }

    #[test]
    fn enrolment_page_shows_qr_key_and_link_and_escapes() {
        let hidden = [("enrol_ticket", "t\"1".to_owned())];
        let form = OwnForm {
            action: "/wsfed/a",
            hidden: &hidden,
        };
        let new = NewAuthenticator {
            upn: "a<b>@x.com",
            uri: "otpauth://totp/X:a@x.com?secret=ABCDEFGH&issuer=X",
            qr_svg: "<svg></svg>",
            secret_base32: "ABCDEFGHIJ",
        };
        let html = enrol(&branding(), &form, &new, Some("bad"), "N");
        assert!(html.contains("<div class=\"qr\" id=\"qr\"><svg></svg></div>"));
        assert!(html.contains(r#"<p class="key" id="secret">ABCD EFGH IJ</p>"#));
        assert!(html.contains(r#"href="otpauth://totp/X:a@x.com?secret=ABCDEFGH&amp;issuer=X""#));
        assert!(html.contains("a&lt;b&gt;@x.com"));
        assert!(html.contains(r#"name="enrol_ticket" value="t&quot;1""#));
        assert!(html.contains(r#"<input type="hidden" name="step" value="enrol">"#));
        assert!(html.contains(r#"<label for="totp">"#));
        assert!(!html.contains("<script"), "the page needs no script");
    }

    #[test]
    fn auto_post_has_noscript_button_and_nonced_script() {
        let fields = [("wa", "wsignin1.0".to_owned()), ("wctx", String::new())];
        let html = auto_post(
            &branding(),
            "https://login.microsoftonline.com/login.srf",
            &fields,
            "K",
        );
        assert!(html.contains(r#"<form method="post" action="https://login.microsoftonline.com/login.srf" id="response">"#));
        assert!(html.contains(r#"<input type="hidden" name="wctx" value="">"#));
        assert!(html.contains("<noscript>"));
        assert!(html.contains(r#"<script nonce="K">"#));
    }
}
