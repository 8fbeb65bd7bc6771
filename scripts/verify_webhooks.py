#!/usr/bin/env python3
"""Verifies captured webhook requests with the official `standardwebhooks` library.

Input: JSON lines `{"secret": "whsec_…", "headers": {...}, "body": "…"}`. Every request must
verify; for each, a tampered body and a stale timestamp must FAIL. Exit 0 only if all hold.
"""
import json
import sys
import time

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def main(path: str) -> int:
    n = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            item = json.loads(line)
            wh = Webhook(item["secret"])
            headers = item["headers"]
            body = item["body"]
            wh.verify(body, headers)  # raises on failure
            try:
                wh.verify(body + " ", headers)
                print("a tampered body verified", file=sys.stderr)
                return 1
            except WebhookVerificationError:
                pass
            stale = dict(headers)
            stale["webhook-timestamp"] = str(int(time.time()) - 3600)
            try:
                wh.verify(body, stale)
                print("a stale timestamp verified", file=sys.stderr)
                return 1
            except WebhookVerificationError:
                pass
            n += 1
    if n == 0:
        print("no requests to verify", file=sys.stderr)
        return 1
    print(f"verified {n} requests")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
