//! The user portal at `GET|POST /` (when `[portal] enabled`): sign-in through the steps of
//! passive sign-in (`sts::passive`, audience `Portal`: rate limit, lockout, password, device
//! trust, TOTP where required — no second password path), then the admin's notice until the
//! user acknowledges its version, then one tile per app on the directory that checked the
//! password whose domain covers the user. A tile is the app's IdP-initiated sign-in
//! (`/wsfed/{app}/launch`), which signs in from the portal session (see
//! [`super::passive::session::PortalSession`] for what binds it). Sign-out ends the portal
//! session and the app sessions its tiles started.
//!
//! The notice acknowledgement is remembered per user in the state store (key
//! `portal_notice:{version}:{upn}`, kept [`NOTICE_ACK_DAYS`] days; with the memory store it is
//! forgotten at restart, so users acknowledge again — it fails toward showing the notice), and
//! copied into the portal session cookie so the apps' passive flow can check it without a store
//! read.

mod pages;

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use time::{Duration, OffsetDateTime};

use super::guard::SignInGuard;
use super::passive::session::{
    self, PORTAL_BINDING, PORTAL_COOKIE, PORTAL_FORM_COOKIE, PortalSession, Session, SessionKey,
};
use super::passive::{self, Call, PortalLink};
use super::{App, HttpReply, RequestInfo, Sts};
use crate::config::{Config, ConfigProblem, MAX_LOGO_BYTES, NoticeConfig};
use crate::directory::User;
use crate::policy::audit::{AuditRecord, Decision};
use crate::state::StateStore;

/// How long a notice acknowledgement is remembered.
pub const NOTICE_ACK_DAYS: i64 = 400;

/// Why the portal could not be built at start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PortalError {
    /// A logo file could not be read.
    #[error("{path}: {source} — check the file exists and fedsts may read it")]
    LogoRead {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A logo file is larger than [`MAX_LOGO_BYTES`].
    #[error(
        "{path}: larger than {MAX_LOGO_BYTES} bytes — use a smaller image (it is sent in every portal page)"
    )]
    LogoTooLarge {
        /// The file.
        path: String,
    },
    /// A logo file is no image type we send.
    #[error("{path}: not a PNG, JPEG, GIF or WebP image — convert it to PNG")]
    LogoType {
        /// The file.
        path: String,
    },
}

/// One app's tile.
#[derive(Debug)]
struct Tile {
    /// Name on the tile.
    name: String,
    /// The logo as a `data:` URL, read at start.
    logo: Option<String>,
}

/// The portal, built at start from `[portal]` and every `[apps.portal]`.
#[derive(Debug)]
pub struct Portal {
    /// The organisation name on the pages.
    name: String,
    /// The app that checks names without a domain.
    default_app: String,
    notice: Option<NoticeConfig>,
    /// From how long before a password expires the tiles page says so (zero: never).
    password_notice: Duration,
    tiles: BTreeMap<String, Tile>,
    key: SessionKey,
}

/// What the apps' passive flow needs to know of the portal in `config`.
pub fn link(config: &Config) -> PortalLink {
    let portal = &config.portal;
    if !portal.enabled {
        return PortalLink::disabled();
    }
    PortalLink {
        enabled: true,
        notice_version: portal.notice.as_ref().map(|n| n.version.clone()),
        lifetime: lifetime_of(portal.session_lifetime_secs),
        name: organisation_name(config),
        require_mfa: portal.require_mfa,
    }
}

fn lifetime_of(secs: u64) -> Duration {
    Duration::seconds(i64::try_from(secs).unwrap_or(28_800))
}

fn organisation_name(config: &Config) -> String {
    match (&config.portal.name, config.apps.first()) {
        (Some(name), _) => name.clone(),
        (None, Some(app)) => app.display_name().to_owned(),
        (None, None) => "fedsts".to_owned(),
    }
}

impl Portal {
    /// The portal of a validated configuration, `None` when it is off; reads the logo files.
    /// The error names the config key of the file.
    pub fn build(config: &Config, key: SessionKey) -> Result<Option<Self>, (String, PortalError)> {
        let portal = &config.portal;
        if !portal.enabled {
            return Ok(None);
        }
        let mut tiles = BTreeMap::new();
        for (i, app) in config.apps.iter().enumerate() {
            let logo = match &app.portal.logo {
                Some(path) => {
                    Some(logo_data_url(path).map_err(|e| (format!("apps[{i}].portal.logo"), e))?)
                }
                None => None,
            };
            let name = app
                .portal
                .tile_name
                .clone()
                .unwrap_or_else(|| app.display_name().to_owned());
            tiles.insert(app.id.clone(), Tile { name, logo });
        }
        let default_app = portal
            .default_app
            .clone()
            .or_else(|| config.apps.first().map(|a| a.id.clone()))
            .unwrap_or_default();
        Ok(Some(Self {
            name: organisation_name(config),
            default_app,
            notice: portal.notice.clone(),
            password_notice: Duration::days(i64::from(portal.password_notice_days)),
            tiles,
            key,
        }))
    }

    /// Answers `GET /` or `POST /`.
    pub(crate) async fn handle(
        &self,
        sts: &Sts,
        post: bool,
        body: &[u8],
        info: &RequestInfo,
    ) -> HttpReply {
        let now = sts.clock.now();
        if !post {
            return self.get(sts, info, now).await;
        }
        let fields = std::str::from_utf8(body)
            .ok()
            .and_then(|text| passive::parse_form(text).ok());
        let Some(fields) = fields else {
            tracing::info!(correlation_id = %info.correlation_id, "portal: the posted form is not URL-encoded UTF-8 without duplicates; refused (400)");
            return pages::reply(400, Vec::new(), |n| {
                pages::message(
                    &self.name,
                    "Request not accepted",
                    "This form could not be read. Open the portal again.",
                    n,
                )
            });
        };
        let field = |name: &str| fields.get(name).map(String::as_str).unwrap_or("");
        match field("step") {
            "ack" => {
                self.acknowledge(sts, info, field("csrf"), field("version"), now)
                    .await
            }
            "signout" => self.sign_out(sts, info, field("csrf"), now).await,
            step => {
                // The code form names the app whose directory holds the code (its ticket is
                // bound to it); the password form is checked by the app the name belongs to.
                let app = match step {
                    "totp" => sts.apps.get(field("app")),
                    _ => self.app_for_name(&sts.apps, field("username")),
                };
                let Some(app) = app.or_else(|| sts.apps.get(&self.default_app)) else {
                    return HttpReply::text(404, "not found\n");
                };
                sts.wsfed
                    .portal_sign_in(&sts.policies, app, Call::Post, body, info, now)
                    .await
            }
        }
    }

    /// The app whose domain covers `name` most closely (`alice@sub.example.com` goes to the app
    /// of `sub.example.com` before that of `example.com`); names without one go to the default
    /// app.
    fn app_for_name<'s>(&self, apps: &'s BTreeMap<String, App>, name: &str) -> Option<&'s App> {
        let name = name.trim();
        let by_domain = name
            .contains('@')
            .then(|| closest(apps.values().filter(|a| a.owns_upn(name))))
            .flatten();
        by_domain.or_else(|| apps.get(&self.default_app))
    }

    /// The apps a portal session may sign in to: the directory that checked the password, a
    /// domain that covers the user.
    fn apps_of<'s>(
        apps: &'s BTreeMap<String, App>,
        session: &PortalSession,
    ) -> impl Iterator<Item = &'s App> {
        apps.values()
            .filter(|a| a.config.directory == session.directory && a.owns_upn(&session.upn))
    }

    async fn get(&self, sts: &Sts, info: &RequestInfo, now: OffsetDateTime) -> HttpReply {
        let default = sts.apps.get(&self.default_app);
        let live = self.live_session(sts, info, now).await;
        match live {
            Ok(Some((session, home, user))) => {
                let expiry = self.password_expiry_notice(&user, now);
                self.home(sts, info, session, home, expiry, now).await
            }
            Ok(None) => match default {
                Some(app) => {
                    sts.wsfed
                        .portal_sign_in(&sts.policies, app, Call::Get, &[], info, now)
                        .await
                }
                None => HttpReply::text(404, "not found\n"),
            },
            Err(reply) => reply,
        }
    }

    /// The browser's portal session when it is ours, unexpired, not revoked and its user still
    /// in the directory, with the app whose domain covers the user most closely (`Err`: the
    /// page to answer, the state store or directory being down).
    async fn live_session<'s>(
        &self,
        sts: &'s Sts,
        info: &RequestInfo,
        now: OffsetDateTime,
    ) -> Result<Option<(PortalSession, &'s App, User)>, HttpReply> {
        let Some(session) = self.cookie_session(info, now) else {
            return Ok(None);
        };
        let Some(home) = closest(Self::apps_of(&sts.apps, &session)) else {
            return Ok(None);
        };
        let mut record = self.record(sts, home, info, now, "portal");
        record.user.clone_from(&session.upn);
        match session.is_revoked(&*sts.policies.store, now).await {
            Ok(false) => {}
            Ok(true) => {
                record.emit(Decision::Refused, "session_signed_out", None);
                return Ok(None);
            }
            Err(e) => {
                tracing::warn!(error = %e, "portal: cannot check the session");
                record.emit(Decision::Refused, "state_unavailable", None);
                return Err(self.unavailable());
            }
        }
        match home.directory.lookup(&session.upn).await {
            Ok(Some(user)) if user.upn == session.upn => Ok(Some((session, home, user))),
            Ok(_) => Ok(None),
            Err(e) => {
                tracing::warn!(error = %e, "portal: cannot look the user up");
                record.emit(Decision::Refused, "directory_unavailable", None);
                Err(self.unavailable())
            }
        }
    }

    fn cookie_session(&self, info: &RequestInfo, now: OffsetDateTime) -> Option<PortalSession> {
        let sealed = session::cookie_value(info.cookie.as_deref(), PORTAL_COOKIE)?;
        self.key.open_portal(sealed, now)
    }

    fn record(
        &self,
        sts: &Sts,
        app: &App,
        info: &RequestInfo,
        now: OffsetDateTime,
        endpoint: &'static str,
    ) -> AuditRecord {
        SignInGuard::new(&sts.policies, app, info, now, None, None).audit_record(endpoint)
    }

    fn unavailable(&self) -> HttpReply {
        pages::reply(503, Vec::new(), |n| {
            pages::message(
                &self.name,
                "Portal unavailable",
                "The portal cannot check your session right now. Try again in a few minutes.",
                n,
            )
        })
    }

    /// "Your password expires …" when the directory says it does within
    /// `portal.password_notice_days` (an expired one cannot have signed in: the change form came
    /// first).
    fn password_expiry_notice(&self, user: &User, now: OffsetDateTime) -> Option<String> {
        let expires = user.password_expires_at?;
        let left = expires - now;
        if self.password_notice.is_zero() || left > self.password_notice || left.is_negative() {
            return None;
        }
        let date = expires.date();
        Some(match left.whole_days() {
            0 => format!("Your password expires today ({date}, UTC). Change it now."),
            1 => format!("Your password expires tomorrow ({date}, UTC). Change it now."),
            days => format!(
                "Your password expires in {days} days ({date}, UTC). Change it before then."
            ),
        })
    }

    /// The notice (until this version is acknowledged), else the tiles (with the password
    /// expiry notice, when there is one).
    async fn home(
        &self,
        sts: &Sts,
        info: &RequestInfo,
        mut session: PortalSession,
        home: &App,
        password_expiry: Option<String>,
        now: OffsetDateTime,
    ) -> HttpReply {
        let mut cookies = Vec::new();
        let Some(csrf) = self.csrf_for(info, &session, now, &mut cookies) else {
            return self.unavailable();
        };
        if let Some(notice) = &self.notice
            && session.notice != notice.version
        {
            match acknowledged(&*sts.policies.store, notice, &session.upn, now).await {
                Ok(true) => {
                    // Acknowledged in another browser: the cookie learns it.
                    session.notice.clone_from(&notice.version);
                    cookies.push(self.session_cookie(&session, now));
                }
                Ok(false) => {
                    let view = pages::NoticeView {
                        organisation: &self.name,
                        upn: &session.upn,
                        notice,
                        csrf: &csrf,
                    };
                    return pages::reply(200, cookies, |n| pages::notice(&view, n));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "portal: cannot read the notice acknowledgement");
                    return self.unavailable();
                }
            }
        }
        let mut tiles: Vec<pages::TileView<'_>> = Self::apps_of(&sts.apps, &session)
            .filter_map(|app| {
                let tile = self.tiles.get(&app.config.id)?;
                Some(pages::TileView {
                    name: &tile.name,
                    logo: tile.logo.as_deref(),
                    href: app.urls.launch(),
                })
            })
            .collect();
        tiles.sort_by(|a, b| a.name.cmp(b.name));
        let view = pages::HomeView {
            organisation: &self.name,
            upn: &session.upn,
            tiles: &tiles,
            password_href: home.urls.password_change_path(),
            password_expiry: password_expiry.as_deref(),
            csrf: &csrf,
        };
        pages::reply(200, cookies, |n| pages::home(&view, n))
    }

    /// The CSRF token of the portal's forms (acknowledge, sign out): the HMAC of the nonce in
    /// the portal's form cookie, made (living as long as the session) when missing.
    fn csrf_for(
        &self,
        info: &RequestInfo,
        session: &PortalSession,
        now: OffsetDateTime,
        cookies: &mut Vec<String>,
    ) -> Option<String> {
        let existing = session::cookie_value(info.cookie.as_deref(), PORTAL_FORM_COOKIE)
            .and_then(|sealed| self.key.open_form_nonce(PORTAL_BINDING, sealed, now));
        let nonce = match existing {
            Some(nonce) => nonce,
            None => {
                let sealed = self.key.form_nonce(PORTAL_BINDING, session.expires)?;
                let nonce = self.key.open_form_nonce(PORTAL_BINDING, &sealed, now)?;
                let max_age = (session.expires - now).whole_seconds().max(1);
                cookies.push(session::set_cookie(
                    PORTAL_FORM_COOKIE,
                    &sealed,
                    "/",
                    max_age,
                    "Strict",
                ));
                nonce
            }
        };
        Some(self.key.csrf_token(PORTAL_BINDING, &nonce))
    }

    /// Whether `token` is the CSRF token of this browser's portal form nonce.
    fn csrf_ok(&self, info: &RequestInfo, token: &str, now: OffsetDateTime) -> bool {
        session::cookie_value(info.cookie.as_deref(), PORTAL_FORM_COOKIE)
            .and_then(|sealed| self.key.open_form_nonce(PORTAL_BINDING, sealed, now))
            .is_some_and(|nonce| self.key.csrf_matches(PORTAL_BINDING, &nonce, token))
    }

    fn session_cookie(&self, session: &PortalSession, now: OffsetDateTime) -> String {
        let max_age = (session.expires - now).whole_seconds().max(1);
        session::set_cookie(
            PORTAL_COOKIE,
            &self.key.seal_portal(session),
            "/",
            max_age,
            "Lax",
        )
    }

    fn form_expired(&self) -> HttpReply {
        pages::reply(403, Vec::new(), |n| {
            pages::message(
                &self.name,
                "Form expired",
                "This form expired or did not come from this site. Open the portal again.",
                n,
            )
        })
    }

    /// A redirect to the portal page.
    fn see_portal(&self, cookies: Vec<String>) -> HttpReply {
        let mut reply = pages::reply(303, cookies, |n| {
            pages::message(&self.name, "Continue", "Continue to the portal.", n)
        });
        reply.headers.push(("location", "/".to_owned()));
        reply
    }

    /// The user acknowledges the current notice version: remembered in the state store for
    /// the user and in the session cookie, then the tiles.
    async fn acknowledge(
        &self,
        sts: &Sts,
        info: &RequestInfo,
        csrf: &str,
        version: &str,
        now: OffsetDateTime,
    ) -> HttpReply {
        let live = match self.live_session(sts, info, now).await {
            Ok(live) => live,
            Err(reply) => return reply,
        };
        let Some((mut session, home, _)) = live else {
            return self.see_portal(Vec::new());
        };
        let mut record = self.record(sts, home, info, now, "portal/notice");
        record.user.clone_from(&session.upn);
        if !self.csrf_ok(info, csrf, now) {
            record.emit(Decision::Refused, "csrf_mismatch", None);
            return self.form_expired();
        }
        let Some(notice) = self.notice.as_ref().filter(|n| n.version == version) else {
            // An older page: the current notice is shown again.
            record.emit(Decision::Refused, "notice_version_stale", None);
            return self.see_portal(Vec::new());
        };
        let key = ack_key(notice, &session.upn);
        let ttl = Duration::days(NOTICE_ACK_DAYS);
        if let Err(e) = sts.policies.store.set_if_absent(&key, "1", ttl, now).await {
            tracing::warn!(error = %e, "portal: cannot store the notice acknowledgement");
            record.emit(Decision::Refused, "state_unavailable", None);
            return self.unavailable();
        }
        record.emit(
            Decision::Acknowledged,
            "notice_version",
            Some(&notice.version),
        );
        session.notice.clone_from(&notice.version);
        self.see_portal(vec![self.session_cookie(&session, now)])
    }

    /// Ends the portal session (revocation mark, shared through the store) and the app
    /// sessions its tiles started (they carry its id), clears the cookies.
    async fn sign_out(
        &self,
        sts: &Sts,
        info: &RequestInfo,
        csrf: &str,
        now: OffsetDateTime,
    ) -> HttpReply {
        let session = self.cookie_session(info, now);
        let app = session
            .as_ref()
            .and_then(|s| closest(Self::apps_of(&sts.apps, s)))
            .or_else(|| sts.apps.get(&self.default_app));
        let Some(app) = app else {
            return HttpReply::text(404, "not found\n");
        };
        let mut record = self.record(sts, app, info, now, "portal/signout");
        if !self.csrf_ok(info, csrf, now) {
            record.emit(Decision::Refused, "csrf_mismatch", None);
            return self.form_expired();
        }
        let cookies = vec![
            session::set_cookie(PORTAL_COOKIE, "", "/", 0, "Lax"),
            session::set_cookie(PORTAL_FORM_COOKIE, "", "/", 0, "Strict"),
        ];
        if let Some(session) = &session {
            record.user.clone_from(&session.upn);
            if let Err(e) = revoke_all(sts, session, now).await {
                tracing::warn!(error = %e, "portal sign-out could not revoke the session");
                record.emit(Decision::Refused, "state_unavailable", None);
                return pages::reply(503, cookies, |n| {
                    pages::message(
                        &self.name,
                        "Sign-out not completed",
                        "This browser's session cookie is removed, but the portal could not end the session on the server right now. Try signing out again in a few minutes.",
                        n,
                    )
                });
            }
        }
        record.emit(Decision::SignedOut, "ok", None);
        pages::reply(200, cookies, |n| pages::signed_out(&self.name, n))
    }
}

/// Problems of the portal's logo files, read as the start reads them (`check-config`).
pub fn logo_problems(config: &Config) -> Vec<ConfigProblem> {
    if !config.portal.enabled {
        return Vec::new();
    }
    let problem = |(i, app): (usize, &crate::config::AppConfig)| {
        let error = logo_data_url(app.portal.logo.as_ref()?).err()?;
        Some(ConfigProblem::new(
            format!("apps[{i}].portal.logo"),
            error.to_string(),
            "see [apps.portal] in README.md",
        ))
    };
    config.apps.iter().enumerate().filter_map(problem).collect()
}

/// Revokes a portal session and the app sessions started from it.
async fn revoke_all(
    sts: &Sts,
    session: &PortalSession,
    now: OffsetDateTime,
) -> Result<(), crate::state::StateError> {
    let store = &*sts.policies.store;
    session.revoke(store, now).await?;
    for app in Portal::apps_of(&sts.apps, session) {
        let lifetime = lifetime_of(app.config.passive.session_lifetime_secs);
        Session::revoke_id(store, &app.config.id, &session.id, lifetime, now).await?;
    }
    Ok(())
}

/// The app of the longest (closest) domain among `apps`.
fn closest<'s>(apps: impl Iterator<Item = &'s App>) -> Option<&'s App> {
    apps.max_by_key(|a| a.config.domain.len())
}

/// State-store key of a user's acknowledgement of a notice version.
fn ack_key(notice: &NoticeConfig, upn: &str) -> String {
    format!("portal_notice:{}:{}", notice.version, upn.to_lowercase())
}

async fn acknowledged(
    store: &dyn StateStore,
    notice: &NoticeConfig,
    upn: &str,
    now: OffsetDateTime,
) -> Result<bool, crate::state::StateError> {
    Ok(store.get(&ack_key(notice, upn), now).await?.is_some())
}

/// A logo file as a `data:` URL: at most [`MAX_LOGO_BYTES`], its type from its first bytes
/// (never from the file name), PNG, JPEG, GIF or WebP only (no SVG: no markup in our pages).
fn logo_data_url(path: &Path) -> Result<String, PortalError> {
    use std::io::Read as _;
    let shown = path.display().to_string();
    let read = |source| PortalError::LogoRead {
        path: shown.clone(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read)?;
    let mut bytes = Vec::new();
    file.take(MAX_LOGO_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read)?;
    if bytes.len() as u64 > MAX_LOGO_BYTES {
        return Err(PortalError::LogoTooLarge { path: shown });
    }
    let media_type = image_type(&bytes).ok_or(PortalError::LogoType {
        path: shown.clone(),
    })?;
    let encoded = base64::engine::general_purpose::STANDARD.encode(&bytes);
    Ok(format!("data:{media_type};base64,{encoded}"))
}

/// The media type of an image by its magic bytes.
fn image_type(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(b"\xff\xd8\xff") {
        Some("image/jpeg")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logos_are_typed_by_content_and_size_limited() {
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("logo.svg");
        std::fs::write(&png, b"\x89PNG\r\n\x1a\nrest").unwrap();
        let url = logo_data_url(&png).unwrap();
        assert!(url.starts_with("data:image/png;base64,iVBORw0KGg"), "{url}");
        let svg = dir.path().join("logo.png");
        std::fs::write(&svg, b"<svg onload=alert(1)>").unwrap();
        assert!(matches!(
            logo_data_url(&svg),
            Err(PortalError::LogoType { .. })
        ));
        let big = dir.path().join("big.png");
        let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
        bytes.resize(usize::try_from(MAX_LOGO_BYTES).unwrap() + 1, 0);
        std::fs::write(&big, bytes).unwrap();
        assert!(matches!(
            logo_data_url(&big),
            Err(PortalError::LogoTooLarge { .. })
        ));
        assert!(matches!(
            logo_data_url(&dir.path().join("missing.png")),
            Err(PortalError::LogoRead { .. })
        ));
        assert_eq!(image_type(b"GIF89a..."), Some("image/gif"));
        assert_eq!(image_type(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(image_type(b"\xff\xd8\xff\xe0"), Some("image/jpeg"));
    }
}
