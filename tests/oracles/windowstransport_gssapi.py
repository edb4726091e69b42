#!/usr/bin/env python3
"""Oracle: POST an RST to a windowstransport endpoint with requests-gssapi (SPNEGO, mutual
authentication REQUIRED, so the server's WWW-Authenticate token is verified by GSSAPI).

Usage: windowstransport_gssapi.py URL CA_FILE BODY_FILE
Environment: KRB5_CONFIG and KRB5CCNAME point at the test realm and a credential cache.
Prints one JSON object: {"status": int, "body": str}
"""
import json
import sys

import requests
from requests_gssapi import REQUIRED, HTTPSPNEGOAuth


def main():
    url, ca_file, body_file = sys.argv[1:4]
    with open(body_file, "rb") as handle:
        body = handle.read()
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would override session.verify
    session.verify = ca_file
    response = session.post(
        url,
        data=body,
        headers={"Content-Type": "application/soap+xml; charset=utf-8"},
        auth=HTTPSPNEGOAuth(mutual_authentication=REQUIRED),
        timeout=30,
    )
    print(json.dumps({"status": response.status_code, "body": response.text}))


if __name__ == "__main__":
    main()
