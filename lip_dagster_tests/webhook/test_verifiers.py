"""Each verifier accepts exactly what its vendor sends and refuses the rest, failing
closed, comparing in constant time, and never echoing a secret or a header value."""

from __future__ import annotations

import base64
import hashlib
import hmac

import orjson
import pytest

from lip_dagster.webhook.errors import WebhookRejected
from lip_dagster.webhook.verifiers import (
    BasicAuthVerifier,
    GitHubVerifier,
    HeaderMapVerifier,
    HmacTimestampVerifier,
    OktaEventHookVerifier,
    SecretRef,
    build_verifier,
)

from .conftest import MemorySecrets, fixture

GITHUB_VECTOR_SECRET = "It's a Secret to Everybody"
GITHUB_VECTOR_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def ref(value: str, name: str = "x/secret") -> SecretRef:
    return SecretRef(MemorySecrets({name: value}), name)


def refused(verify, *args) -> WebhookRejected:  # type: ignore[no-untyped-def]
    with pytest.raises(WebhookRejected) as info:
        verify(*args)
    return info.value


# ------------------------------------------------------------------------- GitHub


def test_github_published_test_vector_is_accepted() -> None:
    v = GitHubVerifier(ref(GITHUB_VECTOR_SECRET))
    v.verify({"x-hub-signature-256": GITHUB_VECTOR_SIGNATURE}, b"Hello, World!")


@pytest.mark.parametrize(
    ("body", "signature"),
    [
        (b"Hello, World?", GITHUB_VECTOR_SIGNATURE),  # body changed in transit
        (b"Hello, World!", GITHUB_VECTOR_SIGNATURE[:-1] + "0"),  # signature changed
        (b"Hello, World!", GITHUB_VECTOR_SIGNATURE.upper()),  # not GitHub's lower-case hex
    ],
)
def test_github_wrong_signature_is_refused(body: bytes, signature: str) -> None:
    v = GitHubVerifier(ref(GITHUB_VECTOR_SECRET))
    err = refused(v.verify, {"x-hub-signature-256": signature}, body)
    assert err.status == 401


def test_github_missing_signature_is_refused() -> None:
    err = refused(GitHubVerifier(ref(GITHUB_VECTOR_SECRET)).verify, {}, b"Hello, World!")
    assert err.status == 401 and "X-Hub-Signature-256" in err.reason


def test_github_sha1_only_is_refused_even_when_valid() -> None:
    body = b"Hello, World!"
    sha1 = "sha1=" + hmac.new(GITHUB_VECTOR_SECRET.encode(), body, hashlib.sha1).hexdigest()
    err = refused(GitHubVerifier(ref(GITHUB_VECTOR_SECRET)).verify, {"x-hub-signature": sha1}, body)
    assert err.status == 401 and "SHA-1" in err.reason


# --------------------------------------------------------------------------- Okta


def test_okta_verification_challenge_is_echoed_after_checking_auth() -> None:
    req = fixture("okta/event_hook_verification_request.json")
    headers = {k.lower(): v for k, v in req["headers"].items()}
    v = OktaEventHookVerifier(ref("my-shared-secret"))
    assert v.challenge(headers) == {"verification": "Me_rShK8JHsTnbyYrWXCEoMGbM_zsZ6k0hLPZ_Pg"}
    wrong = OktaEventHookVerifier(ref("another-secret"))
    assert refused(wrong.challenge, headers).status == 401


def test_okta_shared_secret_in_a_configured_header() -> None:
    v = OktaEventHookVerifier(ref("s3cr3t"), header="X-Okta-Hook-Key")
    v.verify({"x-okta-hook-key": "s3cr3t"}, b"")
    assert "X-Okta-Hook-Key" in refused(v.verify, {"authorization": "s3cr3t"}, b"").reason
    assert refused(v.verify, {"x-okta-hook-key": "s3cr3t "}, b"").status == 401


# --------------------------------------------------------------------------- Jamf


def test_jamf_header_map_needs_every_header() -> None:
    secret = orjson.dumps({"Authorization": "Bearer abc", "X-Token": "t0k"}).decode()
    v = HeaderMapVerifier(ref(secret))
    v.verify({"authorization": "Bearer abc", "x-token": "t0k"}, b"")
    assert refused(v.verify, {"authorization": "Bearer abc"}, b"").status == 401
    assert refused(v.verify, {"authorization": "Bearer abc", "x-token": "nope"}, b"").status == 401


def test_jamf_header_map_secret_that_is_not_a_map_fails_closed_as_our_fault() -> None:
    v = HeaderMapVerifier(ref("just-a-string"))
    err = refused(v.verify, {"authorization": "just-a-string"}, b"")
    assert err.status == 503 and "just-a-string" not in err.reason


def test_jamf_basic_auth() -> None:
    v = BasicAuthVerifier(ref("jamf:pa:ss"))
    good = "Basic " + base64.b64encode(b"jamf:pa:ss").decode()
    v.verify({"authorization": good}, b"")
    bad = "Basic " + base64.b64encode(b"jamf:wrong").decode()
    assert refused(v.verify, {"authorization": bad}, b"").status == 401
    assert refused(v.verify, {"authorization": "Basic !!!"}, b"").status == 401
    assert refused(v.verify, {"authorization": "Bearer x"}, b"").status == 401


# ---------------------------------------------------------------- generic HMAC


def signed(secret: str, ts: int, body: bytes) -> dict[str, str]:
    mac = hmac.new(secret.encode(), str(ts).encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"x-lip-timestamp": str(ts), "x-lip-signature": "sha256=" + mac}


def test_hmac_with_a_signed_timestamp_refuses_replays() -> None:
    now = [1_800_000_000.0]
    v = HmacTimestampVerifier(ref("k3y"), tolerance_seconds=300, clock=lambda: now[0])
    body = b'{"id": 1}'
    headers = signed("k3y", 1_800_000_000, body)
    v.verify(headers, body)
    # the same request again inside the window: a replay
    assert "replay" in refused(v.verify, headers, body).reason
    # a captured request replayed an hour later
    now[0] += 3600
    fresh = HmacTimestampVerifier(ref("k3y"), tolerance_seconds=300, clock=lambda: now[0])
    assert "replayed" in refused(fresh.verify, headers, body).reason
    # the signature covers the timestamp: moving it forward breaks the signature
    moved = {**headers, "x-lip-timestamp": str(int(now[0]))}
    assert refused(fresh.verify, moved, body).status == 401


def test_hmac_missing_or_malformed_headers_are_refused() -> None:
    v = HmacTimestampVerifier(ref("k3y"))
    assert refused(v.verify, {}, b"{}").status == 401
    assert refused(v.verify, {"x-lip-timestamp": "soon", "x-lip-signature": "x"}, b"").status == 401


def test_hmac_memory_of_signatures_is_bounded_and_never_forgets_a_replayable_one() -> None:
    """Full, the memory used to forget its oldest signature while that signature's
    timestamp was still accepted: above ~20,000 deliveries a minute on one source, a
    captured request could be replayed. It now refuses new requests (503, retried by
    the sender) until signatures leave the window, and still spots the replay."""
    now = [1_800_000_000.0]
    v = HmacTimestampVerifier(ref("k"), clock=lambda: now[0], max_remembered=10)
    requests = [(signed("k", int(now[0]), str(i).encode()), str(i).encode()) for i in range(11)]
    for headers, body in requests[:10]:
        v.verify(headers, body)
    assert refused(v.verify, *requests[10]).status == 503  # full: not forgetting any
    assert refused(v.verify, *requests[0]).status == 401  # the replay is still refused
    now[0] += 300  # the last second the first ten are accepted: still remembered
    assert refused(v.verify, *requests[0]).status == 401
    now[0] += 1  # their timestamps have left the window: forgotten, and refused by it
    assert refused(v.verify, *requests[0]).status == 401
    fresh = signed("k", int(now[0]), b"new")
    v.verify(fresh, b"new")
    assert len(v._seen) == 1


# ------------------------------------------------------------ rotation, secrecy


def test_a_rotated_secret_is_picked_up_and_bad_requests_do_not_hammer_the_store() -> None:
    store = MemorySecrets({"github/webhook-secret": "old"})
    v = build_verifier({"type": "github", "secret": "github/webhook-secret"}, store)
    body = b"{}"

    def sig(secret: str) -> dict[str, str]:
        mac = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        return {"x-hub-signature-256": "sha256=" + mac}

    v.verify(sig("old"), body)
    store.values["github/webhook-secret"] = "new"  # rotated in the store, still cached
    v.verify(sig("new"), body)  # mismatch -> one reload -> accepted
    fetches = store.fetches
    for _ in range(20):
        with pytest.raises(WebhookRejected):
            v.verify(sig("forged"), body)
    assert store.fetches == fetches, "a flood of bad signatures reloaded the secret"


def test_a_missing_secret_fails_closed_with_503_naming_only_the_secret() -> None:
    v = build_verifier({"type": "header", "secret": "nope/none"}, MemorySecrets({}))
    err = refused(v.verify, {"authorization": "anything"}, b"")
    assert err.status == 503 and "nope/none" in err.reason and "anything" not in err.reason


@pytest.mark.parametrize("kind", ["okta_event_hook", "github", "header", "basic", "hmac"])
def test_secrets_and_header_values_never_reach_reprs_or_reasons(kind: str) -> None:
    secret = "SUPERSECRETVALUE"
    v = build_verifier({"type": kind, "secret": "a/b"}, MemorySecrets({"a/b": secret}))
    sent = "Basic " + base64.b64encode(b"SENTVALUE").decode() if kind == "basic" else "SENTVALUE"
    headers = {
        "authorization": sent,
        "x-hub-signature-256": "sha256=SENTVALUE",
        "x-lip-timestamp": "1",
        "x-lip-signature": "SENTVALUE",
    }
    err = refused(v.verify, headers, b"body")
    for text in (repr(v), repr(v.secret), str(err), err.reason):
        assert secret not in text and "SENTVALUE" not in text
