"""Schemathesis hooks for IPM's OpenAPI run (loaded through SCHEMATHESIS_HOOKS).

Schemathesis has no serializer for NDJSON bodies (`application/x-ndjson`, used by
`POST /v1/events` and `PUT .../imports/{id}/data`); this one writes one JSON value per line.
"""
import json

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if isinstance(value, list):
        return "".join(json.dumps(v) + "\n" for v in value).encode()
    return (json.dumps(value) + "\n").encode()
