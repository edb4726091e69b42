//! Moving a domain from ADFS with no Entra change: `fedsts import-adfs` reads a PFX made at test
//! time by openssl (PBES2/AES, and `-legacy` 3DES/RC2) and a federation JSON in the shape of
//! `Get-MgDomainFederationConfiguration`; the imported app then serves the ADFS URL layout —
//! MSAL Python gets tokens through the ADFS-path MEX and usernamemixed, metadata and passive
//! sign-in answer at the ADFS paths — and `check-config --compare-federation` names each kind
//! of mismatch. Needs openssl (and python3 + msal + signxml + xmlsec1 for the MSAL part).

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::passive::{form, form_action, inputs, sign_in_query};
use common::server::{ALICE, ALICE_IMMUTABLE_ID, Options, PASSWORD, TestServer};
use fedsts::config::Config;
use serde_json::{Value, json};

const FEDSTS: &str = env!("CARGO_BIN_EXE_fedsts");
const PFX_PASSWORD: &str = "Exp0rt-p@ss word";
const ISSUER: &str = "http://sts.example.com/adfs/services/trust";

fn openssl(args: &[&str]) {
    let output = Command::new("openssl").args(args).output().unwrap();
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A token-signing pair as ADFS exports it: `signing.pfx` (and the certificate as PEM, to make
/// the JSON). `key` is `rsa:2048` or `ec`.
struct Export {
    pfx: PathBuf,
    password_file: PathBuf,
    cert_pem: PathBuf,
}

fn make_pfx(dir: &Path, name: &str, key: &str, legacy: bool) -> Export {
    let key_pem = dir.join(format!("{name}.key.pem"));
    let cert_pem = dir.join(format!("{name}.crt.pem"));
    let pfx = dir.join(format!("{name}.pfx"));
    let password_file = dir.join(format!("{name}.password"));
    std::fs::write(&password_file, format!("{PFX_PASSWORD}\n")).unwrap();
    let ec_params = dir.join("ec.params");
    let ec_key = format!("ec:{}", ec_params.display());
    let newkey = if key == "ec" {
        openssl(&[
            "ecparam",
            "-name",
            "prime256v1",
            "-out",
            ec_params.to_str().unwrap(),
        ]);
        ec_key.as_str()
    } else {
        key
    };
    let mut req = vec!["req", "-x509", "-nodes", "-days", "400", "-newkey", newkey];
    req.extend(["-subj", "/CN=ADFS Signing - sts.example.com"]);
    req.extend([
        "-keyout",
        key_pem.to_str().unwrap(),
        "-out",
        cert_pem.to_str().unwrap(),
    ]);
    openssl(&req);
    let pass = format!("file:{}", password_file.display());
    let mut export = vec![
        "pkcs12",
        "-export",
        "-inkey",
        key_pem.to_str().unwrap(),
        "-in",
        cert_pem.to_str().unwrap(),
        "-out",
        pfx.to_str().unwrap(),
        "-passout",
        &pass,
    ];
    if legacy {
        export.push("-legacy");
    }
    openssl(&export);
    Export {
        pfx,
        password_file,
        cert_pem,
    }
}

/// Base64 DER of a PEM certificate, as Entra holds `signingCertificate`.
fn cert_b64(cert_pem: &Path) -> String {
    let text = std::fs::read_to_string(cert_pem).unwrap();
    text.lines().filter(|l| !l.starts_with("-----")).collect()
}

/// What Entra holds for a domain federated with ADFS at `base`.
fn federation_json(base: &str, cert_pem: &Path) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.internalDomainFederation",
        "id": "6c8e2d1f-0000-4000-8000-000000000001",
        "displayName": "Example ADFS",
        "issuerUri": ISSUER,
        "metadataExchangeUri": format!("{base}/adfs/services/trust/mex"),
        "signingCertificate": cert_b64(cert_pem),
        "passiveSignInUri": format!("{base}/adfs/ls/"),
        "preferredAuthenticationProtocol": "wsFed",
        "activeSignInUri": format!("{base}/adfs/services/trust/2005/usernamemixed"),
        "signOutUri": format!("{base}/adfs/ls/"),
        "promptLoginBehavior": "nativeSupport",
        "isSignedAuthenticationRequestRequired": false,
        "nextSigningCertificate": null,
        "federatedIdpMfaBehavior": "acceptIfMfaDoneByFederatedIdp",
        "signingCertificateUpdateStatus": {"certificateUpdateResult": "success"}
    })
}

fn write_json(dir: &Path, name: &str, value: &Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
    path
}

fn import(export: &Export, json: &Path, out: &Path) -> Output {
    std::fs::create_dir_all(out).unwrap();
    Command::new(FEDSTS)
        .arg("import-adfs")
        .arg("--pfx")
        .arg(&export.pfx)
        .arg("--pfx-password-file")
        .arg(&export.password_file)
        .arg("--federation-json")
        .arg(json)
        .args(["--domain", "example.com", "--app", "contoso"])
        .args(["--directory", "demo"])
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn openssl_available() -> bool {
    common::require_tool("openssl")
}

/// The `[[apps]]` table the import wrote, parsed as part of a configuration.
fn imported_app(out: &Path) -> fedsts::config::AppConfig {
    let fragment = std::fs::read_to_string(out.join("adfs-app.toml")).unwrap();
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:1\"\npublic_url = \"https://localhost\"\ntls_cert = \"t\"\ntls_key = \"t\"\n{fragment}"
    );
    let mut config = Config::parse(&text, out).unwrap();
    config.apps.remove(0)
}

#[test]
fn import_writes_the_pair_and_an_app_that_claims_the_adfs_paths() {
    if !openssl_available() {
        return;
    }
    for legacy in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let export = make_pfx(dir.path(), "signing", "rsa:2048", legacy);
        let json = write_json(
            dir.path(),
            "federation.json",
            &federation_json("https://sts.example.com", &export.cert_pem),
        );
        let out = dir.path().join("out");
        let output = import(&export, &json, &out);
        assert!(
            output.status.success(),
            "legacy={legacy}: {}",
            text(&output)
        );
        assert!(
            text(&output).contains("public_url = \"https://sts.example.com\""),
            "{}",
            text(&output)
        );
        let key = out.join("token-signing.key");
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the key is readable by its owner only");
        assert_eq!(
            cert_b64(&out.join("token-signing.crt")),
            cert_b64(&export.cert_pem),
            "the certificate Entra holds is the one written"
        );
        let app = imported_app(&out);
        assert!(app.adfs_paths);
        assert_eq!(app.issuer_uri, ISSUER);
        assert_eq!(app.domain, "example.com");
        // The written key signs for the written certificate.
        fedsts::crypto::SigningIdentity::from_pem_files(
            &app.signing_cert,
            app.signing_key.as_deref().unwrap(),
        )
        .unwrap();
        // A second import never overwrites.
        let again = import(&export, &json, &out);
        assert!(!again.status.success());
        assert!(text(&again).contains("already exists"), "{}", text(&again));
    }
}

#[test]
fn bad_input_is_named_and_writes_nothing() {
    if !openssl_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let export = make_pfx(dir.path(), "signing", "rsa:2048", false);
    let other = make_pfx(dir.path(), "other", "rsa:2048", false);
    let ec = make_pfx(dir.path(), "ec", "ec", false);
    let good = federation_json("https://sts.example.com", &export.cert_pem);
    let wrong_password = Export {
        password_file: write_json(dir.path(), "wrong.password", &json!("nope")),
        ..make_pfx(dir.path(), "again", "rsa:2048", false)
    };
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("issuerUri");
    let mut other_cert = good.clone();
    other_cert["signingCertificate"] = json!(cert_b64(&other.cert_pem));
    let mut unserved = good.clone();
    unserved["activeSignInUri"] =
        json!("https://sts.example.com/adfs/services/trust/2005/certificatemixed");
    let mut other_host = good.clone();
    other_host["metadataExchangeUri"] = json!("https://fs.example.com/adfs/services/trust/mex");
    let cases: [(&str, &Export, Value, &[&str]); 6] = [
        (
            "wrong password",
            &wrong_password,
            good.clone(),
            &["--pfx-password-file", "PKCS#12"],
        ),
        ("EC key", &ec, good.clone(), &["not an RSA key"]),
        (
            "JSON missing issuerUri",
            &export,
            missing,
            &["issuerUri", "Get-MgDomainFederationConfiguration"],
        ),
        (
            "another certificate",
            &export,
            other_cert,
            &["signingCertificate", "AADSTS50008"],
        ),
        (
            "unserved URL",
            &export,
            unserved,
            &["activeSignInUri", "certificatemixed"],
        ),
        (
            "URL on another host",
            &export,
            other_host,
            &["metadataExchangeUri", "fs.example.com"],
        ),
    ];
    for (name, export, value, expected) in cases {
        let json = write_json(dir.path(), "case.json", &value);
        let out = dir.path().join(format!("out-{}", name.replace(' ', "-")));
        let output = import(export, &json, &out);
        let said = text(&output);
        assert!(!output.status.success(), "{name}: {said}");
        for needle in expected {
            assert!(
                said.contains(needle),
                "{name}: expected {needle:?} in {said}"
            );
        }
        assert!(
            !said.contains(PFX_PASSWORD),
            "{name}: the password is never printed"
        );
        assert_eq!(
            files_in(&out),
            Vec::<String>::new(),
            "{name}: nothing written"
        );
    }
}

#[test]
fn two_apps_claiming_the_adfs_paths_is_a_key_named_problem() {
    let app = |id: &str, domain: &str| {
        format!(
            "[[apps]]\nid = \"{id}\"\ndomain = \"{domain}\"\nissuer_uri = \"http://{domain}/adfs/services/trust\"\nsigning_cert = \"c\"\nsigning_key = \"k\"\ndirectory = \"d\"\nadfs_paths = true\n"
        )
    };
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:8443\"\npublic_url = \"https://sts.example.com\"\ntls_cert = \"t\"\ntls_key = \"t\"\n{}{}[directories.d]\nkind = \"file\"\npath = \"u\"\n",
        app("a", "a.example.com"),
        app("b", "b.example.com")
    );
    let config = Config::parse(&text, Path::new("/")).unwrap();
    let problems: Vec<String> = config.problems().iter().map(ToString::to_string).collect();
    let adfs: Vec<&String> = problems
        .iter()
        .filter(|p| p.contains("adfs_paths"))
        .collect();
    assert_eq!(adfs.len(), 1, "{problems:#?}");
    assert!(
        adfs[0].starts_with("apps[1].adfs_paths: apps[0] already serves"),
        "{}",
        adfs[0]
    );
    let single = text.replacen("adfs_paths = true\n", "", 1);
    let config = Config::parse(&single, Path::new("/")).unwrap();
    assert!(
        !config
            .problems()
            .iter()
            .any(|p| p.key.contains("adfs_paths")),
        "one claimant is fine"
    );
}

/// Imports for the server's own host and starts it with the imported app in place of the demo.
async fn imported_server(dir: &Path) -> (TestServer, Export, PathBuf) {
    let export = make_pfx(dir, "signing", "rsa:2048", false);
    let out = dir.join("out");
    let json_path = dir.join("federation.json");
    let (export_for_closure, out_for_closure, json_for_closure) =
        (export.pfx.clone(), out.clone(), json_path.clone());
    let password_file = export.password_file.clone();
    let cert_pem = export.cert_pem.clone();
    let server = TestServer::start_with(Options {
        configure: Box::new(move |config, _| {
            let base = config.public_base().to_owned();
            write_json(
                json_for_closure.parent().unwrap(),
                "federation.json",
                &federation_json(&base, &cert_pem),
            );
            let export = Export {
                pfx: export_for_closure,
                password_file,
                cert_pem,
            };
            let output = import(&export, &json_for_closure, &out_for_closure);
            assert!(output.status.success(), "{}", text(&output));
            config.apps = vec![imported_app(&out_for_closure)];
        }),
        ..Options::default()
    })
    .await;
    (server, export, json_path)
}

#[tokio::test]
async fn msal_python_gets_tokens_through_the_adfs_mex_and_usernamemixed() {
    if !openssl_available()
        || !common::require_tool("python3")
        || !common::require_python_module("msal")
        || !common::require_python_module("signxml")
        || !common::require_tool("xmlsec1")
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (server, _, _) = imported_server(dir.path()).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oracles/msal_flow.py");
    let base = &server.base_url;
    let output = tokio::process::Command::new("python3")
        .arg(script)
        .arg(format!("{base}/adfs/services/trust/mex"))
        .arg(&server.tls_cert_path)
        .arg(dir.path().join("out/token-signing.crt"))
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
    let result: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        result["mex_endpoint"]["address"],
        format!("{base}/adfs/services/trust/13/usernamemixed"),
        "the ADFS-path MEX advertises the ADFS-path endpoints"
    );
    for version in ["13", "2005"] {
        let r = &result[version];
        assert_eq!(r["type"], "urn:oasis:names:tc:SAML:1.0:assertion", "{r}");
        assert_eq!(r["issuer"], ISSUER, "the issuer Entra holds");
        assert_eq!(r["name_identifier"], ALICE_IMMUTABLE_ID);
    }
    server.stop().await;
}

#[tokio::test]
async fn metadata_and_passive_sign_in_answer_at_the_adfs_paths() {
    if !openssl_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (server, export, _) = imported_server(dir.path()).await;
    let base = server.base_url.clone();
    let metadata = server
        .request(
            "GET",
            "/FederationMetadata/2007-06/FederationMetadata.xml",
            &[],
            Vec::new(),
        )
        .await;
    assert_eq!(metadata.status, 200, "{}", metadata.body);
    assert!(metadata.body.contains(&format!("entityID=\"{ISSUER}\"")));
    assert!(
        metadata
            .body
            .contains(&format!("<wsa:Address>{base}/adfs/ls/</wsa:Address>")),
        "PassiveRequestorEndpoint is /adfs/ls/: {}",
        metadata.body
    );
    assert!(metadata.body.contains(&cert_b64(&export.cert_pem)));
    let mex = server
        .request("GET", "/adfs/services/trust/mex", &[], Vec::new())
        .await;
    assert_eq!(mex.status, 200);
    assert!(
        mex.body
            .contains(&format!("{base}/adfs/services/trust/2005/usernamemixed"))
    );
    assert!(
        !mex.body.contains("/wsfed/"),
        "only the ADFS layout is advertised"
    );

    let mut browser = common::passive::Browser::new(&server);
    let page = browser
        .send(
            "GET",
            &format!("/adfs/ls/?{}", sign_in_query(&[])),
            String::new(),
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(form_action(&page.body), "/adfs/ls/");
    let cookie = page.headers.get("set-cookie").unwrap().to_str().unwrap();
    assert!(cookie.contains("Path=/adfs/ls/"), "{cookie}");
    let mut fields: BTreeMap<String, String> = inputs(&page.body);
    fields.insert("username".into(), ALICE.into());
    fields.insert("password".into(), PASSWORD.into());
    let pairs: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let signed_in = browser.send("POST", "/adfs/ls/", form(&pairs)).await;
    let wresult = common::passive::assert_response_page(
        &signed_in,
        "https://login.microsoftonline.com/login.srf",
        common::passive::WCTX,
    );
    assert!(
        wresult.contains(&format!("Issuer=\"{ISSUER}\"")),
        "{wresult}"
    );
    let signed_out = browser
        .send("GET", "/adfs/ls/?wa=wsignout1.0", String::new())
        .await;
    assert_eq!(signed_out.status, 200, "{}", signed_out.body);
    let cleared = signed_out.headers.get_all("set-cookie").iter().any(|c| {
        let c = c.to_str().unwrap();
        c.contains("Max-Age=0") && c.contains("Path=/adfs/ls/")
    });
    assert!(cleared, "sign-out at /adfs/ls/ clears the session cookie");
    server.stop().await;
}

/// A configuration file for check-config: the server's TLS pair, the imported app, its users.
fn write_config(server: &TestServer, dir: &Path) -> PathBuf {
    let app = &server.config.apps[0];
    let users = dir.join("users.toml");
    std::fs::write(&users, common::server::users_file()).unwrap();
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:1\"\npublic_url = \"{}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n\
         [[apps]]\nid = \"{}\"\ndomain = \"example.com\"\nissuer_uri = \"{ISSUER}\"\nsigning_cert = \"{}\"\nsigning_key = \"{}\"\ndirectory = \"demo\"\nadfs_paths = true\n\
         [directories.demo]\nkind = \"file\"\npath = \"{}\"\n",
        server.base_url,
        server.config.server.tls_cert.display(),
        server.config.server.tls_key.display(),
        app.id,
        app.signing_cert.display(),
        app.signing_key.as_deref().unwrap().display(),
        users.display(),
    );
    let path = dir.join("fedsts.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn compare(config: &Path, json: &Path) -> Output {
    Command::new(FEDSTS)
        .arg("check-config")
        .arg("--config")
        .arg(config)
        .arg("--compare-federation")
        .arg(json)
        .output()
        .unwrap()
}

#[tokio::test]
async fn compare_federation_names_each_kind_of_mismatch() {
    if !openssl_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (server, _, json_path) = imported_server(dir.path()).await;
    let config = write_config(&server, dir.path());
    let same = compare(&config, &json_path);
    assert!(same.status.success(), "{}", text(&same));
    let good: Value = serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    let other = make_pfx(dir.path(), "other", "rsa:2048", false);
    let base = &server.base_url;
    let mut issuer = good.clone();
    issuer["issuerUri"] = json!("http://fs.example.com/adfs/services/trust");
    let mut passive = good.clone();
    passive["passiveSignInUri"] = json!("https://fs.example.com/adfs/ls/");
    let mut mex = good.clone();
    mex["metadataExchangeUri"] = json!(format!("{base}/adfs/services/trust/mex/x"));
    let mut certificate = good.clone();
    certificate["signingCertificate"] = json!(cert_b64(&other.cert_pem));
    let mut protocol = good.clone();
    protocol["preferredAuthenticationProtocol"] = json!("saml");
    let cases = [
        ("issuer", issuer, vec!["issuerUri", "AADSTS50107"]),
        (
            "passive URL",
            passive,
            vec!["passiveSignInUri", "fs.example.com"],
        ),
        ("MEX URL", mex, vec!["metadataExchangeUri", "/mex/x"]),
        (
            "certificate",
            certificate,
            vec!["signingCertificate", "AADSTS50008"],
        ),
        (
            "protocol",
            protocol,
            vec!["preferredAuthenticationProtocol"],
        ),
    ];
    for (name, value, expected) in cases {
        let json = write_json(dir.path(), "case.json", &value);
        let output = compare(&config, &json);
        let said = text(&output);
        assert!(!output.status.success(), "{name}: {said}");
        for needle in expected {
            assert!(
                said.contains(needle),
                "{name}: expected {needle:?} in {said}"
            );
        }
        let lines = said.lines().filter(|l| l.contains("against")).count();
        assert_eq!(lines, 1, "{name}: exactly one mismatch named: {said}");
    }
    server.stop().await;
}
