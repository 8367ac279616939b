"""A local fake of the GitHub REST API's issue endpoints: a real HTTP server on
127.0.0.1 that keeps issues and comments in memory, answers in GitHub's documented
shapes (the JSON files in ``fixtures/github/``), records every request, and can
inject faults (an error status, rate-limit headers, a slow answer)."""

from __future__ import annotations

import copy
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

FIXTURES = Path(__file__).parent.parent / "fixtures" / "github"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    authorization: str | None


@dataclass
class Fault:
    method: str
    path_contains: str
    status: int | None = None  # None: answer normally (after ``delay``)
    fixture: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    times: int = 1


class FakeGitHub:
    def __init__(self, token: str, repo: str = "acme/security") -> None:
        self.token = token
        self.repo = repo
        self.issues: dict[int, dict[str, Any]] = {}
        self.comments: dict[int, list[dict[str, Any]]] = {}
        self.requests: list[Recorded] = []
        self.faults: list[Fault] = []
        self._next = 1
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # ------------------------------------------------------------------ control

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeGitHub:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                fake._handle(self, "GET")

            def do_POST(self) -> None:
                fake._handle(self, "POST")

            def do_PATCH(self) -> None:
                fake._handle(self, "PATCH")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def add_fault(self, fault: Fault) -> None:
        with self._lock:
            self.faults.append(fault)

    def add_pull_request(self) -> None:
        with self._lock:
            item = fixture("pull_request_list_item.json")
            item["number"] = self._next
            self._next += 1
            self.issues[item["number"]] = item

    def open_issue_count(self) -> int:
        return sum(1 for i in self.issues.values() if "pull_request" not in i)

    def calls(self, method: str, pattern: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and re.search(pattern, r.path)]

    # ------------------------------------------------------------------ serving

    def _reply(
        self,
        h: BaseHTTPRequestHandler,
        status: int,
        body: Any,
        headers: dict[str, str] | None = None,
    ) -> None:
        data = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json; charset=utf-8")
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        try:
            h.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test)

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(h.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        auth = h.headers.get("Authorization")
        with self._lock:
            self.requests.append(Recorded(method, parts.path, query, body, auth))
            fault = next(
                (
                    f
                    for f in self.faults
                    if f.times > 0 and f.method == method and f.path_contains in parts.path
                ),
                None,
            )
            if fault is not None:
                fault.times -= 1
        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            if fault.status is not None:
                payload = fixture(fault.fixture) if fault.fixture else {"message": "error"}
                self._reply(h, fault.status, payload, fault.headers)
                return
        if auth != f"Bearer {self.token}":
            self._reply(h, 401, fixture("error_bad_credentials.json"))
            return
        with self._lock:
            status, payload = self._route(method, parts.path, query, body)
        self._reply(h, status, payload)

    def _route(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        base = f"/repos/{self.repo}/issues"
        if path == base and method == "GET":
            return 200, self._list(query)
        if path == base and method == "POST":
            return 201, self._create(body)
        m = re.fullmatch(re.escape(base) + r"/(\d+)(/comments)?", path)
        if m and int(m.group(1)) in self.issues:
            number = int(m.group(1))
            if m.group(2) and method == "POST":
                return 201, self._comment(number, body)
            if not m.group(2) and method == "PATCH":
                return 200, self._update(number, body)
        return 404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}

    def _list(self, query: dict[str, str]) -> list[dict[str, Any]]:
        state = query.get("state", "open")
        labels = [lb for lb in query.get("labels", "").split(",") if lb]
        items = [
            i
            for i in self.issues.values()
            if (state == "all" or i["state"] == state)
            and all(lb in {x["name"] for x in i.get("labels", [])} for lb in labels)
        ]
        items.sort(key=lambda i: i["number"], reverse=query.get("direction", "desc") == "desc")
        per_page = int(query.get("per_page", 30))
        page = int(query.get("page", 1))
        return items[(page - 1) * per_page : page * per_page]

    def _create(self, body: dict[str, Any]) -> dict[str, Any]:
        issue = fixture("issue.json")
        number = self._next
        self._next += 1
        label = fixture("issue.json")["labels"][0]
        issue.update(
            number=number,
            id=number,
            title=body["title"],
            body=body.get("body"),
            state="open",
            html_url=f"https://github.com/{self.repo}/issues/{number}",
            url=f"https://api.github.com/repos/{self.repo}/issues/{number}",
            labels=[dict(copy.deepcopy(label), name=n) for n in body.get("labels", [])],
        )
        self.issues[number] = issue
        return issue

    def _update(self, number: int, body: dict[str, Any]) -> dict[str, Any]:
        issue = self.issues[number]
        for key in ("title", "body", "state", "state_reason"):
            if key in body:
                issue[key] = body[key]
        issue["closed_at"] = "2026-11-27T10:00:00Z" if issue["state"] == "closed" else None
        return issue

    def _comment(self, number: int, body: dict[str, Any]) -> dict[str, Any]:
        comment = fixture("issue_comment.json")
        comment["body"] = body["body"]
        self.comments.setdefault(number, []).append(comment)
        self.issues[number]["comments"] += 1
        return comment
