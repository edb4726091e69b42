#!/usr/bin/env python3
"""Independent checks of a signed SAML assertion written by fedsts.

Usage: verify_signxml.py XML_PATH CERT_PEM_PATH ID_ATTRIBUTE [--expect-c14n PATH]

1. Verifies the enveloped signature with signxml (RSA-SHA256 / SHA-256 only, one reference),
   trusting exactly the given certificate, and checks that the signed element is an Assertion.
2. With --expect-c14n: takes the (first) Assertion element, removes its ds:Signature child and
   compares lxml's exclusive c14n of it with the bytes in PATH (what fedsts hashed).

Exit status: 0 = all checks passed, 1 = a check failed, 2 = usage error.
"""

import argparse
import copy
import sys

from lxml import etree
from signxml import DigestAlgorithm, SignatureConfiguration, SignatureMethod, XMLVerifier

DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"


def verify_signature(xml: bytes, cert_pem: str, id_attribute: str) -> str | None:
    """Returns None when signxml accepts the signature, else the reason."""
    config = SignatureConfiguration(
        expect_references=1,
        signature_methods=frozenset({SignatureMethod.RSA_SHA256}),
        digest_algorithms=frozenset({DigestAlgorithm.SHA256}),
    )
    try:
        result = XMLVerifier().verify(
            xml, x509_cert=cert_pem, id_attribute=id_attribute, expect_config=config
        )
    except Exception as error:  # signxml raises several exception types on failure
        return f"signxml rejected the signature: {type(error).__name__}: {error}"
    if etree.QName(result.signed_xml).localname != "Assertion":
        return f"signed element is {result.signed_xml.tag}, not an Assertion"
    return None


def check_c14n(xml: bytes, expected: bytes) -> str | None:
    """Returns None when lxml's exclusive c14n of the unsigned assertion equals `expected`."""
    root = etree.fromstring(xml)
    assertions = root.xpath("//*[local-name()='Assertion']")
    if not assertions:
        return "no Assertion element found"
    assertion = copy.deepcopy(assertions[0])
    for signature in assertion.findall(f"{{{DSIG_NS}}}Signature"):
        assertion.remove(signature)
    actual = etree.tostring(assertion, method="c14n", exclusive=True)
    if actual != expected:
        return f"exclusive c14n differs:\n lxml:   {actual!r}\n fedsts: {expected!r}"
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("xml_path")
    parser.add_argument("cert_path")
    parser.add_argument("id_attribute")
    parser.add_argument("--expect-c14n", dest="expect_c14n")
    args = parser.parse_args()

    with open(args.xml_path, "rb") as f:
        xml = f.read()
    with open(args.cert_path, encoding="ascii") as f:
        cert_pem = f.read()

    failures = [verify_signature(xml, cert_pem, args.id_attribute)]
    if args.expect_c14n:
        with open(args.expect_c14n, "rb") as f:
            failures.append(check_c14n(xml, f.read()))
    failures = [failure for failure in failures if failure]
    for failure in failures:
        print(failure, file=sys.stderr)
    if failures:
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
