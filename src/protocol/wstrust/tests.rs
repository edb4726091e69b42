use super::*;
use time::macros::datetime;

const NOW: OffsetDateTime = datetime!(2024-05-01 12:00:00 UTC);

/// A usernamemixed request; `security` replaces the whole Security header content.
fn envelope(trust_ns: &str, security: &str, rst_children: &str) -> String {
    format!(
        r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:wsa="{WSA}" xmlns:wsu="{WSU}">
<s:Header><wsa:Action s:mustUnderstand="1">x</wsa:Action><wsa:MessageID>urn:uuid:42</wsa:MessageID>
<wsse:Security s:mustUnderstand="1" xmlns:wsse="{WSSE}">{security}</wsse:Security></s:Header>
<s:Body><wst:RequestSecurityToken xmlns:wst="{trust_ns}">{rst_children}</wst:RequestSecurityToken></s:Body></s:Envelope>"#
    )
}

fn timestamp(created: &str, expires: &str) -> String {
    format!(
        "<wsu:Timestamp wsu:Id=\"_0\"><wsu:Created>{created}</wsu:Created><wsu:Expires>{expires}</wsu:Expires></wsu:Timestamp>"
    )
}

fn token(username: &str, password: &str) -> String {
    format!(
        "<wsse:UsernameToken wsu:Id=\"t\"><wsse:Username>{username}</wsse:Username><wsse:Password>{password}</wsse:Password></wsse:UsernameToken>"
    )
}

fn good_security() -> String {
    timestamp("2024-05-01T11:59:00Z", "2024-05-01T12:09:00Z")
        + &token("alice@contoso.com", "p&amp;ss &lt;w&gt;")
}

const APPLIES_TO: &str = r#"<wsp:AppliesTo xmlns:wsp="http://schemas.xmlsoap.org/ws/2004/09/policy"><wsa:EndpointReference><wsa:Address>urn:federation:MicrosoftOnline</wsa:Address></wsa:EndpointReference></wsp:AppliesTo>"#;

fn rst13() -> String {
    format!(
        "{APPLIES_TO}<wst:KeyType>{BEARER_13}</wst:KeyType><wst:RequestType>http://docs.oasis-open.org/ws-sx/ws-trust/200512/Issue</wst:RequestType>"
    )
}

fn parse13(input: &str) -> Result<IssueRequest, WsTrustError> {
    let envelope = soap::parse_envelope(input.as_bytes(), &xml::Limits::default()).unwrap();
    parse_usernamemixed(
        &envelope,
        TrustVersion::V13,
        NOW,
        &TimestampPolicy::default(),
    )
}

fn parse13_security(security: &str) -> Result<IssueRequest, WsTrustError> {
    parse13(&envelope(TRUST_13, security, &rst13()))
}

fn parse13_rst(rst_children: &str) -> Result<IssueRequest, WsTrustError> {
    parse13(&envelope(TRUST_13, &good_security(), rst_children))
}

#[test]
fn parses_a_well_formed_request() {
    let request = parse13_security(&good_security()).unwrap();
    assert_eq!(request.version, TrustVersion::V13);
    assert_eq!(request.message_id.as_deref(), Some("urn:uuid:42"));
    assert_eq!(request.username, "alice@contoso.com");
    assert_eq!(request.password.expose(), "p&ss <w>");
    assert_eq!(request.applies_to, MICROSOFT_ONLINE);
    assert_eq!(request.token_type, TokenType::Saml11);
    assert_eq!(
        request.timestamp,
        Timestamp {
            created: datetime!(2024-05-01 11:59:00 UTC),
            expires: datetime!(2024-05-01 12:09:00 UTC)
        }
    );
}

#[test]
fn password_never_appears_in_debug_output() {
    let request = parse13_security(&good_security()).unwrap();
    let printed = format!("{request:?}");
    assert!(printed.contains("password: Secret(***)"));
    assert!(!printed.contains("p&ss"));
}

#[test]
fn accepts_fractional_seconds_and_lower_case_message_id() {
    let security =
        timestamp("2024-05-01T11:59:00.068Z", "2024-05-01T12:04:00.068Z") + &token("a", "b");
    let input = envelope(TRUST_13, &security, &rst13()).replace("MessageID", "messageID");
    let request = parse13(&input).unwrap();
    assert_eq!(request.message_id.as_deref(), Some("urn:uuid:42"));
    assert_eq!(
        request.timestamp.created,
        datetime!(2024-05-01 11:59:00.068 UTC)
    );
}

#[test]
fn message_id_is_optional_but_not_repeatable() {
    let without = envelope(TRUST_13, &good_security(), &rst13())
        .replace("<wsa:MessageID>urn:uuid:42</wsa:MessageID>", "");
    assert_eq!(parse13(&without).unwrap().message_id, None);
    let twice = envelope(TRUST_13, &good_security(), &rst13()).replace(
        "<wsa:MessageID>",
        "<wsa:messageID>urn:uuid:43</wsa:messageID><wsa:MessageID>",
    );
    assert_eq!(
        parse13(&twice).unwrap_err(),
        WsTrustError::DuplicateMessageId
    );
}

#[test]
fn refuses_missing_or_repeated_security_parts() {
    let no_header = envelope(TRUST_13, "", &rst13());
    let no_header = no_header.replace(
        &no_header[no_header.find("<s:Header>").unwrap()..no_header.find("<s:Body>").unwrap()],
        "",
    );
    assert_eq!(
        parse13(&no_header).unwrap_err(),
        WsTrustError::MissingSecurityHeader
    );
    let two_headers = envelope(TRUST_13, &good_security(), &rst13()).replace(
        "</s:Header>",
        &format!(r#"<wsse:Security xmlns:wsse="{WSSE}"/></s:Header>"#),
    );
    assert_eq!(
        parse13(&two_headers).unwrap_err(),
        WsTrustError::DuplicateSecurityHeader
    );
    let ts = timestamp("2024-05-01T11:59:00Z", "2024-05-01T12:09:00Z");
    assert_eq!(
        parse13_security(&ts).unwrap_err(),
        WsTrustError::MissingUsernameToken
    );
    assert_eq!(
        parse13_security(&(good_security() + &token("mallory", "x"))).unwrap_err(),
        WsTrustError::DuplicateUsernameToken
    );
    assert_eq!(
        parse13_security(&token("a", "b")).unwrap_err(),
        WsTrustError::MissingTimestamp
    );
    assert_eq!(
        parse13_security(&(good_security() + &ts)).unwrap_err(),
        WsTrustError::DuplicateTimestamp
    );
}

#[test]
fn refuses_bad_credentials_fields() {
    let ts = timestamp("2024-05-01T11:59:00Z", "2024-05-01T12:09:00Z");
    let with_token = |inner: &str| format!("{ts}<wsse:UsernameToken>{inner}</wsse:UsernameToken>");
    assert_eq!(
        parse13_security(&with_token("<wsse:Password>b</wsse:Password>")).unwrap_err(),
        WsTrustError::MissingUsername
    );
    assert_eq!(
        parse13_security(&with_token("<wsse:Username>a</wsse:Username>")).unwrap_err(),
        WsTrustError::MissingPassword
    );
    assert_eq!(
        parse13_security(&(ts.clone() + &token("  ", "b"))).unwrap_err(),
        WsTrustError::EmptyUsername
    );
    assert_eq!(
        parse13_security(&(ts.clone() + &token("a", ""))).unwrap_err(),
        WsTrustError::EmptyPassword
    );
    assert_eq!(
        parse13_security(&with_token(
            "<wsse:Username>a</wsse:Username><wsse:Username>b</wsse:Username><wsse:Password>c</wsse:Password>"
        ))
        .unwrap_err(),
        WsTrustError::DuplicateCredentialField("Username")
    );
}

#[test]
fn password_type_must_be_text() {
    let ts = timestamp("2024-05-01T11:59:00Z", "2024-05-01T12:09:00Z");
    let with_type = |ty: &str| {
        format!(
            "{ts}<wsse:UsernameToken><wsse:Username>a</wsse:Username><wsse:Password Type=\"{ty}\">b</wsse:Password></wsse:UsernameToken>"
        )
    };
    assert!(parse13_security(&with_type(PASSWORD_TEXT)).is_ok());
    assert_eq!(
        parse13_security(&with_type(PASSWORD_DIGEST)).unwrap_err(),
        WsTrustError::PasswordDigestNotSupported
    );
    assert_eq!(
        parse13_security(&with_type("urn:other")).unwrap_err(),
        WsTrustError::UnsupportedPasswordType("urn:other".to_owned())
    );
}

#[test]
fn timestamp_rules_hold_at_their_boundaries() {
    let check = |created: &str, expires: &str| {
        parse13_security(&(timestamp(created, expires) + &token("a", "b"))).map(|_| ())
    };
    // Created at the skew limit in the future is fine, one second later is not.
    assert_eq!(
        check("2024-05-01T12:05:00Z", "2024-05-01T12:15:00Z"),
        Ok(())
    );
    assert_eq!(
        check("2024-05-01T12:05:01Z", "2024-05-01T12:15:00Z"),
        Err(WsTrustError::TimestampNotYetValid)
    );
    // Expires at the skew limit in the past is fine, one second earlier is not.
    assert_eq!(
        check("2024-05-01T11:45:00Z", "2024-05-01T11:55:00Z"),
        Ok(())
    );
    assert_eq!(
        check("2024-05-01T11:45:00Z", "2024-05-01T11:54:59Z"),
        Err(WsTrustError::TimestampExpired)
    );
    // Window: 15 minutes accepted, longer or inverted refused.
    assert_eq!(
        check("2024-05-01T11:55:00Z", "2024-05-01T12:10:00Z"),
        Ok(())
    );
    assert_eq!(
        check("2024-05-01T11:55:00Z", "2024-05-01T12:10:01Z"),
        Err(WsTrustError::TimestampWindowInvalid)
    );
    assert_eq!(
        check("2024-05-01T12:00:00Z", "2024-05-01T11:59:00Z"),
        Err(WsTrustError::TimestampWindowInvalid)
    );
    assert_eq!(
        check("2024-05-01T12:00:00", "2024-05-01T12:05:00Z"),
        Err(WsTrustError::InvalidTimestampValue {
            field: "Created",
            value: "2024-05-01T12:00:00".to_owned()
        })
    );
    assert_eq!(
        parse13_security(
            &("<wsu:Timestamp><wsu:Created>2024-05-01T12:00:00Z</wsu:Created></wsu:Timestamp>"
                .to_owned()
                + &token("a", "b"))
        )
        .unwrap_err(),
        WsTrustError::IncompleteTimestamp("Expires")
    );
}

#[test]
fn version_of_body_must_match_endpoint() {
    let rst2005 = APPLIES_TO.to_owned();
    let input = envelope(TRUST_2005, &good_security(), &rst2005);
    assert_eq!(
        parse13(&input).unwrap_err(),
        WsTrustError::VersionMismatch {
            endpoint: TrustVersion::V13,
            request: TrustVersion::V2005
        }
    );
    let envelope = soap::parse_envelope(input.as_bytes(), &xml::Limits::default()).unwrap();
    let request = parse_usernamemixed(
        &envelope,
        TrustVersion::V2005,
        NOW,
        &TimestampPolicy::default(),
    )
    .unwrap();
    assert_eq!(request.version, TrustVersion::V2005);
}

#[test]
fn request_type_must_be_issue_of_the_version() {
    let with = |request_type: &str| {
        parse13_rst(&format!(
            "{APPLIES_TO}<wst:RequestType>{request_type}</wst:RequestType>"
        ))
    };
    assert_eq!(
        with("http://schemas.xmlsoap.org/ws/2005/02/trust/Issue").unwrap_err(),
        WsTrustError::UnsupportedRequestType(
            "http://schemas.xmlsoap.org/ws/2005/02/trust/Issue".to_owned()
        )
    );
    assert_eq!(
        with("http://docs.oasis-open.org/ws-sx/ws-trust/200512/Validate").unwrap_err(),
        WsTrustError::UnsupportedRequestType(
            "http://docs.oasis-open.org/ws-sx/ws-trust/200512/Validate".to_owned()
        )
    );
    assert!(parse13_rst(APPLIES_TO).is_ok(), "RequestType is optional");
}

#[test]
fn applies_to_must_name_microsoft_online() {
    let with = |ns: &str, address: &str| {
        parse13_rst(&format!(
            r#"<wsp:AppliesTo xmlns:wsp="{WSP}"><a:EndpointReference xmlns:a="{ns}"><a:Address>{address}</a:Address></a:EndpointReference></wsp:AppliesTo>"#
        ))
        .map(|request| request.applies_to)
    };
    assert_eq!(
        with(WSA, " urn:federation:MicrosoftOnline "),
        Ok(MICROSOFT_ONLINE.to_owned())
    );
    assert_eq!(
        with(WSA_2004_NS, LEGACY_EXTSTS),
        Ok(LEGACY_EXTSTS.to_owned())
    );
    assert_eq!(
        with(WSA, "https://evil.example.com"),
        Err(WsTrustError::UnsupportedAppliesTo(
            "https://evil.example.com".to_owned()
        ))
    );
    assert_eq!(
        with("urn:not-addressing", MICROSOFT_ONLINE),
        Err(WsTrustError::MissingAppliesTo)
    );
    assert_eq!(parse13_rst("").unwrap_err(), WsTrustError::MissingAppliesTo);
    assert_eq!(
        parse13_rst(&(APPLIES_TO.to_owned() + APPLIES_TO)).unwrap_err(),
        WsTrustError::DuplicateElement("AppliesTo".to_owned())
    );
}

#[test]
fn token_and_key_types() {
    let with_token =
        |uri: &str| parse13_rst(&format!("{APPLIES_TO}<wst:TokenType>{uri}</wst:TokenType>"));
    assert_eq!(
        with_token("urn:oasis:names:tc:SAML:2.0:assertion")
            .unwrap()
            .token_type,
        TokenType::Saml20
    );
    assert_eq!(
        with_token(TokenType::Saml20.profile_uri())
            .unwrap()
            .token_type,
        TokenType::Saml20
    );
    assert_eq!(
        with_token(TokenType::Saml11.profile_uri())
            .unwrap()
            .token_type,
        TokenType::Saml11
    );
    assert_eq!(
        with_token("urn:ietf:params:oauth:token-type:jwt").unwrap_err(),
        WsTrustError::UnsupportedTokenType("urn:ietf:params:oauth:token-type:jwt".to_owned())
    );
    let with_key =
        |uri: &str| parse13_rst(&format!("{APPLIES_TO}<wst:KeyType>{uri}</wst:KeyType>"));
    assert!(with_key(NO_PROOF_KEY).is_ok());
    let symmetric = "http://docs.oasis-open.org/ws-sx/ws-trust/200512/SymmetricKey";
    assert_eq!(
        with_key(symmetric).unwrap_err(),
        WsTrustError::UnsupportedKeyType(symmetric.to_owned())
    );
}

#[test]
fn body_must_hold_exactly_one_rst() {
    let input = envelope(TRUST_13, &good_security(), &rst13());
    let empty_body = input.replace(
        &input[input.find("<wst:RequestSecurityToken").unwrap()..input.find("</s:Body>").unwrap()],
        "",
    );
    assert_eq!(
        parse13(&empty_body).unwrap_err(),
        WsTrustError::MissingRequestSecurityToken
    );
    let extra = input.replace("</s:Body>", "<x:Other xmlns:x=\"urn:x\"/></s:Body>");
    assert_eq!(
        parse13(&extra).unwrap_err(),
        WsTrustError::UnexpectedBodyContent("Other".to_owned())
    );
}

#[test]
fn smuggled_username_tokens_are_never_used() {
    let smuggled = format!(
        "{}<x:Wrapper xmlns:x=\"urn:x\">{}</x:Wrapper>",
        good_security(),
        token("admin@contoso.com", "x")
    );
    let in_body = format!(
        r#"<o:UsernameToken xmlns:o="{WSSE}"><o:Username>root@contoso.com</o:Username><o:Password>y</o:Password></o:UsernameToken>"#
    );
    let input = envelope(TRUST_13, &smuggled, &(rst13() + &in_body));
    assert_eq!(parse13(&input).unwrap().username, "alice@contoso.com");
}

#[test]
fn windowstransport_needs_no_security_header() {
    let input = format!(
        r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:wsa="{WSA}"><s:Body><t:RequestSecurityToken Id="RST0" xmlns:t="{TRUST_2005}">{APPLIES_TO}<t:KeyType>{NO_PROOF_KEY}</t:KeyType><t:RequestType>http://schemas.xmlsoap.org/ws/2005/02/trust/Issue</t:RequestType></t:RequestSecurityToken></s:Body></s:Envelope>"#
    );
    let envelope = soap::parse_envelope(input.as_bytes(), &xml::Limits::default()).unwrap();
    assert_eq!(
        parse_windowstransport(&envelope, TrustVersion::V2005),
        Ok(WindowsIssueRequest {
            version: TrustVersion::V2005,
            message_id: None,
            applies_to: MICROSOFT_ONLINE.to_owned(),
            token_type: TokenType::Saml11,
        })
    );
    assert_eq!(
        parse_usernamemixed(
            &envelope,
            TrustVersion::V2005,
            NOW,
            &TimestampPolicy::default()
        )
        .unwrap_err(),
        WsTrustError::MissingSecurityHeader
    );
}

#[test]
fn every_error_has_its_fault_kind() {
    assert_eq!(
        WsTrustError::TimestampExpired.fault_kind(),
        FaultKind::MessageExpired
    );
    assert_eq!(
        WsTrustError::TimestampNotYetValid.fault_kind(),
        FaultKind::InvalidSecurity
    );
    assert_eq!(
        WsTrustError::DuplicateSecurityHeader.fault_kind(),
        FaultKind::InvalidSecurity
    );
    assert_eq!(
        WsTrustError::PasswordDigestNotSupported.fault_kind(),
        FaultKind::InvalidSecurity
    );
    assert_eq!(
        WsTrustError::UnsupportedAppliesTo(String::new()).fault_kind(),
        FaultKind::InvalidRequest
    );
    assert_eq!(
        WsTrustError::VersionMismatch {
            endpoint: TrustVersion::V13,
            request: TrustVersion::V2005
        }
        .fault_kind(),
        FaultKind::InvalidRequest
    );
}

#[test]
fn faults_use_the_right_namespace_and_code() {
    let failed = fault(
        TrustVersion::V2005,
        FaultKind::FailedAuthentication,
        "MSIS7068: Access denied.",
        Some("urn:uuid:1"),
    );
    assert_eq!(
        failed,
        soap::Fault {
            code: FaultCode::Sender,
            subcode_ns: TRUST_2005.to_owned(),
            subcode_local: "FailedAuthentication".to_owned(),
            reason: "MSIS7068: Access denied.".to_owned(),
            relates_to: Some("urn:uuid:1".to_owned()),
        }
    );
    let failed = fault(TrustVersion::V13, FaultKind::RequestFailed, "r", None);
    assert_eq!(
        (
            failed.code,
            failed.subcode_ns.as_str(),
            failed.subcode_local.as_str()
        ),
        (FaultCode::Receiver, TRUST_13, "RequestFailed")
    );
    let expired = fault(TrustVersion::V13, FaultKind::MessageExpired, "r", None);
    assert_eq!(
        (
            expired.code,
            expired.subcode_ns.as_str(),
            expired.subcode_local.as_str()
        ),
        (FaultCode::Sender, WSSE, "MessageExpired")
    );
    let invalid = fault(TrustVersion::V13, FaultKind::InvalidRequest, "r", None);
    assert_eq!(
        (invalid.subcode_ns.as_str(), invalid.subcode_local.as_str()),
        (TRUST_13, "InvalidRequest")
    );
    let security = fault(TrustVersion::V2005, FaultKind::InvalidSecurity, "r", None);
    assert_eq!(
        (
            security.subcode_ns.as_str(),
            security.subcode_local.as_str()
        ),
        (WSSE, "InvalidSecurity")
    );
}

#[test]
fn version_helpers() {
    assert_eq!(
        TrustVersion::from_path_segment("13"),
        Some(TrustVersion::V13)
    );
    assert_eq!(
        TrustVersion::from_path_segment("2005"),
        Some(TrustVersion::V2005)
    );
    assert_eq!(TrustVersion::from_path_segment("2006"), None);
    assert_eq!(
        TrustVersion::V13.issue_action(),
        "http://docs.oasis-open.org/ws-sx/ws-trust/200512/RST/Issue"
    );
    assert_eq!(
        TrustVersion::V2005.namespace(),
        "http://schemas.xmlsoap.org/ws/2005/02/trust"
    );
}

fn assertion(token_type: TokenType) -> SignedAssertion {
    SignedAssertion {
        id: "_abc".to_owned(),
        token_type,
        xml: r#"<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:1.0:assertion" AssertionID="_abc" MajorVersion="1"></saml:Assertion>"#.to_owned(),
        not_before: NOW,
        not_on_or_after: datetime!(2024-05-01 13:00:00 UTC),
        signing_key_sha256: String::new(),
        signing_store: crate::crypto::KeyStore::File,
    }
}

fn rstr_children(response: &str, version: TrustVersion) -> Vec<String> {
    let envelope = soap::parse_envelope(response.as_bytes(), &xml::Limits::default()).unwrap();
    let rstr = match version {
        TrustVersion::V13 => envelope
            .body
            .child(TRUST_13, "RequestSecurityTokenResponseCollection")
            .unwrap()
            .unwrap()
            .child(TRUST_13, "RequestSecurityTokenResponse")
            .unwrap()
            .unwrap()
            .clone(),
        TrustVersion::V2005 => envelope
            .body
            .child(TRUST_2005, "RequestSecurityTokenResponse")
            .unwrap()
            .unwrap()
            .clone(),
    };
    rstr.children
        .iter()
        .map(|child| child.local.to_string())
        .collect()
}

const ADFS_CHILD_ORDER: [&str; 8] = [
    "Lifetime",
    "AppliesTo",
    "RequestedSecurityToken",
    "RequestedAttachedReference",
    "RequestedUnattachedReference",
    "TokenType",
    "RequestType",
    "KeyType",
];

#[test]
fn response_13_is_a_collection_in_adfs_order() {
    let response = build_response(
        TrustVersion::V13,
        &assertion(TokenType::Saml11),
        MICROSOFT_ONLINE,
        Some("urn:uuid:42"),
        NOW,
    );
    assert_eq!(
        rstr_children(&response, TrustVersion::V13),
        ADFS_CHILD_ORDER
    );
    let expected_header = concat!(
        r#"<s:Header><a:Action s:mustUnderstand="1">http://docs.oasis-open.org/ws-sx/ws-trust/200512/RSTRC/IssueFinal</a:Action>"#,
        r#"<a:RelatesTo>urn:uuid:42</a:RelatesTo><o:Security s:mustUnderstand="1" xmlns:o="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd">"#,
        r#"<u:Timestamp u:Id="_0"><u:Created>2024-05-01T12:00:00.000Z</u:Created><u:Expires>2024-05-01T12:05:00.000Z</u:Expires></u:Timestamp></o:Security></s:Header>"#
    );
    assert!(response.contains(expected_header), "{response}");
    assert!(response.contains(&format!(
        "<trust:RequestedSecurityToken>{}</trust:RequestedSecurityToken>",
        assertion(TokenType::Saml11).xml
    )));
    assert!(response.contains("<trust:Lifetime><wsu:Created xmlns:wsu=\"http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd\">2024-05-01T12:00:00.000Z</wsu:Created>"));
    assert!(response.contains(">2024-05-01T13:00:00.000Z</wsu:Expires></trust:Lifetime>"));
    assert!(response.contains(r#"<o:KeyIdentifier ValueType="http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.0#SAMLAssertionID">_abc</o:KeyIdentifier>"#));
    assert!(response.contains("<trust:TokenType>urn:oasis:names:tc:SAML:1.0:assertion</trust:TokenType><trust:RequestType>http://docs.oasis-open.org/ws-sx/ws-trust/200512/Issue</trust:RequestType><trust:KeyType>http://docs.oasis-open.org/ws-sx/ws-trust/200512/Bearer</trust:KeyType>"));
}

#[test]
fn response_2005_is_a_bare_rstr() {
    let response = build_response(
        TrustVersion::V2005,
        &assertion(TokenType::Saml11),
        LEGACY_EXTSTS,
        None,
        NOW,
    );
    assert_eq!(
        rstr_children(&response, TrustVersion::V2005),
        ADFS_CHILD_ORDER
    );
    assert!(!response.contains("Collection"));
    assert!(!response.contains("RelatesTo"));
    assert!(
        response.contains(">http://schemas.xmlsoap.org/ws/2005/02/trust/RSTR/Issue</a:Action>")
    );
    assert!(
        response
            .contains("<wsa:Address>https://login.microsoftonline.com/extSTS.srf</wsa:Address>")
    );
    assert!(response.contains(
        "<t:KeyType>http://schemas.xmlsoap.org/ws/2005/05/identity/NoProofKey</t:KeyType>"
    ));
}

#[test]
fn saml20_response_references_by_samlid() {
    let response = build_response(
        TrustVersion::V13,
        &assertion(TokenType::Saml20),
        MICROSOFT_ONLINE,
        None,
        NOW,
    );
    assert!(response.contains(r##"k:TokenType="http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.1#SAMLV2.0""##));
    assert!(response.contains(
        r##"ValueType="http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.1#SAMLID""##
    ));
    assert!(
        response
            .contains("<trust:TokenType>urn:oasis:names:tc:SAML:2.0:assertion</trust:TokenType>")
    );
}

#[test]
fn wresult_is_a_standalone_2005_rstr() {
    let wresult = build_wsfed_wresult(&assertion(TokenType::Saml11), NOW);
    assert!(wresult.starts_with(
        r#"<t:RequestSecurityTokenResponse xmlns:t="http://schemas.xmlsoap.org/ws/2005/02/trust">"#
    ));
    let root = xml::parse(wresult.as_bytes(), &xml::Limits::default()).unwrap();
    let names: Vec<_> = root.children.iter().map(|child| &*child.local).collect();
    assert_eq!(names, ADFS_CHILD_ORDER);
    assert!(wresult.contains("<wsa:Address>urn:federation:MicrosoftOnline</wsa:Address>"));
}
