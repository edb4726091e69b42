//! Replays every fixture in `soap-fixtures/` through the parsing layers (`soap::parse_envelope`,
//! `wstrust::parse_usernamemixed`) and checks the outcome against `expectations.toml`.

#[path = "common/fixtures.rs"]
mod fixtures;

use fedsts::protocol::soap::{self, SoapError};
use fedsts::protocol::wstrust::{self, TimestampPolicy, TrustVersion};
use fedsts::protocol::xml::{Limits, XmlError};
use fixtures::{Expectation, Outcome, RefusedBy, Vars};
use time::macros::datetime;

const USERNAME: &str = "alice@contoso.com";
const PASSWORD: &str = "p&ss<w>\"o'rd";

fn vars() -> Vars<'static> {
    Vars {
        now: datetime!(2024-05-01 12:00:00 UTC),
        username: USERNAME,
        password: PASSWORD,
        message_id: "urn:uuid:6e8ce948-eb66-4720-916b-0695697e6e45",
        to: "https://sts.example.com/adfs/services/trust/13/usernamemixed",
    }
}

fn version(expectation: &Expectation) -> TrustVersion {
    TrustVersion::from_path_segment(&expectation.version)
        .unwrap_or_else(|| panic!("{}: bad version", expectation.file))
}

/// What the parsing layers make of one fixture.
#[derive(Debug, PartialEq)]
enum Parsed {
    Success,
    Refused(RefusedBy, Option<(String, String)>),
}

fn parse(expectation: &Expectation) -> Parsed {
    let body = expectation.render(&vars());
    let version = version(expectation);
    let invalid_request = Some((version.namespace().to_owned(), "InvalidRequest".to_owned()));
    let envelope = match soap::parse_envelope(body.as_bytes(), &Limits::default()) {
        Ok(envelope) => envelope,
        Err(SoapError::Xml(XmlError::TooLarge { .. })) => {
            return Parsed::Refused(RefusedBy::Size, None);
        }
        Err(SoapError::Xml(_)) => return Parsed::Refused(RefusedBy::Xml, invalid_request),
        Err(_) => return Parsed::Refused(RefusedBy::Soap, invalid_request),
    };
    match wstrust::parse_usernamemixed(&envelope, version, vars().now, &TimestampPolicy::default())
    {
        Ok(request) => {
            assert_eq!(request.username, USERNAME, "{}", expectation.file);
            assert_eq!(request.password.expose(), PASSWORD, "{}", expectation.file);
            assert_eq!(request.version, version, "{}", expectation.file);
            assert_eq!(
                request.applies_to, "urn:federation:MicrosoftOnline",
                "{}",
                expectation.file
            );
            assert_eq!(
                request.message_id.as_deref(),
                Some(vars().message_id),
                "{}",
                expectation.file
            );
            Parsed::Success
        }
        Err(error) => {
            let fault = wstrust::fault(version, error.fault_kind(), &error.to_string(), None);
            Parsed::Refused(
                RefusedBy::Wstrust,
                Some((fault.subcode_ns, fault.subcode_local)),
            )
        }
    }
}

fn expected(expectation: &Expectation) -> Parsed {
    match expectation.outcome {
        Outcome::Success => Parsed::Success,
        Outcome::Fault => Parsed::Refused(
            expectation
                .refused_by
                .unwrap_or_else(|| panic!("{}: fault without refused_by", expectation.file)),
            expectation
                .fault_subcode_ns
                .clone()
                .zip(expectation.fault_subcode.clone()),
        ),
    }
}

#[test]
fn every_fixture_parses_as_expected() {
    let expectations = fixtures::expectations();
    for expectation in &expectations {
        assert_eq!(
            parse(expectation),
            expected(expectation),
            "{}",
            expectation.file
        );
    }
}

#[test]
fn every_fixture_file_has_an_expectation() {
    let listed: Vec<String> = fixtures::expectations()
        .into_iter()
        .map(|e| e.file)
        .collect();
    let mut on_disk: Vec<String> = std::fs::read_dir(fixtures::fixtures_dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".xml"))
        .collect();
    on_disk.sort();
    let mut sorted = listed.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), listed.len(), "a fixture is listed twice");
    assert_eq!(sorted, on_disk);
}

#[test]
fn http_status_matches_outcome() {
    for expectation in fixtures::expectations() {
        let status = match (expectation.outcome, expectation.refused_by) {
            (Outcome::Success, _) => 200,
            (Outcome::Fault, Some(RefusedBy::Size)) => 413,
            (Outcome::Fault, _) => 500,
        };
        assert_eq!(expectation.http_status, status, "{}", expectation.file);
    }
}

#[test]
fn placeholders_are_escaped_and_times_formatted() {
    let expectation = fixtures::expectations()
        .into_iter()
        .find(|e| e.file == "msalnet-13.xml")
        .unwrap();
    let body = expectation.render(&vars());
    assert!(body.contains("<wsse:Password>p&amp;ss&lt;w&gt;&quot;o&apos;rd</wsse:Password>"));
    assert!(body.contains("<wsu:Created>2024-05-01T12:00:00.068Z</wsu:Created>"));
    assert!(body.contains("<wsu:Expires>2024-05-01T12:10:00.068Z</wsu:Expires>"));
}
