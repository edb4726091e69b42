#!/usr/bin/env python3
"""Oracle: classify a fedsts MEX document with MSAL Python's own parser (msal.mex.Mex).

Usage: mex_msal.py DOCUMENT [--soap]
  --soap  DOCUMENT is the SOAP 1.2 GetResponse; its s:Body/wsdl:definitions is handed to Mex.
Prints one JSON object:
  {"msal_version": "...",
   "username_password": {"address": ..., "action": ...} | null,
   "iwa_api": "public" | "policy-ids",
   "iwa": {"address": ..., "action": ...} | null}
"""
import json
import sys
import xml.etree.ElementTree as ET

import msal
from msal.mex import Mex

SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
WSDL = "http://schemas.xmlsoap.org/wsdl/"


def inner_definitions(envelope_text):
    envelope = ET.fromstring(envelope_text)
    definitions = envelope.find("{%s}Body/{%s}definitions" % (SOAP12, WSDL))
    if definitions is None:
        raise SystemExit("no s:Body/wsdl:definitions in the SOAP response")
    return ET.tostring(definitions, encoding="unicode")


def iwa_endpoint(mex):
    """MSAL Python's IWA choice: its public API when this version has one, otherwise its own
    IWA policy detection fed through its endpoint resolution, preferring WS-Trust 1.3 like the
    username/password selection does."""
    public = getattr(mex, "get_wstrust_integrated_windows_auth_endpoint", None)
    if public is not None:
        return "public", public()
    endpoints = mex._get_endpoints(mex._get_bindings(), mex._get_iwa_policy_ids())
    for endpoint in endpoints:
        if endpoint["action"] == Mex.ACTION_13:
            return "policy-ids", endpoint
    return "policy-ids", (endpoints[0] if endpoints else None)


def main():
    path = sys.argv[1]
    soap = "--soap" in sys.argv[2:]
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    mex = Mex(inner_definitions(text) if soap else text)
    iwa_api, iwa = iwa_endpoint(mex)
    print(json.dumps({
        "msal_version": msal.__version__,
        "username_password": mex.get_wstrust_username_password_endpoint(),
        "iwa_api": iwa_api,
        "iwa": iwa,
    }))


if __name__ == "__main__":
    main()
