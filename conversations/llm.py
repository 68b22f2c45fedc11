"""The AI assistant's one call to a language model (docs/ai.md): any OpenAI-compatible chat completions API.

The `openai` client with OPENAI_BASE_URL and OPENAI_API_KEY, bounded by AI_TIMEOUT per attempt and
AI_MAX_RETRIES more attempts (the client retries connection errors, timeouts, 408, 409, 429 and 5xx with
backoff). Whatever goes wrong comes back as one `LLMError` with a sentence a person can act on; the key is
never part of it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from django.conf import settings

if TYPE_CHECKING:
    import openai


class LLMError(Exception):
    """The model gave no usable answer. `code` is stable for programs, `message` for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Completion:
    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: int


@lru_cache(maxsize=8)
def _client(base_url: str, api_key: str, timeout: float, max_retries: int) -> openai.OpenAI:
    # One client (and its connection pool) per configuration, shared by a worker's tasks.
    import openai  # ~37 MB: imported by the first AI reply, not by every process that loads the app

    return openai.OpenAI(base_url=base_url or None, api_key=api_key, timeout=timeout, max_retries=max_retries)


def chat_complete(*, model: str, messages: list[dict[str, str]], temperature: float) -> Completion:
    """Ask the model for the next assistant message. Raises LLMError."""
    import openai

    if not settings.OPENAI_API_KEY:
        raise LLMError("not_configured", "No OPENAI_API_KEY is set, so the AI assistant cannot answer.")
    try:
        client = _client(
            settings.OPENAI_BASE_URL, settings.OPENAI_API_KEY, float(settings.AI_TIMEOUT), int(settings.AI_MAX_RETRIES)
        )
    except Exception as exc:  # the client refuses its configuration (a malformed OPENAI_BASE_URL)
        message = f"The AI client could not be set up ({type(exc).__name__}): check OPENAI_BASE_URL."
        raise LLMError("misconfigured", message) from None
    started = time.monotonic()
    try:
        response = client.chat.completions.create(
            model=model, messages=messages, temperature=temperature, max_tokens=settings.AI_MAX_TOKENS
        )
    except openai.APITimeoutError:
        raise LLMError(
            "timeout", f"The AI service did not answer within {settings.AI_TIMEOUT:g} s (tried {_attempts()})."
        ) from None
    except openai.AuthenticationError:
        raise LLMError("auth", "The AI service refused OPENAI_API_KEY (401): check the key.") from None
    except openai.RateLimitError as exc:
        raise LLMError("rate_limited", f"The AI service is rate limiting us (429): {_reason(exc)}") from None
    except openai.APIStatusError as exc:
        raise LLMError(
            f"http_{exc.status_code}", f"The AI service answered {exc.status_code}: {_reason(exc)}"
        ) from None
    except openai.APIConnectionError:
        where = _host(settings.OPENAI_BASE_URL) or "api.openai.com"
        message = f"The AI service at {where} could not be reached (tried {_attempts()})."
        raise LLMError("unreachable", message) from None
    except openai.OpenAIError as exc:
        raise LLMError("error", f"The AI service failed: {str(exc)[:200]}") from None
    latency_ms = int((time.monotonic() - started) * 1000)
    choice = response.choices[0] if response.choices else None
    text = (choice.message.content or "").strip() if choice is not None and choice.message is not None else ""
    if not text:
        raise LLMError("empty", "The AI service answered with no text.")
    usage = response.usage
    return Completion(
        text=text,
        model=response.model or model,
        prompt_tokens=(usage.prompt_tokens or 0) if usage else 0,
        completion_tokens=(usage.completion_tokens or 0) if usage else 0,
        latency_ms=latency_ms,
    )


def _host(url: str) -> str:
    """Scheme, host and port of a URL: never its credentials, path or query (which may hold a key)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}" if parts.hostname else ""


def _attempts() -> str:
    n = int(settings.AI_MAX_RETRIES) + 1
    return "once" if n == 1 else f"{n} times"


def _reason(exc: openai.APIStatusError) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error", body) if isinstance(body, dict) else {}
    message = error.get("message") if isinstance(error, dict) else None
    return str(message or exc.message or "no reason given")[:200]
