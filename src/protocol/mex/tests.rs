//! The document is parsed with quick-xml into a small tree, then classified by functions that
//! mirror the client code described in docs/protocol-notes.md#how-clients-pick-an-endpoint
//! (MSAL.NET `MexDocument.cs`, msal4j `MexParser.java`), so a shape regression that would break
//! a real client fails here.

use super::*;
use quick_xml::NsReader;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use std::collections::{BTreeMap, HashMap, HashSet};

const USERNAMEMIXED_13: &str = "https://sts.example.com/wsfed/app/trust/13/usernamemixed";
const USERNAMEMIXED_2005: &str = "https://sts.example.com/wsfed/app/trust/2005/usernamemixed";
const WINDOWSTRANSPORT_13: &str = "https://sts.example.com/wsfed/app/trust/13/windowstransport";
const WINDOWSTRANSPORT_2005: &str = "https://sts.example.com/wsfed/app/trust/2005/windowstransport";
const SPN: &str = "HTTP/sts.example.com";
const ISSUE_13: &str = "http://docs.oasis-open.org/ws-sx/ws-trust/200512/RST/Issue";
const ISSUE_2005: &str = "http://schemas.xmlsoap.org/ws/2005/02/trust/RST/Issue";

fn usernamemixed_only() -> MexEndpoints {
    MexEndpoints {
        usernamemixed_13: Some(USERNAMEMIXED_13.to_owned()),
        usernamemixed_2005: Some(USERNAMEMIXED_2005.to_owned()),
        windowstransport_13: None,
        windowstransport_2005: None,
        windowstransport_spn: None,
    }
}

fn with_windowstransport() -> MexEndpoints {
    MexEndpoints {
        windowstransport_13: Some(WINDOWSTRANSPORT_13.to_owned()),
        windowstransport_2005: Some(WINDOWSTRANSPORT_2005.to_owned()),
        windowstransport_spn: Some(SPN.to_owned()),
        ..usernamemixed_only()
    }
}

// -----------------------------------------------------------------------------------------
// A tiny namespace-aware DOM

#[derive(Debug, Default)]
struct Element {
    namespace: String,
    local: String,
    /// (raw qualified name, resolved namespace or "", local name, value)
    attributes: Vec<(String, String, String, String)>,
    children: Vec<Element>,
    text: String,
}

impl Element {
    fn is(&self, namespace: &str, local: &str) -> bool {
        self.namespace == namespace && self.local == local
    }

    fn children(&self, namespace: &str, local: &str) -> std::vec::IntoIter<&Element> {
        let matching: Vec<&Element> = self
            .children
            .iter()
            .filter(|c| c.is(namespace, local))
            .collect();
        matching.into_iter()
    }

    fn child(&self, namespace: &str, local: &str) -> Option<&Element> {
        self.children(namespace, local).next()
    }

    /// Elements reached from `self` by following `path` (child steps), like XPath `a/b/c`.
    fn select(&self, path: &[(&str, &str)]) -> Vec<&Element> {
        let mut current = vec![self];
        for (namespace, local) in path {
            current = current
                .into_iter()
                .flat_map(|e| e.children(namespace, local))
                .collect();
        }
        current
    }

    fn descendants(&self, namespace: &str, local: &str) -> Vec<&Element> {
        let mut found = Vec::new();
        for child in &self.children {
            if child.is(namespace, local) {
                found.push(child);
            }
            found.extend(child.descendants(namespace, local));
        }
        found
    }

    /// An unqualified attribute.
    fn attr(&self, local: &str) -> Option<&str> {
        self.attr_ns("", local)
    }

    fn attr_ns(&self, namespace: &str, local: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(_, ns, name, _)| ns == namespace && name == local)
            .map(|(_, _, _, value)| value.as_str())
    }

    /// An attribute by its literal qualified name (DOM `getNamedItem`).
    fn attr_raw(&self, qualified: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(raw, _, _, _)| raw == qualified)
            .map(|(_, _, _, value)| value.as_str())
    }
}

fn namespace_of(resolved: ResolveResult<'_>) -> String {
    match resolved {
        ResolveResult::Bound(ns) => ns.as_ref().to_owned(),
        ResolveResult::Unbound => String::new(),
        ResolveResult::Unknown(prefix) => panic!("unknown prefix {prefix:?}"),
    }
}

fn element_from(reader: &NsReader<&[u8]>, namespace: String, start: &BytesStart<'_>) -> Element {
    let mut element = Element {
        namespace,
        local: start.local_name().as_ref().to_owned(),
        ..Element::default()
    };
    for attribute in start.attributes() {
        let attribute = attribute.unwrap();
        let raw = attribute.key.as_ref().to_owned();
        if raw == "xmlns" || raw.starts_with("xmlns:") {
            continue;
        }
        let (ns, local) = reader.resolver().resolve_attribute(attribute.key);
        element.attributes.push((
            raw,
            namespace_of(ns),
            local.as_ref().to_owned(),
            attribute
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .unwrap()
                .into_owned(),
        ));
    }
    element
}

/// Parses `xml` and returns its root element.
fn parse(xml: &str) -> Element {
    let mut reader = NsReader::from_reader(xml.as_bytes());
    let mut buf = Vec::new();
    let mut stack: Vec<Element> = vec![Element::default()];
    loop {
        let (resolved, event) = reader.read_resolved_event_into(&mut buf).unwrap();
        let namespace = namespace_of(resolved);
        match event {
            Event::Start(start) => {
                let element = element_from(&reader, namespace, &start);
                stack.push(element);
            }
            Event::Empty(start) => {
                let element = element_from(&reader, namespace, &start);
                stack.last_mut().unwrap().children.push(element);
            }
            Event::End(_) => {
                let element = stack.pop().unwrap();
                stack.last_mut().unwrap().children.push(element);
            }
            Event::Text(text) => {
                let text = text.xml10_content();
                stack.last_mut().unwrap().text.push_str(&text);
            }
            Event::GeneralRef(reference) => {
                let name: &str = &reference;
                let resolved = quick_xml::escape::resolve_predefined_entity(name)
                    .unwrap_or_else(|| panic!("unexpected entity {name}"));
                stack.last_mut().unwrap().text.push_str(resolved);
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    let mut document = stack.pop().unwrap();
    assert!(stack.is_empty(), "unbalanced document");
    assert_eq!(document.children.len(), 1, "exactly one root element");
    document.children.remove(0)
}

// -----------------------------------------------------------------------------------------
// MSAL.NET MexDocument.cs, reimplemented

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NetAuth {
    Integrated,
    UsernamePassword,
}

#[derive(Clone, Debug)]
struct NetPolicy {
    auth: NetAuth,
    version_13: Option<bool>,
    url: Option<String>,
}

/// Elements named `local` directly under the root, else anywhere (MSAL.NET `FindElements`).
fn net_find<'a>(root: &'a Element, namespace: &str, local: &str) -> Vec<&'a Element> {
    let direct: Vec<&Element> = root.children(namespace, local).collect();
    if direct.is_empty() {
        root.descendants(namespace, local)
    } else {
        direct
    }
}

fn net_classify_all(all: &Element) -> Vec<NetAuth> {
    let mut found = Vec::new();
    if all
        .child(NS_HTTP_POLICY, "NegotiateAuthentication")
        .is_some()
    {
        found.push(NetAuth::Integrated);
    }
    let tokens = all
        .child(NS_SP_13, "SignedEncryptedSupportingTokens")
        .or_else(|| all.child(NS_SP_2005, "SignedSupportingTokens"));
    // MSAL.NET switches to the 2005 namespace for the UsernameToken lookup, whatever the
    // namespace of the container was.
    let username = tokens.map(|t| {
        t.select(&[
            (WSP, "Policy"),
            (NS_SP_2005, "UsernameToken"),
            (WSP, "Policy"),
            (NS_SP_2005, "WssUsernameToken10"),
        ])
    });
    if username.is_some_and(|found| !found.is_empty()) {
        found.push(NetAuth::UsernamePassword);
    }
    found
}

fn net_policies(root: &Element) -> BTreeMap<String, NetPolicy> {
    let mut policies = BTreeMap::new();
    for policy in net_find(root, WSP, "Policy") {
        let Some(exactly_one) = policy.child(WSP, "ExactlyOne") else {
            continue;
        };
        for all in exactly_one.descendants(WSP, "All") {
            for auth in net_classify_all(all) {
                let has_transport = !policy.descendants(NS_SP_13, "TransportBinding").is_empty()
                    || !policy
                        .descendants(NS_SP_2005, "TransportBinding")
                        .is_empty();
                if let (true, Some(id)) = (has_transport, policy.attr_ns(WSU, "Id")) {
                    let entry = NetPolicy {
                        auth,
                        version_13: None,
                        url: None,
                    };
                    let previous = policies.insert(format!("#{id}"), entry);
                    assert!(
                        previous.is_none(),
                        "MSAL.NET throws on a duplicate policy {id}"
                    );
                }
            }
        }
    }
    policies
}

/// Binding name → policy URI, setting each policy's version from the soapAction.
fn net_bindings(
    root: &Element,
    policies: &mut BTreeMap<String, NetPolicy>,
) -> HashMap<String, String> {
    let mut bindings = HashMap::new();
    for binding in net_find(root, NS_WSDL, "binding") {
        for reference in binding.children(WSP, "PolicyReference") {
            let Some(uri) = reference.attr("URI") else {
                continue;
            };
            let Some(policy) = policies.get_mut(uri) else {
                continue;
            };
            let Some(name) = binding.attr("name") else {
                continue;
            };
            let action = binding
                .select(&[(NS_WSDL, "operation"), (NS_SOAP12_WSDL, "operation")])
                .first()
                .and_then(|op| op.attr("soapAction"));
            let version_13 = match action {
                Some(a) if a.eq_ignore_ascii_case(ISSUE_13) => true,
                Some(a) if a.eq_ignore_ascii_case(ISSUE_2005) => false,
                _ => continue,
            };
            policy.version_13 = Some(version_13);
            let transport = binding
                .child(NS_SOAP12_WSDL, "binding")
                .and_then(|b| b.attr("transport"));
            if transport.is_some_and(|t| t.eq_ignore_ascii_case(SOAP_HTTP_TRANSPORT)) {
                let previous = bindings.insert(name.to_owned(), uri.to_owned());
                assert!(
                    previous.is_none(),
                    "MSAL.NET throws on a duplicate binding {name}"
                );
            }
        }
    }
    bindings
}

fn net_set_addresses(
    root: &Element,
    bindings: &HashMap<String, String>,
    policies: &mut BTreeMap<String, NetPolicy>,
) {
    let service = net_find(root, NS_WSDL, "service")[0];
    for port in service.children(NS_WSDL, "port") {
        let Some(binding) = port.attr("binding") else {
            continue;
        };
        // Split(':', 2) must give two parts: an unprefixed binding is ignored.
        let Some((_, name)) = binding.split_once(':') else {
            continue;
        };
        let Some(uri) = bindings.get(name) else {
            continue;
        };
        let address = port.select(&[(WSA, "EndpointReference"), (WSA, "Address")]);
        if let Some(address) = address.first() {
            assert!(address.text.starts_with("https://"), "absolute URI");
            policies.get_mut(uri).unwrap().url = Some(address.text.clone());
        }
    }
}

/// MSAL.NET's choice for `auth`: (url, is WS-Trust 1.3).
fn msal_net_select(document: &str, auth: NetAuth) -> Option<(String, bool)> {
    let root = parse(document);
    let mut policies = net_policies(&root);
    let bindings = net_bindings(&root, &mut policies);
    net_set_addresses(&root, &bindings, &mut policies);
    let usable = |p: &&NetPolicy| p.url.is_some() && p.auth == auth;
    let chosen = policies
        .values()
        .filter(usable)
        .find(|p| p.version_13 == Some(true))
        .or_else(|| policies.values().find(usable))?;
    Some((chosen.url.clone()?, chosen.version_13 == Some(true)))
}

// -----------------------------------------------------------------------------------------
// msal4j MexParser.java, reimplemented

/// Policies under `//wsdl:definitions/wsp:Policy` that reach `leaf_path` from ExactlyOne/All
/// and carry a literal `wsu:Id` and an `sp`-namespace TransportBinding.
fn msal4j_policy_ids(root: &Element, leaf_path: &[(&str, &str)], sp: &str) -> Vec<String> {
    root.children(WSP, "Policy")
        .filter(|policy| {
            let all = policy.select(&[(WSP, "ExactlyOne"), (WSP, "All")]);
            all.iter().any(|a| !a.select(leaf_path).is_empty())
        })
        .filter_map(|policy| {
            let has_transport = !policy
                .select(&[(WSP, "ExactlyOne"), (WSP, "All"), (sp, "TransportBinding")])
                .is_empty();
            let id = policy.attr_raw("wsu:Id")?;
            has_transport.then(|| format!("#{id}"))
        })
        .collect()
}

fn msal4j_username_policies(root: &Element) -> Vec<String> {
    let leaf = |sp, container| {
        [
            (sp, container),
            (WSP, "Policy"),
            (sp, "UsernameToken"),
            (WSP, "Policy"),
            (sp, "WssUsernameToken10"),
        ]
    };
    let encrypted = leaf(NS_SP_13, "SignedEncryptedSupportingTokens");
    let signed = leaf(NS_SP_2005, "SignedSupportingTokens");
    let mut ids = msal4j_policy_ids(root, &encrypted, NS_SP_13);
    ids.extend(msal4j_policy_ids(root, &signed, NS_SP_2005));
    ids
}

fn msal4j_integrated_policies(root: &Element) -> Vec<String> {
    root.children(WSP, "Policy")
        .filter(|p| {
            !p.select(&[
                (WSP, "ExactlyOne"),
                (WSP, "All"),
                (NS_HTTP_POLICY, "NegotiateAuthentication"),
            ])
            .is_empty()
        })
        .map(|p| format!("#{}", p.attr_raw("wsu:Id").unwrap()))
        .collect()
}

/// msal4j's choice among `policy_ids`: (url, is WS-Trust 1.3), preferring 1.3.
fn msal4j_select(root: &Element, policy_ids: &[String]) -> Option<(String, bool)> {
    let mut bindings = HashMap::new();
    for binding in root.children(NS_WSDL, "binding") {
        for reference in binding.children(WSP, "PolicyReference") {
            let uri = reference.attr("URI").unwrap();
            if !policy_ids.iter().any(|id| id == uri) {
                continue;
            }
            let action = binding
                .select(&[(NS_WSDL, "operation"), (NS_SOAP12_WSDL, "operation")])
                .first()
                .and_then(|op| op.attr("soapAction"));
            let transport = binding
                .child(NS_SOAP12_WSDL, "binding")
                .and_then(|b| b.attr("transport"));
            if !transport.is_some_and(|t| t.eq_ignore_ascii_case(SOAP_HTTP_TRANSPORT)) {
                continue;
            }
            let version_13 = match action {
                Some(a) if a.eq_ignore_ascii_case(ISSUE_13) => true,
                Some(a) if a.eq_ignore_ascii_case(ISSUE_2005) => false,
                _ => continue,
            };
            bindings.insert(binding.attr("name").unwrap().to_owned(), version_13);
        }
    }
    let mut chosen: [Option<String>; 2] = [None, None];
    for port in root.select(&[(NS_WSDL, "service"), (NS_WSDL, "port")]) {
        let binding = port.attr("binding").unwrap();
        let name = binding.rsplit(':').next().unwrap();
        let Some(&version_13) = bindings.get(name) else {
            continue;
        };
        let address = port.select(&[(WSA, "EndpointReference"), (WSA, "Address")]);
        let address = address.first().expect("msal4j throws without an address");
        if address.text.to_ascii_lowercase().starts_with("https://") {
            chosen[usize::from(version_13)] = Some(address.text.trim().to_owned());
        }
    }
    let [v2005, v13] = chosen;
    v13.map(|url| (url, true)).or(v2005.map(|url| (url, false)))
}

// -----------------------------------------------------------------------------------------
// Tests

#[test]
fn get_document_has_wsdl_definitions_as_root() {
    let root = parse(&definitions(&usernamemixed_only()));
    assert!(root.is(NS_WSDL, "definitions"));
    assert_eq!(root.attr("name"), Some("SecurityTokenService"));
    assert_eq!(root.attr("targetNamespace"), Some(NS_TNS));
}

#[test]
fn msal_net_picks_2005_usernamemixed() {
    let document = definitions(&with_windowstransport());
    assert_eq!(
        msal_net_select(&document, NetAuth::UsernamePassword),
        Some((USERNAMEMIXED_2005.to_owned(), false))
    );
}

#[test]
fn msal_net_picks_13_windowstransport_for_iwa() {
    let document = definitions(&with_windowstransport());
    assert_eq!(
        msal_net_select(&document, NetAuth::Integrated),
        Some((WINDOWSTRANSPORT_13.to_owned(), true))
    );
}

#[test]
fn msal_net_finds_no_iwa_endpoint_when_windowstransport_is_off() {
    let document = definitions(&usernamemixed_only());
    assert_eq!(msal_net_select(&document, NetAuth::Integrated), None);
}

#[test]
fn msal_net_reads_the_soap_wrapped_document() {
    let document = soap_response(&with_windowstransport(), Some("urn:uuid:1"));
    assert_eq!(
        msal_net_select(&document, NetAuth::UsernamePassword),
        Some((USERNAMEMIXED_2005.to_owned(), false))
    );
}

#[test]
fn msal4j_picks_13_usernamemixed() {
    let root = parse(&definitions(&with_windowstransport()));
    let ids = msal4j_username_policies(&root);
    assert_eq!(
        ids,
        [
            "#UserNameWSTrustBinding_IWSTrust13Async_policy",
            "#UserNameWSTrustBinding_IWSTrustFeb2005Async_policy"
        ]
    );
    let chosen = msal4j_select(&root, &ids);
    assert_eq!(chosen, Some((USERNAMEMIXED_13.to_owned(), true)));
}

#[test]
fn msal4j_falls_back_to_2005_usernamemixed_when_13_is_off() {
    let endpoints = MexEndpoints {
        usernamemixed_13: None,
        ..usernamemixed_only()
    };
    let root = parse(&definitions(&endpoints));
    let ids = msal4j_username_policies(&root);
    let chosen = msal4j_select(&root, &ids);
    assert_eq!(chosen, Some((USERNAMEMIXED_2005.to_owned(), false)));
}

#[test]
fn msal4j_picks_13_windowstransport_for_iwa() {
    let root = parse(&definitions(&with_windowstransport()));
    let ids = msal4j_integrated_policies(&root);
    let chosen = msal4j_select(&root, &ids);
    assert_eq!(chosen, Some((WINDOWSTRANSPORT_13.to_owned(), true)));
}

fn policy_ids(root: &Element) -> Vec<&str> {
    root.children(WSP, "Policy")
        .map(|p| p.attr_ns(WSU, "Id").unwrap())
        .collect()
}

fn binding_names(root: &Element) -> Vec<&str> {
    root.children(NS_WSDL, "binding")
        .map(|b| b.attr("name").unwrap())
        .collect()
}

fn port_addresses(root: &Element) -> Vec<String> {
    root.select(&[(NS_WSDL, "service"), (NS_WSDL, "port")])
        .into_iter()
        .map(|port| {
            let soap_address = port.child(NS_SOAP12_WSDL, "address").unwrap();
            let epr = port.select(&[(WSA, "EndpointReference"), (WSA, "Address")]);
            assert_eq!(soap_address.attr("location"), Some(epr[0].text.as_str()));
            epr[0].text.clone()
        })
        .collect()
}

#[test]
fn unconfigured_endpoints_leave_no_policy_binding_or_port() {
    let document = definitions(&usernamemixed_only());
    assert!(!document.contains("windowstransport"));
    assert!(!document.contains("NegotiateAuthentication"));
    assert!(!document.contains("CustomBinding"));
    assert!(!document.contains("addressingidentity"));
    let root = parse(&document);
    assert_eq!(
        policy_ids(&root),
        [
            "UserNameWSTrustBinding_IWSTrustFeb2005Async_policy",
            "UserNameWSTrustBinding_IWSTrust13Async_policy"
        ]
    );
    assert_eq!(
        binding_names(&root),
        [
            "UserNameWSTrustBinding_IWSTrustFeb2005Async",
            "UserNameWSTrustBinding_IWSTrust13Async"
        ]
    );
    assert_eq!(
        port_addresses(&root),
        [USERNAMEMIXED_2005, USERNAMEMIXED_13]
    );
}

#[test]
fn no_endpoints_give_an_empty_but_well_formed_service() {
    let endpoints = MexEndpoints {
        usernamemixed_13: None,
        usernamemixed_2005: None,
        ..usernamemixed_only()
    };
    let root = parse(&definitions(&endpoints));
    assert!(policy_ids(&root).is_empty());
    assert!(binding_names(&root).is_empty());
    assert_eq!(root.select(&[(NS_WSDL, "service")]).len(), 1);
    assert!(port_addresses(&root).is_empty());
}

#[test]
fn windowstransport_ports_carry_the_spn_and_usernamemixed_ports_do_not() {
    let root = parse(&definitions(&with_windowstransport()));
    assert_eq!(
        port_addresses(&root),
        [
            WINDOWSTRANSPORT_2005,
            USERNAMEMIXED_2005,
            WINDOWSTRANSPORT_13,
            USERNAMEMIXED_13
        ]
    );
    for port in root.select(&[(NS_WSDL, "service"), (NS_WSDL, "port")]) {
        let spns: Vec<&str> = port
            .select(&[
                (WSA, "EndpointReference"),
                (NS_ADDRESSING_IDENTITY, "Identity"),
                (NS_ADDRESSING_IDENTITY, "Spn"),
            ])
            .into_iter()
            .map(|spn| spn.text.as_str())
            .collect();
        let is_windows = port.attr("name").unwrap().starts_with("CustomBinding");
        let expected: &[&str] = if is_windows { &[SPN] } else { &[] };
        assert_eq!(spns, expected, "port {:?}", port.attr("name"));
    }
}

#[test]
fn windowstransport_without_spn_has_no_identity() {
    let endpoints = MexEndpoints {
        windowstransport_spn: None,
        ..with_windowstransport()
    };
    let document = definitions(&endpoints);
    assert!(document.contains(WINDOWSTRANSPORT_13));
    assert!(!document.contains("Identity"));
}

#[test]
fn every_policy_reference_resolves_and_every_policy_is_used() {
    let root = parse(&definitions(&with_windowstransport()));
    let ids: HashSet<String> = policy_ids(&root)
        .iter()
        .map(|id| format!("#{id}"))
        .collect();
    let references: Vec<&str> = root
        .descendants(WSP, "PolicyReference")
        .into_iter()
        .map(|r| r.attr("URI").unwrap())
        .collect();
    assert_eq!(references.len(), 4);
    let distinct: HashSet<String> = references.iter().map(|r| (*r).to_owned()).collect();
    assert_eq!(distinct, ids);
}

#[test]
fn every_port_binding_type_and_message_reference_resolves() {
    let root = parse(&definitions(&with_windowstransport()));
    let bindings: HashSet<&str> = binding_names(&root).into_iter().collect();
    let port_types: HashSet<&str> = root
        .children(NS_WSDL, "portType")
        .map(|p| p.attr("name").unwrap())
        .collect();
    let messages: HashSet<&str> = root
        .children(NS_WSDL, "message")
        .map(|m| m.attr("name").unwrap())
        .collect();
    let ports = root.select(&[(NS_WSDL, "service"), (NS_WSDL, "port")]);
    assert_eq!(ports.len(), 4);
    for port in ports {
        let binding = port.attr("binding").unwrap().strip_prefix("tns:").unwrap();
        assert!(
            bindings.contains(binding),
            "dangling port binding {binding}"
        );
    }
    for binding in root.children(NS_WSDL, "binding") {
        let port_type = binding.attr("type").unwrap().strip_prefix("tns:").unwrap();
        assert!(
            port_types.contains(port_type),
            "dangling binding type {port_type}"
        );
    }
    let operations = root.select(&[(NS_WSDL, "portType"), (NS_WSDL, "operation")]);
    for io in operations.iter().flat_map(|op| &op.children) {
        let message = io.attr("message").unwrap().strip_prefix("tns:").unwrap();
        assert!(messages.contains(message), "dangling message {message}");
    }
}

#[test]
fn bindings_declare_soap12_http_and_the_issue_action_of_their_version() {
    let root = parse(&definitions(&with_windowstransport()));
    let actions: Vec<(&str, &str)> = root
        .children(NS_WSDL, "binding")
        .map(|b| {
            let soap_binding = b.child(NS_SOAP12_WSDL, "binding").unwrap();
            assert_eq!(soap_binding.attr("transport"), Some(SOAP_HTTP_TRANSPORT));
            let op = b.select(&[(NS_WSDL, "operation"), (NS_SOAP12_WSDL, "operation")])[0];
            assert_eq!(op.attr("style"), Some("document"));
            (b.attr("name").unwrap(), op.attr("soapAction").unwrap())
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("CustomBinding_IWSTrustFeb2005Async", ISSUE_2005),
            ("UserNameWSTrustBinding_IWSTrustFeb2005Async", ISSUE_2005),
            ("CustomBinding_IWSTrust13Async", ISSUE_13),
            ("UserNameWSTrustBinding_IWSTrust13Async", ISSUE_13),
        ]
    );
}

fn policy_assertions<'a>(root: &'a Element, id: &str) -> &'a Element {
    let policy = root
        .children(WSP, "Policy")
        .find(|p| p.attr_ns(WSU, "Id") == Some(id))
        .unwrap();
    policy.select(&[(WSP, "ExactlyOne"), (WSP, "All")])[0]
}

fn child_names(element: &Element) -> Vec<(&str, &str)> {
    element
        .children
        .iter()
        .map(|c| (c.namespace.as_str(), c.local.as_str()))
        .collect()
}

#[test]
fn usernamemixed_13_policy_has_the_adfs_assertions_in_order() {
    let root = parse(&definitions(&usernamemixed_only()));
    let all = policy_assertions(&root, "UserNameWSTrustBinding_IWSTrust13Async_policy");
    assert_eq!(
        child_names(all),
        [
            (NS_SP_13, "TransportBinding"),
            (NS_SP_13, "SignedEncryptedSupportingTokens"),
            (NS_SP_13, "EndorsingSupportingTokens"),
            (NS_SP_13, "Wss11"),
            (NS_SP_13, "Trust13"),
            (NS_WSAW, "UsingAddressing"),
        ]
    );
    let transport = all.select(&[(NS_SP_13, "TransportBinding"), (WSP, "Policy")])[0];
    assert!(transport.child(NS_SP_13, "IncludeTimestamp").is_some());
    let token = all.select(&[
        (NS_SP_13, "SignedEncryptedSupportingTokens"),
        (WSP, "Policy"),
        (NS_SP_13, "UsernameToken"),
    ])[0];
    assert_eq!(
        token.attr_ns(NS_SP_13, "IncludeToken"),
        Some(
            "http://docs.oasis-open.org/ws-sx/ws-securitypolicy/200702/IncludeToken/AlwaysToRecipient"
        )
    );
    let key = all.select(&[
        (NS_SP_13, "EndorsingSupportingTokens"),
        (WSP, "Policy"),
        (NS_SP_13, "KeyValueToken"),
    ])[0];
    assert_eq!(key.attr_ns(WSP, "Optional"), Some("true"));
}

#[test]
fn usernamemixed_2005_policy_has_the_adfs_assertions_in_order() {
    let root = parse(&definitions(&usernamemixed_only()));
    let all = policy_assertions(&root, "UserNameWSTrustBinding_IWSTrustFeb2005Async_policy");
    assert_eq!(
        child_names(all),
        [
            (NS_SP_2005, "TransportBinding"),
            (NS_SP_2005, "SignedSupportingTokens"),
            (NS_SP_2005, "EndorsingSupportingTokens"),
            (NS_SP_2005, "Wss11"),
            (NS_SP_2005, "Trust10"),
            (NS_WSAW, "UsingAddressing"),
        ]
    );
    let rsa = all.select(&[
        (NS_SP_2005, "EndorsingSupportingTokens"),
        (WSP, "Policy"),
        (NS_MSSP, "RsaToken"),
    ])[0];
    assert_eq!(rsa.attr_ns(WSP, "Optional"), Some("true"));
}

#[test]
fn windowstransport_policies_use_sp2005_without_timestamp() {
    let root = parse(&definitions(&with_windowstransport()));
    for id in [
        "CustomBinding_IWSTrustFeb2005Async_policy",
        "CustomBinding_IWSTrust13Async_policy",
    ] {
        let all = policy_assertions(&root, id);
        assert_eq!(
            child_names(all),
            [
                (NS_HTTP_POLICY, "NegotiateAuthentication"),
                (NS_SP_2005, "TransportBinding"),
                (NS_WSAW, "UsingAddressing"),
            ]
        );
        assert!(all.descendants(NS_SP_2005, "IncludeTimestamp").is_empty());
        let https = all.descendants(NS_SP_2005, "HttpsToken");
        assert_eq!(https[0].attr("RequireClientCertificate"), Some("false"));
    }
}

/// Attribute values are escaped as canonical XML escapes them (`>` may stay); URLs and SPNs the
/// configuration accepts never hold `<`, `>` or `"`, so this only shows the escaping holds.
#[test]
fn urls_are_escaped() {
    let url = "https://sts.example.com/a?x=1&y=\"<2>\"";
    let endpoints = MexEndpoints {
        usernamemixed_13: Some(url.to_owned()),
        ..usernamemixed_only()
    };
    let document = definitions(&endpoints);
    assert!(
        document.contains("location=\"https://sts.example.com/a?x=1&amp;y=&quot;&lt;2>&quot;\"")
    );
    assert_eq!(port_addresses(&parse(&document))[1], url);
}

#[test]
fn soap_response_wraps_definitions_with_get_response_action() {
    let root = parse(&soap_response(&usernamemixed_only(), Some("urn:uuid:a&b")));
    assert!(root.is(SOAP12, "Envelope"));
    let header = root.child(SOAP12, "Header").unwrap();
    assert_eq!(
        header.child(WSA, "Action").unwrap().text,
        ACTION_GET_RESPONSE
    );
    assert_eq!(header.child(WSA, "RelatesTo").unwrap().text, "urn:uuid:a&b");
    let body = root.child(SOAP12, "Body").unwrap();
    let inner = body.child(NS_WSDL, "definitions").unwrap();
    assert_eq!(binding_names(inner).len(), 2);
}

#[test]
fn soap_response_without_message_id_has_no_relates_to() {
    let root = parse(&soap_response(&usernamemixed_only(), None));
    let header = root.child(SOAP12, "Header").unwrap();
    assert!(header.child(WSA, "RelatesTo").is_none());
    assert!(header.child(WSA, "Action").is_some());
}
