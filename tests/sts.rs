//! End to end against a real server on an ephemeral loopback port: MEX, commands page, both
//! usernamemixed endpoints, credential failures, limits, and the independent oracles (MSAL
//! Python as the client; signxml and xmlsec1 as verifiers).

mod common;

use common::server::{
    ALICE, ALICE_IMMUTABLE_ID, BOB_DISABLED, CAROL_OTHER_DOMAIN, PASSWORD, TestServer,
};
use common::wstrust::{element, path_of};

/// A usernamemixed RST the way MSAL Python writes it.
fn rst(version: &str, to: &str, username: &str, password: &str) -> String {
    common::wstrust::rst(version, to, Some((username, password)))
}

#[tokio::test]
async fn health_mex_commands_and_routing() {
    let server = TestServer::start().await;
    let health = server.request("GET", "/healthz", &[], vec![]).await;
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));

    let mex = server
        .request("GET", &path_of(&server.app_url("mex")), &[], vec![])
        .await;
    assert_eq!(mex.status, 200);
    let root = mex.body.trim_start_matches(|c| c != '\n').trim_start();
    assert!(
        mex.body.starts_with("<?xml") && root.starts_with("<wsdl:definitions"),
        "{}",
        &mex.body[..200]
    );
    for version in ["13", "2005"] {
        let url = server.app_url(&format!("trust/{version}/usernamemixed"));
        assert!(
            mex.body
                .contains(&format!("<wsa10:Address>{url}</wsa10:Address>")),
            "{url}"
        );
    }
    assert!(!mex.body.contains("windowstransport"));

    let soap = server
        .post_soap(&path_of(&server.app_url("mex")), br#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://www.w3.org/2005/08/addressing"><s:Header><a:Action s:mustUnderstand="1">http://schemas.xmlsoap.org/ws/2004/09/transfer/Get</a:Action><a:MessageID>urn:uuid:0b0b0b0b-1111-2222-3333-444444444444</a:MessageID></s:Header><s:Body/></s:Envelope>"#.to_vec())
        .await;
    assert_eq!(soap.status, 200);
    assert!(soap.content_type.starts_with("application/soap+xml"));
    assert!(soap.body.contains("wsdl:definitions"));
    assert!(
        soap.body
            .contains("urn:uuid:0b0b0b0b-1111-2222-3333-444444444444")
    );

    let commands = server
        .request("GET", &path_of(&server.app_url("commands")), &[], vec![])
        .await;
    assert_eq!(commands.status, 200);
    assert!(commands.content_type.starts_with("text/plain"));
    let cert = fedsts::crypto::Certificate::from_pem(
        &std::fs::read_to_string(&server.signing_cert_path).unwrap(),
    )
    .unwrap();
    for expected in [
        cert.base64().to_owned(),
        server.app_url("mex"),
        server.app_url("trust/2005/usernamemixed"),
        format!("\"{}\"", server.config.apps[0].issuer_uri),
    ] {
        assert!(
            commands.body.contains(&expected),
            "{expected} missing:\n{}",
            commands.body
        );
    }

    assert_eq!(
        server
            .request("GET", "/wsfed/nope/mex", &[], vec![])
            .await
            .status,
        404
    );
    assert_eq!(
        server.request("GET", "/nothing", &[], vec![]).await.status,
        404
    );
    let no_kerberos = server
        .request(
            "POST",
            &path_of(&server.app_url("trust/13/windowstransport")),
            &[("content-type", "application/soap+xml; charset=utf-8")],
            vec![],
        )
        .await;
    assert_eq!(
        no_kerberos.status, 404,
        "windowstransport without [apps.kerberos]"
    );
    let passive_without_wa = server
        .request("GET", &path_of(&server.app_url("")), &[], vec![])
        .await;
    assert_eq!(passive_without_wa.status, 400);
    let wrong = server
        .request(
            "GET",
            &path_of(&server.app_url("trust/13/usernamemixed")),
            &[],
            vec![],
        )
        .await;
    assert_eq!(wrong.status, 405);
    assert_eq!(wrong.headers.get("allow").unwrap(), "POST");
    server.stop().await;
}

#[tokio::test]
async fn both_versions_issue_a_verifiable_saml11_token() {
    let server = TestServer::start().await;
    for version in ["13", "2005"] {
        let url = server.app_url(&format!("trust/{version}/usernamemixed"));
        let reply = server
            .post_soap(&path_of(&url), rst(version, &url, ALICE, PASSWORD))
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert!(reply.content_type.starts_with("application/soap+xml"));
        let body = &reply.body;
        match version {
            "13" => assert!(body.contains(
                "<trust:RequestSecurityTokenResponseCollection xmlns:trust=\"http://docs.oasis-open.org/ws-sx/ws-trust/200512\">"
            ) || body.contains("RequestSecurityTokenResponseCollection"), "{body}"),
            _ => assert!(!body.contains("RequestSecurityTokenResponseCollection"), "{body}"),
        }
        let token_type = element(body, "TokenType").unwrap();
        assert_eq!(token_type, "urn:oasis:names:tc:SAML:1.0:assertion");
        let assertion = element(body, "RequestedSecurityToken").unwrap();
        assert!(assertion.starts_with("<saml:Assertion "), "{assertion}");
        assert!(assertion.contains(&format!("Issuer=\"{}\"", server.config.apps[0].issuer_uri)));
        assert!(assertion.contains(&format!(">{ALICE_IMMUTABLE_ID}</saml:NameIdentifier>")));
        assert!(assertion.contains(&format!(
            "<saml:AttributeValue>{ALICE}</saml:AttributeValue>"
        )));
        assert!(
            assertion.contains("<saml:Audience>urn:federation:MicrosoftOnline</saml:Audience>")
        );
        assert!(!assertion.contains("multipleauthn"));
        assert!(assertion.contains("urn:oasis:names:tc:SAML:1.0:am:password"));
    }
    server.stop().await;
}

#[tokio::test]
async fn credential_failures_share_one_fault() {
    let server = TestServer::start().await;
    let url = server.app_url("trust/13/usernamemixed");
    let mut bodies = Vec::new();
    for (user, password) in [
        (ALICE, "wrong"),
        ("nobody@example.com", PASSWORD),
        (BOB_DISABLED, PASSWORD),
        (CAROL_OTHER_DOMAIN, PASSWORD),
    ] {
        let reply = server
            .post_soap(&path_of(&url), rst("13", &url, user, password))
            .await;
        assert_eq!(reply.status, 500, "{user}: {}", reply.body);
        assert!(
            reply.body.contains("FailedAuthentication"),
            "{}",
            reply.body
        );
        assert!(!reply.body.contains(PASSWORD) && !reply.body.contains("wrong"));
        // Everything but the correlation id and RelatesTo is identical.
        let text = element(&reply.body, "Text").unwrap();
        let (generic, correlation) = text.rsplit_once("Correlation id: ").unwrap();
        assert_eq!(correlation.len(), 36, "{text}");
        bodies.push(generic.to_owned());
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
    server.stop().await;
}

#[tokio::test]
async fn oversized_and_hostile_bodies_are_refused_and_server_keeps_serving() {
    let server = TestServer::start().await;
    let url = server.app_url("trust/13/usernamemixed");
    let path = path_of(&url);
    let huge = server.post_soap(&path, vec![b' '; 65 * 1024]).await;
    assert_eq!(huge.status, 413);
    let doctype = server
        .post_soap(&path, r#"<?xml version="1.0"?><!DOCTYPE s [<!ENTITY a "aaaa">]><s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body>&a;</s:Body></s:Envelope>"#)
        .await;
    assert_eq!(doctype.status, 500);
    assert!(doctype.body.contains("InvalidRequest"), "{}", doctype.body);
    let deep = format!("{}{}", "<a>".repeat(5_000), "</a>".repeat(5_000));
    let deep = server.post_soap(&path, deep).await;
    assert_eq!(deep.status, 500);
    assert!(deep.body.contains("InvalidRequest"));
    let ok = server
        .post_soap(&path, rst("13", &url, ALICE, PASSWORD))
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    server.stop().await;
}

#[tokio::test]
async fn msal_python_gets_tokens_that_signxml_and_xmlsec1_verify() {
    if !common::require_tool("python3")
        || !common::require_python_module("msal")
        || !common::require_python_module("signxml")
        || !common::require_tool("xmlsec1")
    {
        return;
    }
    let server = TestServer::start().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oracles/msal_flow.py");
    let mex = server.app_url("mex");
    let output = tokio::process::Command::new("python3")
        .arg(script)
        .arg(&mex)
        .arg(&server.tls_cert_path)
        .arg(&server.signing_cert_path)
        .arg(ALICE)
        .arg(PASSWORD)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "MSAL flow failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        result["mex_endpoint"]["address"],
        server.app_url("trust/13/usernamemixed")
    );
    for version in ["13", "2005"] {
        let r = &result[version];
        assert_eq!(r["type"], "urn:oasis:names:tc:SAML:1.0:assertion", "{r}");
        assert_eq!(r["issuer"], server.config.apps[0].issuer_uri.as_str());
        assert_eq!(r["audience"], "urn:federation:MicrosoftOnline");
        assert_eq!(r["name_identifier"], ALICE_IMMUTABLE_ID);
        assert_eq!(r["attributes"]["UPN"][0], ALICE);
        assert_eq!(r["attributes"]["ImmutableID"][0], ALICE_IMMUTABLE_ID);
        assert_eq!(
            r["authentication_method"],
            "urn:oasis:names:tc:SAML:1.0:am:password"
        );
    }
    let wrong = result["wrong_password"].as_str().unwrap();
    assert!(wrong.contains("FailedAuthentication"), "{wrong}");
    server.stop().await;
}

#[tokio::test]
async fn a_token_type_of_saml2_gets_a_signed_saml2_assertion() {
    let server = TestServer::start().await;
    let url = server.app_url("trust/13/usernamemixed");
    let body = rst("13", &url, ALICE, PASSWORD).replace(
        "<wst:KeyType>",
        "<wst:TokenType>urn:oasis:names:tc:SAML:2.0:assertion</wst:TokenType><wst:KeyType>",
    );
    let reply = server.post_soap(&path_of(&url), body).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        element(&reply.body, "TokenType").unwrap(),
        "urn:oasis:names:tc:SAML:2.0:assertion"
    );
    let assertion = element(&reply.body, "RequestedSecurityToken").unwrap();
    assert!(assertion.contains("Version=\"2.0\""), "{assertion}");
    assert!(
        assertion.contains(&format!(">{ALICE_IMMUTABLE_ID}</saml:NameID>")),
        "{assertion}"
    );
    if common::require_tool("xmlsec1") {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("saml2.xml");
        std::fs::write(&file, assertion).unwrap();
        let out = std::process::Command::new("xmlsec1")
            .args(["--verify", "--pubkey-cert-pem"])
            .arg(&server.signing_cert_path)
            .args([
                "--id-attr:ID",
                "urn:oasis:names:tc:SAML:2.0:assertion:Assertion",
            ])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    server.stop().await;
}
