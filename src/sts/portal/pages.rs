//! Server-rendered HTML of the portal: the tiles, the notice, the signed-out page. Same
//! document, style and rules as the sign-in pages (`sts::passive::pages`): no script, labels
//! and a natural focus order (heading, tiles, password link, sign-out), AA contrast, every
//! value escaped here.

use crate::config::NoticeConfig;
use crate::sts::HttpReply;
use crate::sts::passive::pages::{Branding, document, escape};

/// A portal page with the sign-in page's headers (see `passive::portal_page`).
pub(super) fn reply(
    status: u16,
    cookies: Vec<String>,
    render: impl FnOnce(&str) -> String,
) -> HttpReply {
    crate::sts::passive::portal_page(status, cookies, None, render)
}

fn branding(organisation: &str) -> Branding<'_> {
    Branding {
        display_name: organisation,
        logo_url: None,
    }
}

/// One tile.
pub(super) struct TileView<'a> {
    /// Name on the tile.
    pub name: &'a str,
    /// `data:` URL of the logo.
    pub logo: Option<&'a str>,
    /// The app's launch URL.
    pub href: String,
}

/// What the tiles page shows.
pub(super) struct HomeView<'a> {
    pub organisation: &'a str,
    pub upn: &'a str,
    pub tiles: &'a [TileView<'a>],
    /// The change-password page of the user's app.
    pub password_href: String,
    /// "Your password expires in N days", when it soon does.
    pub password_expiry: Option<&'a str>,
    /// The CSRF token of the sign-out form.
    pub csrf: &'a str,
}

/// What the notice page shows.
pub(super) struct NoticeView<'a> {
    pub organisation: &'a str,
    pub upn: &'a str,
    pub notice: &'a NoticeConfig,
    /// The CSRF token of its forms.
    pub csrf: &'a str,
}

fn signed_in_as(upn: &str) -> String {
    format!(
        r#"<p class="hint">Signed in as <strong>{}</strong></p>"#,
        escape(upn)
    )
}

fn sign_out_form(csrf: &str) -> String {
    format!(
        concat!(
            "<form method=\"post\" action=\"/\" id=\"signout\">",
            "<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">",
            "<input type=\"hidden\" name=\"step\" value=\"signout\">",
            "<button type=\"submit\" class=\"secondary\">Sign out</button></form>"
        ),
        csrf = escape(csrf),
    )
}

/// The tiles: one link per app, each its IdP-initiated sign-in.
pub(super) fn home(view: &HomeView<'_>, nonce: &str) -> String {
    let tiles = if view.tiles.is_empty() {
        r#"<p id="no-apps">No apps are set up for your account yet.</p>"#.to_owned()
    } else {
        let items: String = view
            .tiles
            .iter()
            .map(|tile| {
                let logo = tile
                    .logo
                    .map(|url| format!(r#"<img src="{}" alt="" height="48">"#, escape(url)))
                    .unwrap_or_default();
                format!(
                    r#"<li><a class="tile" href="{}">{logo}<span>{}</span></a></li>"#,
                    escape(&tile.href),
                    escape(tile.name),
                )
            })
            .collect();
        format!(r#"<ul class="tiles" id="tiles" aria-label="Apps">{items}</ul>"#)
    };
    let content = format!(
        concat!(
            "{signed_in}{expiry}{tiles}",
            "<p><a href=\"{password}\" id=\"change-password\">Change your password</a></p>",
            "{sign_out}"
        ),
        signed_in = signed_in_as(view.upn),
        expiry = view
            .password_expiry
            .map(|text| format!(
                r#"<div class="notice" id="password-expiry" role="status"><p>{}</p></div>"#,
                escape(text)
            ))
            .unwrap_or_default(),
        tiles = tiles,
        password = escape(&view.password_href),
        sign_out = sign_out_form(view.csrf),
    );
    document("Your apps", nonce, &branding(view.organisation), &content)
}

/// The notice, one paragraph per blank-line-separated block, and its acknowledge button.
pub(super) fn notice(view: &NoticeView<'_>, nonce: &str) -> String {
    let paragraphs: String = view
        .notice
        .text
        .split("\n\n")
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| format!("<p>{}</p>", escape(p)))
        .collect();
    let content = format!(
        concat!(
            "{signed_in}<div class=\"notice\" id=\"notice\" role=\"region\" ",
            "aria-label=\"Notice\">{paragraphs}</div>",
            "<form method=\"post\" action=\"/\" id=\"acknowledge\">",
            "<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">",
            "<input type=\"hidden\" name=\"step\" value=\"ack\">",
            "<input type=\"hidden\" name=\"version\" value=\"{version}\">",
            "<button type=\"submit\" autofocus>I have read this notice</button></form>",
            "{sign_out}"
        ),
        signed_in = signed_in_as(view.upn),
        paragraphs = paragraphs,
        csrf = escape(view.csrf),
        version = escape(&view.notice.version),
        sign_out = sign_out_form(view.csrf),
    );
    document(
        "Before you continue",
        nonce,
        &branding(view.organisation),
        &content,
    )
}

/// After sign-out: a way back in.
pub(super) fn signed_out(organisation: &str, nonce: &str) -> String {
    let content = concat!(
        "<p id=\"message\">You are signed out of the portal and of the apps you opened from it.</p>",
        "<p><a href=\"/\">Sign in again</a></p>"
    );
    document("Signed out", nonce, &branding(organisation), content)
}

/// A title and one paragraph, with a link back to the portal.
pub(super) fn message(organisation: &str, title: &str, text: &str, nonce: &str) -> String {
    let content = format!(
        r#"<p id="message">{}</p><p><a href="/">Open the portal</a></p>"#,
        escape(text)
    );
    document(title, nonce, &branding(organisation), &content)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_and_notice_are_escaped_and_have_no_script() {
        let tiles = [TileView {
            name: "Mail <&>",
            logo: Some("data:image/png;base64,AA=="),
            href: "https://sts/wsfed/a/launch".into(),
        }];
        let html = home(
            &HomeView {
                organisation: "Ex \"Inc\"",
                upn: "a<b@example.com",
                tiles: &tiles,
                password_href: "/wsfed/a/password".into(),
                password_expiry: Some("Your password expires in 3 days <soon>"),
                csrf: "t\"k",
            },
            "N",
        );
        assert!(html.contains("<html lang=\"en\">"));
        assert!(html.contains("<span>Mail &lt;&amp;&gt;</span>"));
        assert!(html.contains("a&lt;b@example.com"));
        assert!(html.contains(">Your password expires in 3 days &lt;soon&gt;</p>"));
        assert!(html.contains(r#"value="t&quot;k""#));
        assert!(html.contains(r#"<img src="data:image/png;base64,AA==" alt="" height="48">"#));
        assert!(!html.contains("<script"));
        let notice_config = NoticeConfig {
            version: "v1".into(),
            text: "First <b>.\n\nSecond.".into(),
        };
        let html = notice(
            &NoticeView {
                organisation: "Ex",
                upn: "a@example.com",
                notice: &notice_config,
                csrf: "t",
            },
            "N",
        );
        assert!(html.contains("<p>First &lt;b&gt;.</p><p>Second.</p>"));
        assert!(html.contains(r#"name="version" value="v1""#));
        assert!(!html.contains("<script"));
    }
}
