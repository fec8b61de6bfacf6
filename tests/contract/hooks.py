"""Schemathesis hooks for Polymeter's contract test: authenticate every
generated request as its dialect's clients do — HTTP Basic with a Weave key,
and the Alibaba (ACS3-HMAC-SHA256) and Qianfan (bce-auth-v1) operations
signed the way those vendors' SDKs sign — so requests reach the handlers
instead of all stopping at authentication.

The keys come from the environment the test sets: POLYMETER_WEAVE_KEY,
POLYMETER_ALIBABA_ID/SECRET and POLYMETER_QIANFAN_ID/SECRET.
"""

import base64

import datetime
import hashlib
import hmac
import os
import uuid
from urllib.parse import quote, unquote

import requests
import schemathesis
from schemathesis.transport.requests import prepare_query

ALIBABA_PATH = "/api/v1/modelRouter/open/observation/metrics"
QIANFAN_PATH = "/v2/service"


def _encode(text):
    return quote(text, safe="-_.~")


def _canonical_query(sent):
    """The query as the server canonicalises what it received: each pair
    percent-decoded, re-encoded (RFC 3986), sorted."""
    pairs = []
    for part in sent.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        pairs.append(f"{_encode(unquote(key))}={_encode(unquote(value))}")
    return "&".join(sorted(pairs))


def _sent_query(case):
    """The query string exactly as requests will put it on the wire."""
    params = prepare_query(case)
    if params is None:
        return ""
    if isinstance(params, str):
        return params
    return requests.models.RequestEncodingMixin._encode_params(params) or ""


def _hex_hmac(key, message):
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def _host(context):
    base = context.operation.schema.config.base_url or os.environ["POLYMETER_BASE_URL"]
    return base.split("://", 1)[1].split("/", 1)[0]


def _unsigned_headers(case, prefix):
    """The case's headers without any the signature sets (generated values
    of documented headers such as `x-acs-date` are replaced)."""
    return {
        name: value
        for name, value in (case.headers or {}).items()
        if not name.lower().startswith(prefix) and name.lower() not in ("authorization", "host")
    }


def _sign_acs3(case, host):
    key_id = os.environ["POLYMETER_ALIBABA_ID"]
    secret = os.environ["POLYMETER_ALIBABA_SECRET"]
    headers = _unsigned_headers(case, "x-acs-")
    signed = {
        "host": host,
        "x-acs-action": "ModelRouterQueryObservationMetrics",
        "x-acs-version": "20240611",
        "x-acs-date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "x-acs-signature-nonce": uuid.uuid4().hex,
        "x-acs-content-sha256": hashlib.sha256(b"").hexdigest(),
    }
    names = sorted(signed)
    canonical = "\n".join(
        [case.method.upper(), case.path, _canonical_query(_sent_query(case))]
        + [f"{n}:{signed[n].strip()}" for n in names]
        + ["", ";".join(names), signed["x-acs-content-sha256"]]
    )
    to_sign = "ACS3-HMAC-SHA256\n" + hashlib.sha256(canonical.encode()).hexdigest()
    signature = _hex_hmac(secret.encode(), to_sign)
    headers.update(signed)
    headers["Authorization"] = (
        f"ACS3-HMAC-SHA256 Credential={key_id},SignedHeaders={';'.join(names)},Signature={signature}"
    )
    case.headers = headers


def _sign_bce(case, host):
    key_id = os.environ["POLYMETER_QIANFAN_ID"]
    secret = os.environ["POLYMETER_QIANFAN_SECRET"]
    headers = _unsigned_headers(case, "x-bce-")
    timestamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    signed = {"host": host, "x-bce-date": timestamp}
    query = "&".join(
        p for p in _canonical_query(_sent_query(case)).split("&") if not p.lower().startswith("authorization=")
    )
    lines = sorted(f"{_encode(n)}:{_encode(v)}" for n, v in signed.items())
    canonical = "\n".join([case.method.upper(), quote(case.path, safe="/-_.~"), query] + lines)
    signing_key = _hex_hmac(secret.encode(), f"bce-auth-v1/{key_id}/{timestamp}/1800")
    signature = _hex_hmac(signing_key.encode(), canonical)
    headers.update(signed)
    headers["Authorization"] = f"bce-auth-v1/{key_id}/{timestamp}/1800/host;x-bce-date/{signature}"
    case.headers = headers


@schemathesis.hook
def before_call(context, case, kwargs):
    host = _host(context)
    if case.path == ALIBABA_PATH:
        _sign_acs3(case, host)
    elif case.path == QIANFAN_PATH:
        _sign_bce(case, host)
    else:
        token = base64.b64encode(f"api:{os.environ['POLYMETER_WEAVE_KEY']}".encode()).decode()
        case.headers = {**(case.headers or {}), "Authorization": f"Basic {token}"}
