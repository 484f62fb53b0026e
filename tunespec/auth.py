"""Credentials for a target: Google's ADC, an API key, or the local engine's token.

Each credential turns into request headers; none of them ever appears in text tunespec prints or
writes (`describe()` names the mechanism, `redact()` blanks the secret values out of any string).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tunespec.errors import ApiError

SCOPES = (
    "https://www.googleapis.com/auth/cloud-platform",
    "https://www.googleapis.com/auth/generative-language.tuning",
)
API_KEY_ENV = ("GOOGLE_API_KEY", "GEMINI_API_KEY")
PROJECT_ENV = "GOOGLE_CLOUD_PROJECT"
ENGINE_TOKEN_ENV = "TUNESPEC_ENGINE_TOKEN"


class Auth:
    """No credentials (a local engine without a token)."""

    def headers(self) -> dict[str, str]:
        return {}

    def secrets(self) -> list[str]:
        return []

    def describe(self) -> str:
        return "none"

    def redact(self, text: str) -> str:
        """`text` with every secret this credential holds replaced by `***`."""
        for secret in self.secrets():
            if secret:
                text = text.replace(secret, "***")
        return text


@dataclass
class ApiKeyAuth(Auth):
    """An API key sent as `x-goog-api-key` (never as `?key=`, which would land in URLs and logs)."""

    key: str = field(repr=False)
    source: str = "GOOGLE_API_KEY"

    def headers(self) -> dict[str, str]:
        return {"x-goog-api-key": self.key}

    def secrets(self) -> list[str]:
        return [self.key]

    def describe(self) -> str:
        return f"API key (${self.source})"


@dataclass
class BearerTokenAuth(Auth):
    """A static bearer token: the local engine's token."""

    token: str = field(repr=False)
    source: str = ENGINE_TOKEN_ENV

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def secrets(self) -> list[str]:
        return [self.token]

    def describe(self) -> str:
        return f"engine token (${self.source})"


class GoogleCredentialsAuth(Auth):
    """google-auth credentials (ADC or any `google.auth.credentials.Credentials`), refreshed as needed.

    `project` is sent as `x-goog-user-project` (the quota and billing project for user credentials).
    """

    def __init__(self, credentials: Any, project: str | None = None, *, source: str = "ADC"):
        self.credentials = credentials
        self.project = project
        self.source = source
        self._lock = threading.Lock()
        self._seen_tokens: list[str] = []

    def __repr__(self) -> str:
        return f"GoogleCredentialsAuth(source={self.source!r}, project={self.project!r})"

    def _refresh_if_needed(self) -> None:
        creds = self.credentials
        if getattr(creds, "valid", False) and getattr(creds, "token", None):
            return
        import google.auth.transport.requests

        try:
            creds.refresh(google.auth.transport.requests.Request())
        except Exception as exc:  # google.auth.exceptions.RefreshError and transport errors
            raise ApiError(
                f"could not refresh Google credentials ({type(exc).__name__}): "
                f"{self.redact(str(exc))}; run `gcloud auth application-default login` or set GOOGLE_API_KEY"
            ) from None

    def headers(self) -> dict[str, str]:
        with self._lock:
            self._refresh_if_needed()
            token = self.credentials.token
            if token and token not in self._seen_tokens:
                self._seen_tokens.append(token)
        headers = {"Authorization": f"Bearer {token}"}
        if self.project:
            headers["x-goog-user-project"] = self.project
        return headers

    def secrets(self) -> list[str]:
        token = getattr(self.credentials, "token", None)
        return [*self._seen_tokens, *([token] if token else [])]

    def describe(self) -> str:
        text = f"Google credentials ({self.source})"
        if self.project:
            text += f", project {self.project}"
        return text


def api_key_from_env(env: Mapping[str, str]) -> ApiKeyAuth | None:
    for name in API_KEY_ENV:
        if env.get(name):
            return ApiKeyAuth(env[name], source=name)
    return None


def google_auth(
    project: str | None = None, env: Mapping[str, str] | None = None, credentials: Any = None
) -> Auth:
    """Credentials for Google's API: an API key from the environment, else ADC with the tuning scopes.

    The quota project is `project` (from `--project` or the spec), else $GOOGLE_CLOUD_PROJECT, else the
    project the credentials carry.
    """
    env = os.environ if env is None else env
    if credentials is None:
        key = api_key_from_env(env)
        if key is not None:
            return key
        import google.auth
        import google.auth.exceptions

        try:
            credentials, adc_project = google.auth.default(scopes=list(SCOPES))
        except google.auth.exceptions.DefaultCredentialsError as exc:
            key_file = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
            if key_file:  # set, but unusable: say so rather than "no credentials found"
                reason = "; ".join(str(a) for a in exc.args)
                raise ApiError(
                    f"GOOGLE_APPLICATION_CREDENTIALS={key_file}: not usable as Google credentials "
                    f"({reason}); point it at a service-account or authorized-user JSON key file, or "
                    "unset it and run `gcloud auth application-default login --scopes="
                    + ",".join(SCOPES)
                    + "`"
                ) from None
            raise ApiError(
                "no Google credentials found: set GOOGLE_API_KEY (or GEMINI_API_KEY), or run "
                "`gcloud auth application-default login --scopes="
                + ",".join(SCOPES)
                + "`, or point GOOGLE_APPLICATION_CREDENTIALS at a key file"
            ) from None
    else:
        adc_project = None
    quota = project or env.get(PROJECT_ENV) or getattr(credentials, "quota_project_id", None) or adc_project
    return GoogleCredentialsAuth(credentials, quota)


def engine_auth(env: Mapping[str, str] | None = None) -> Auth:
    """The local engine's bearer token from $TUNESPEC_ENGINE_TOKEN, or no credentials."""
    env = os.environ if env is None else env
    token = env.get(ENGINE_TOKEN_ENV)
    return BearerTokenAuth(token) if token else Auth()


VERTEX_SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)


def vertex_auth(
    project: str | None = None, env: Mapping[str, str] | None = None, credentials: Any = None
) -> Auth:
    """Application Default Credentials with the cloud-platform scope, for Vertex AI and Cloud Storage.

    No API key: Vertex tuning jobs take OAuth credentials only. The quota project header is `project`,
    else $GOOGLE_CLOUD_PROJECT, else the project the credentials carry.
    """
    env = os.environ if env is None else env
    adc_project = None
    if credentials is None:
        import google.auth
        import google.auth.exceptions

        try:
            credentials, adc_project = google.auth.default(scopes=list(VERTEX_SCOPES))
        except google.auth.exceptions.DefaultCredentialsError:
            raise ApiError(
                "no Google credentials found for Vertex AI: run `gcloud auth application-default login`, "
                "or point GOOGLE_APPLICATION_CREDENTIALS at a service-account key file"
            ) from None
    quota = project or env.get(PROJECT_ENV) or getattr(credentials, "quota_project_id", None) or adc_project
    return GoogleCredentialsAuth(credentials, quota)
