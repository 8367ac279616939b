"""Synthetic, vendor-shaped audit events for the local vendor simulator and benchmarks.

Every generator follows the shapes of VENDORS.md §1-§4 and adds the variety real tenants
show (several event types, actors, outcomes, clients, geographies, optional and null
fields), because adapters and the lake must be exercised against heterogeneous records,
not against one repeated template.

Two layers:

* ``okta_events`` / ``slack_events`` / ``onepassword_events`` / ``google_events``: public
  helpers returning plain event dicts, for tests and benchmarks.
* ``generate(vendor, endpoint, n, start_ns, end_ns, rng)``: used by the simulator; returns
  ``GenEvent`` triples ``(sort_ns, persist_ns, event)`` where ``sort_ns`` is the event's
  own timestamp exactly as rendered (the value time filters compare against) and
  ``persist_ns`` is when the vendor stored it (differs from ``sort_ns`` for Okta, whose
  ``published`` can lag persistence by a few seconds).

Generation is tuned for speed (``okta_events`` builds > 20k events/s) because benchmarks
create hundreds of thousands of events: pools are built once per process, randomness comes
from one bound ``random()`` call per decision, and timestamps reuse a per-second prefix.
Every call builds fresh nested dicts so a caller mutating one event never changes another.
"""

from __future__ import annotations

import base64
import gc
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

Event = dict[str, Any]
GenEvent = tuple[int, int, Event]

NS = 1_000_000_000
ORG_DOMAIN = "example.com"
ORG_NAME = "Example Corp"
OKTA_DOMAIN = "example.okta.com"
GOOGLE_CUSTOMER_ID = "C03az79cb"
SLACK_ENTERPRISE = ("E0AB12CD3", ORG_NAME, "example-corp")

VENDORS: dict[str, tuple[str, ...]] = {
    "okta": ("logs",),
    "onepassword": ("auditevents", "itemusages", "signinattempts"),
    "slack": ("logs",),
    "google_workspace": ("admin", "login", "drive", "token"),
}

_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

# --------------------------------------------------------------------------- pools

_FIRST = (
    "Ada",
    "Grace",
    "Alan",
    "Barbara",
    "Claude",
    "Donald",
    "Edsger",
    "Frances",
    "Guido",
    "Hedy",
    "Ivan",
    "Jean",
    "Ken",
    "Linus",
    "Margaret",
    "Niklaus",
    "Ole",
    "Radia",
    "Shafi",
    "Tim",
    "Whitfield",
    "Xiao",
    "Yukihiro",
    "Zhang",
    "Amara",
    "Bjarne",
    "Chidi",
    "Dagny",
    "Emeka",
    "Farah",
    "Gita",
    "Hiro",
    "Ines",
    "Jonas",
    "Kavya",
    "Lucia",
    "Mateo",
    "Noor",
    "Olu",
    "Priya",
)
_LAST = (
    "Lovelace",
    "Hopper",
    "Turing",
    "Liskov",
    "Shannon",
    "Knuth",
    "Dijkstra",
    "Allen",
    "van Rossum",
    "Lamarr",
    "Sutherland",
    "Sammet",
    "Thompson",
    "Torvalds",
    "Hamilton",
    "Wirth",
    "Dahl",
    "Perlman",
    "Goldwasser",
    "Berners-Lee",
    "Diffie",
    "Chen",
    "Matsumoto",
    "Wei",
    "Okafor",
    "Stroustrup",
    "Nwosu",
    "Berg",
    "Eze",
    "Haddad",
    "Rao",
    "Tanaka",
    "Moreau",
    "Lind",
    "Iyer",
    "Ferrari",
    "Garcia",
    "Rahman",
    "Adeyemi",
    "Sharma",
)

# city, state, country, country code, postal code, lat, lon, ASN, AS org, ISP, domain,
# first two IPv4 octets
_GEO: tuple[tuple[Any, ...], ...] = (
    (
        "San Francisco",
        "California",
        "United States",
        "US",
        "94107",
        37.7697,
        -122.3933,
        7922,
        "comcast",
        "comcast cable communications llc",
        "comcast.net",
        "73.158",
    ),
    (
        "New York",
        "New York",
        "United States",
        "US",
        "10001",
        40.7484,
        -73.9967,
        701,
        "verizon",
        "verizon business",
        "verizon.net",
        "108.41",
    ),
    (
        "Austin",
        "Texas",
        "United States",
        "US",
        "78701",
        30.2711,
        -97.7437,
        7018,
        "at&t",
        "at&t corp.",
        "att.net",
        "99.109",
    ),
    (
        "Seattle",
        "Washington",
        "United States",
        "US",
        "98101",
        47.6101,
        -122.3344,
        20115,
        "charter",
        "charter communications",
        "spectrum.com",
        "24.16",
    ),
    (
        "Chicago",
        "Illinois",
        "United States",
        "US",
        "60601",
        41.8858,
        -87.6181,
        7922,
        "comcast",
        "comcast cable communications llc",
        "comcast.net",
        "98.227",
    ),
    (
        "Toronto",
        "Ontario",
        "Canada",
        "CA",
        "M5V",
        43.6426,
        -79.3871,
        812,
        "rogers",
        "rogers communications canada inc.",
        "rogers.com",
        "99.230",
    ),
    (
        "London",
        "England",
        "United Kingdom",
        "GB",
        "EC1A",
        51.5154,
        -0.0922,
        2856,
        "british telecommunications plc",
        "bt",
        "bt.com",
        "81.2",
    ),
    (
        "Dublin",
        "Leinster",
        "Ireland",
        "IE",
        "D02",
        53.3382,
        -6.2591,
        5466,
        "eircom",
        "eir broadband",
        "eir.ie",
        "86.46",
    ),
    (
        "Berlin",
        "Land Berlin",
        "Germany",
        "DE",
        "10115",
        52.5321,
        13.3849,
        3320,
        "deutsche telekom ag",
        "deutsche telekom",
        "telekom.de",
        "89.160",
    ),
    (
        "Paris",
        "Ile-de-France",
        "France",
        "FR",
        "75002",
        48.8675,
        2.3436,
        3215,
        "orange s.a.",
        "orange",
        "orange.fr",
        "90.12",
    ),
    (
        "Stockholm",
        "Stockholm",
        "Sweden",
        "SE",
        "111 20",
        59.3293,
        18.0686,
        3301,
        "telia company ab",
        "telia",
        "telia.se",
        "89.160",
    ),
    (
        "Bengaluru",
        "Karnataka",
        "India",
        "IN",
        "560001",
        12.9716,
        77.5946,
        24560,
        "bharti airtel ltd.",
        "airtel",
        "airtel.in",
        "122.171",
    ),
    (
        "Tokyo",
        "Tokyo",
        "Japan",
        "JP",
        "100-0005",
        35.6812,
        139.7671,
        2516,
        "kddi corporation",
        "kddi",
        "kddi.com",
        "106.154",
    ),
    (
        "Sydney",
        "New South Wales",
        "Australia",
        "AU",
        "2000",
        -33.8688,
        151.2093,
        1221,
        "telstra corporation",
        "telstra",
        "telstra.net",
        "1.144",
    ),
    (
        "Sao Paulo",
        "Sao Paulo",
        "Brazil",
        "BR",
        "01310",
        -23.5614,
        -46.6559,
        28573,
        "claro s.a.",
        "claro",
        "claro.com.br",
        "177.139",
    ),
    (
        "Lagos",
        "Lagos",
        "Nigeria",
        "NG",
        "100001",
        6.4541,
        3.3947,
        29465,
        "mtn nigeria",
        "mtn",
        "mtnonline.com",
        "102.89",
    ),
    (
        "Ashburn",
        "Virginia",
        "United States",
        "US",
        "20149",
        39.0438,
        -77.4874,
        14618,
        "amazon.com, inc.",
        "amazon technologies inc.",
        "amazonaws.com",
        "3.235",
    ),
    (
        "Bucharest",
        "Bucuresti",
        "Romania",
        "RO",
        "010011",
        44.4268,
        26.1025,
        9050,
        "orange romania",
        "orange romania",
        "orange.ro",
        "188.26",
    ),
)

# raw user agent, OS, browser (Okta spelling), 1Password app/platform fields
_UA: tuple[tuple[str, str, str, str], ...] = (
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like "
        "Gecko) Chrome/124.0.0.0 Safari/537.36",
        "Mac OS X",
        "CHROME",
        "Chrome",
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/123.0.0.0 Safari/537.36 Edg/123.0.2420.81",
        "Windows 10",
        "EDGE_CHROMIUM",
        "Edge",
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.4; rv:125.0) Gecko/20100101 Firefox/125.0",
        "Mac OS X",
        "FIREFOX",
        "Firefox",
    ),
    (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36",
        "Linux",
        "CHROME",
        "Chrome",
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
        "iOS",
        "SAFARI",
        "Safari",
    ),
    (
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.6367.82 Mobile Safari/537.36",
        "Android",
        "CHROME",
        "Chrome",
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, "
        "like Gecko) Version/17.4.1 Safari/605.1.15",
        "Mac OS X",
        "SAFARI",
        "Safari",
    ),
    ("okta-sdk-python/2.9.5 python/3.11.7 Linux/6.1.0", "Linux", "UNKNOWN", "CLI"),
)

_APP_NAMES = (
    ("Salesforce", "salesforce"),
    ("GitHub Enterprise", "github"),
    ("Slack", "slack"),
    ("Google Workspace", "google"),
    ("AWS IAM Identity Center", "amazon_aws_sso"),
    ("Zoom", "zoomus"),
    ("Atlassian Cloud", "atlassian"),
    ("Workday", "workday"),
    ("1Password", "onepassword"),
    ("Box", "boxnet"),
    ("Datadog", "datadog"),
    ("PagerDuty", "pagerduty"),
)
_GROUP_NAMES = (
    "Engineering",
    "Security",
    "Finance",
    "Sales",
    "Support",
    "IT Admins",
    "Contractors",
    "Executives",
    "Marketing",
    "Legal",
)


def _rand_str(rng: random.Random, alphabet: str, n: int) -> str:
    k = len(alphabet)
    return "".join(alphabet[int(rng.random() * k)] for _ in range(n))


@dataclass(frozen=True, slots=True)
class _User:
    okta_id: str
    email: str
    name: str
    slack_id: str
    op_uuid: str
    google_profile: str
    geo: int
    geo_alt: int
    ua: int
    ip: str
    ip_alt: str


@dataclass(frozen=True, slots=True)
class _Org:
    users: tuple[_User, ...]
    admins: tuple[_User, ...]
    apps: tuple[tuple[str, str, str], ...]  # okta app id, label, name
    groups: tuple[tuple[str, str], ...]  # okta group id, name
    vaults: tuple[tuple[str, str], ...]  # 1Password vault uuid (lowercase), name
    items: tuple[tuple[str, str], ...]  # 1Password item uuid (lowercase), vault uuid
    devices: tuple[str, ...]
    slack_channels: tuple[tuple[str, str, str], ...]  # id, name, privacy
    slack_apps: tuple[tuple[str, str], ...]
    slack_workspaces: tuple[tuple[str, str, str], ...]
    docs: tuple[tuple[str, str, str], ...]  # drive doc id, title, type
    oauth_clients: tuple[tuple[str, str], ...]  # client id, app name


def _ip(rng: random.Random, prefix: str) -> str:
    return f"{prefix}.{int(rng.random() * 254) + 1}.{int(rng.random() * 254) + 1}"


@lru_cache(maxsize=1)
def _org() -> _Org:
    """One fixed synthetic tenant shared by all vendors, so the same people appear in
    Okta, Slack, 1Password and Google logs as they would in a real company."""
    rng = random.Random(20240601)  # fixed: the tenant is the same in every run
    users: list[_User] = []
    seen: set[str] = set()
    while len(users) < 240:
        first = _FIRST[int(rng.random() * len(_FIRST))]
        last = _LAST[int(rng.random() * len(_LAST))]
        local = f"{first}.{last}".lower().replace(" ", "")
        if local in seen:
            local = f"{local}{len(users)}"
        seen.add(local)
        geo = int(rng.random() * 12)  # home offices exclude the odd geos
        users.append(
            _User(
                okta_id="00u" + _rand_str(rng, _B62, 17),
                email=f"{local}@{ORG_DOMAIN}",
                name=f"{first} {last}",
                slack_id="W" + _rand_str(rng, _B62[:36], 8).upper(),
                op_uuid=_rand_str(rng, _B32, 26),
                google_profile="1" + "".join(str(int(rng.random() * 10)) for _ in range(20)),
                geo=geo,
                geo_alt=int(rng.random() * len(_GEO)),
                ua=int(rng.random() * (len(_UA) - 1)),
                ip=_ip(rng, _GEO[geo][11]),
                ip_alt=_ip(rng, _GEO[int(rng.random() * len(_GEO))][11]),
            )
        )
    apps = tuple(("0oa" + _rand_str(rng, _B62, 17), label, name) for label, name in _APP_NAMES)
    groups = tuple(("00g" + _rand_str(rng, _B62, 17), name) for name in _GROUP_NAMES)
    vaults = tuple(
        (_rand_str(rng, _B32, 26).lower(), name)
        for name in (
            "Private",
            "Shared",
            "Engineering",
            "Infrastructure",
            "Finance",
            "Security",
            "Marketing",
            "Break Glass",
        )
    )
    items = tuple(
        (_rand_str(rng, _B32, 26).lower(), vaults[int(rng.random() * len(vaults))][0])
        for _ in range(120)
    )
    devices = tuple(_rand_str(rng, _B32, 26).lower() for _ in range(160))
    chans = tuple(
        ("C0" + _rand_str(rng, _B62[:36], 9).upper(), name, priv)
        for name, priv in (
            ("general", "public"),
            ("random", "public"),
            ("eng", "public"),
            ("security-incidents", "private"),
            ("finance", "private"),
            ("sales-deals", "public"),
            ("exec-staff", "private"),
            ("oncall", "public"),
            ("help-it", "public"),
            ("mna-project", "private"),
        )
    )
    slack_apps = tuple(
        ("A0" + _rand_str(rng, _B62[:36], 9).upper(), name)
        for name in (
            "Jira Cloud",
            "GitHub",
            "Google Drive",
            "PagerDuty",
            "Polly",
            "Zoom",
            "Okta Verify Bot",
        )
    )
    workspaces = tuple(
        ("T0" + _rand_str(rng, _B62[:36], 9).upper(), name, dom)
        for name, dom in (
            ("Example HQ", "example-hq"),
            ("Example Eng", "example-eng"),
            ("Example Sales", "example-sales"),
        )
    )
    docs = tuple(
        ("1" + _rand_str(rng, _B62 + "-_", 43), title, dtype)
        for title, dtype in (
            ("Q3 board deck", "presentation"),
            ("Payroll 2024", "spreadsheet"),
            ("Incident postmortem", "document"),
            ("Roadmap", "document"),
            ("Customer list", "spreadsheet"),
            ("Offer letter template", "document"),
            ("Architecture diagram", "drawing"),
            ("Budget FY25", "spreadsheet"),
            ("Security policy", "document"),
            ("Team photo.png", "png"),
            ("contract_signed.pdf", "pdf"),
            ("Sales pipeline", "spreadsheet"),
        )
    )
    oauth = tuple(
        (
            "".join(str(int(rng.random() * 10)) for _ in range(12))
            + "-"
            + _rand_str(rng, _B62[:36].lower(), 32)
            + ".apps.googleusercontent.com",
            name,
        )
        for name in (
            "Slack",
            "Zoom for Google Workspace",
            "Dropbox",
            "Calendly",
            "gcloud CLI",
            "Unknown third-party app",
        )
    )
    return _Org(
        users=tuple(users),
        admins=tuple(users[:8]),
        apps=apps,
        groups=groups,
        vaults=vaults,
        items=items,
        devices=devices,
        slack_channels=chans,
        slack_apps=slack_apps,
        slack_workspaces=workspaces,
        docs=docs,
        oauth_clients=oauth,
    )


# --------------------------------------------------------------------------- time helpers


class _TsFormatter:
    """RFC 3339 rendering with a cached per-second prefix: strftime per event would
    dominate generation time."""

    __slots__ = ("_prefix", "_sec")

    def __init__(self) -> None:
        self._sec = -1
        self._prefix = ""

    def prefix(self, sec: int) -> str:
        if sec != self._sec:
            self._sec = sec
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        return self._prefix

    def ms(self, ns: int) -> str:
        sec, rem = divmod(ns, NS)
        return f"{self.prefix(sec)}.{rem // 1_000_000:03d}Z"

    def frac(self, ns: int, digits: int) -> str:
        sec, rem = divmod(ns, NS)
        if digits == 0:
            return self.prefix(sec) + "Z"
        if digits == 3:
            return f"{self.prefix(sec)}.{rem // 1_000_000:03d}Z"
        if digits == 6:
            return f"{self.prefix(sec)}.{rem // 1000:06d}Z"
        return f"{self.prefix(sec)}.{rem:09d}Z"


def format_rfc3339_ms(ns: int) -> str:
    """``2024-05-04T15:04:05.123Z``: Okta ``published`` and Google ``id.time`` shape."""
    return _TsFormatter().ms(ns)


def to_ns(value: datetime | int | float) -> int:
    """Datetimes (naive means UTC), or epoch seconds, to epoch nanoseconds."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        delta = value - datetime(1970, 1, 1, tzinfo=UTC)
        return (delta.days * 86_400 + delta.seconds) * NS + delta.microseconds * 1000
    return int(value * NS)


def _spread(n: int, start_ns: int, end_ns: int, rnd: Callable[[], float]) -> list[int]:
    """``n`` non-decreasing instants in ``[start_ns, end_ns)``, one per equal stratum, so
    events cover the whole window evenly yet irregularly."""
    if n <= 0:
        return []
    span = max(end_ns - start_ns, 1)
    step = span / n
    out = [start_ns + int((i + rnd()) * step) for i in range(n)]
    last = end_ns - 1
    return [t if t <= last else last for t in out]


def _uuid4(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


def _b32id(rng: random.Random) -> str:
    """26-char uppercase base32 id as 1Password uses (130 random bits)."""
    v = rng.getrandbits(130)
    return "".join(_B32[(v >> (5 * i)) & 31] for i in range(26))


_ALNUM = str.maketrans("+/", "Az")


def _opaque(rng: random.Random, nbytes: int, length: int) -> str:
    """Alphanumeric id of ``length`` chars (Okta-style object and request ids)."""
    return base64.b64encode(rng.randbytes(nbytes)).decode().translate(_ALNUM)[:length]


# --------------------------------------------------------------------------- Okta

_GREG_OFFSET = 0x01B21DD213814000  # 100-ns ticks between 1582-10-15 and 1970-01-01

# eventType, displayMessage, legacyEventType, kind, severity, P(failure)
_OKTA_TYPES: tuple[tuple[str, str, str | None, str, str, float], ...] = (
    (
        "user.session.start",
        "User login to Okta",
        "core.user_auth.login_success",
        "login",
        "INFO",
        0.12,
    ),
    ("user.authentication.sso", "User single sign on to app", "app.auth.sso", "sso", "INFO", 0.02),
    (
        "user.authentication.auth_via_mfa",
        "Authentication of user via MFA",
        None,
        "mfa",
        "INFO",
        0.06,
    ),
    ("policy.evaluate_sign_on", "Evaluation of sign-on policy", None, "policy", "INFO", 0.03),
    (
        "user.session.end",
        "User logout from Okta",
        "core.user_auth.logout_success",
        "plain",
        "INFO",
        0.0,
    ),
    ("user.authentication.verify", "Verify user identity", None, "mfa", "INFO", 0.08),
    (
        "app.oauth2.as.token.grant.access_token",
        "OAuth2 access token is granted",
        None,
        "oauth",
        "INFO",
        0.01,
    ),
    ("user.session.access_admin_app", "User accessing Okta admin app", None, "plain", "INFO", 0.0),
    (
        "group.user_membership.add",
        "Add user to group membership",
        "core.user_group_member.user_add",
        "group",
        "INFO",
        0.0,
    ),
    (
        "application.user_membership.add",
        "Add user to application membership",
        "app.generic.provision.assign_user_to_app",
        "appuser",
        "INFO",
        0.0,
    ),
    (
        "user.lifecycle.create",
        "Create Okta user",
        "core.user.config.user_creation.success",
        "admin_user",
        "INFO",
        0.0,
    ),
    (
        "user.lifecycle.deactivate",
        "Deactivate Okta user",
        "core.user.config.user_deactivated",
        "admin_user",
        "INFO",
        0.0,
    ),
    (
        "user.lifecycle.suspend",
        "Suspend Okta user",
        "core.user.config.user_suspended",
        "admin_user",
        "INFO",
        0.0,
    ),
    (
        "user.account.update_password",
        "User update password for Okta",
        "core.user.config.password_update.success",
        "plain",
        "INFO",
        0.05,
    ),
    ("user.mfa.factor.activate", "User set up MFA factor", None, "plain", "INFO", 0.0),
    (
        "user.account.lock",
        "Max sign in attempts exceeded",
        "core.user_auth.account_locked",
        "plain",
        "WARN",
        0.0,
    ),
    ("security.threat.detected", "Request from suspicious actor", None, "threat", "WARN", 0.0),
    ("system.api_token.create", "Create API token", "api.token.create", "token", "INFO", 0.0),
    ("system.org.rate_limit.warning", "Rate limit warning", None, "system", "WARN", 0.0),
)
# cumulative weights, same order as _OKTA_TYPES
_OKTA_WEIGHTS = (30, 22, 12, 10, 6, 4, 4, 2, 2, 2, 1, 0.6, 0.4, 1, 0.8, 0.6, 0.6, 0.5, 0.5)
_OKTA_CUM: tuple[float, ...] = tuple(
    sum(_OKTA_WEIGHTS[: i + 1]) / sum(_OKTA_WEIGHTS) for i in range(len(_OKTA_WEIGHTS))
)
_OKTA_FAIL_REASONS = (
    "INVALID_CREDENTIALS",
    "VERIFICATION_ERROR",
    "LOCKED_OUT",
    "Sign-on policy evaluation resulted in DENY",
    "INVALID_TOKEN",
    "User is not assigned to the client application.",
)
_OKTA_BEHAVIORS = (
    "{New Geo-Location=NEGATIVE, New Device=NEGATIVE, New IP=NEGATIVE, New State=NEGATIVE, "
    "New Country=NEGATIVE, Velocity=NEGATIVE, New City=NEGATIVE}",
    "{New Geo-Location=POSITIVE, New Device=NEGATIVE, New IP=POSITIVE, New State=POSITIVE, "
    "New Country=NEGATIVE, Velocity=NEGATIVE, New City=POSITIVE}",
    "{New Geo-Location=POSITIVE, New Device=POSITIVE, New IP=POSITIVE, New State=POSITIVE, "
    "New Country=POSITIVE, Velocity=POSITIVE, New City=POSITIVE}",
)
_OKTA_RISK = (
    "{level=LOW}",
    "{level=LOW}",
    "{level=MEDIUM}",
    "{reasons=Anomalous Device, level=HIGH}",
)
_OKTA_URIS = {
    "login": "/idp/idx/identify",
    "sso": "/app/{app}/sso/saml",
    "mfa": "/idp/idx/challenge",
    "policy": "/idp/idx/introspect",
    "plain": "/api/v1/users/me",
    "oauth": "/oauth2/v1/token",
    "group": "/api/v1/groups",
    "appuser": "/api/v1/apps",
    "admin_user": "/api/v1/users",
    "threat": "/api/v1/authn",
    "token": "/api/internal/tokens",
    "system": "/api/v1/logs",
}


def _okta_geo(g: tuple[Any, ...]) -> dict[str, Any]:
    return {
        "city": g[0],
        "state": g[1],
        "country": g[2],
        "postalCode": g[4],
        "geolocation": {"lat": g[5], "lon": g[6]},
    }


def _okta_target(kind: str, ident: str, alt: str, display: str) -> dict[str, Any]:
    return {
        "id": ident,
        "type": kind,
        "alternateId": alt,
        "displayName": display,
        "detailEntry": None,
    }


def _okta_build(rng: random.Random, published_ns: int, fmt: _TsFormatter, org: _Org) -> Event:
    r = rng.random
    users = org.users
    nu = len(users)
    x = r()
    ti = 0
    while _OKTA_CUM[ti] < x:
        ti += 1
    etype, display, legacy, kind, severity, p_fail = _OKTA_TYPES[ti]
    failed = r() < p_fail
    user = users[int(r() * nu)]

    # actor: the user, an admin acting on someone, an OAuth client, or Okta itself
    if kind in ("admin_user", "group", "appuser", "token"):
        actor_user = org.admins[int(r() * len(org.admins))]
        actor = {
            "id": actor_user.okta_id,
            "type": "User",
            "alternateId": actor_user.email,
            "displayName": actor_user.name,
            "detailEntry": None,
        }
        src = actor_user
    elif kind == "oauth":
        app = org.apps[int(r() * len(org.apps))]
        actor = {
            "id": app[0],
            "type": "PublicClientApp",
            "alternateId": app[0],
            "displayName": app[1],
            "detailEntry": None,
        }
        src = user
    elif kind == "system":
        actor = {
            "id": "0oa1okta" + "0" * 12,
            "type": "SystemPrincipal",
            "alternateId": "system@okta.com",
            "displayName": "Okta System",
            "detailEntry": None,
        }
        src = user
    else:
        actor = {
            "id": user.okta_id,
            "type": "User",
            "alternateId": user.email,
            "displayName": user.name,
            "detailEntry": None,
        }
        src = user

    # client: usually home, sometimes travelling, sometimes a threat from elsewhere
    y = r()
    if kind == "threat" or y < 0.03:
        geo = _GEO[int(r() * len(_GEO))]
        ip = _ip(rng, geo[11])
    elif y < 0.15:
        geo = _GEO[src.geo_alt]
        ip = src.ip_alt
    else:
        geo = _GEO[src.geo]
        ip = src.ip
    ua = _UA[7] if kind in ("oauth", "token", "system") else _UA[src.ua]
    geo_ctx = _okta_geo(geo)
    client = {
        "userAgent": {"rawUserAgent": ua[0], "os": ua[1], "browser": ua[2]},
        "zone": "null" if r() < 0.8 else "Corporate VPN",
        "device": "Computer" if ua[1] in ("Mac OS X", "Windows 10", "Linux") else "Mobile",
        "id": None,
        "ipAddress": ip,
        "geographicalContext": geo_ctx,
    }

    target: list[dict[str, Any]] | None
    if kind == "sso":
        app = org.apps[int(r() * len(org.apps))]
        target = [
            _okta_target("AppInstance", app[0], app[1], app[1]),
            _okta_target("AppUser", "0ua" + _opaque(rng, 13, 17), user.email, user.name),
        ]
    elif kind == "policy":
        target = [
            _okta_target("PolicyEntity", "00p" + _opaque(rng, 13, 17), "unknown", "Default Policy"),
            _okta_target("PolicyRule", "0pr" + _opaque(rng, 13, 17), "unknown", "Catch-all Rule"),
        ]
    elif kind == "mfa":
        target = [
            _okta_target(
                "AuthenticatorEnrollment", "pfd" + _opaque(rng, 13, 17), "unknown", "Okta Verify"
            ),
            _okta_target("User", user.okta_id, user.email, user.name),
        ]
    elif kind == "group":
        grp = org.groups[int(r() * len(org.groups))]
        target = [
            _okta_target("User", user.okta_id, user.email, user.name),
            _okta_target("UserGroup", grp[0], "unknown", grp[1]),
        ]
    elif kind == "appuser":
        app = org.apps[int(r() * len(org.apps))]
        target = [
            _okta_target("User", user.okta_id, user.email, user.name),
            _okta_target("AppInstance", app[0], app[2], app[1]),
        ]
    elif kind == "admin_user":
        target = [_okta_target("User", user.okta_id, user.email, user.name)]
    elif kind == "token":
        target = [
            _okta_target("Token", "00T" + _opaque(rng, 13, 17), "unknown", "Automation token")
        ]
    elif kind == "oauth":
        target = [
            _okta_target("access_token", "AT." + _opaque(rng, 30, 40), "unknown", "Access Token")
        ]
    else:
        target = None

    if failed:
        outcome = {
            "result": "FAILURE",
            "reason": _OKTA_FAIL_REASONS[int(r() * len(_OKTA_FAIL_REASONS))],
        }
    elif kind == "threat":
        outcome = {"result": "DENY", "reason": "Password Spray"}
    elif kind == "policy":
        outcome = {"result": "ALLOW", "reason": None}
    else:
        outcome = {"result": "SUCCESS", "reason": None}

    request_id = _opaque(rng, 20, 27)
    uri = _OKTA_URIS[kind]
    if "{app}" in uri:
        uri = uri.replace("{app}", "exk" + request_id[:17])
    debug: dict[str, Any] = {
        "requestId": request_id,
        "requestUri": uri,
        "url": uri + "?",
        "threatSuspected": "true" if kind == "threat" else "false",
    }
    if kind in ("login", "threat"):
        debug["dtHash"] = f"{rng.getrandbits(256):064x}"
        debug["behaviors"] = _OKTA_BEHAVIORS[0 if r() < 0.85 else (1 if r() < 0.8 else 2)]
    if kind in ("login", "mfa", "policy", "threat"):
        debug["risk"] = _OKTA_RISK[int(r() * len(_OKTA_RISK))]
    if kind == "oauth":
        debug["grantType"] = "client_credentials"
        debug["requestedScopes"] = "okta.users.read okta.logs.read"
    if kind == "system":
        debug["threshold"] = "60"
        debug["timeSpan"] = "1"
        debug["timeUnit"] = "MINUTES"

    ticks = published_ns // 100 + _GREG_OFFSET
    cs = rng.getrandbits(14) | 0x8000
    node = rng.getrandbits(48)
    uuid = (
        f"{ticks & 0xFFFFFFFF:08x}-{(ticks >> 32) & 0xFFFF:04x}-"
        f"{((ticks >> 48) & 0x0FFF) | 0x1000:04x}-{cs:04x}-{node:012x}"
    )
    session = None if failed and kind == "login" else "102" + _opaque(rng, 17, 22)
    return {
        "actor": actor,
        "client": client,
        "device": None,
        "authenticationContext": {
            "authenticationProvider": None if kind != "login" else "OKTA_AUTHENTICATION_PROVIDER",
            "credentialProvider": None,
            "credentialType": "PASSWORD" if kind == "login" else None,
            "issuer": None,
            "interface": None,
            "authenticationStep": 0,
            "externalSessionId": session,
        },
        "displayMessage": display,
        "eventType": etype,
        "outcome": outcome,
        "published": fmt.ms(published_ns),
        "securityContext": {
            "asNumber": geo[7],
            "asOrg": geo[8],
            "isp": geo[9],
            "domain": geo[10],
            "isProxy": kind == "threat",
        },
        "severity": severity,
        "debugContext": {"debugData": debug},
        "legacyEventType": legacy,
        "transaction": {
            "type": "JOB" if kind == "system" else "WEB",
            "id": request_id,
            "detail": {"requestApiTokenId": "00T" + request_id[:17]}
            if kind in ("admin_user", "group", "appuser")
            else {},
        },
        "uuid": uuid,
        "version": "0",
        "request": {
            "ipChain": [
                {
                    "ip": ip,
                    "geographicalContext": _okta_geo(geo)
                    if kind in ("login", "sso", "threat")
                    else None,
                    "version": "V4",
                    "source": None,
                }
            ]
        },
        "target": target,
    }


def _gen_okta(
    n: int,
    start_ns: int,
    end_ns: int,
    rng: random.Random,
    _endpoint: str = "logs",
    clamp: bool = True,
) -> list[GenEvent]:
    """Okta System Log events. ``persist_ns`` is spread evenly; ~10 % of events carry a
    ``published`` up to 5 s before persistence, which is how Okta's polling stream ends
    up out of ``published`` order. With ``clamp`` the lag never crosses ``start_ns``
    (callers asked for times in a window); live batches pass ``clamp=False`` so the
    disorder also spans consecutive batches, as it does at Okta."""
    org = _org()
    fmt = _TsFormatter()
    r = rng.random
    floor = start_ns if clamp else 0
    out: list[GenEvent] = []
    for persist in _spread(n, start_ns, end_ns, r):
        published = persist
        if r() < 0.1:
            published = max(floor, persist - int(r() * 5 * NS))
        published -= published % 1_000_000  # rendered with millisecond precision
        out.append((published, persist, _okta_build(rng, published, fmt, org)))
    return out


# --------------------------------------------------------------------------- Slack

# action, entity kind, weight
_SLACK_ACTIONS: tuple[tuple[str, str, float], ...] = (
    ("user_login", "user", 30),
    ("user_logout", "user", 8),
    ("file_downloaded", "file", 14),
    ("file_shared", "file", 6),
    ("file_public_link_created", "file", 1),
    ("user_channel_join", "channel", 8),
    ("user_channel_leave", "channel", 2),
    ("public_channel_created", "channel", 2),
    ("private_channel_created", "channel", 1),
    ("channel_deleted", "channel", 0.5),
    ("app_installed", "app", 1),
    ("app_scopes_expanded", "app", 0.5),
    ("role_change_to_admin", "user", 0.3),
    ("user_created", "user", 1),
    ("user_deactivated", "user", 0.5),
    ("pref_sso_setting_changed", "workspace", 0.2),
    ("anomaly", "user", 0.5),
    ("user_session_invalidated", "user", 0.5),
)
_SLACK_CUM = tuple(
    sum(a[2] for a in _SLACK_ACTIONS[: i + 1]) / sum(a[2] for a in _SLACK_ACTIONS)
    for i in range(len(_SLACK_ACTIONS))
)


def _slack_user(u: _User) -> dict[str, Any]:
    return {"id": u.slack_id, "name": u.name, "email": u.email}


def _slack_build(rng: random.Random, sec: int, org: _Org) -> Event:
    r = rng.random
    x = r()
    i = 0
    while _SLACK_CUM[i] < x:
        i += 1
    action, kind, _ = _SLACK_ACTIONS[i]
    user = org.users[int(r() * len(org.users))]
    admin_action = action in (
        "role_change_to_admin",
        "user_created",
        "user_deactivated",
        "pref_sso_setting_changed",
        "user_session_invalidated",
        "app_installed",
        "app_scopes_expanded",
        "channel_deleted",
    )
    actor_u = org.admins[int(r() * len(org.admins))] if admin_action else user
    entity: dict[str, Any]
    if kind == "user":
        entity = {"type": "user", "user": _slack_user(user)}
    elif kind == "file":
        doc = org.docs[int(r() * len(org.docs))]
        fid = "F0" + _rand_str(rng, _B62[:36], 9).upper()
        entity = {
            "type": "file",
            "file": {"id": fid, "name": doc[1], "filetype": doc[2], "title": doc[1]},
        }
    elif kind == "channel":
        ch = org.slack_channels[int(r() * len(org.slack_channels))]
        entity = {
            "type": "channel",
            "channel": {
                "id": ch[0],
                "privacy": ch[2],
                "name": ch[1],
                "is_shared": False,
                "is_org_shared": ch[2] == "public",
            },
        }
    elif kind == "app":
        app = org.slack_apps[int(r() * len(org.slack_apps))]
        entity = {
            "type": "app",
            "app": {
                "id": app[0],
                "name": app[1],
                "is_distributed": r() < 0.7,
                "is_directory_approved": r() < 0.8,
                "scopes": ["channels:read", "chat:write", "users:read"][: 1 + int(r() * 3)],
            },
        }
    else:
        ws = org.slack_workspaces[int(r() * len(org.slack_workspaces))]
        entity = {"type": "workspace", "workspace": {"id": ws[0], "name": ws[1], "domain": ws[2]}}
    ws = org.slack_workspaces[int(r() * len(org.slack_workspaces))]
    if r() < 0.5:
        location = {
            "type": "enterprise",
            "id": SLACK_ENTERPRISE[0],
            "name": SLACK_ENTERPRISE[1],
            "domain": SLACK_ENTERPRISE[2],
        }
    else:
        location = {"type": "workspace", "id": ws[0], "name": ws[1], "domain": ws[2]}
    geo_ip = actor_u.ip if r() < 0.85 else actor_u.ip_alt
    ev: Event = {
        "id": _uuid4(rng),
        "date_create": sec,
        "action": action,
        "actor": {"type": "user", "user": _slack_user(actor_u)},
        "entity": entity,
        "context": {
            "location": location,
            "ua": _UA[actor_u.ua][0],
            "ip_address": geo_ip,
            "session_id": str(rng.getrandbits(40)),
        },
    }
    if action == "pref_sso_setting_changed":
        ev["details"] = {"new_value": "required", "previous_value": "optional"}
    elif action == "anomaly":
        ev["details"] = {
            "action_timestamp": sec * 1_000_000,
            "location": _GEO[int(r() * len(_GEO))][2],
            "reason": ["asn", "ip_address"][: 1 + int(r() * 2)],
            "previous_ip_address": actor_u.ip,
        }
    elif action == "user_session_invalidated":
        ev["details"] = {"reason": "admin_forced_logout"}
    elif action == "file_downloaded" and r() < 0.3:
        ev["details"] = {"is_internal_integration": False}
    return ev


def _gen_slack(
    n: int,
    start_ns: int,
    end_ns: int,
    rng: random.Random,
    _endpoint: str = "logs",
    clamp: bool = True,
) -> list[GenEvent]:
    """Slack audit entries; ``date_create`` is whole epoch seconds, so the sort time is
    truncated to the second it shows."""
    org = _org()
    out: list[GenEvent] = []
    for t in _spread(n, start_ns, end_ns, rng.random):
        sec = t // NS
        out.append((sec * NS, sec * NS, _slack_build(rng, sec, org)))
    return out


# --------------------------------------------------------------------------- 1Password

_OP_AUDIT = (
    ("suspend", "user"),
    ("reactive", "user"),
    ("create", "vault"),
    ("delete", "vault"),
    ("grant", "uva"),
    ("revoke", "uva"),
    ("join", "gm"),
    ("leave", "gm"),
    ("update", "item"),
    ("create", "item"),
    ("delete", "item"),
    ("export", "items"),
    ("begin", "sso"),
    ("enblmfa", "account"),
    ("create", "invite"),
    ("verify", "user"),
    ("deolddev", "device"),
    ("role", "gm"),
    ("share", "item"),
    ("view", "report"),
)
_OP_ITEM_ACTIONS = (
    "fill",
    "reveal",
    "secure-copy",
    "server-fetch",
    "enter-item-edit-mode",
    "select-sso-provider",
    "export",
    "share",
    "server-update",
    "server-create",
)
_OP_ITEM_WEIGHTS = (0.38, 0.2, 0.15, 0.12, 0.06, 0.03, 0.01, 0.02, 0.02, 0.01)
_OP_ITEM_CUM = tuple(sum(_OP_ITEM_WEIGHTS[: i + 1]) for i in range(len(_OP_ITEM_WEIGHTS)))
_OP_SIGNIN = (
    ("success", "credentials_ok", 0.55),
    ("success", "mfa_ok", 0.25),
    ("credentials_failed", "password_secret_bad", 0.1),
    ("mfa_failed", "totp_bad", 0.04),
    ("firewall_failed", "country_blocked", 0.02),
    ("sso_failed", "sso_user_mismatch", 0.02),
    ("modern_version_failed", "modern_version_old", 0.01),
    ("firewall_reported_success", "credentials_ok", 0.01),
)
_OP_SIGNIN_CUM = tuple(sum(s[2] for s in _OP_SIGNIN[: i + 1]) for i in range(len(_OP_SIGNIN)))
_OP_CLIENTS = (
    ("1Password Browser Extension", "20276", "Chrome", "124.0.6367.91"),
    ("1Password for Mac", "81024017", "Macintosh", "MacBookPro18,1"),
    ("1Password for Windows", "81024010", "Windows", "x86_64"),
    ("1Password for iOS", "81024008", "iPhone", "iPhone15,2"),
    ("1Password CLI", "2270001", "go", "go1.22.1"),
    ("1Password for Web", "1720", "Firefox", "125.0"),
)
_OP_OS = {
    "Chrome": ("MacOSX", "14.4.1"),
    "Macintosh": ("MacOSX", "14.4.1"),
    "Windows": ("Windows", "10.0.22631"),
    "iPhone": ("iOS", "17.4.1"),
    "go": ("Linux", "6.1.0"),
    "Firefox": ("Windows", "10.0.22631"),
}


def _op_location(g: tuple[Any, ...]) -> dict[str, Any]:
    return {"country": g[2], "region": g[1], "city": g[0], "latitude": g[5], "longitude": g[6]}


def _op_client(rng: random.Random, ip: str) -> dict[str, Any]:
    c = _OP_CLIENTS[int(rng.random() * len(_OP_CLIENTS))]
    os_name, os_version = _OP_OS[c[2]]
    return {
        "app_name": c[0],
        "app_version": c[1],
        "platform_name": c[2],
        "platform_version": c[3],
        "os_name": os_name,
        "os_version": os_version,
        "ip_address": ip,
    }


def _op_user(u: _User) -> dict[str, Any]:
    return {"uuid": u.op_uuid, "name": u.name, "email": u.email}


def _op_build(
    rng: random.Random, endpoint: str, ns: int, ts: str, fmt: _TsFormatter, org: _Org
) -> Event:
    r = rng.random
    user = org.users[int(r() * len(org.users))]
    travelling = r() < 0.1
    geo = _GEO[user.geo_alt if travelling else user.geo]
    ip = user.ip_alt if travelling else user.ip
    if endpoint == "auditevents":
        action, obj = _OP_AUDIT[int(r() * len(_OP_AUDIT))]
        actor = (
            org.admins[int(r() * len(org.admins))]
            if obj in ("user", "vault", "uva", "gm", "invite", "account")
            else user
        )
        login_ns = ns - int(r() * 8 * 3600 * NS)
        ev: Event = {
            "uuid": _b32id(rng),
            "timestamp": ts,
            "actor_uuid": actor.op_uuid,
            "actor_details": _op_user(actor),
            "action": action,
            "object_type": obj,
            "object_uuid": user.op_uuid if obj == "user" else _b32id(rng),
            "session": {
                "uuid": _b32id(rng),
                "login_time": fmt.frac(login_ns, 9),
                "device_uuid": org.devices[int(r() * len(org.devices))],
                "ip": actor.ip,
            },
            "location": _op_location(_GEO[actor.geo]),
        }
        if obj in ("uva", "gm"):
            ev["aux_id"] = int(r() * 9000) + 100
            ev["aux_uuid"] = user.op_uuid
            ev["aux_info"] = "R" if obj == "uva" else "member"
            if obj == "gm":
                ev["object_details"] = {"group_name": org.groups[int(r() * 10)][1]}
        return ev
    if endpoint == "itemusages":
        x = r()
        i = 0
        while _OP_ITEM_CUM[i] < x and i < len(_OP_ITEM_CUM) - 1:
            i += 1
        item = org.items[int(r() * len(org.items))]
        return {
            "uuid": _b32id(rng),
            "timestamp": ts,
            "used_version": 1 + int(r() * 12),
            "vault_uuid": item[1],
            "item_uuid": item[0],
            "user": _op_user(user),
            "client": _op_client(rng, ip),
            "location": _op_location(geo),
            "action": _OP_ITEM_ACTIONS[i],
        }
    x = r()
    i = 0
    while _OP_SIGNIN_CUM[i] < x and i < len(_OP_SIGNIN_CUM) - 1:
        i += 1
    category, typ, _ = _OP_SIGNIN[i]
    if category == "firewall_failed":
        geo = _GEO[int(r() * len(_GEO))]
        ip = _ip(rng, geo[11])
    details = {"value": geo[2]} if category.startswith("firewall") else None
    return {
        "uuid": _b32id(rng),
        "session_uuid": _b32id(rng),
        "timestamp": ts,
        "country": geo[3],
        "category": category,
        "type": typ,
        "details": details,
        "target_user": _op_user(user),
        "client": _op_client(rng, ip),
        "location": _op_location(geo),
    }


def _gen_onepassword(
    n: int,
    start_ns: int,
    end_ns: int,
    rng: random.Random,
    endpoint: str = "auditevents",
    clamp: bool = True,
) -> list[GenEvent]:
    """1Password events; each ``timestamp`` carries nanoseconds, milliseconds or whole
    seconds (all three occur in the vendor's data), and the sort time is truncated to
    the precision shown so time filters agree with what clients read."""
    org = _org()
    fmt = _TsFormatter()
    r = rng.random
    out: list[GenEvent] = []
    for t in _spread(n, start_ns, end_ns, r):
        p = r()
        digits = 9 if p < 0.5 else (3 if p < 0.8 else 0)
        unit = 10 ** (9 - digits)
        t -= t % unit
        out.append((t, t, _op_build(rng, endpoint, t, fmt.frac(t, digits), fmt, org)))
    return out


# --------------------------------------------------------------------------- Google


def _gp(name: str, value: Any) -> dict[str, Any]:
    """One Google report parameter, typed the way the Reports API JSON encodes it."""
    if isinstance(value, bool):
        return {"name": name, "boolValue": value}
    if isinstance(value, int):
        return {"name": name, "intValue": str(value)}  # int64 travels as a JSON string
    if isinstance(value, list):
        return {"name": name, "multiValue": value}
    return {"name": name, "value": value}


def _google_events(
    rng: random.Random, app: str, user: _User, org: _Org
) -> tuple[str, list[dict[str, Any]]]:
    """Returns (event type used for etag variety, events list) for one activity."""
    r = rng.random
    if app == "login":
        x = r()
        if x < 0.7:
            return "login", [
                {
                    "type": "login",
                    "name": "login_success",
                    "parameters": [
                        _gp("login_type", "google_password" if r() < 0.6 else "saml"),
                        _gp(
                            "login_challenge_method",
                            ["password"] if r() < 0.5 else ["password", "idv_preregistered_phone"],
                        ),
                        _gp("is_suspicious", False),
                    ],
                }
            ]
        if x < 0.85:
            return "login", [
                {"type": "login", "name": "logout", "parameters": [_gp("login_type", "unknown")]}
            ]
        if x < 0.97:
            return "login", [
                {
                    "type": "login",
                    "name": "login_failure",
                    "parameters": [
                        _gp("login_type", "google_password"),
                        _gp("login_challenge_method", ["password"]),
                        _gp("login_failure_type", "login_failure_invalid_password"),
                        _gp("is_suspicious", r() < 0.3),
                    ],
                }
            ]
        return "login", [
            {
                "type": "account_warning",
                "name": "suspicious_login",
                "parameters": [_gp("affected_email_address", user.email)],
            }
        ]
    if app == "admin":
        x = r()
        if x < 0.3:
            return "USER_SETTINGS", [
                {
                    "type": "USER_SETTINGS",
                    "name": "CHANGE_PASSWORD",
                    "parameters": [_gp("USER_EMAIL", user.email)],
                }
            ]
        if x < 0.5:
            grp = org.groups[int(r() * len(org.groups))][1].lower().replace(" ", "-")
            return "GROUP_SETTINGS", [
                {
                    "type": "GROUP_SETTINGS",
                    "name": "ADD_GROUP_MEMBER",
                    "parameters": [
                        _gp("USER_EMAIL", user.email),
                        _gp("GROUP_EMAIL", f"{grp}@{ORG_DOMAIN}"),
                    ],
                }
            ]
        if x < 0.7:
            return "APPLICATION_SETTINGS", [
                {
                    "type": "APPLICATION_SETTINGS",
                    "name": "CHANGE_APPLICATION_SETTING",
                    "parameters": [
                        _gp("APPLICATION_NAME", "Drive and Docs"),
                        _gp("SETTING_NAME", "Sharing settings - External sharing"),
                        _gp("OLD_VALUE", "ALLOWLISTED_DOMAINS"),
                        _gp("NEW_VALUE", "ALLOWED" if r() < 0.5 else "NOT_ALLOWED"),
                        _gp("ORG_UNIT_NAME", ORG_NAME),
                    ],
                }
            ]
        if x < 0.85:
            return "USER_SETTINGS", [
                {
                    "type": "USER_SETTINGS",
                    "name": "CREATE_USER",
                    "parameters": [_gp("USER_EMAIL", user.email)],
                }
            ]
        if x < 0.95:
            return "DELEGATED_ADMIN_SETTINGS", [
                {
                    "type": "DELEGATED_ADMIN_SETTINGS",
                    "name": "ASSIGN_ROLE",
                    "parameters": [
                        _gp("ROLE_NAME", "_GROUPS_ADMIN_ROLE"),
                        _gp("ROLE_ID", 26_396_648_776_990_723 + int(r() * 99)),
                        _gp("USER_EMAIL", user.email),
                    ],
                }
            ]
        return "CALENDAR_SETTINGS", [
            {
                "type": "CALENDAR_SETTINGS",
                "name": "CREATE_BUILDING",
                "parameters": [_gp("DOMAIN_NAME", ORG_DOMAIN), _gp("NEW_VALUE", "HQ-2")],
            }
        ]
    if app == "drive":
        doc = org.docs[int(r() * len(org.docs))]
        owner = org.users[int(r() * len(org.users))]
        x = r()
        base = [
            _gp("primary_event", True),
            _gp("billable", True),
            _gp("owner_is_shared_drive", r() < 0.2),
            _gp("owner", owner.email),
            _gp("doc_id", doc[0]),
            _gp("doc_type", doc[2]),
            _gp("doc_title", doc[1]),
            _gp("visibility", "private" if r() < 0.6 else "people_within_domain_with_link"),
            _gp("actor_is_collaborator_account", False),
        ]
        if x < 0.8:
            name = ("view", "edit", "download", "create", "rename", "move")[int(r() * 6)]
            return "access", [{"type": "access", "name": name, "parameters": base}]
        target = org.users[int(r() * len(org.users))]
        base.extend(
            [
                _gp("target_user", target.email),
                _gp("old_value", ["none"]),
                _gp("new_value", ["can_view"] if r() < 0.7 else ["can_edit"]),
            ]
        )
        return "acl_change", [
            {"type": "acl_change", "name": "change_user_access", "parameters": base}
        ]
    client = org.oauth_clients[int(r() * len(org.oauth_clients))]
    name = ("authorize", "authorize", "request", "revoke")[int(r() * 4)]
    return "auth", [
        {
            "type": "auth",
            "name": name,
            "parameters": [
                _gp("client_id", client[0]),
                _gp("app_name", client[1]),
                _gp("client_type", "WEB" if r() < 0.7 else "NATIVE_DESKTOP"),
                _gp(
                    "scope",
                    ["https://www.googleapis.com/auth/calendar.readonly", "openid"]
                    if r() < 0.5
                    else ["https://www.googleapis.com/auth/drive"],
                ),
            ],
        }
    ]


def _google_build(rng: random.Random, app: str, ns: int, fmt: _TsFormatter, org: _Org) -> Event:
    r = rng.random
    user = org.users[int(r() * len(org.users))]
    if app == "admin":
        user = org.admins[int(r() * len(org.admins))]
    _, events = _google_events(rng, app, user, org)
    qualifier = rng.getrandbits(64) - (1 << 63)  # signed int64, often negative
    item: Event = {
        "kind": "admin#reports#activity",
        "id": {
            "time": fmt.ms(ns),
            "uniqueQualifier": str(qualifier),
            "applicationName": app,
            "customerId": GOOGLE_CUSTOMER_ID,
        },
        "etag": f'"{_opaque(rng, 20, 27)}/{_opaque(rng, 20, 27)}"',
        "actor": {"callerType": "USER", "email": user.email, "profileId": user.google_profile},
        "ipAddress": user.ip if r() < 0.85 else user.ip_alt,
        "ownerDomain": ORG_DOMAIN,
        "events": events,
    }
    if app == "admin" and r() < 0.03:
        item["actor"] = {"callerType": "KEY", "key": "SYSTEM"}
        del item["ipAddress"]
    elif app == "token" and r() < 0.1:
        item["ipAddress"] = "2001:db8:" + ":".join(f"{rng.getrandbits(16):x}" for _ in range(6))
    return item


def _gen_google(
    n: int,
    start_ns: int,
    end_ns: int,
    rng: random.Random,
    endpoint: str = "login",
    clamp: bool = True,
) -> list[GenEvent]:
    """Google activities for application ``endpoint``; ``id.time`` has milliseconds."""
    org = _org()
    fmt = _TsFormatter()
    out: list[GenEvent] = []
    for t in _spread(n, start_ns, end_ns, rng.random):
        t -= t % 1_000_000
        out.append((t, t, _google_build(rng, endpoint, t, fmt, org)))
    return out


# --------------------------------------------------------------------------- dispatch


@contextmanager
def gc_paused() -> Iterator[None]:
    """Building many small dicts triggers the cyclic GC over and over although none of
    them form cycles; pausing it roughly doubles generation speed."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


_GENERATORS: dict[str, Callable[..., list[GenEvent]]] = {
    "okta": _gen_okta,
    "slack": _gen_slack,
    "onepassword": _gen_onepassword,
    "google_workspace": _gen_google,
}


def generate(
    vendor: str,
    endpoint: str,
    n: int,
    start_ns: int,
    end_ns: int,
    rng: random.Random,
    *,
    clamp: bool = True,
) -> list[GenEvent]:
    """``n`` events of ``vendor``/``endpoint`` in persistence order, times in
    ``[start_ns, end_ns)`` (Okta's ``published`` may precede ``start_ns`` by up to 5 s
    when ``clamp`` is false); the simulator's single entry point."""
    if vendor not in VENDORS or endpoint not in VENDORS[vendor]:
        raise ValueError(f"unknown vendor/endpoint {vendor!r}/{endpoint!r}")
    with gc_paused():
        return _GENERATORS[vendor](n, start_ns, end_ns, rng, endpoint, clamp)


def _window(start: datetime, end: datetime) -> tuple[int, int]:
    s, e = to_ns(start), to_ns(end)
    if e <= s:
        raise ValueError("end must be after start")
    return s, e


def okta_events(n: int, start: datetime, end: datetime, seed: int = 0) -> list[dict]:
    """``n`` Okta System Log events (~1.5 KB each as JSON) with ``published`` in
    ``[start, end)``, in persistence order (``published`` is occasionally a few seconds
    out of order, as in Okta's polling stream). Same seed, same events."""
    s, e = _window(start, end)
    with gc_paused():
        return [ev for _, _, ev in _gen_okta(n, s, e, random.Random(seed))]


def slack_events(n: int, start: datetime, end: datetime, seed: int = 0) -> list[dict]:
    """``n`` Slack Audit Logs entries with ``date_create`` in ``[start, end)``, oldest
    first (the API itself serves newest first)."""
    s, e = _window(start, end)
    return [ev for _, _, ev in _gen_slack(n, s, e, random.Random(seed))]


def onepassword_events(
    n: int, start: datetime, end: datetime, seed: int = 0, endpoint: str = "auditevents"
) -> list[dict]:
    """``n`` 1Password events of ``endpoint`` (auditevents, itemusages, signinattempts)."""
    if endpoint not in VENDORS["onepassword"]:
        raise ValueError(f"unknown 1Password endpoint {endpoint!r}")
    s, e = _window(start, end)
    return [ev for _, _, ev in _gen_onepassword(n, s, e, random.Random(seed), endpoint)]


def google_events(
    n: int, start: datetime, end: datetime, seed: int = 0, application: str = "login"
) -> list[dict]:
    """``n`` Google Workspace activities of ``application`` (admin, login, drive, token),
    oldest first (the API itself serves newest first)."""
    if application not in VENDORS["google_workspace"]:
        raise ValueError(f"unknown Google application {application!r}")
    s, e = _window(start, end)
    return [ev for _, _, ev in _gen_google(n, s, e, random.Random(seed), application)]
