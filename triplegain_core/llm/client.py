"""The multi-provider LLM client: one ask, a parallel fan-out, and a fallback chain.

Every ask goes: Redis rate limit -> provider SDK (timeout per request) -> retries with backoff on
429, 5xx and dropped connections -> strict parsing into a TradingDecision -> one retry with the
rejection explained if the answer was invalid -> the call recorded (prompts, raw answer, decision
or rejection, latency, tokens, cost). With no key and no Ollama, nothing is asked and the status
says so; in REPLAY mode nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Protocol

from pydantic import BaseModel

from triplegain_core.llm.answer_cache import AnswerCache, CachedAnswer, CacheMode, prompt_hash
from triplegain_core.llm.answers import AnswerParser, AnswerT, DecisionParser, StructuredResult
from triplegain_core.llm.cost import call_cost_usd
from triplegain_core.llm.models import (
    DEFAULT_BASE_URLS,
    OLLAMA_HOST_ENV,
    PROVIDER_KEY_ENV,
    TRADING_DECISION_KIND,
    CallOutcome,
    CallPurpose,
    ChainResult,
    FailureKind,
    FanOutResult,
    LLMAvailability,
    LLMCall,
    LLMSettings,
    ModelAvailability,
    ModelConfig,
    ModelResult,
    Provider,
    TokenUsage,
)
from triplegain_core.llm.prompts import Prompt, retry_prompt
from triplegain_core.llm.providers import (
    AnthropicEndpoint,
    Completion,
    ModelEndpoint,
    OllamaEndpoint,
    OpenAICompatibleEndpoint,
    ProviderError,
)
from triplegain_core.llm.rate_limit import RateLimiter
from triplegain_core.llm.trading_decision import Rejection, TradingDecision

log = logging.getLogger(__name__)

RETRYABLE = frozenset({FailureKind.RATE_LIMITED, FailureKind.SERVER_ERROR, FailureKind.CONNECTION_ERROR})
REDACTED = "[redacted]"
MIN_KEY_CHARS = 16
LATENCY_SMOOTHING = 0.3
LAUNCH_TURNS = 5


class CallRecorder(Protocol):
    """Where every call is kept (:class:`triplegain_core.storage.llm_store.LLMStore`)."""

    async def record_call(self, call: LLMCall) -> None:
        """Store ``call``; storing the same call id twice is a no-op."""


class LLMClient:
    """Asks the configured models for TradingDecisions.

    ``environ`` is where keys and ``OLLAMA_HOST`` are read (the process environment by default).
    ``cache``/``cache_mode`` record or replay answers; ``recorder`` stores every call;
    ``rate_limiter`` shares per-model request limits through Redis. Use ``async with``.
    """

    def __init__(
        self,
        settings: LLMSettings,
        *,
        environ: Mapping[str, str] | None = None,
        cache: AnswerCache | None = None,
        cache_mode: CacheMode = CacheMode.LIVE,
        recorder: CallRecorder | None = None,
        rate_limiter: RateLimiter | None = None,
        rate_limit_wait_s: float = 5.0,
    ) -> None:
        if cache_mode is not CacheMode.LIVE and cache is None:
            raise ValueError(f"cache mode {cache_mode.value} needs an answer cache")
        self._settings = settings
        self._environ = os.environ if environ is None else environ
        self._cache = cache
        self._cache_mode = cache_mode
        self._recorder = recorder
        self._rate_limiter = rate_limiter
        self._rate_limit_wait_s = rate_limit_wait_s
        self._endpoints: dict[str, ModelEndpoint] = {}
        self._secrets: tuple[str, ...] = ()
        self._availability: LLMAvailability | None = None
        self._typical_latency_ms: dict[str, float] = {}

    async def __aenter__(self) -> LLMClient:
        await self.availability()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    @property
    def settings(self) -> LLMSettings:
        """The LLM settings this client was built with."""
        return self._settings

    async def availability(self) -> LLMAvailability:
        """Which models can be asked (keys present, Ollama reachable); probed once, then kept."""
        if self._availability is None:
            self._availability = await self._probe()
            log.info("%s", self._availability.message)
        return self._availability

    async def _probe(self) -> LLMAvailability:
        if self._cache_mode is CacheMode.REPLAY:
            return LLMAvailability(models=tuple(
                ModelAvailability(name=m.name, available=True, reason="replay from recorded answers")
                for m in self._settings.models
            ))
        found = []
        secrets = []
        for model in self._settings.models:
            key_env = PROVIDER_KEY_ENV[model.provider]
            if model.provider is Provider.OLLAMA:
                host = model.base_url or self._environ.get(OLLAMA_HOST_ENV) or DEFAULT_BASE_URLS[Provider.OLLAMA]
                endpoint = OllamaEndpoint(model, host)
                if await endpoint.has_model():
                    self._endpoints[model.name] = endpoint
                    found.append(ModelAvailability(name=model.name, available=True,
                                                   reason=f"Ollama at {host} has {model.model_id}"))
                else:
                    await endpoint.aclose()
                    found.append(ModelAvailability(
                        name=model.name, available=False,
                        reason=f"Ollama at {host} is unreachable or lacks {model.model_id}"))
                continue
            assert key_env is not None
            key = self._environ.get(key_env, "").strip()
            if not key:
                found.append(ModelAvailability(name=model.name, available=False,
                                               reason=f"{key_env} is not set"))
                continue
            if len(key) < MIN_KEY_CHARS:
                # No provider issues keys this short, and every answer and error is stored with the
                # key redacted: redacting a word this short would mangle them. Its length, never the
                # key, tells the user what is wrong.
                found.append(ModelAvailability(
                    name=model.name, available=False, mistake=True,
                    reason=(f"{key_env} is set but is {len(key)} characters long; a real key has at least "
                            f"{MIN_KEY_CHARS} (a server that takes any key needs one of {MIN_KEY_CHARS} or more)")))
                continue
            secrets.append(key)
            base_url = model.base_url or DEFAULT_BASE_URLS[model.provider]
            endpoint_type = AnthropicEndpoint if model.provider is Provider.ANTHROPIC else OpenAICompatibleEndpoint
            self._endpoints[model.name] = endpoint_type(model, key, base_url)
            found.append(ModelAvailability(name=model.name, available=True,
                                           reason=f"key in {key_env}, endpoint {base_url}"))
        self._secrets = tuple(secrets)
        return LLMAvailability(models=tuple(found))

    async def aclose(self) -> None:
        """Close every SDK client."""
        endpoints, self._endpoints = list(self._endpoints.values()), {}
        for endpoint in endpoints:
            await endpoint.aclose()

    async def ask(self, model_name: str, prompt: Prompt, *, symbol: str, request_id: str) -> ModelResult:
        """Ask one model, within its deadline: the answer, or one retry after an invalid answer."""
        result, _ = await self._ask_turn(model_name, prompt, DecisionParser(symbol), symbol, request_id)
        return result

    async def ask_for(
        self, model_name: str, prompt: Prompt, parser: AnswerParser[AnswerT], *, symbol: str,
        request_id: str, deadline_s: float | None = None,
    ) -> StructuredResult[AnswerT]:
        """Ask one model for an answer of ``parser``'s schema (a review, a verdict, a case).

        Same turn as :meth:`ask` (rate limit, retries, one validation retry, every call recorded
        under ``parser.kind``); ``deadline_s`` shortens the turn deadline for this ask.
        """
        result, answer = await self._ask_turn(model_name, prompt, parser, symbol, request_id, deadline_s)
        # Parametrized at run time, so pydantic checks ``answer`` against the parser's own schema;
        # a type checker takes no run-time value as a type argument.
        return StructuredResult[parser.schema](result=result, answer=answer)  # type: ignore[name-defined]

    async def _ask_turn(
        self, model_name: str, prompt: Prompt, parser: AnswerParser[BaseModel], symbol: str,
        request_id: str, deadline_s: float | None = None,
    ) -> tuple[ModelResult, BaseModel | None]:
        model = self._settings.model(model_name)
        await self.availability()
        deadline = self._settings.turn_deadline_s if deadline_s is None else min(
            deadline_s, self._settings.turn_deadline_s)
        calls: list[LLMCall] = []
        answers: list[BaseModel | None] = []
        try:
            async with asyncio.timeout(deadline):
                await self._turn(model, prompt, symbol, request_id, calls, parser, answers)
        except TimeoutError:
            late = self._failed_call(
                model, prompt, symbol, request_id, _purpose(len(calls)), FailureKind.TIMEOUT,
                f"no answer within the {deadline:g} s deadline",
                http_attempts=1, latency_ms=deadline * 1000, kind=parser.kind,
            )
            await self._record(late)
            calls.append(late)
            answers.append(None)
        return ModelResult(model_name=model.name, calls=tuple(calls)), answers[-1]

    async def fan_out(
        self, prompt: Prompt, *, symbol: str, request_id: str, models: Sequence[str] | None = None
    ) -> FanOutResult:
        """Ask every available model (or the available ones of ``models``) at once.

        One typed result per model, in configuration order. A failure to store a call (the
        database is down) cancels the whole fan-out rather than losing the record.
        """
        availability = await self.availability()
        wanted = [name for name in (models or availability.available) if name in availability.available]
        # Requests are built one after another on this loop (CPU work in the SDKs): send the
        # slowest-answering model's first so its wait covers the others' work. Results keep the
        # configured order.
        launch = sorted(wanted, key=lambda name: -self._typical_latency_ms.get(name, 0.0))
        started = time.perf_counter()
        tasks: dict[str, asyncio.Task[ModelResult]] = {}
        async with asyncio.TaskGroup() as group:
            for name in launch:
                tasks[name] = group.create_task(self.ask(name, prompt, symbol=symbol, request_id=request_id))
                # The SDKs pass a few loop turns (connection-pool locks) before a request is on
                # the wire; a few turns here let it get there before the next one is built.
                for _ in range(LAUNCH_TURNS):
                    await asyncio.sleep(0)
        wall_ms = (time.perf_counter() - started) * 1000
        results = tuple(tasks[name].result() for name in wanted)
        for result in results:
            self._observe_latency(result)
        return FanOutResult(request_id=request_id, symbol=symbol, availability=availability,
                            results=results, wall_ms=wall_ms)

    def _observe_latency(self, result: ModelResult) -> None:
        # An exponential average of each model's answer time: recent answers count most.
        latency = result.calls[0].latency_ms
        previous = self._typical_latency_ms.get(result.model_name)
        self._typical_latency_ms[result.model_name] = (
            latency if previous is None else previous + LATENCY_SMOOTHING * (latency - previous)
        )

    async def decide(self, prompt: Prompt, *, symbol: str, request_id: str) -> ChainResult:
        """Ask the fallback chain in order (primary, then backups) until one answers validly.

        Models of the chain that are not available are skipped; with no chain configured, every
        configured model is the chain in configuration order.
        """
        availability = await self.availability()
        chain = self._settings.fallback_chain or tuple(m.name for m in self._settings.models)
        results: list[ModelResult] = []
        for name in chain:
            if name not in availability.available:
                continue
            result = await self.ask(name, prompt, symbol=symbol, request_id=request_id)
            results.append(result)
            if result.decision is not None:
                break
            log.warning("%s gave no valid decision (%s); falling back", name, result.why_no_answer)
        return ChainResult(request_id=request_id, symbol=symbol, availability=availability,
                           results=tuple(results))

    async def _turn(self, model: ModelConfig, prompt: Prompt, symbol: str, request_id: str,
                    calls: list[LLMCall], parser: AnswerParser[BaseModel],
                    answers: list[BaseModel | None]) -> None:
        current = prompt
        for attempt in range(1 + self._settings.validation_retries):
            call, answer = await self._call(model, current, symbol, request_id, _purpose(attempt), parser)
            await self._record(call)
            calls.append(call)
            answers.append(answer)
            if call.outcome is not CallOutcome.REJECTED:
                return
            assert call.rejection is not None
            current = retry_prompt(prompt, call.rejection)

    async def _call(self, model: ModelConfig, prompt: Prompt, symbol: str, request_id: str,
                    purpose: CallPurpose, parser: AnswerParser[BaseModel]) -> tuple[LLMCall, BaseModel | None]:
        digest = prompt_hash(model, prompt.system, prompt.user)
        started_at = datetime.now(UTC)
        started = time.perf_counter()
        from_cache = False
        attempts = 0
        if self._cache_mode is CacheMode.REPLAY:
            assert self._cache is not None
            cached = await self._cache.get_answer(digest)
            if cached is None:
                return self._failed_call(
                    model, prompt, symbol, request_id, purpose, FailureKind.NOT_CACHED,
                    f"replay: no recorded answer of {model.name} for prompt {digest[:12]}",
                    http_attempts=0, latency_ms=_ms_since(started), digest=digest, kind=parser.kind,
                ), None
            completion, from_cache = Completion(cached.raw_answer, cached.usage), True
        else:
            endpoint = self._endpoints.get(model.name)
            if endpoint is None:
                return self._failed_call(
                    model, prompt, symbol, request_id, purpose, FailureKind.NOT_CONFIGURED,
                    f"{model.name} is not available", http_attempts=0, latency_ms=0.0, digest=digest,
                    kind=parser.kind,
                ), None
            try:
                completion, attempts = await self._request(model, endpoint, prompt)
            except _Exhausted as exc:
                return self._failed_call(
                    model, prompt, symbol, request_id, purpose, exc.error.kind,
                    self._redact(exc.error.detail)[:2000], http_attempts=exc.attempts,
                    latency_ms=_ms_since(started), digest=digest, kind=parser.kind,
                ), None
        latency_ms = _ms_since(started)
        raw = self._redact(completion.text)
        if self._cache_mode is CacheMode.RECORD:
            assert self._cache is not None
            await self._cache.put_answer(CachedAnswer(
                prompt_hash=digest, provider=model.provider.value, model_id=model.model_id,
                system_prompt=prompt.system, user_prompt=prompt.user, raw_answer=raw,
                usage=completion.usage, recorded_at=datetime.now(UTC),
            ))
        parsed = parser.parse(raw, model.name)
        rejection = parsed if isinstance(parsed, Rejection) else None
        answer = None if rejection else parsed
        decision = answer if isinstance(answer, TradingDecision) else None
        call = LLMCall(
            call_id=_call_id(request_id, model.name, purpose), request_id=request_id,
            time=started_at, model_name=model.name, provider=model.provider,
            model_id=model.model_id, symbol=symbol, purpose=purpose, prompt_hash=digest,
            system_prompt=prompt.system, user_prompt=prompt.user, raw_answer=raw,
            outcome=CallOutcome.REJECTED if rejection else CallOutcome.DECIDED,
            decision=decision, rejection=rejection, answer_kind=parser.kind,
            answer=answer.model_dump(mode="json") if answer is not None and decision is None else None,
            http_attempts=attempts, latency_ms=latency_ms, usage=completion.usage,
            cost_usd=0.0 if from_cache else call_cost_usd(completion.usage, model.prices),
            from_cache=from_cache,
        )
        if rejection is not None:
            log.warning("%s %s answer rejected: %s (%s)", model.name, parser.kind,
                        rejection.reason.value, rejection.detail[:200])
        elif decision is not None:
            log.info("%s decided %s %s in %.0f ms ($%.5f)", model.name, decision.action.value,
                     symbol, call.latency_ms, call.cost_usd)
        else:
            log.info("%s answered a %s on %s in %.0f ms ($%.5f)", model.name, parser.kind,
                     symbol, call.latency_ms, call.cost_usd)
        return call, answer

    async def _request(self, model: ModelConfig, endpoint: ModelEndpoint,
                       prompt: Prompt) -> tuple[Completion, int]:
        """Send with retries and backoff; returns the completion and the HTTP attempts made."""
        attempts = 0
        while True:
            if self._rate_limiter is not None and model.requests_per_minute is not None:
                admitted = await self._rate_limiter.acquire(
                    model.provider.value, model.model_id, model.requests_per_minute, self._rate_limit_wait_s,
                )
                if not admitted:
                    raise _Exhausted(ProviderError(
                        FailureKind.LOCAL_RATE_LIMIT,
                        f"{model.requests_per_minute}/min shared limit full for "
                        f"{self._rate_limit_wait_s:g} s"), attempts)
            attempts += 1
            try:
                return await endpoint.complete(prompt.system, prompt.user), attempts
            except ProviderError as error:
                if error.kind not in RETRYABLE or attempts > model.max_retries:
                    raise _Exhausted(error, attempts) from None
                delay = self._backoff(attempts, error.retry_after_s)
                log.warning("%s: %s (attempt %d of %d), retrying in %.2f s", model.name,
                            error.kind.value, attempts, model.max_retries + 1, delay)
                await asyncio.sleep(delay)

    def _backoff(self, attempts: int, retry_after_s: float | None) -> float:
        # Exponential with jitter, so processes that were refused together do not retry together;
        # a provider's Retry-After wins when it asks for longer.
        base = self._settings.backoff_s * 2.0 ** (attempts - 1)
        delay = base * (0.5 + random.random() / 2)
        if retry_after_s is not None:
            delay = max(delay, retry_after_s)
        return min(delay, self._settings.backoff_max_s)

    def _failed_call(self, model: ModelConfig, prompt: Prompt, symbol: str, request_id: str,
                     purpose: CallPurpose, failure: FailureKind, detail: str, *, http_attempts: int,
                     latency_ms: float, digest: str | None = None,
                     kind: str = TRADING_DECISION_KIND) -> LLMCall:
        log.warning("%s call failed: %s (%s)", model.name, failure.value, detail[:200])
        return LLMCall(
            call_id=_call_id(request_id, model.name, purpose), request_id=request_id,
            time=datetime.now(UTC) - timedelta(milliseconds=latency_ms), model_name=model.name,
            provider=model.provider,
            model_id=model.model_id, symbol=symbol, purpose=purpose,
            prompt_hash=digest or prompt_hash(model, prompt.system, prompt.user),
            system_prompt=prompt.system, user_prompt=prompt.user, raw_answer=None,
            outcome=CallOutcome.FAILED, failure=failure, error_detail=detail,
            http_attempts=http_attempts, latency_ms=latency_ms, usage=TokenUsage(), cost_usd=0.0,
            answer_kind=kind,
        )

    async def _record(self, call: LLMCall) -> None:
        if self._recorder is not None:
            await self._recorder.record_call(call)

    def _redact(self, text: str) -> str:
        # A provider may echo a key back (e.g. in an authentication error): it never goes further.
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text


class _Exhausted(Exception):
    def __init__(self, error: ProviderError, attempts: int) -> None:
        super().__init__(str(error))
        self.error = error
        self.attempts = attempts


def _purpose(attempt: int) -> CallPurpose:
    return CallPurpose.ASK if attempt == 0 else CallPurpose.VALIDATION_RETRY


def _call_id(request_id: str, model_name: str, purpose: CallPurpose) -> str:
    return f"{request_id}:{model_name}:{purpose.value}"


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


