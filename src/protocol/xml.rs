//! A small DOM for hostile input, built on quick-xml's namespace-aware reader.
//!
//! The STS parses attacker-controlled SOAP, so this parser refuses everything a token
//! request never needs: DTDs (and with them external and custom entities), processing
//! instructions, and entity references other than the five predefined ones and numeric
//! character references. Size, depth, attribute, element and text limits are enforced
//! while reading, and the tree is built iteratively with an explicit stack so that no
//! input can exhaust the call stack. Names are resolved to namespace URIs, so callers
//! match on `(namespace, local name)` and never on prefixes.

use std::borrow::Cow;
use std::sync::Arc;

use quick_xml::XmlVersion;
use quick_xml::escape::resolve_xml_entity;
use quick_xml::events::attributes::Attribute as RawAttribute;
use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

/// Resource limits applied while parsing one document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted document, in bytes.
    pub max_bytes: usize,
    /// Deepest accepted element nesting (the root is at depth 1).
    pub max_depth: usize,
    /// Most attributes (namespace declarations included) on one element.
    pub max_attributes: usize,
    /// Most elements in the whole document.
    pub max_elements: usize,
    /// Longest accepted direct text of one element, in bytes after unescaping.
    pub max_text_bytes: usize,
}

impl Default for Limits {
    /// 64 KiB document, depth 32, 32 attributes, 1024 elements, 16 KiB text per element.
    fn default() -> Self {
        Self {
            max_bytes: 64 * 1024,
            max_depth: 32,
            max_attributes: 32,
            max_elements: 1024,
            max_text_bytes: 16 * 1024,
        }
    }
}

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum XmlError {
    /// The document is larger than `Limits::max_bytes`.
    #[error("XML document is larger than the {limit}-byte limit")]
    TooLarge {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// Elements are nested deeper than `Limits::max_depth`.
    #[error("XML elements are nested deeper than the limit of {limit}")]
    TooDeep {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// An element carries more attributes than `Limits::max_attributes`.
    #[error("an XML element has more than {limit} attributes")]
    TooManyAttributes {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// The document has more elements than `Limits::max_elements`.
    #[error("XML document has more than {limit} elements")]
    TooManyElements {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// An element's text is longer than `Limits::max_text_bytes`.
    #[error("an XML element's text is longer than {limit} bytes")]
    TextTooLong {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// The document contains a document type declaration.
    #[error("XML document type declarations (DTDs) are not accepted")]
    DoctypeForbidden,
    /// The document references an entity that is neither predefined nor numeric.
    #[error("XML entity reference `&{0};` is not accepted")]
    EntityForbidden(String),
    /// The document contains a processing instruction other than the XML declaration.
    #[error("XML processing instructions are not accepted")]
    ProcessingInstructionForbidden,
    /// A name uses a namespace prefix that is not declared.
    #[error("XML namespace prefix `{0}` is not declared")]
    UnboundPrefix(String),
    /// A lookup that requires one element found several.
    #[error("XML element {{{namespace}}}{local} occurs more than once")]
    Duplicate {
        /// Namespace URI of the repeated element.
        namespace: String,
        /// Local name of the repeated element.
        local: String,
    },
    /// The input is not well-formed XML (or not UTF-8).
    #[error("malformed XML: {0}")]
    Malformed(String),
}

/// An attribute with its namespace resolved; namespace declarations are not kept as attributes.
///
/// Names, values and texts borrow from the parsed document (`'d`) where it holds them as they
/// are, and own a copy only where unescaping changed them: the tree of a token request then
/// copies none of its names and almost none of its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute<'d> {
    /// Namespace URI, `None` for an unprefixed attribute.
    pub namespace: Option<Arc<str>>,
    /// Local name.
    pub local: Cow<'d, str>,
    /// Unescaped, normalised value.
    pub value: Cow<'d, str>,
}

/// An element: resolved namespace URI, local name, attributes, child elements and direct text,
/// borrowed from the document like [`Attribute`]'s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element<'d> {
    /// Namespace URI, `None` when the element is in no namespace. Shared between the elements
    /// and attributes of one document that use it: a SOAP request names a handful of
    /// namespaces some thirty times, and one copy each saves an allocation per name.
    pub namespace: Option<Arc<str>>,
    /// Local name.
    pub local: Cow<'d, str>,
    /// Attributes other than namespace declarations, in document order.
    pub attributes: Vec<Attribute<'d>>,
    /// Child elements in document order.
    pub children: Vec<Element<'d>>,
    /// The element's direct text (not its descendants'), concatenated and unescaped.
    pub text: Cow<'d, str>,
}

impl<'d> Element<'d> {
    /// Whether this element has the given namespace URI and local name.
    pub fn is(&self, ns: &str, local: &str) -> bool {
        self.local == local && self.namespace.as_deref() == Some(ns)
    }

    /// Exactly one direct child with this name: `Ok(None)` if absent, `Err(Duplicate)` if more than one.
    pub fn child(&self, ns: &str, local: &str) -> Result<Option<&Element<'d>>, XmlError> {
        let mut matches = self.children.iter().filter(|child| child.is(ns, local));
        let first = matches.next();
        if matches.next().is_some() {
            return Err(XmlError::Duplicate {
                namespace: ns.to_owned(),
                local: local.to_owned(),
            });
        }
        Ok(first)
    }

    /// All direct children with this name, in document order.
    pub fn children_named<'a>(
        &'a self,
        ns: &'a str,
        local: &'a str,
    ) -> impl Iterator<Item = &'a Element<'d>> {
        self.children
            .iter()
            .filter(move |child| child.is(ns, local))
    }

    /// The value of the attribute with this namespace (`None` = unprefixed) and local name.
    pub fn attribute(&self, ns: Option<&str>, local: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|attr| attr.local == local && attr.namespace.as_deref() == ns)
            .map(|attr| &*attr.value)
    }
}

/// Escapes text for use in XML content or a double-quoted attribute value (`&`, `<`, `>`, `"`,
/// `'`): the SOAP envelopes around what is signed, and the load-test client's requests.
pub fn escape(text: &str) -> Cow<'_, str> {
    quick_xml::escape::escape(text)
}

/// Escapes text content as exclusive c14n writes it: `&`, `<`, `>` and CR as `&#xD;`, nothing
/// else. The signed documents are written in canonical form directly, so these are their bytes
/// (the signature oracles check them); the MEX writer uses the same rules.
pub fn escape_canonical_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    push_canonical_text(&mut out, text);
    out
}

/// Appends `text` escaped as [`escape_canonical_text`] does; most text needs no escape and is
/// copied in one piece (the canonical writer's hot path).
pub fn push_canonical_text(out: &mut String, text: &str) {
    // memchr scans with SIMD: the assertion's texts are a few KiB per token.
    if memchr::memchr3(b'&', b'<', b'>', text.as_bytes()).is_none()
        && memchr::memchr(b'\r', text.as_bytes()).is_none()
    {
        out.push_str(text);
        return;
    }
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#xD;"),
            other => out.push(other),
        }
    }
}

/// Escapes a double-quoted attribute value as exclusive c14n writes it: `&`, `<`, `"` and TAB,
/// LF, CR as `&#x9;`, `&#xA;`, `&#xD;`; `>` stays as it is.
pub fn escape_canonical_attribute(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    push_canonical_attribute(&mut out, value);
    out
}

/// Appends `value` escaped as [`escape_canonical_attribute`] does, in one piece when nothing
/// needs escaping.
pub fn push_canonical_attribute(out: &mut String, value: &str) {
    if memchr::memchr3(b'&', b'<', b'"', value.as_bytes()).is_none()
        && memchr::memchr3(b'\t', b'\n', b'\r', value.as_bytes()).is_none()
    {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '"' => out.push_str("&quot;"),
            '\t' => out.push_str("&#x9;"),
            '\n' => out.push_str("&#xA;"),
            '\r' => out.push_str("&#xD;"),
            other => out.push(other),
        }
    }
}

/// Parses a complete document into its root element, enforcing `limits`.
pub fn parse<'d>(input: &'d [u8], limits: &Limits) -> Result<Element<'d>, XmlError> {
    if input.len() > limits.max_bytes {
        return Err(XmlError::TooLarge {
            limit: limits.max_bytes,
        });
    }
    let text = std::str::from_utf8(input)
        .map_err(|_| XmlError::Malformed("document is not UTF-8".to_owned()))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    TreeBuilder::new(text, limits).run(&mut NsReader::from_str(text))
}

/// How many distinct namespace URIs one document shares between its names; a token request
/// uses about ten.
const SHARED_NAMESPACES: usize = 16;

/// Builds the tree from reader events with an explicit stack of open elements.
struct TreeBuilder<'l, 'd> {
    /// The whole document, which the tree borrows from.
    document: &'d str,
    limits: &'l Limits,
    open: Vec<Element<'d>>,
    root: Option<Element<'d>>,
    /// The first [`SHARED_NAMESPACES`] distinct namespace URIs met, one shared copy each.
    namespaces: Vec<Arc<str>>,
    elements: usize,
    events_seen: usize,
}

impl<'l, 'd> TreeBuilder<'l, 'd> {
    fn new(document: &'d str, limits: &'l Limits) -> Self {
        Self {
            document,
            limits,
            open: Vec::new(),
            root: None,
            namespaces: Vec::new(),
            elements: 0,
            events_seen: 0,
        }
    }

    fn run(mut self, reader: &mut NsReader<&'d [u8]>) -> Result<Element<'d>, XmlError> {
        loop {
            let (resolved, event) = reader
                .read_resolved_event()
                .map_err(|err| malformed(&err.to_string()))?;
            let namespace = match &event {
                Event::Start(_) | Event::Empty(_) => self.namespace(resolved)?,
                _ => None,
            };
            self.events_seen += 1;
            match event {
                Event::Start(start) => {
                    let element = self.open_element(reader, namespace, &start)?;
                    self.open.push(element);
                }
                Event::Empty(start) => {
                    let element = self.open_element(reader, namespace, &start)?;
                    self.close_element(element)?;
                }
                Event::End(_) => {
                    let element = self
                        .open
                        .pop()
                        .ok_or_else(|| malformed("unmatched end tag"))?;
                    self.close_element(element)?;
                }
                Event::Text(text) => self.append_text(text.xml10_content())?,
                Event::CData(data) => self.append_text(data.xml10_content())?,
                Event::GeneralRef(reference) => {
                    self.append_text(Cow::Owned(resolve_reference(&reference)?))?
                }
                Event::Comment(_) => {}
                Event::Decl(_) if self.events_seen == 1 => {}
                Event::Decl(_) | Event::PI(_) => {
                    return Err(XmlError::ProcessingInstructionForbidden);
                }
                Event::DocType(_) => return Err(XmlError::DoctypeForbidden),
                Event::Eof => return self.finish(),
            }
        }
    }

    fn open_element(
        &mut self,
        reader: &NsReader<&[u8]>,
        namespace: Option<Arc<str>>,
        start: &BytesStart<'_>,
    ) -> Result<Element<'d>, XmlError> {
        if self.root.is_some() {
            return Err(malformed("content after the root element"));
        }
        if self.open.len() >= self.limits.max_depth {
            return Err(XmlError::TooDeep {
                limit: self.limits.max_depth,
            });
        }
        self.elements += 1;
        if self.elements > self.limits.max_elements {
            return Err(XmlError::TooManyElements {
                limit: self.limits.max_elements,
            });
        }
        Ok(Element {
            namespace,
            local: borrow_from(
                self.document,
                Cow::Borrowed(start.local_name().into_inner()),
            ),
            attributes: self.read_attributes(reader, start)?,
            children: Vec::new(),
            text: Cow::Borrowed(""),
        })
    }

    fn read_attributes(
        &mut self,
        reader: &NsReader<&[u8]>,
        start: &BytesStart<'_>,
    ) -> Result<Vec<Attribute<'d>>, XmlError> {
        let mut attributes = Vec::new();
        for (count, raw) in start.attributes().enumerate() {
            if count >= self.limits.max_attributes {
                return Err(XmlError::TooManyAttributes {
                    limit: self.limits.max_attributes,
                });
            }
            let raw = raw.map_err(|err| malformed(&err.to_string()))?;
            let value = attribute_value(&raw)?;
            if raw.key.as_namespace_binding().is_some() {
                continue;
            }
            let (resolved, local) = reader.resolver().resolve_attribute(raw.key);
            attributes.push(Attribute {
                namespace: self.namespace(resolved)?,
                local: borrow_from(self.document, Cow::Borrowed(local.into_inner())),
                value: borrow_from(self.document, value),
            });
        }
        Ok(attributes)
    }

    fn close_element(&mut self, element: Element<'d>) -> Result<(), XmlError> {
        match self.open.last_mut() {
            Some(parent) => parent.children.push(element),
            None if self.root.is_none() => self.root = Some(element),
            None => return Err(malformed("more than one root element")),
        }
        Ok(())
    }

    fn append_text(&mut self, text: Cow<'_, str>) -> Result<(), XmlError> {
        let limit = self.limits.max_text_bytes;
        let document = self.document;
        let Some(current) = self.open.last_mut() else {
            return outside_root_text(&text);
        };
        if current.text.len() + text.len() > limit {
            return Err(XmlError::TextTooLong { limit });
        }
        if current.text.is_empty() {
            current.text = borrow_from(document, text);
        } else {
            current.text.to_mut().push_str(&text);
        }
        Ok(())
    }

    /// The resolved namespace of a name, as the document's shared copy of that URI. Only the
    /// first [`SHARED_NAMESPACES`] distinct URIs are shared: a document that declares more gets
    /// a copy per name for the rest, so no input makes the lookup longer than that.
    fn namespace(&mut self, resolved: ResolveResult<'_>) -> Result<Option<Arc<str>>, XmlError> {
        let uri = match resolved {
            ResolveResult::Bound(namespace) => namespace.into_inner(),
            ResolveResult::Unbound => return Ok(None),
            ResolveResult::Unknown(prefix) => return Err(XmlError::UnboundPrefix(prefix)),
        };
        if let Some(shared) = self.namespaces.iter().find(|shared| ***shared == *uri) {
            return Ok(Some(Arc::clone(shared)));
        }
        let copy: Arc<str> = Arc::from(uri);
        if self.namespaces.len() < SHARED_NAMESPACES {
            self.namespaces.push(Arc::clone(&copy));
        }
        Ok(Some(copy))
    }

    fn finish(self) -> Result<Element<'d>, XmlError> {
        if !self.open.is_empty() {
            return Err(malformed("document ends inside an element"));
        }
        self.root
            .ok_or_else(|| malformed("document has no root element"))
    }
}

/// A piece the reader handed out, as a slice of the document when it lies inside it (names
/// always do, and values and texts that unescaping left alone), else the piece as it is. The
/// reader's pieces borrow from its event, not from the document, so this finds the same bytes
/// in the document by their address.
fn borrow_from<'d>(document: &'d str, piece: Cow<'_, str>) -> Cow<'d, str> {
    let inside = match &piece {
        Cow::Borrowed(text) => {
            let offset = (text.as_ptr() as usize).wrapping_sub(document.as_ptr() as usize);
            offset
                .checked_add(text.len())
                .and_then(|end| document.get(offset..end))
        }
        Cow::Owned(_) => None,
    };
    match inside {
        Some(slice) => Cow::Borrowed(slice),
        None => Cow::Owned(piece.into_owned()),
    }
}

/// Unescapes an attribute value, accepting only predefined entities and character references.
fn attribute_value<'v>(raw: &'v RawAttribute<'_>) -> Result<Cow<'v, str>, XmlError> {
    let mut forbidden = None;
    let value = raw.normalized_value_with(XmlVersion::Implicit1_0, 1, |name| {
        let resolved = resolve_xml_entity(name);
        if resolved.is_none() && forbidden.is_none() {
            forbidden = Some(name.to_owned());
        }
        resolved
    });
    if let Some(name) = forbidden {
        return Err(XmlError::EntityForbidden(name));
    }
    value.map_err(|err| malformed(&err.to_string()))
}

/// Resolves an entity reference met in text: predefined entities and character references only.
fn resolve_reference(reference: &BytesRef<'_>) -> Result<String, XmlError> {
    if reference.is_char_ref() {
        let resolved = reference
            .resolve_char_ref()
            .map_err(|err| malformed(&err.to_string()))?;
        return resolved
            .map(String::from)
            .ok_or_else(|| malformed("invalid character reference"));
    }
    resolve_xml_entity(reference)
        .map(str::to_owned)
        .ok_or_else(|| XmlError::EntityForbidden(reference.to_string()))
}

fn outside_root_text(text: &str) -> Result<(), XmlError> {
    if text.chars().all(|c| matches!(c, ' ' | '\t' | '\r' | '\n')) {
        Ok(())
    } else {
        Err(malformed("text outside the root element"))
    }
}

fn malformed(reason: &str) -> XmlError {
    XmlError::Malformed(reason.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_text_escaping_follows_exclusive_c14n() {
        assert_eq!(
            escape_canonical_text("a&b<c>d\"e'f\r\n\tg"),
            "a&amp;b&lt;c&gt;d\"e'f&#xD;\n\tg"
        );
    }

    #[test]
    fn canonical_attribute_escaping_follows_exclusive_c14n() {
        assert_eq!(
            escape_canonical_attribute("a&b<c>d\"e'f\r\n\tg"),
            "a&amp;b&lt;c>d&quot;e'f&#xD;&#xA;&#x9;g"
        );
    }

    /// Each special character alone is found by the scan that decides whether to escape at all
    /// (a miss would put a raw `<` into signed bytes).
    #[test]
    fn one_special_character_is_enough_to_escape() {
        for (special, entity) in [
            ('&', "&amp;"),
            ('<', "&lt;"),
            ('>', "&gt;"),
            ('\r', "&#xD;"),
        ] {
            let text = format!("{}{special}", "x".repeat(40));
            assert_eq!(
                escape_canonical_text(&text),
                format!("{}{entity}", "x".repeat(40))
            );
        }
        for (special, entity) in [
            ('&', "&amp;"),
            ('<', "&lt;"),
            ('"', "&quot;"),
            ('\t', "&#x9;"),
            ('\n', "&#xA;"),
            ('\r', "&#xD;"),
        ] {
            let value = format!("{special}{}", "y".repeat(40));
            assert_eq!(
                escape_canonical_attribute(&value),
                format!("{entity}{}", "y".repeat(40))
            );
        }
    }

    #[test]
    fn plain_escaping_covers_both_quotes() {
        assert_eq!(escape("a&b<c>d\"e'f"), "a&amp;b&lt;c&gt;d&quot;e&apos;f");
    }

    const ENVELOPE: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="urn:a">
  <s:Header><a:To s:mustUnderstand="1">https://sts.example.com/x?a=1&amp;b=2</a:To></s:Header>
  <s:Body><x:Thing xmlns:x="urn:x" xmlns="urn:default" Id="t1"><Inner>p&amp;ss &lt;&#x41;&#66;&gt; &quot;&apos;</Inner><!-- c --><![CDATA[<raw>]]></x:Thing></s:Body>
</s:Envelope>"#;

    fn parse_default(input: &str) -> Result<Element<'_>, XmlError> {
        parse(input.as_bytes(), &Limits::default())
    }

    #[test]
    fn resolves_namespaces_attributes_and_text() {
        let root = parse_default(ENVELOPE).unwrap();
        assert!(root.is("http://www.w3.org/2003/05/soap-envelope", "Envelope"));
        let header = root
            .child("http://www.w3.org/2003/05/soap-envelope", "Header")
            .unwrap()
            .unwrap();
        let to = header.child("urn:a", "To").unwrap().unwrap();
        assert_eq!(to.text, "https://sts.example.com/x?a=1&b=2");
        assert_eq!(
            to.attribute(
                Some("http://www.w3.org/2003/05/soap-envelope"),
                "mustUnderstand"
            ),
            Some("1")
        );
        let body = root
            .child("http://www.w3.org/2003/05/soap-envelope", "Body")
            .unwrap()
            .unwrap();
        let thing = body.child("urn:x", "Thing").unwrap().unwrap();
        assert_eq!(thing.attribute(None, "Id"), Some("t1"));
        assert_eq!(
            thing.attributes.len(),
            1,
            "namespace declarations are not attributes"
        );
        assert_eq!(thing.text, "<raw>");
        let inner = thing.child("urn:default", "Inner").unwrap().unwrap();
        assert_eq!(inner.text, "p&ss <AB> \"'");
    }

    #[test]
    fn names_values_and_plain_text_borrow_from_the_document() {
        let root = parse_default(
            "<r xmlns='urn:a' id='plain' note='a&amp;b'><c>text</c><d>x&lt;y</d></r>",
        )
        .unwrap();
        assert!(matches!(root.local, Cow::Borrowed("r")));
        let value = |local: &str| {
            &root
                .attributes
                .iter()
                .find(|a| a.local == local)
                .unwrap()
                .value
        };
        assert!(matches!(value("id"), Cow::Borrowed("plain")));
        assert!(matches!(value("note"), Cow::Owned(v) if v == "a&b"));
        assert!(matches!(root.children[0].text, Cow::Borrowed("text")));
        assert!(matches!(&root.children[1].text, Cow::Owned(t) if t == "x<y"));
    }

    #[test]
    fn names_share_one_copy_of_a_namespace_up_to_the_cap() {
        // The root's namespace, then 20 more, each declared and used by two siblings.
        let mut document = String::from("<r xmlns='urn:root'>");
        for i in 0..20 {
            document += &format!("<a xmlns='urn:n{i}'/><b xmlns='urn:n{i}'/>");
        }
        document += "</r>";
        let root = parse_default(&document).unwrap();
        for (i, pair) in root.children.chunks(2).enumerate() {
            let expected = format!("urn:n{i}");
            let (first, second) = (pair[0].namespace.as_ref(), pair[1].namespace.as_ref());
            assert_eq!(first.map(|ns| &**ns), Some(expected.as_str()));
            assert_eq!(second.map(|ns| &**ns), Some(expected.as_str()));
            let shared = Arc::ptr_eq(first.unwrap(), second.unwrap());
            assert_eq!(shared, i + 1 < SHARED_NAMESPACES, "urn:n{i}");
        }
    }

    #[test]
    fn prefixes_do_not_matter() {
        let a = parse_default(r#"<p:r xmlns:p="urn:n"><p:c/></p:r>"#).unwrap();
        let b = parse_default(r#"<r xmlns="urn:n"><q:c xmlns:q="urn:n"></q:c></r>"#).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn child_reports_duplicates_and_absence() {
        let root = parse_default(r#"<r xmlns="urn:n"><c/><c/><d/></r>"#).unwrap();
        assert_eq!(
            root.child("urn:n", "c"),
            Err(XmlError::Duplicate {
                namespace: "urn:n".to_owned(),
                local: "c".to_owned()
            })
        );
        assert_eq!(root.child("urn:n", "e"), Ok(None));
        assert_eq!(root.child("urn:other", "d"), Ok(None));
        assert_eq!(root.children_named("urn:n", "c").count(), 2);
    }

    #[test]
    fn rejects_doctype_even_without_entities() {
        let input = r#"<?xml version="1.0"?><!DOCTYPE r><r/>"#;
        assert_eq!(parse_default(input), Err(XmlError::DoctypeForbidden));
    }

    #[test]
    fn rejects_entity_bomb() {
        let input =
            r#"<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]><r>&b;</r>"#;
        assert_eq!(parse_default(input), Err(XmlError::DoctypeForbidden));
    }

    #[test]
    fn rejects_undefined_entity_in_text() {
        assert_eq!(
            parse_default("<r>a&xxe;b</r>"),
            Err(XmlError::EntityForbidden("xxe".to_owned()))
        );
    }

    #[test]
    fn rejects_undefined_entity_in_attribute() {
        assert_eq!(
            parse_default(r#"<r a="x&xxe;y"/>"#),
            Err(XmlError::EntityForbidden("xxe".to_owned()))
        );
    }

    #[test]
    fn unescapes_attribute_references() {
        let root = parse_default(r#"<r a="&lt;&amp;&#x41;&#66;&quot;"/>"#).unwrap();
        assert_eq!(root.attribute(None, "a"), Some("<&AB\""));
    }

    #[test]
    fn rejects_processing_instructions_but_allows_declaration() {
        assert_eq!(
            parse_default(r#"<?xml-stylesheet href="x"?><r/>"#),
            Err(XmlError::ProcessingInstructionForbidden)
        );
        assert_eq!(
            parse_default(r#"<r><?php evil?></r>"#),
            Err(XmlError::ProcessingInstructionForbidden)
        );
        assert_eq!(
            parse_default(r#"<r/><?xml version="1.0"?>"#),
            Err(XmlError::ProcessingInstructionForbidden)
        );
        assert!(parse_default("\u{feff}<?xml version=\"1.0\"?><r/>").is_ok());
    }

    #[test]
    fn enforces_size_limit() {
        let limits = Limits {
            max_bytes: 10,
            ..Limits::default()
        };
        assert_eq!(
            parse(b"<r>0123456789</r>", &limits),
            Err(XmlError::TooLarge { limit: 10 })
        );
    }

    #[test]
    fn enforces_depth_limit_at_the_boundary() {
        let nested = |depth: usize| "<a>".repeat(depth) + &"</a>".repeat(depth);
        assert!(parse_default(&nested(32)).is_ok());
        assert_eq!(
            parse_default(&nested(33)),
            Err(XmlError::TooDeep { limit: 32 })
        );
    }

    #[test]
    fn very_deep_input_is_refused_without_recursion() {
        let depth = 200_000;
        let input = "<a>".repeat(depth) + &"</a>".repeat(depth);
        let unbounded_size = Limits {
            max_bytes: usize::MAX,
            ..Limits::default()
        };
        assert_eq!(
            parse(input.as_bytes(), &unbounded_size),
            Err(XmlError::TooDeep { limit: 32 })
        );
        assert_eq!(
            parse_default(&input),
            Err(XmlError::TooLarge { limit: 65536 })
        );
    }

    #[test]
    fn enforces_attribute_element_and_text_limits() {
        let limits = Limits {
            max_attributes: 2,
            max_elements: 3,
            max_text_bytes: 4,
            ..Limits::default()
        };
        assert_eq!(
            parse(br#"<r a="1" b="2" c="3"/>"#, &limits),
            Err(XmlError::TooManyAttributes { limit: 2 })
        );
        assert_eq!(
            parse(
                br#"<r xmlns:x="urn:x" xmlns:y="urn:y" xmlns:z="urn:z"/>"#,
                &limits
            ),
            Err(XmlError::TooManyAttributes { limit: 2 })
        );
        assert_eq!(
            parse(b"<r><a/><b/><c/></r>", &limits),
            Err(XmlError::TooManyElements { limit: 3 })
        );
        assert_eq!(
            parse(b"<r>12&amp;45</r>", &limits),
            Err(XmlError::TextTooLong { limit: 4 })
        );
        assert!(parse(b"<r>1234</r>", &limits).is_ok());
    }

    #[test]
    fn rejects_malformed_documents() {
        for input in [
            "",
            "   ",
            "<r>",
            "<r></s>",
            "</r>",
            "<r/><r/>",
            "text<r/>",
            "<r/>text",
            "<p:r/>",
            "<r a=\"1\" a=\"2\"/>",
        ] {
            assert!(parse_default(input).is_err(), "accepted {input:?}");
        }
        assert_eq!(
            parse_default("<p:r/>"),
            Err(XmlError::UnboundPrefix("p".to_owned()))
        );
        assert!(matches!(
            parse(&[0x3c, 0xff, 0x3e], &Limits::default()),
            Err(XmlError::Malformed(_))
        ));
    }

    /// Property-style check: no truncation or byte mutation of a real envelope may panic.
    #[test]
    fn mutated_envelopes_never_panic() {
        let base = ENVELOPE.as_bytes();
        for cut in 0..base.len() {
            let _ = parse(&base[..cut], &Limits::default());
        }
        let replacements = [
            b'<', b'>', b'&', b'"', b':', b'/', b'!', b'?', b';', b'#', 0x00, 0xc3,
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..5000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut mutated = base.to_vec();
            let position = (state % base.len() as u64) as usize;
            mutated[position] = replacements[(state >> 32) as usize % replacements.len()];
            let _ = parse(&mutated, &Limits::default());
        }
    }
}
