"""One adapter per wire format, over the providers' own async SDKs.

Each adapter sends a system and a user prompt and returns the answer text with the billed
tokens, or raises :class:`ProviderError` with a :class:`FailureKind` the client's retry policy
understands. The SDKs' own retries are off (``max_retries=0``): the client retries itself, so
every attempt is counted, rate-limited through Redis and recorded. Keys are handed to the SDK
client and kept nowhere else.

The SDKs are imported where an endpoint is made or used, not with this module: together they
take a second or more to import, which every command line would pay, and most never ask a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import httpx

from triplegain_core.llm.models import FailureKind, ModelConfig, TokenUsage

# How long an Ollama host gets to answer the reachability probe.
OLLAMA_PROBE_TIMEOUT_S = 2.0


@dataclass(frozen=True, slots=True)
class Completion:
    """A provider's answer text and the tokens it billed."""

    text: str
    usage: TokenUsage


class ProviderError(Exception):
    """A request that produced no answer; ``kind`` says whether a retry may help."""

    def __init__(self, kind: FailureKind, detail: str, status: int | None = None,
                 retry_after_s: float | None = None) -> None:
        super().__init__(f"{kind.value}: {detail}")
        self.kind = kind
        self.detail = detail
        self.status = status
        self.retry_after_s = retry_after_s


class ModelEndpoint(Protocol):
    """A configured model reachable over one provider's SDK."""

    async def complete(self, system: str, user: str) -> Completion:
        """Ask once; raise ProviderError when no answer comes back."""

    async def aclose(self) -> None:
        """Release the SDK's HTTP connections."""


def _retry_after(headers: httpx.Headers | object) -> float | None:
    value = getattr(headers, "get", lambda _: None)("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


# A response body that is not JSON (ValueError) or not the expected shape (pydantic's
# ValidationError is a ValueError; a non-object body surfaces as TypeError) is a bad response.
_ENVELOPE_ERRORS = (ValueError, TypeError)
# The SDKs do not validate strictly: a JSON body of the wrong shape yields None attributes.
_SHAPE_ERRORS = (AttributeError, TypeError, IndexError, ValueError)


def _bad_response(exc: Exception) -> ProviderError:
    return ProviderError(FailureKind.BAD_RESPONSE, f"{type(exc).__name__}: {exc}")


def _status_kind(status: int) -> FailureKind:
    if status == 429:
        return FailureKind.RATE_LIMITED
    if status >= 500:
        return FailureKind.SERVER_ERROR
    return FailureKind.CLIENT_ERROR


class AnthropicEndpoint:
    """Claude through ``anthropic.AsyncAnthropic`` (Messages API)."""

    def __init__(self, config: ModelConfig, api_key: str, base_url: str) -> None:
        import anthropic

        self._config = config
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key, base_url=base_url, timeout=config.timeout_s, max_retries=0
        )

    async def complete(self, system: str, user: str) -> Completion:
        import anthropic

        try:
            message = await self._client.messages.create(
                model=self._config.model_id,
                max_tokens=self._config.max_output_tokens,
                system=system,
                messages=[{"role": "user", "content": user}],
            )
        except anthropic.APITimeoutError as exc:
            raise ProviderError(FailureKind.TIMEOUT, str(exc)) from None
        except anthropic.APIConnectionError as exc:
            raise ProviderError(FailureKind.CONNECTION_ERROR, str(exc)) from None
        except anthropic.APIStatusError as exc:
            raise ProviderError(_status_kind(exc.status_code), str(exc), exc.status_code,
                                _retry_after(exc.response.headers)) from None
        except _ENVELOPE_ERRORS as exc:
            raise _bad_response(exc) from None
        try:
            text = "".join(block.text for block in message.content if block.type == "text")
            usage = TokenUsage(input_tokens=message.usage.input_tokens or 0,
                               output_tokens=message.usage.output_tokens or 0)
        except _SHAPE_ERRORS as exc:
            raise _bad_response(exc) from None
        return Completion(text, usage)

    async def aclose(self) -> None:
        await self._client.close()


class OpenAICompatibleEndpoint:
    """GPT, Grok and DeepSeek through ``openai.AsyncOpenAI`` (Chat Completions)."""

    def __init__(self, config: ModelConfig, api_key: str, base_url: str) -> None:
        import openai

        self._config = config
        self._client = openai.AsyncOpenAI(
            api_key=api_key, base_url=base_url, timeout=config.timeout_s, max_retries=0
        )

    async def complete(self, system: str, user: str) -> Completion:
        import openai

        try:
            response = await self._client.chat.completions.create(
                model=self._config.model_id,
                max_tokens=self._config.max_output_tokens,
                temperature=self._config.temperature,
                messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
            )
        except openai.APITimeoutError as exc:
            raise ProviderError(FailureKind.TIMEOUT, str(exc)) from None
        except openai.APIConnectionError as exc:
            raise ProviderError(FailureKind.CONNECTION_ERROR, str(exc)) from None
        except openai.APIStatusError as exc:
            raise ProviderError(_status_kind(exc.status_code), str(exc), exc.status_code,
                                _retry_after(exc.response.headers)) from None
        except _ENVELOPE_ERRORS as exc:
            raise _bad_response(exc) from None
        try:
            text = response.choices[0].message.content or ""
            usage = response.usage
            tokens = TokenUsage(input_tokens=usage.prompt_tokens or 0 if usage else 0,
                                output_tokens=usage.completion_tokens or 0 if usage else 0)
        except _SHAPE_ERRORS as exc:
            raise _bad_response(exc) from None
        return Completion(text, tokens)

    async def aclose(self) -> None:
        await self._client.close()


class OllamaEndpoint:
    """Local models through ``ollama.AsyncClient`` (``/api/chat``, not streamed)."""

    def __init__(self, config: ModelConfig, host: str) -> None:
        import ollama

        self._config = config
        self._host = host
        self._client = ollama.AsyncClient(host=host, timeout=config.timeout_s)

    async def complete(self, system: str, user: str) -> Completion:
        import ollama

        try:
            response = await self._client.chat(
                model=self._config.model_id,
                messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
                stream=False,
                format="json",
                options={"temperature": self._config.temperature,
                         "num_predict": self._config.max_output_tokens},
            )
        except httpx.TimeoutException as exc:
            raise ProviderError(FailureKind.TIMEOUT, f"{type(exc).__name__}: {exc}") from None
        except (ConnectionError, httpx.TransportError) as exc:
            raise ProviderError(FailureKind.CONNECTION_ERROR, str(exc)) from None
        except ollama.ResponseError as exc:
            raise ProviderError(_status_kind(exc.status_code), exc.error, exc.status_code) from None
        except _ENVELOPE_ERRORS as exc:
            raise _bad_response(exc) from None
        return Completion(response.message.content or "", TokenUsage(
            input_tokens=response.prompt_eval_count or 0, output_tokens=response.eval_count or 0,
        ))

    async def has_model(self) -> bool:
        """Whether the host answers and has this model pulled (False when unreachable)."""
        import ollama

        try:
            async with ollama.AsyncClient(host=self._host, timeout=OLLAMA_PROBE_TIMEOUT_S) as probe:
                listed = await probe.list()
        except Exception:  # unreachable, refusing or not Ollama at all: the model is absent
            return False
        names = {entry.model for entry in listed.models}
        wanted = self._config.model_id
        return wanted in names or f"{wanted}:latest" in names

    async def aclose(self) -> None:
        await self._client.close()
