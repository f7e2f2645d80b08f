"""How the operator reaches Prometheus as users run it: TLS verified by default (against
the system's roots or a CA bundle), a client certificate, a bearer token or basic auth
from mounted Secret files (read at each request, so a rotated Secret needs no restart),
and extra headers (``X-Scope-OrgID`` for Mimir, Cortex and Thanos tenants).

Settings come from the environment (the chart sets them from values and Secrets):

- ``LLMOPT_PROMETHEUS_CA_FILE``: CA bundle to verify the server with.
- ``LLMOPT_PROMETHEUS_INSECURE_SKIP_VERIFY``: ``true`` to skip verification (never the
  default).
- ``LLMOPT_PROMETHEUS_CERT_FILE`` / ``LLMOPT_PROMETHEUS_KEY_FILE``: a client certificate.
- ``LLMOPT_PROMETHEUS_BEARER_TOKEN_FILE``: a file holding the token.
- ``LLMOPT_PROMETHEUS_USERNAME`` / ``LLMOPT_PROMETHEUS_PASSWORD_FILE``: basic auth.
- ``LLMOPT_PROMETHEUS_HEADERS``: a JSON object of header names to values.

A bad combination is a ValueError naming the variable, at start.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import requests
from requests.auth import AuthBase

PREFIX = "LLMOPT_PROMETHEUS_"
_FORBIDDEN_HEADERS = {"authorization", "host", "content-length"}


def _secret(path: str) -> str:
    """The content of a mounted Secret key, without its trailing newline."""
    return Path(path).read_text().strip()


class _FromFiles(AuthBase):
    """Authorization read from files at each request (a rotated Secret takes effect)."""

    def __init__(self, token_file: str | None, user: str | None, password_file: str | None):
        self.token_file, self.user, self.password_file = token_file, user, password_file

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        if self.token_file:
            r.headers["Authorization"] = f"Bearer {_secret(self.token_file)}"
        elif self.user is not None and self.password_file:
            basic = requests.auth.HTTPBasicAuth(self.user, _secret(self.password_file))
            return basic(r)
        return r


@dataclass(frozen=True)
class PrometheusAccess:
    """TLS, credentials and headers for every request to Prometheus."""

    ca_file: str | None = None
    insecure_skip_verify: bool = False
    cert_file: str | None = None
    key_file: str | None = None
    bearer_token_file: str | None = None
    username: str | None = None
    password_file: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, path in (
            ("CA_FILE", self.ca_file),
            ("CERT_FILE", self.cert_file),
            ("KEY_FILE", self.key_file),
            ("BEARER_TOKEN_FILE", self.bearer_token_file),
            ("PASSWORD_FILE", self.password_file),
        ):
            if path and not Path(path).is_file():
                raise ValueError(f"{PREFIX}{name}: no file at {path}")
        if self.bearer_token_file and (self.username or self.password_file):
            raise ValueError(
                f"{PREFIX}BEARER_TOKEN_FILE and {PREFIX}USERNAME: choose one way to "
                "authenticate"
            )
        if bool(self.username) != bool(self.password_file):
            raise ValueError(f"{PREFIX}USERNAME and {PREFIX}PASSWORD_FILE go together")
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError(f"{PREFIX}CERT_FILE and {PREFIX}KEY_FILE go together")
        if self.ca_file and self.insecure_skip_verify:
            raise ValueError(
                f"{PREFIX}CA_FILE and {PREFIX}INSECURE_SKIP_VERIFY: a CA is only used when "
                "the certificate is verified"
            )
        bad = [h for h in self.headers if h.lower() in _FORBIDDEN_HEADERS]
        if bad:
            raise ValueError(
                f"{PREFIX}HEADERS: {', '.join(bad)} cannot be set there (credentials have "
                "their own settings)"
            )

    @property
    def authenticated(self) -> str:
        """How requests authenticate, for messages."""
        if self.bearer_token_file:
            return f"bearer token from {self.bearer_token_file}"
        if self.username:
            return f"basic auth as {self.username}"
        return "no credentials"

    def session(self) -> requests.Session:
        """A session sending every request with these settings."""
        s = requests.Session()
        s.verify = self.ca_file or not self.insecure_skip_verify
        if self.cert_file and self.key_file:
            s.cert = (self.cert_file, self.key_file)
        if self.bearer_token_file or self.username:
            s.auth = _FromFiles(self.bearer_token_file, self.username, self.password_file)
        s.headers.update(self.headers)
        return s

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PrometheusAccess:
        """The settings in the environment; ValueError naming a bad one."""
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(PREFIX + name, "").strip()
            return value or None

        skip = (get("INSECURE_SKIP_VERIFY") or "false").lower()
        if skip not in ("true", "false"):
            raise ValueError(f"{PREFIX}INSECURE_SKIP_VERIFY: expected true or false, got {skip!r}")
        headers: dict[str, str] = {}
        raw = get("HEADERS")
        if raw:
            try:
                parsed = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{PREFIX}HEADERS: not JSON ({exc.msg})") from None
            if not isinstance(parsed, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in parsed.items()
            ):
                raise ValueError(f'{PREFIX}HEADERS: expected an object of strings, e.g. '
                                 '{"X-Scope-OrgID": "team-a"}')  # fmt: skip
            headers = parsed
        return cls(
            ca_file=get("CA_FILE"),
            insecure_skip_verify=skip == "true",
            cert_file=get("CERT_FILE"),
            key_file=get("KEY_FILE"),
            bearer_token_file=get("BEARER_TOKEN_FILE"),
            username=get("USERNAME"),
            password_file=get("PASSWORD_FILE"),
            headers=headers,
        )
