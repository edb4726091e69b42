//! `cargo bench --bench issue_token`: the token path without the password check
//! (parse RST → claims → assertion → sign → RSTR), next to a raw RSA-2048 signature on the
//! same core as the baseline. Report the ratio issue_token / rsa2048_sign, not absolute times.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use fedsts::crypto::{Certificate, SigningIdentity, SoftwareSigner, generate_self_signed};
use fedsts::protocol::saml::{self, AuthnMethod, Claims, Issuance};
use fedsts::protocol::wstrust::{self, TimestampPolicy, TrustVersion};
use fedsts::protocol::{soap, xml};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

fn rst(now: OffsetDateTime) -> String {
    let created = now.format(&Rfc3339).unwrap();
    let expires = (now + time::Duration::minutes(10))
        .format(&Rfc3339)
        .unwrap();
    format!(
        r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:wsa="http://www.w3.org/2005/08/addressing" xmlns:wsu="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"><s:Header><wsa:Action s:mustUnderstand="1">http://docs.oasis-open.org/ws-sx/ws-trust/200512/RST/Issue</wsa:Action><wsa:MessageID>urn:uuid:7f2b4d3c-1111-4222-8333-944455556666</wsa:MessageID><wsa:ReplyTo><wsa:Address>http://www.w3.org/2005/08/addressing/anonymous</wsa:Address></wsa:ReplyTo><wsa:To s:mustUnderstand="1">https://sts.example.com/wsfed/demo/trust/13/usernamemixed</wsa:To><wsse:Security s:mustUnderstand="1" xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"><wsu:Timestamp wsu:Id="_0"><wsu:Created>{created}</wsu:Created><wsu:Expires>{expires}</wsu:Expires></wsu:Timestamp><wsse:UsernameToken wsu:Id="ADALUsernameToken"><wsse:Username>alice@example.com</wsse:Username><wsse:Password>p&amp;ss</wsse:Password></wsse:UsernameToken></wsse:Security></s:Header><s:Body><wst:RequestSecurityToken xmlns:wst="http://docs.oasis-open.org/ws-sx/ws-trust/200512"><wsp:AppliesTo xmlns:wsp="http://schemas.xmlsoap.org/ws/2004/09/policy"><wsa:EndpointReference><wsa:Address>urn:federation:MicrosoftOnline</wsa:Address></wsa:EndpointReference></wsp:AppliesTo><wst:KeyType>http://docs.oasis-open.org/ws-sx/ws-trust/200512/Bearer</wst:KeyType><wst:RequestType>http://docs.oasis-open.org/ws-sx/ws-trust/200512/Issue</wst:RequestType></wst:RequestSecurityToken></s:Body></s:Envelope>"#
    )
}

fn issue(body: &[u8], identity: &SigningIdentity, now: OffsetDateTime) -> String {
    let envelope = soap::parse_envelope(body, &xml::Limits::default()).unwrap();
    let request = wstrust::parse_usernamemixed(
        &envelope,
        TrustVersion::V13,
        now,
        &TimestampPolicy::default(),
    )
    .unwrap();
    let claims = Claims {
        issuer: "example.com".into(),
        audience: fedsts::protocol::ns::MICROSOFT_ONLINE.into(),
        immutable_id: "1TIu064jGEmmf+hnI+F0Jg==".into(),
        upn: request.username.clone(),
        authn_method: AuthnMethod::Password,
        authn_instant: now,
        mfa_performed: false,
        extra_attributes: Vec::new(),
    };
    let issuance = Issuance::new(now, time::Duration::hours(1)).unwrap();
    let assertion =
        saml::build_signed_assertion(&claims, request.token_type, &issuance, identity).unwrap();
    wstrust::build_response(
        TrustVersion::V13,
        &assertion,
        &request.applies_to,
        request.message_id.as_deref(),
        now,
    )
}

fn bench(c: &mut Criterion) {
    let generated = generate_self_signed("bench signing", &[], 30).unwrap();
    let signer = Arc::new(SoftwareSigner::from_pem(&generated.private_key_pem).unwrap());
    let certificate = Certificate::from_pem(&generated.certificate_pem).unwrap();
    let identity = SigningIdentity::new(signer, certificate).unwrap();
    let now = OffsetDateTime::now_utc();
    let body = rst(now);
    let signed_info = vec![b'x'; 700];

    let mut group = c.benchmark_group("issue_token");
    group.bench_function("rsa2048_sign", |b| {
        b.iter(|| {
            identity
                .signer
                .sign_rsa_sha256(black_box(&signed_info))
                .unwrap()
        })
    });
    group.bench_function("parse_rst", |b| {
        b.iter(|| {
            let envelope =
                soap::parse_envelope(black_box(body.as_bytes()), &xml::Limits::default()).unwrap();
            wstrust::parse_usernamemixed(
                &envelope,
                TrustVersion::V13,
                now,
                &TimestampPolicy::default(),
            )
            .unwrap()
        })
    });
    group.bench_function("issue_token", |b| {
        b.iter(|| issue(black_box(body.as_bytes()), &identity, now))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
