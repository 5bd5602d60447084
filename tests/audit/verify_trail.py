#!/usr/bin/env python3
"""An independent check of Tessera's audit trail, written from docs/audit.md alone.

Usage: verify_trail.py <sqlite file> <checkpoint public key, base64url>

Prints `ok <first>..<last> checkpoints=<n> anchored=<seq or ->` and exits 0 when the trail is
intact; prints `bad <stream> <seq>: <why>` and exits 1 otherwise.
"""

import base64
import hashlib
import json
import sqlite3
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def b64url(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def chain(prev, seq, text):
    return hashlib.sha256(prev + seq.to_bytes(8, "big") + text.encode("utf-8")).digest()


def canonical(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def bad(stream, seq, why):
    print(f"bad {stream} {seq}: {why}")
    sys.exit(1)


def rows(db, stream):
    return db.execute(
        "SELECT seq, prev_hash, hash, text FROM stream_entries WHERE stream = ? ORDER BY seq", (stream,)
    ).fetchall()


def walk(stream, entries, first, prev):
    expected = first
    for seq, stored_prev, stored_hash, text in entries:
        if seq != expected:
            bad(stream, expected, f"missing (next stored is {seq})")
        if bytes(stored_prev) != prev:
            bad(stream, seq, "prev_hash breaks the chain")
        if chain(prev, seq, text) != bytes(stored_hash):
            bad(stream, seq, "hash does not cover the text")
        if canonical(json.loads(text)) != text:
            bad(stream, seq, "text is not in canonical form")
        prev, expected = bytes(stored_hash), seq + 1
    return expected - 1, prev


def main():
    db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
    key = Ed25519PublicKey.from_public_bytes(b64url(sys.argv[2]))
    heads = {s: (seq, bytes(h)) for s, seq, h in db.execute("SELECT stream, last_seq, hash FROM stream_heads")}

    checkpoints = rows(db, "audit-checkpoints")
    last, prev = walk("audit-checkpoints", checkpoints, 1, bytes(32))
    if last and heads.get("audit-checkpoints") != (last, prev):
        bad("audit-checkpoints", last, "not the recorded head")
    vouched = {}
    for seq, _, _, text in checkpoints:
        record = json.loads(text)
        message = f"tessera-audit-checkpoint:v1:{record['seq']}:{record['hash']}".encode()
        try:
            key.verify(b64url(record["signature"]), message)
        except InvalidSignature:
            bad("audit-checkpoints", seq, "signature does not verify")
        vouched[record["seq"]] = bytes.fromhex(record["hash"])

    anchor = db.execute("SELECT first_seq, prev_hash FROM stream_anchors WHERE stream = 'audit'").fetchone()
    first, prev = (1, bytes(32)) if anchor is None else (anchor[0], bytes(anchor[1]))
    if anchor is not None and vouched.get(first - 1) != prev:
        bad("audit", first, "the purge anchor is not a signed checkpoint")
    entries = rows(db, "audit")
    last, prev = walk("audit", entries, first, prev)
    for seq, _, stored_hash, _ in entries:
        if seq in vouched and vouched[seq] != bytes(stored_hash):
            bad("audit", seq, "differs from its signed checkpoint")
    if last > 0 and heads.get("audit") != (last, prev):
        bad("audit", last + 1, "not the recorded head")
    if any(seq > last for seq in vouched):
        bad("audit", last + 1, "missing: a checkpoint covers it")
    print(f"ok {first}..{last} checkpoints={len(vouched)} anchored={first - 1 if anchor else '-'}")


main()
