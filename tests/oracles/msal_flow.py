"""Drives fedsts with MSAL Python's own MEX and WS-Trust code, then verifies every issued
assertion with signxml and xmlsec1 against the configured signing certificate.

Usage: msal_flow.py MEX_URL CA_PEM SIGNING_CERT_PEM USERNAME PASSWORD
Prints one JSON object: per endpoint version, the token type and facts read from the
verified assertion; plus the fault MSAL parses for a wrong password. Exit 0 only if every
check passed.
"""
import json
import subprocess
import sys
import tempfile

import msal.mex
import msal.wstrust_request
import msal.wstrust_response
import requests
from lxml import etree
from signxml import XMLVerifier, SignatureConfiguration, SignatureMethod, DigestAlgorithm

SAML11 = "urn:oasis:names:tc:SAML:1.0:assertion"
AUDIENCE = "urn:federation:MicrosoftOnline"


def verify_signxml(token: bytes, cert_pem: str) -> etree._Element:
    config = SignatureConfiguration(
        expect_references=1,
        signature_methods=frozenset({SignatureMethod.RSA_SHA256}),
        digest_algorithms=frozenset({DigestAlgorithm.SHA256}),
    )
    result = XMLVerifier().verify(token, x509_cert=cert_pem, id_attribute="AssertionID",
                                  expect_config=config)
    return result.signed_xml


def verify_xmlsec1(token: bytes, cert_path: str) -> None:
    with tempfile.NamedTemporaryFile(suffix=".xml") as f:
        f.write(token)
        f.flush()
        subprocess.run(
            ["xmlsec1", "--verify", "--pubkey-cert-pem", cert_path,
             "--id-attr:AssertionID", "urn:oasis:names:tc:SAML:1.0:assertion:Assertion", f.name],
            check=True, capture_output=True)


def facts(signed: etree._Element) -> dict:
    ns = {"saml": SAML11}
    attrs = {a.get("AttributeName"): [v.text for v in a.findall("saml:AttributeValue", ns)]
             for a in signed.iter("{%s}Attribute" % SAML11)}
    return {
        "issuer": signed.get("Issuer"),
        "assertion_id": signed.get("AssertionID"),
        "audience": signed.findtext(".//saml:Audience", namespaces=ns),
        "name_identifier": signed.findtext(".//saml:NameIdentifier", namespaces=ns),
        "authentication_method": signed.find(".//saml:AuthenticationStatement", ns).get("AuthenticationMethod"),
        "attributes": attrs,
    }


def main() -> int:
    mex_url, ca, cert_path, username, password = sys.argv[1:6]
    cert_pem = open(cert_path).read()
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would override session.verify
    session.verify = ca
    endpoint = msal.mex.send_request(mex_url, session)
    out = {"mex_endpoint": endpoint}
    address_13 = endpoint["address"]
    address_2005 = address_13.replace("/trust/13/", "/trust/2005/")
    for version, address, action in [("13", address_13, endpoint["action"]), ("2005", address_2005, None)]:
        result = msal.wstrust_request.send_request(
            username, password, AUDIENCE, address, action, session)
        token = result["token"]
        signed = verify_signxml(token, cert_pem)
        verify_xmlsec1(token, cert_path)
        out[version] = {"type": result["type"], **facts(signed)}
    try:
        msal.wstrust_request.send_request(username, password + "x", AUDIENCE, address_13, None, session)
        out["wrong_password"] = "token issued"
    except RuntimeError as e:
        out["wrong_password"] = str(e)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
