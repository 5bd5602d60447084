"""Authlib's OAuth 2.0 client against Tessera's introspection (RFC 7662) and revocation
(RFC 7009) endpoints, found through the discovery document.

usage: authlib_client.py BASE_URL CLIENT_ID CLIENT_SECRET ACCESS_TOKEN REFRESH_TOKEN
Prints one JSON object with what each call answered.
"""

import json
import sys

import requests
from authlib.integrations.requests_client import OAuth2Session


def main():
    base, client_id, client_secret, access, refresh = sys.argv[1:6]
    metadata = requests.get(base + "/.well-known/openid-configuration", timeout=10).json()
    introspection, revocation = metadata["introspection_endpoint"], metadata["revocation_endpoint"]
    # Discovery names the issuer's URL; these tests reach the node directly.
    introspection = base + introspection[introspection.index("/v1/"):]
    revocation = base + revocation[revocation.index("/v1/"):]
    basic = OAuth2Session(client_id, client_secret, token_endpoint_auth_method="client_secret_basic")
    post = OAuth2Session(client_id, client_secret, token_endpoint_auth_method="client_secret_post")
    wrong = OAuth2Session(client_id, "not-the-secret", token_endpoint_auth_method="client_secret_basic")

    def introspect(session, token, hint=None):
        response = session.introspect_token(introspection, token=token, token_type_hint=hint)
        return {"status": response.status_code, "body": response.json(),
                "cache_control": response.headers.get("Cache-Control")}

    report = {
        "methods": metadata["introspection_endpoint_auth_methods_supported"],
        "access": introspect(basic, access, "access_token"),
        "refresh": introspect(post, refresh, "refresh_token"),
        "refresh_unhinted": introspect(basic, refresh),
        "garbage": introspect(basic, "not-a-token"),
        "wrong_secret": introspect(wrong, access),
    }
    revoked = basic.revoke_token(revocation, token=refresh, token_type_hint="refresh_token")
    report["revoke"] = revoked.status_code
    report["revoke_garbage"] = basic.revoke_token(revocation, token="not-a-token").status_code
    report["access_after"] = introspect(basic, access)
    report["refresh_after"] = introspect(basic, refresh, "refresh_token")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
