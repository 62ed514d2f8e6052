"""HTTP plumbing for :mod:`habacli.hub.transfer`: one-line, token-free errors, timeouts and retry rules.

huggingface_hub and httpx2 errors are mapped to :class:`~habacli.errors.HubError` /
:class:`~habacli.errors.HubAuthError`; every message is scrubbed of the explicit and implicit tokens.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from typing import Any

from habacli.errors import ArtifactNotFoundError, HabaError, HubAuthError, HubError, UsageError

#: Seconds without progress before an HTTP call to the Hub gives up (env ``HABA_HUB_TIMEOUT``).
DEFAULT_TIMEOUT = 60.0
#: Extra attempts for a commit that failed transiently (env ``HABA_HUB_RETRIES``).
DEFAULT_RETRIES = 2
_RETRY_STATUS = (408, 429, 500, 502, 503, 504)
_APPLIED_TIMEOUT: Any = None  # the timeout haba last gave huggingface_hub's shared client


# -- errors and secrets ----------------------------------------------------------------------


def _secrets(token: str | None) -> list[str]:
    out = [token] if isinstance(token, str) and token else []
    try:
        from huggingface_hub import get_token  # lazy: huggingface_hub

        implicit = get_token()
    except Exception:  # noqa: BLE001 - a broken token file must not hide the real error
        implicit = None
    if implicit and implicit not in out:
        out.append(implicit)
    return out


def scrub(text: str, secrets: list[str]) -> str:
    """``text`` on one line with every secret (and anything shaped like an HF token) masked."""
    for s in secrets:
        text = text.replace(s, "***")
    text = re.sub(r"\bhf_[A-Za-z0-9]{6,}", "hf_***", text)
    text = re.sub(r"(?i)\b(bearer)\s+\S+", r"\1 ***", text)
    return " ".join(text.split())


def _first_line(err: BaseException) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return lines[0] if lines else type(err).__name__


def _server_message(err: Any) -> str:
    resp = getattr(err, "response", None)
    msg = getattr(err, "server_message", None) or (resp.headers.get("X-Error-Message") if resp is not None else None)
    return f": {msg}" if msg else ""


@contextlib.contextmanager
def _hub_errors(what: str, repo_id: str, secrets: list[str], endpoint: str) -> Iterator[None]:
    """Turn huggingface_hub / httpx errors into one-line, token-free :class:`HubError`s."""
    import httpx2  # lazy: httpx
    from huggingface_hub import errors as hf  # lazy: huggingface_hub

    try:
        yield
    except HabaError as e:
        e.args = (scrub(str(e), secrets),)
        raise
    except hf.OfflineModeIsEnabled as e:
        raise HubError(f"{what} {repo_id}: HF_HUB_OFFLINE is set and this needs the network") from e
    except hf.LocalEntryNotFoundError as e:
        cause = e.__cause__ or e.__context__
        if _offline() or cause is None:
            raise HubError(
                f"{what} {repo_id}: not in the local Hugging Face cache (HF_HUB_OFFLINE is set or the "
                "Hub could not be reached); pull it once online"
            ) from e
        status = _status(cause)
        reason = (
            f"the Hub answered {status}{_server_message(cause)}"
            if status is not None
            else f"could not talk to {endpoint}: {type(cause).__name__}: {_first_line(cause)}"
        )
        raise HubError(scrub(f"{what} {repo_id}: {reason} (and there is no cached copy)", secrets)) from e
    except hf.RevisionNotFoundError as e:
        raise HubError(scrub(f"{what} {repo_id}: revision not found{_server_message(e)}", secrets)) from e
    except hf.RemoteEntryNotFoundError as e:
        raise ArtifactNotFoundError(
            None, scrub(f"{what} {repo_id}: file not found in the repo{_server_message(e)}", secrets)
        ) from e
    except hf.RepositoryNotFoundError as e:
        raise HubError(
            f"{what} {repo_id}: dataset repo not found at {endpoint} (if it is private, pass --token, "
            "set HF_TOKEN or run `hf auth login`)"
        ) from e
    except hf.HFValidationError as e:
        raise UsageError(scrub(f"{what} {repo_id}: {_first_line(e)}", secrets)) from e
    except hf.HfHubHTTPError as e:
        status = e.response.status_code if getattr(e, "response", None) is not None else None
        detail = _server_message(e)
        if status == 401:
            raise HubAuthError(
                scrub(
                    f"{what} {repo_id}: the Hub rejected the credentials (401 Unauthorized"
                    f"{detail}); check --token, HF_TOKEN or `hf auth login`",
                    secrets,
                )
            ) from e
        if status == 403:
            raise HubAuthError(
                scrub(
                    f"{what} {repo_id}: permission denied (403 Forbidden{detail}); the token "
                    "needs write access to this namespace",
                    secrets,
                )
            ) from e
        raise HubError(scrub(f"{what} {repo_id}: the Hub answered {status}{detail}", secrets)) from e
    except httpx2.TimeoutException as e:
        raise HubError(
            f"{what} {repo_id}: timed out talking to {endpoint} (raise HABA_HUB_TIMEOUT, now "
            f"{_timeout():g} s, or retry later)"
        ) from e
    except httpx2.TransportError as e:
        raise HubError(
            scrub(f"{what} {repo_id}: could not talk to {endpoint}: {type(e).__name__}: {_first_line(e)}", secrets)
        ) from e
    except ValueError as e:  # e.g. "Invalid metadata in README.md" from validate-yaml
        raise HubError(scrub(f"{what} {repo_id}: {e}", secrets)) from e


def _timeout() -> float:
    try:
        return float(os.environ.get("HABA_HUB_TIMEOUT") or DEFAULT_TIMEOUT)
    except ValueError as e:
        raise UsageError(f"HABA_HUB_TIMEOUT must be a number of seconds, got {os.environ['HABA_HUB_TIMEOUT']!r}") from e


def _retries() -> int:
    try:
        return max(int(os.environ.get("HABA_HUB_RETRIES") or DEFAULT_RETRIES), 0)
    except ValueError as e:
        raise UsageError(f"HABA_HUB_RETRIES must be an integer, got {os.environ['HABA_HUB_RETRIES']!r}") from e


def _configure_session() -> None:
    """huggingface_hub's shared client has no timeout by default: give it one (unless the user set one)."""
    import httpx2  # lazy: httpx
    from huggingface_hub import get_session  # lazy: huggingface_hub

    global _APPLIED_TIMEOUT
    client = get_session()
    if client.timeout.read is None or client.timeout == _APPLIED_TIMEOUT:
        t = _timeout()
        _APPLIED_TIMEOUT = httpx2.Timeout(t, connect=min(t, 30.0))
        client.timeout = _APPLIED_TIMEOUT


def _endpoint(endpoint: str | None) -> str:
    from huggingface_hub import constants  # lazy: huggingface_hub

    return (endpoint or constants.ENDPOINT).rstrip("/")


def _offline() -> bool:
    from huggingface_hub import constants  # lazy: huggingface_hub

    return bool(constants.is_offline_mode())


def _transient(err: BaseException | None) -> bool:
    """A network error or a retryable status, here or in the cause chain (huggingface_hub wraps them)."""
    import httpx2  # lazy: httpx
    from huggingface_hub.errors import HfHubHTTPError  # lazy: huggingface_hub

    seen = 0
    while err is not None and seen < 8:
        if isinstance(err, (httpx2.TimeoutException, httpx2.NetworkError, httpx2.RemoteProtocolError)):
            return True
        resp = getattr(err, "response", None)
        if isinstance(err, HfHubHTTPError) and resp is not None and resp.status_code in _RETRY_STATUS:
            return True
        err, seen = err.__cause__ or err.__context__, seen + 1
    return False


def _status(err: BaseException) -> int | None:
    resp = getattr(err, "response", None)
    return getattr(resp, "status_code", None)
