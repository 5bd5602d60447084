#!/usr/bin/env python3
"""A webhook receiver for the tests, verifying every request with the `standardwebhooks`
package (an independent implementation of the Standard Webhooks specification).

Usage: receiver.py <port file> <log file> <secret> <failures before success>

Listens on 127.0.0.1 (port 0; the port is written to <port file>). For each webhook-id the
first <failures> attempts are refused (the first with 503, the next with 429 and Retry-After: 1);
later ones are accepted with 204. Every request is appended to <log file> as one JSON line:
{"path", "id", "attempt", "verified", "answered", "body"}.
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

port_file, log_file, secret, failures = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
webhook = Webhook(secret)
attempts = {}
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0"))).decode()
        try:
            webhook.verify(body, dict(self.headers.items()))
            verified = True
        except WebhookVerificationError:
            verified = False
        msg_id = self.headers.get("webhook-id", "")
        with lock:
            attempt = attempts[(self.path, msg_id)] = attempts.get((self.path, msg_id), 0) + 1
            if not verified:
                answered = 400
            elif attempt <= failures:
                answered = 503 if attempt == 1 else 429
            else:
                answered = 204
            with open(log_file, "a") as log:
                line = {"path": self.path, "id": msg_id, "attempt": attempt, "verified": verified,
                        "answered": answered, "body": json.loads(body) if verified else body}
                log.write(json.dumps(line) + "\n")
        self.send_response(answered)
        if answered == 429:
            self.send_header("Retry-After", "1")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(port_file + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
import os

os.rename(port_file + ".tmp", port_file)
server.serve_forever()
