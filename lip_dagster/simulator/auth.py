"""Credentials the simulator issues and the checks its token endpoints apply.

The checks follow VENDORS.md so an adapter that passes here builds requests the real
vendor accepts: Okta's private_key_jwt client assertion (§1) and Google's service-account
JWT bearer grant (§4). Issued access tokens expire, so token caching and refresh-on-401
paths can be tested.
"""

from __future__ import annotations

import base64
import secrets
import string
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from lip_dagster.simulator.generators import ORG_DOMAIN

OKTA_SCOPE = "okta.logs.read"
GOOGLE_SCOPE = "https://www.googleapis.com/auth/admin.reports.audit.readonly"
JWT_BEARER_ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLOCK_SKEW_S = 5  # tolerated client clock drift for exp upper bounds and iat

_ALNUM = string.ascii_letters + string.digits


def _rand(alphabet: str, n: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def new_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
# Okta's private_key_jwt accepts RS256/384/512 for an RSA key and ES256/384/512 for an
# EC one (VENDORS.md §1); which family is allowed follows the key registered for the app
RSA_ALGORITHMS = ["RS256", "RS384", "RS512"]
EC_ALGORITHMS = ["ES256", "ES384", "ES512"]


def private_pem(key: SigningKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@dataclass
class Credentials:
    """Everything secret the simulator hands out, generated fresh at start."""

    okta_api_token: str
    okta_client_id: str
    okta_key: SigningKey
    onepassword_token: str
    onepassword_token_uuid: str
    slack_token: str
    google_client_email: str
    google_client_id: str
    google_key_id: str
    google_key: rsa.RSAPrivateKey
    google_admin_email: str
    google_project: str
    _pem_cache: dict[str, str] = field(default_factory=dict)

    @classmethod
    def generate(cls, okta_key_type: str = "rsa") -> Credentials:
        project = "lip-sim-" + _rand(string.ascii_lowercase + string.digits, 6)
        op_uuid = _rand("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 26)
        now = int(time.time())
        op_header = {
            "alg": "ES256",
            "kid": _rand(string.ascii_lowercase + string.digits, 26),
            "typ": "JWT",
        }
        op_claims = {
            "1password.com/auuid": _rand("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 26),
            "1password.com/token": _rand(_ALNUM, 32),
            "1password.com/fts": ["auditevents", "itemusages", "signinattempts"],
            "aud": ["com.1password.streamingservice"],
            "sub": op_uuid,
            "iat": now,
            "iss": "com.1password.b5",
            "jti": _rand(string.ascii_lowercase + string.digits, 26),
        }
        op_token = ".".join(
            (
                _b64url(orjson.dumps(op_header)),
                _b64url(orjson.dumps(op_claims)),
                _b64url(secrets.token_bytes(64)),
            )
        )
        digits = string.digits
        return cls(
            okta_api_token="00" + _rand(_ALNUM + "-_", 40),
            okta_client_id="0oa" + _rand(_ALNUM, 17),
            okta_key=(
                ec.generate_private_key(ec.SECP256R1()) if okta_key_type == "ec" else new_rsa_key()
            ),
            onepassword_token=op_token,
            onepassword_token_uuid=op_uuid,
            slack_token=(
                f"xoxp-{_rand(digits, 13)}-{_rand(digits, 13)}-{_rand(digits, 13)}-"
                f"{secrets.token_hex(16)}"
            ),
            google_client_email=f"lip-reports@{project}.iam.gserviceaccount.com",
            google_client_id=_rand(digits, 21),
            google_key_id=secrets.token_hex(20),
            google_key=new_rsa_key(),
            google_admin_email=f"admin@{ORG_DOMAIN}",
            google_project=project,
        )

    def _pem(self, name: str, key: SigningKey) -> str:
        if name not in self._pem_cache:
            self._pem_cache[name] = private_pem(key)
        return self._pem_cache[name]

    def service_account_json(self, token_uri: str) -> str:
        """A service-account key file as the Google Cloud console downloads it, with
        ``token_uri`` pointing at the simulator."""
        email = self.google_client_email
        return orjson.dumps(
            {
                "type": "service_account",
                "project_id": self.google_project,
                "private_key_id": self.google_key_id,
                "private_key": self._pem("google", self.google_key),
                "client_email": email,
                "client_id": self.google_client_id,
                "auth_uri": "https://accounts.google.com/o/oauth2/auth",
                "token_uri": token_uri,
                "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
                "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/"
                + email.replace("@", "%40"),
                "universe_domain": "googleapis.com",
            }
        ).decode()

    def as_dict(self, base_url: str) -> dict[str, str]:
        """Secret name -> value; the names are what adapters look up in the store."""
        return {
            "okta/api-token": self.okta_api_token,
            "okta/client-id": self.okta_client_id,
            "okta/private-key": self._pem("okta", self.okta_key),
            "onepassword/token": self.onepassword_token,
            "slack/token": self.slack_token,
            "google/service-account": self.service_account_json(f"{base_url}/google/token"),
            "google/admin-email": self.google_admin_email,
        }


@dataclass(frozen=True)
class IssuedToken:
    expires_at: float
    scope: str
    subject: str
    admin: bool = True


class TokenStore:
    """Access tokens handed out by a token endpoint, with their expiry."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, IssuedToken] = {}
        self.issued = 0

    def issue(self, token: str, ttl_s: float, scope: str, subject: str, admin: bool = True) -> None:
        with self._lock:
            now = time.time()
            # drop expired ones so a long demo run does not grow without bound
            if len(self._tokens) > 1000:
                self._tokens = {k: v for k, v in self._tokens.items() if v.expires_at > now}
            self._tokens[token] = IssuedToken(now + ttl_s, scope, subject, admin)
            self.issued += 1

    def check(self, token: str) -> IssuedToken | None:
        with self._lock:
            info = self._tokens.get(token)
        if info is None or info.expires_at <= time.time():
            return None
        return info

    def expire_all(self) -> None:
        with self._lock:
            self._tokens.clear()


class AssertionRejected(Exception):
    """A client assertion was refused; ``str()`` is the vendor's error_description."""


class JtiCache:
    """Okta refuses a client assertion whose ``jti`` was already used."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, float] = {}

    def use(self, jti: str, exp: float) -> bool:
        with self._lock:
            now = time.time()
            if len(self._seen) > 10_000:
                self._seen = {k: v for k, v in self._seen.items() if v > now}
            if jti in self._seen:
                return False
            self._seen[jti] = exp
            return True


def _decode_signed(
    assertion: str, key: SigningKey, algorithms: list[str], bad_signature: str
) -> dict[str, Any]:
    try:
        claims = jwt.decode(
            assertion,
            key.public_key(),
            algorithms=algorithms,
            options={
                "verify_aud": False,
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
                "verify_iss": False,
                "verify_sub": False,
                "verify_jti": False,
            },
        )
    except jwt.InvalidSignatureError as exc:
        raise AssertionRejected(bad_signature) from exc
    except jwt.InvalidAlgorithmError as exc:
        raise AssertionRejected(bad_signature) from exc
    except jwt.PyJWTError as exc:
        raise AssertionRejected(f"The JWT could not be parsed: {exc}") from exc
    if not isinstance(claims, dict):
        raise AssertionRejected("The JWT payload is not a JSON object.")
    return claims


def _int_claim(claims: dict[str, Any], name: str) -> int | None:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value)


def verify_okta_assertion(
    assertion: str,
    *,
    client_id: str,
    key: SigningKey,
    audiences: set[str],
    jti_cache: JtiCache,
) -> None:
    """Okta private_key_jwt rules (VENDORS.md §1): RS256/384/512 by a registered RSA key,
    ES256/384/512 by an EC one,
    ``iss`` == ``sub`` == client id, ``aud`` == the token URL invoked, ``exp`` present,
    in the future and at most one hour ahead, single-use ``jti`` when present."""
    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.PyJWTError as exc:
        raise AssertionRejected("The client_assertion is not a well-formed JWT.") from exc
    algorithms = EC_ALGORITHMS if isinstance(key, ec.EllipticCurvePrivateKey) else RSA_ALGORITHMS
    if header.get("alg") not in algorithms:
        raise AssertionRejected(
            "The client_assertion signature algorithm is not supported for this client."
        )
    claims = _decode_signed(
        assertion, key, algorithms, "The client_assertion signature is invalid."
    )
    if claims.get("iss") != client_id or claims.get("sub") != client_id:
        raise AssertionRejected(
            "The client_assertion token's 'iss' and 'sub' claims must be the client_id."
        )
    aud = claims.get("aud")
    if not isinstance(aud, str) or aud not in audiences:
        raise AssertionRejected(
            "The audience claim for client_assertion must be the endpoint invoked for the request."
        )
    now = time.time()
    exp = _int_claim(claims, "exp")
    if exp is None:
        raise AssertionRejected("The client_assertion token must contain an 'exp' claim.")
    if exp <= now:
        raise AssertionRejected("The client_assertion token is expired.")
    if exp > now + 3600 + CLOCK_SKEW_S:
        raise AssertionRejected(
            "The client_assertion token has an expiration too far into the future."
        )
    iat = _int_claim(claims, "iat")
    if iat is not None and iat > now + CLOCK_SKEW_S:
        raise AssertionRejected("The client_assertion token was issued in the future.")
    jti = claims.get("jti")
    if jti is not None and not jti_cache.use(str(jti), float(exp)):
        raise AssertionRejected("The client_assertion token has already been used.")


def verify_google_assertion(
    assertion: str,
    *,
    client_email: str,
    key_id: str,
    key: rsa.RSAPrivateKey,
    audience: str,
) -> dict[str, Any]:
    """Google service-account JWT rules (VENDORS.md §4): header alg RS256 (``kid``, when
    sent, names the key), ``iss`` = client_email, ``scope`` includes the Reports audit
    scope, ``aud`` = token_uri, ``sub`` present, ``iat``/``exp`` epoch seconds at most an
    hour apart and not expired. Returns the claims."""
    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.PyJWTError as exc:
        raise AssertionRejected("Invalid JWT: could not be parsed.") from exc
    if header.get("alg") != "RS256":
        raise AssertionRejected("Invalid JWT: unsupported algorithm, expected RS256.")
    kid = header.get("kid")
    if kid is not None and kid != key_id:
        raise AssertionRejected("Invalid JWT Signature.")
    claims = _decode_signed(assertion, key, ["RS256"], "Invalid JWT Signature.")
    if claims.get("iss") != client_email:
        raise AssertionRejected("Invalid JWT: iss is not a known service account.")
    scope = claims.get("scope")
    if not isinstance(scope, str) or GOOGLE_SCOPE not in scope.split():
        raise AssertionRejected(f"Invalid JWT: scope must include {GOOGLE_SCOPE}.")
    if claims.get("aud") != audience:
        raise AssertionRejected(
            f"Invalid JWT: Failed audience check. The right audience is {audience}"
        )
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise AssertionRejected("Invalid JWT: sub (the impersonated user) is required.")
    iat, exp = _int_claim(claims, "iat"), _int_claim(claims, "exp")
    now = time.time()
    short_lived = (
        "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable "
        "timeframe. Check your iat and exp values in the JWT claim."
    )
    if iat is None or exp is None or exp - iat > 3600 or exp <= now:
        raise AssertionRejected(short_lived)
    if iat > now + CLOCK_SKEW_S:
        raise AssertionRejected(short_lived)
    return claims


def new_okta_access_token(base_url: str, client_id: str, ttl_s: int) -> str:
    """Okta's org authorization server issues JWT access tokens; the simulator's look
    the same (signed with a throwaway key) but are checked by lookup."""
    now = int(time.time())
    claims = {
        "ver": 1,
        "jti": "AT." + _rand(_ALNUM + "-_", 43),
        "iss": f"{base_url}/okta",
        "aud": f"{base_url}/okta",
        "iat": now,
        "exp": now + ttl_s,
        "cid": client_id,
        "scp": [OKTA_SCOPE],
        "sub": client_id,
    }
    return jwt.encode(
        claims, secrets.token_bytes(32), algorithm="HS256", headers={"kid": _rand(_ALNUM, 43)}
    )


def new_google_access_token() -> str:
    return "ya29.c." + _rand(_ALNUM + "-_", 150)
