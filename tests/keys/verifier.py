"""An independent verifier with a cached JWK Set, run through scheduled key rotations.

Logs in round-robin on every node, and keeps verifying every token it holds, until the token
expires, with PyJWT against a key set that PyJWKClient caches for `lifespan` seconds and that
is looked up without any refetch on a miss: a kid missing from the cached set is counted, never
papered over. Each node's tokens are checked with another node's cached set.

usage: verifier.py URLS EMAIL PASSWORD SECONDS LIFESPAN ISSUER AUDIENCE
Prints one JSON object: verified, misses, kids, logins.
"""

import json
import sys
import time
import urllib.request

import jwt
from jwt import PyJWKClient


def login(url, email, password):
    request = urllib.request.Request(
        url + "/v1/login",
        data=json.dumps({"email": email, "password": password}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)["access_token"]


def main():
    urls, email, password = sys.argv[1].split(","), sys.argv[2], sys.argv[3]
    seconds, lifespan, issuer, audience = float(sys.argv[4]), float(sys.argv[5]), sys.argv[6], sys.argv[7]
    clients = [PyJWKClient(url + "/.well-known/jwks.json", cache_jwk_set=True, lifespan=lifespan) for url in urls]
    held = []  # (token, exp, node that issued it)
    verified, misses, kids, logins = 0, [], set(), 0
    deadline = time.time() + seconds
    turn = 0
    while time.time() < deadline:
        node = turn % len(urls)
        token = login(urls[node], email, password)
        logins += 1
        held.append((token, jwt.decode(token, options={"verify_signature": False})["exp"], node))
        now = time.time()
        held = [h for h in held if h[1] - now > 0.5]
        for token, _, issued_by in held:
            kid = jwt.get_unverified_header(token)["kid"]
            kids.add(kid)
            cached = clients[(issued_by + 1) % len(urls)].get_jwk_set()
            key = next((k for k in cached.keys if k.key_id == kid), None)
            if key is None:
                misses.append({"kid": kid, "cached": [k.key_id for k in cached.keys], "at": now})
                continue
            jwt.decode(token, key.key, algorithms=["EdDSA"], audience=audience, issuer=issuer)
            verified += 1
        turn += 1
        time.sleep(0.2)
    print(json.dumps({"verified": verified, "misses": misses, "kids": sorted(kids), "logins": logins}))


if __name__ == "__main__":
    main()
