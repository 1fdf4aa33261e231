"""Hooks of the schemathesis test (`tests/api/openapi.rs`): the rules of campaignd's API that
its OpenAPI document states in words only, because a JSON Schema cannot say them. Each rule is
the server's own (`domain::schedule::check_dates`, `input::validate_products`); here a case that
schemathesis generates as valid by the document is kept inside them, so that the check
`positive_data_acceptance` still judges everything else the document says. Cases generated to
be invalid are left as they are, and must still be refused.
"""

from datetime import datetime, timedelta, timezone

import schemathesis

# A campaign's dates, in the order they must come.
DATES = ("presale_at", "starts_at", "ends_at")


def _positive(case):
    """Whether the case is meant to be valid, its body and every other part (a case of mixed
    modes, negative in one part only, is left as generated)."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return False
    return not any(info.mode.is_negative for info in meta.components.values())


def _dated(body):
    """Dates are relative to now and to each other (`check_dates`): every date given lies
    ahead, a presale comes before the start, which comes before the end, and a presale needs a
    start. Each date given is moved to its own day ahead (10, 20 and 30 days), which keeps them
    in order also against the dates a campaign already holds from earlier cases."""
    if not isinstance(body, dict) or not any(body.get(d) is not None for d in DATES):
        return body
    now = datetime.now(timezone.utc)
    for days, field in zip((10, 20, 30), DATES):
        if body.get(field) is not None:
            body[field] = (now + timedelta(days=days)).isoformat(timespec="seconds")
    if body.get("presale_at") is not None and body.get("starts_at") is None:
        body["starts_at"] = (now + timedelta(days=20)).isoformat(timespec="seconds")
    return body


def _unique_attributes(body):
    """A product's MercadoLibre attributes name each attribute once (`validate_products`): the
    document lists them as an array, and JSON Schema cannot make items unique by one field.
    The first of each id is kept."""
    products = body if isinstance(body, list) else [body]
    for product in products:
        if not isinstance(product, dict):
            continue
        ml = (product.get("marketplaces") or {}).get("mercadolibre")
        if not isinstance(ml, dict) or not isinstance(ml.get("attributes"), list):
            continue
        seen, kept = set(), []
        for attribute in ml["attributes"]:
            key = attribute.get("id") if isinstance(attribute, dict) else None
            if key in seen:
                continue
            seen.add(key)
            kept.append(attribute)
        ml["attributes"] = kept
    return body


@schemathesis.hook
def map_case(context, case):
    if not _positive(case):
        return case
    path, method = case.operation.path, case.operation.method.upper()
    if path in ("/api/campaigns", "/api/campaigns/{id}") and method in ("POST", "PATCH"):
        case.body = _dated(case.body)
    if path.startswith("/api/products") and method in ("POST", "PUT"):
        case.body = _unique_attributes(case.body)
    return case
