//! Device trust over real TLS: a device CA made at test time with rcgen; requests with a valid
//! device certificate, with none (plain client, and classified as Windows logon), with an
//! expired one, with one from another CA, with one that expires by the service clock, and chains
//! through an intermediate CA that has expired.

mod common;

use std::sync::Arc;

use common::audit::AuditLog;
use common::server::{ALICE, ClientIdentity, Options, PASSWORD, TestServer};
use common::wstrust::{fault_reason, fault_subcode, message_id, rst13};
use fedsts::clock::{Clock, ManualClock};
use fedsts::config::device::{AppDevicePolicy, DeviceTrustConfig, Flow};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, SanType,
};
use rustls_pki_types::PrivateKeyDer;
use time::{Duration, OffsetDateTime};

const DEVICE_ID: &str = "urn:device:3f2a9c";

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    CertifiedIssuer::self_signed(ca_params(name), KeyPair::generate().unwrap()).unwrap()
}

/// An intermediate CA under `root`, valid from `not_before` to `not_after`.
fn intermediate(
    root: &CertifiedIssuer<'static, KeyPair>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = ca_params("Example Device Issuing CA");
    params.not_before = not_before;
    params.not_after = not_after;
    CertifiedIssuer::signed_by(params, KeyPair::generate().unwrap(), root).unwrap()
}

/// A device certificate issued by `issuer`, presented with the intermediate behind it.
fn device_via(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> ClientIdentity {
    let mut identity = device(issuer, not_before, not_after);
    identity.chain.push(issuer.der().clone());
    identity
}

fn device(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> ClientIdentity {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "LAPTOP-42");
    params.subject_alt_names = vec![SanType::URI(DEVICE_ID.try_into().unwrap())];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = not_before;
    params.not_after = not_after;
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    ClientIdentity {
        chain: vec![cert.der().clone()],
        key: PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    }
}

fn path_of(url: &str) -> String {
    let after_scheme = url.split_once("://").unwrap().1;
    format!("/{}", after_scheme.split_once('/').unwrap().1)
}

async fn send(
    server: &TestServer,
    url: &str,
    now: OffsetDateTime,
    identity: Option<&ClientIdentity>,
    user_agent: &str,
) -> Result<common::server::Reply, String> {
    let body = rst13(url, ALICE, PASSWORD, now, Some(&message_id()));
    let headers = [
        ("content-type", "application/soap+xml; charset=utf-8"),
        ("user-agent", user_agent),
    ];
    server
        .request_as(identity, "POST", &path_of(url), &headers, body.into_bytes())
        .await
}

/// A server whose device CA is `device_ca` and whose first app requires a device for Alice's
/// active requests.
async fn server_trusting(
    device_ca: &CertifiedIssuer<'static, KeyPair>,
    clock: Arc<ManualClock>,
) -> TestServer {
    let ca_pem = device_ca.pem();
    TestServer::start_with(Options {
        clock: clock.clone(),
        configure: Box::new(move |config, dir| {
            let ca_file = dir.join("device-ca.pem");
            std::fs::write(&ca_file, ca_pem).unwrap();
            config.device_trust = Some(DeviceTrustConfig {
                ca_file,
                crl_file: None,
            });
            config.apps[0].device_trust = Some(AppDevicePolicy {
                flows: vec![Flow::Active],
                users: vec![ALICE.into()],
                groups: vec![],
            });
        }),
        ..Options::default()
    })
    .await
}

#[tokio::test]
async fn device_certificates_decide_and_setup_requests_get_the_explained_refusal() {
    let (log, _guard) = AuditLog::capture();
    let now = OffsetDateTime::now_utc();
    let clock = Arc::new(ManualClock::new(now));
    let device_ca = ca("Example Device CA");
    let server = server_trusting(&device_ca, clock.clone()).await;
    let url = server.app_url("trust/13/usernamemixed");
    let send = |identity, user_agent| send(&server, &url, clock.now(), identity, user_agent);

    let valid = device(
        &device_ca,
        now - Duration::days(1),
        now + Duration::days(30),
    );
    let ok = send(Some(&valid), "python-requests/2.32").await.unwrap();
    assert_eq!(ok.status, 200, "{}", ok.body);

    let missing = send(None, "python-requests/2.32").await.unwrap();
    assert_eq!(missing.status, 500);
    assert_eq!(fault_subcode(&missing.body), Some("DeviceTrustRequired"));
    assert!(
        missing
            .body
            .contains("xmlns:a=\"urn:fedsts:policy\">a:DeviceTrustRequired<")
    );
    assert!(
        fault_reason(&missing.body)
            .unwrap()
            .starts_with("This sign-in requires a trusted company device. The device did not present a company device certificate.")
    );

    let windows = send(None, "Windows-AzureAD-Authentication-Provider/1.0")
        .await
        .unwrap();
    assert_eq!(
        fault_subcode(&windows.body),
        Some("DeviceTrustUnavailableDuringSetup")
    );
    let text = fault_reason(&windows.body).unwrap();
    assert!(text.starts_with("This sign-in requires a trusted company device, which cannot be proven during Windows setup. Windows setup (joining this PC to Microsoft Entra ID) and the first sign-in to Windows happen before the device has its company certificate"), "{text}");
    assert!(text.contains("Administrator: Exclude the enrolment users or group from the device-trust policy of this app"), "{text}");
    assert!(text.contains("Or join the device first"), "{text}");

    let expired = device(
        &device_ca,
        now - Duration::days(30),
        now - Duration::days(1),
    );
    let refused = send(Some(&expired), "python-requests/2.32").await.unwrap();
    assert_eq!(fault_subcode(&refused.body), Some("DeviceTrustRequired"));
    assert!(
        fault_reason(&refused.body)
            .unwrap()
            .contains("is not valid at this time")
    );

    let stranger = device(
        &ca("Other CA"),
        now - Duration::days(1),
        now + Duration::days(30),
    );
    let handshake = send(Some(&stranger), "python-requests/2.32").await;
    assert!(
        handshake.is_err(),
        "a certificate from another CA must fail TLS"
    );

    // Validity is judged by the service clock.
    clock.advance(Duration::days(31));
    let later = send(Some(&valid), "python-requests/2.32").await.unwrap();
    assert_eq!(fault_subcode(&later.body), Some("DeviceTrustRequired"));

    assert_eq!(
        log.reasons(),
        [
            "ok",
            "device_certificate_missing",
            "device_trust_unavailable_oobe",
            "device_certificate_expired",
            "device_certificate_expired"
        ]
    );
    let records = log.records();
    assert_eq!(records[0]["device_id"], DEVICE_ID);
    assert_eq!(records[2]["request_class"], "windows_logon");
    assert_eq!(
        records[2]["user_agent"],
        "Windows-AzureAD-Authentication-Provider/1.0"
    );
    server.stop().await;
}

/// Attack: a device certificate issued by an intermediate CA that has expired. The leaf's own
/// dates are re-checked inside its validity (for the explained refusal), which must not carry the
/// expired intermediate through: the handshake fails whether the leaf is still valid or not.
#[tokio::test]
async fn a_chain_through_an_expired_intermediate_is_not_trusted() {
    let (log, _guard) = AuditLog::capture();
    let now = OffsetDateTime::now_utc();
    let clock = Arc::new(ManualClock::new(now));
    let root = ca("Example Device Root CA");
    let server = server_trusting(&root, clock.clone()).await;
    let url = server.app_url("trust/13/usernamemixed");
    let send = |identity| send(&server, &url, clock.now(), identity, "python-requests/2.32");

    let current = intermediate(&root, now - Duration::days(400), now + Duration::days(400));
    let through_current = device_via(&current, now - Duration::days(1), now + Duration::days(30));
    let ok = send(Some(&through_current)).await.unwrap();
    assert_eq!(ok.status, 200, "{}", ok.body);
    let leaf_expired = device_via(&current, now - Duration::days(30), now - Duration::days(1));
    let explained = send(Some(&leaf_expired)).await.unwrap();
    assert_eq!(fault_subcode(&explained.body), Some("DeviceTrustRequired"));

    // Valid at each leaf's midpoint (now - 20 days), expired now.
    let expired = intermediate(&root, now - Duration::days(400), now - Duration::days(1));
    let leaf_valid = device_via(&expired, now - Duration::days(50), now + Duration::days(10));
    assert!(
        send(Some(&leaf_valid)).await.is_err(),
        "a valid leaf under an expired intermediate must fail TLS"
    );
    let both_expired = device_via(&expired, now - Duration::days(38), now - Duration::days(2));
    assert!(
        send(Some(&both_expired)).await.is_err(),
        "an expired leaf under an expired intermediate must fail TLS"
    );
    let not_yet = intermediate(&root, now + Duration::days(1), now + Duration::days(400));
    let under_future = device_via(&not_yet, now + Duration::days(2), now + Duration::days(30));
    assert!(
        send(Some(&under_future)).await.is_err(),
        "an intermediate that is not valid yet must fail TLS"
    );

    assert_eq!(log.reasons(), ["ok", "device_certificate_expired"]);
    server.stop().await;
}
