//! Maps method + path to an [`Endpoint`]. Pure: no I/O, no app lookup (the STS answers 404
//! for an unknown app id).
//!
//! URL layout, relative to `server.public_url`:
//! `GET /healthz`, `GET|POST /wsfed/{app}/mex`, `POST /wsfed/{app}/trust/{13|2005}/usernamemixed`,
//! `POST /wsfed/{app}/trust/{13|2005}/windowstransport`, `GET /wsfed/{app}/commands`,
//! `GET|POST /wsfed/{app}` (passive sign-in and sign-out), `GET /wsfed/{app}/launch`,
//! `GET|POST /wsfed/{app}/password` (change password),
//! `GET /wsfed/{app}/federationmetadata/2007-06/federationmetadata.xml`, `GET|POST /` (the
//! user portal; the STS answers 404 when it is off).
//!
//! The one app with `adfs_paths = true` is also reached through the ADFS layout (any case, as
//! http.sys matches it): `/adfs/ls/`, `/adfs/services/trust/mex`,
//! `/adfs/services/trust/{13|2005}/{usernamemixed|windowstransport}`,
//! `/FederationMetadata/2007-06/FederationMetadata.xml`.

use http::Method;

use crate::config::is_valid_app_id;
use crate::protocol::wstrust::TrustVersion;
use crate::sts::Endpoint;

/// Finds the endpoint for a request.
pub fn route(method: &Method, path: &str) -> Endpoint {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["healthz"] => only(method, &[Method::GET], Endpoint::Health),
        [""] => only(
            method,
            &[Method::GET, Method::POST],
            Endpoint::Portal {
                post: method == Method::POST,
            },
        ),
        ["wsfed", app, rest @ ..] if is_valid_app_id(app) => app_route(method, app, rest),
        _ => Endpoint::NotFound,
    }
}

/// Finds the endpoint for a request, with the ADFS layout mapped to `adfs_app` when an app
/// claims it.
pub fn route_with_adfs(method: &Method, path: &str, adfs_app: Option<&str>) -> Endpoint {
    let adfs = adfs_app.and_then(|app| {
        let lower = path.to_ascii_lowercase();
        adfs_rest(&lower).map(|rest| app_route(method, app, &rest))
    });
    adfs.unwrap_or_else(|| route(method, path))
}

/// The ADFS path as the segments of our own layout under `/wsfed/{app}/`, for the endpoints
/// ADFS has and we serve; `None` for anything else (our own router then answers).
fn adfs_rest(lower_path: &str) -> Option<Vec<&str>> {
    if matches!(lower_path, "/adfs/ls" | "/adfs/ls/") {
        return Some(vec![""]);
    }
    if lower_path == "/federationmetadata/2007-06/federationmetadata.xml" {
        return Some(vec![
            "federationmetadata",
            "2007-06",
            "federationmetadata.xml",
        ]);
    }
    let trust = lower_path.strip_prefix("/adfs/services/trust/")?;
    let segments: Vec<&str> = trust.split('/').collect();
    match segments.as_slice() {
        ["mex"] => Some(vec!["mex"]),
        [version, kind @ ("usernamemixed" | "windowstransport")] => {
            Some(vec!["trust", version, kind])
        }
        _ => None,
    }
}

fn app_route(method: &Method, app: &str, rest: &[&str]) -> Endpoint {
    let app = app.to_owned();
    match rest {
        ["mex"] => only(
            method,
            &[Method::GET, Method::POST],
            Endpoint::Mex {
                app,
                soap: method == Method::POST,
            },
        ),
        ["commands"] => only(method, &[Method::GET], Endpoint::Commands { app }),
        ["trust", version, "usernamemixed"] => match TrustVersion::from_path_segment(version) {
            Some(version) => only(
                method,
                &[Method::POST],
                Endpoint::UsernameMixed { app, version },
            ),
            None => Endpoint::NotFound,
        },
        [] | [""] => only(
            method,
            &[Method::GET, Method::POST],
            Endpoint::Passive {
                app,
                post: method == Method::POST,
            },
        ),
        ["launch"] => only(method, &[Method::GET], Endpoint::Launch { app }),
        ["password"] => only(
            method,
            &[Method::GET, Method::POST],
            Endpoint::PasswordChange {
                app,
                post: method == Method::POST,
            },
        ),
        ["federationmetadata", "2007-06", "federationmetadata.xml"] => {
            only(method, &[Method::GET], Endpoint::FederationMetadata { app })
        }
        ["trust", version, "windowstransport"] => match TrustVersion::from_path_segment(version) {
            Some(version) => only(
                method,
                &[Method::POST],
                Endpoint::WindowsTransport { app, version },
            ),
            None => Endpoint::NotFound,
        },
        _ => Endpoint::NotFound,
    }
}

/// The WS-Trust version whose fault a refused body gets, for endpoints whose body is SOAP:
/// usernamemixed, windowstransport and `POST /mex` (answered in WS-Trust 1.3 terms).
pub fn soap_version(endpoint: &Endpoint) -> Option<TrustVersion> {
    match endpoint {
        Endpoint::UsernameMixed { version, .. } | Endpoint::WindowsTransport { version, .. } => {
            Some(*version)
        }
        Endpoint::Mex { soap: true, .. } => Some(TrustVersion::V13),
        _ => None,
    }
}

/// Whether a `Content-Type` value names SOAP 1.2: `application/soap+xml`, any case, with or
/// without parameters such as `charset` or `action`.
pub fn is_soap12(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/soap+xml"))
}

fn only(method: &Method, allowed: &[Method], endpoint: Endpoint) -> Endpoint {
    if allowed.contains(method) {
        endpoint
    } else {
        Endpoint::MethodNotAllowed {
            allow: allowed
                .iter()
                .map(Method::as_str)
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_paths() {
        assert_eq!(route(&Method::GET, "/healthz"), Endpoint::Health);
        assert_eq!(
            route(&Method::GET, "/wsfed/app1/mex"),
            Endpoint::Mex {
                app: "app1".into(),
                soap: false
            }
        );
        assert_eq!(
            route(&Method::POST, "/wsfed/app1/mex"),
            Endpoint::Mex {
                app: "app1".into(),
                soap: true
            }
        );
        assert_eq!(
            route(&Method::POST, "/wsfed/a/trust/13/usernamemixed"),
            Endpoint::UsernameMixed {
                app: "a".into(),
                version: TrustVersion::V13
            }
        );
        assert_eq!(
            route(&Method::POST, "/wsfed/a/trust/2005/usernamemixed"),
            Endpoint::UsernameMixed {
                app: "a".into(),
                version: TrustVersion::V2005
            }
        );
        assert_eq!(
            route(&Method::GET, "/wsfed/a/commands"),
            Endpoint::Commands { app: "a".into() }
        );
    }

    #[test]
    fn passive_windows_unknown_and_wrong_method() {
        assert_eq!(
            route(&Method::GET, "/wsfed/a"),
            Endpoint::Passive {
                app: "a".into(),
                post: false
            }
        );
        assert_eq!(
            route(&Method::POST, "/wsfed/a/"),
            Endpoint::Passive {
                app: "a".into(),
                post: true
            }
        );
        assert_eq!(
            route(&Method::GET, "/wsfed/a/launch"),
            Endpoint::Launch { app: "a".into() }
        );
        assert_eq!(
            route(
                &Method::GET,
                "/wsfed/a/federationmetadata/2007-06/federationmetadata.xml"
            ),
            Endpoint::FederationMetadata { app: "a".into() }
        );
        assert_eq!(
            route(&Method::POST, "/wsfed/a/password"),
            Endpoint::PasswordChange {
                app: "a".into(),
                post: true
            }
        );
        assert_eq!(
            route(&Method::POST, "/wsfed/a/launch"),
            Endpoint::MethodNotAllowed {
                allow: "GET".into()
            }
        );
        assert_eq!(
            route(&Method::POST, "/wsfed/a/trust/13/windowstransport"),
            Endpoint::WindowsTransport {
                app: "a".into(),
                version: TrustVersion::V13
            }
        );
        assert_eq!(
            route(&Method::POST, "/wsfed/a/trust/2005/windowstransport"),
            Endpoint::WindowsTransport {
                app: "a".into(),
                version: TrustVersion::V2005
            }
        );
        assert_eq!(
            route(&Method::GET, "/wsfed/a/trust/13/windowstransport"),
            Endpoint::MethodNotAllowed {
                allow: "POST".into()
            }
        );
        assert_eq!(
            route(&Method::POST, "/wsfed/a/trust/14/windowstransport"),
            Endpoint::NotFound
        );
        assert_eq!(
            route(&Method::POST, "/wsfed/a/trust/14/usernamemixed"),
            Endpoint::NotFound
        );
        assert_eq!(route(&Method::GET, "/wsfed/a%2Fb/mex"), Endpoint::NotFound);
        assert_eq!(route(&Method::GET, "/"), Endpoint::Portal { post: false });
        assert_eq!(route(&Method::POST, "/"), Endpoint::Portal { post: true });
        assert_eq!(
            route(&Method::GET, "/wsfed/a/trust/13/usernamemixed"),
            Endpoint::MethodNotAllowed {
                allow: "POST".into()
            }
        );
        assert_eq!(
            route(&Method::DELETE, "/wsfed/a/mex"),
            Endpoint::MethodNotAllowed {
                allow: "GET, POST".into()
            }
        );
    }

    #[test]
    fn adfs_layout_reaches_the_claiming_app_only() {
        let adfs = |method: &Method, path: &str| route_with_adfs(method, path, Some("contoso"));
        let passive = Endpoint::Passive {
            app: "contoso".into(),
            post: false,
        };
        assert_eq!(adfs(&Method::GET, "/adfs/ls/"), passive);
        assert_eq!(adfs(&Method::GET, "/adfs/ls"), passive);
        assert_eq!(adfs(&Method::GET, "/ADFS/LS/"), passive);
        assert_eq!(
            adfs(&Method::POST, "/adfs/ls/"),
            Endpoint::Passive {
                app: "contoso".into(),
                post: true
            }
        );
        assert_eq!(
            adfs(&Method::GET, "/adfs/services/trust/mex"),
            Endpoint::Mex {
                app: "contoso".into(),
                soap: false
            }
        );
        assert_eq!(
            adfs(&Method::POST, "/adfs/services/trust/13/usernamemixed"),
            Endpoint::UsernameMixed {
                app: "contoso".into(),
                version: TrustVersion::V13
            }
        );
        assert_eq!(
            adfs(&Method::POST, "/adfs/services/trust/2005/usernamemixed"),
            Endpoint::UsernameMixed {
                app: "contoso".into(),
                version: TrustVersion::V2005
            }
        );
        assert_eq!(
            adfs(&Method::POST, "/adfs/services/trust/2005/windowstransport"),
            Endpoint::WindowsTransport {
                app: "contoso".into(),
                version: TrustVersion::V2005
            }
        );
        assert_eq!(
            adfs(
                &Method::GET,
                "/FederationMetadata/2007-06/FederationMetadata.xml"
            ),
            Endpoint::FederationMetadata {
                app: "contoso".into()
            }
        );
        assert_eq!(
            adfs(&Method::GET, "/adfs/services/trust/13/usernamemixed"),
            Endpoint::MethodNotAllowed {
                allow: "POST".into()
            }
        );
        for unknown in [
            "/adfs/services/trust/14/usernamemixed",
            "/adfs/services/trust/13/certificatemixed",
            "/adfs/ls/idpinitiatedsignon",
            "/adfs/services/trust/mex/x",
            "/adfs/",
        ] {
            assert_eq!(
                adfs(&Method::POST, unknown),
                Endpoint::NotFound,
                "{unknown}"
            );
        }
        // Our own layout still answers beside it; without a claiming app the ADFS paths are 404.
        assert_eq!(
            adfs(&Method::GET, "/wsfed/other/mex"),
            Endpoint::Mex {
                app: "other".into(),
                soap: false
            }
        );
        assert_eq!(
            route_with_adfs(&Method::GET, "/adfs/services/trust/mex", None),
            Endpoint::NotFound
        );
    }

    #[test]
    fn soap_endpoints_take_only_soap12() {
        assert!(is_soap12(Some("application/soap+xml; charset=utf-8")));
        assert!(is_soap12(Some("Application/SOAP+XML")));
        assert!(is_soap12(Some(
            "application/soap+xml;charset=utf-8;action=\"urn:x\""
        )));
        for other in [
            Some("application/x-www-form-urlencoded"),
            Some("text/plain"),
            Some("text/xml; charset=utf-8"),
            Some("multipart/form-data; boundary=x"),
            Some("application/soap+xml-evil"),
            None,
        ] {
            assert!(!is_soap12(other), "{other:?}");
        }
        let mex_get = route(&Method::GET, "/wsfed/a/mex");
        assert_eq!(soap_version(&mex_get), None);
        let mex_post = route(&Method::POST, "/wsfed/a/mex");
        assert_eq!(soap_version(&mex_post), Some(TrustVersion::V13));
        let v2005 = route(&Method::POST, "/wsfed/a/trust/2005/usernamemixed");
        assert_eq!(soap_version(&v2005), Some(TrustVersion::V2005));
        let passive = route(&Method::POST, "/wsfed/a");
        assert_eq!(soap_version(&passive), None);
    }
}
