"""The served OpenAPI document, completed so that it says what the server does: every error a route can
answer, as `application/problem+json`; the bodies routes take or may leave out; the upload's raw bytes.

Litestar derives operations, parameters and schemas from the handlers; what it cannot see (the errors the
service raises, a body read by hand) is added here, once, when the server starts.
"""

from __future__ import annotations

from typing import Any

import msgspec

from flowlab import schemas

PROBLEM = "application/problem+json"
ERRORS = {
    400: "The request is malformed (the field is named)",
    401: "No valid API key or annotator token",
    403: "The key or token may not do this",
    404: "No such resource for this key",
    409: "The item or lease has moved on (e.g. ended, expired)",
    413: "The body is larger than the server accepts",
    415: "The body is not in a type this route takes",
    422: "A value is out of its range or inconsistent (the field is named)",
    503: "The database cannot be written just now; retry after Retry-After seconds",
}
PUBLIC = {"/v1/health"}  # no key needed
OPTIONAL_BODY = {("/v1/tasks/next", "post"), ("/v1/tasks/next-batch", "post")}
RAW_UPLOAD = ("/v1/media", "post")


def complete(doc: dict[str, Any]) -> None:
    """Add what the handlers' signatures do not show to Litestar's generated document, in place."""
    components = doc.setdefault("components", {}).setdefault("schemas", {})
    (problem,), defs = msgspec.json.schema_components([schemas.Problem], ref_template="#/components/schemas/{name}")
    components.update(defs)
    closed = {
        name
        for name, cls in vars(schemas).items()
        if isinstance(cls, type) and issubclass(cls, msgspec.Struct) and cls.__struct_config__.forbid_unknown_fields
    }
    for name, component in components.items():
        if name.rsplit(".", 1)[-1].rsplit("_", 1)[-1] in closed and component.get("type") == "object":
            component["additionalProperties"] = False  # the server refuses unknown fields
    for name, component in components.items():
        if name.endswith("ValidationSetCreate"):  # gold pairs or gold labels, exactly one of them
            component["oneOf"] = [
                {"required": ["pairs"], "properties": {"pairs": {"minItems": 1}, "labels": {"maxItems": 0}}},
                {"required": ["labels"], "properties": {"labels": {"minItems": 1}, "pairs": {"maxItems": 0}}},
            ]
    for path, item in doc.get("paths", {}).items():
        for method, op in item.items():
            if method not in ("get", "post", "put", "patch", "delete", "head"):
                continue
            responses = op.setdefault("responses", {})
            for status, description in ERRORS.items():
                if path in PUBLIC and status != 503:
                    continue
                responses[str(status)] = {"description": description, "content": {PROBLEM: {"schema": problem}}}
            if (path, method) in OPTIONAL_BODY and "requestBody" in op:
                op["requestBody"]["required"] = False
            if (path, method) == ("/v1/tasks/next", "post"):
                responses["204"] = {"description": "No task right now; ask again after X-Poll-Interval seconds"}
            if path.endswith("/events") and "200" in responses:
                # Server-sent events: JSON messages (see docs/http-api.md), typed by their `event:` line.
                responses["200"]["content"] = {"text/event-stream": {"schema": {}}}
            if path.startswith("/media/") and "200" in responses:  # the file as uploaded
                responses["200"] = {
                    "description": "The file, with the type it was uploaded as",
                    "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
                }
            if (path, method) == RAW_UPLOAD:
                op["requestBody"] = {
                    "required": True,
                    "description": "The file's bytes; its type from Content-Type, X-Filename or its contents.",
                    "content": {
                        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                        "image/png": {"schema": {"type": "string", "format": "binary"}},
                    },
                }
