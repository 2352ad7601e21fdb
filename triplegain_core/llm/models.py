"""Typed LLM configuration (providers, models, prices, fallback chain) and call results.

Configuration holds no secret: API keys are read from the environment by the client, by the
variable named in :data:`PROVIDER_KEY_ENV`, at the moment it builds the provider's SDK client.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

from triplegain_core.errors import did_you_mean
from triplegain_core.llm.trading_decision import Rejection, TradingDecision


class Provider(StrEnum):
    """Who serves a model, and so which SDK and wire format are used."""

    ANTHROPIC = "anthropic"
    OPENAI = "openai"
    XAI = "xai"
    DEEPSEEK = "deepseek"
    OLLAMA = "ollama"


# The environment variable holding each provider's key (Ollama runs keyless on OLLAMA_HOST).
PROVIDER_KEY_ENV: dict[Provider, str | None] = {
    Provider.ANTHROPIC: "ANTHROPIC_API_KEY",
    Provider.OPENAI: "OPENAI_API_KEY",
    Provider.XAI: "XAI_API_KEY",
    Provider.DEEPSEEK: "DEEPSEEK_API_KEY",
    Provider.OLLAMA: None,
}
OLLAMA_HOST_ENV = "OLLAMA_HOST"

DEFAULT_BASE_URLS: dict[Provider, str] = {
    Provider.ANTHROPIC: "https://api.anthropic.com",
    Provider.OPENAI: "https://api.openai.com/v1",
    Provider.XAI: "https://api.x.ai/v1",
    Provider.DEEPSEEK: "https://api.deepseek.com",
    Provider.OLLAMA: "http://127.0.0.1:11434",
}


class TokenPrices(BaseModel):
    """US dollars per million input and output tokens."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input_usd_per_mtok: float = Field(default=0.0, ge=0.0)
    output_usd_per_mtok: float = Field(default=0.0, ge=0.0)


class ModelConfig(BaseModel):
    """One model as configured: ``name`` is the label used everywhere (results, store, leaderboard).

    ``base_url`` None means the provider's public endpoint (for Ollama: ``$OLLAMA_HOST``, else
    the local default). ``timeout_s`` bounds each HTTP request; ``max_retries`` counts the
    retries after a 429, a 5xx or a dropped connection; ``requests_per_minute`` is the limit
    shared through Redis by every process using the same provider model. ``temperature`` is
    sent to OpenAI-compatible and Ollama models (Anthropic's current Messages API takes none).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    provider: Provider
    model_id: str = Field(min_length=1)
    base_url: str | None = None
    timeout_s: float = Field(default=10.0, gt=0.0, le=300.0)
    max_retries: int = Field(default=2, ge=0, le=10)
    prices: TokenPrices = TokenPrices()
    max_output_tokens: int = Field(default=600, ge=16, le=8192)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    requests_per_minute: int | None = Field(default=None, ge=1)


class LLMSettings(BaseModel):
    """The LLM section of the configuration.

    ``fallback_chain`` names the primary model and up to two backups for single-model decisions;
    ``turn_deadline_s`` bounds each model's whole turn (retries and the validation retry included);
    ``backoff_s``/``backoff_max_s`` shape the exponential backoff between retries;
    ``prompt_token_budget`` is the budget to build prompts with; ``validation_retries`` (0 or 1)
    is how often an invalid answer is asked again with the rejection explained.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    models: tuple[ModelConfig, ...] = ()
    fallback_chain: tuple[str, ...] = Field(default=(), max_length=3)
    turn_deadline_s: float = Field(default=30.0, gt=0.0)
    backoff_s: float = Field(default=0.5, ge=0.0)
    backoff_max_s: float = Field(default=8.0, ge=0.0)
    prompt_token_budget: int = Field(default=6_000, ge=500)
    validation_retries: int = Field(default=1, ge=0, le=1)

    @model_validator(mode="after")
    def _names_resolve(self) -> LLMSettings:
        names = self.model_names()
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"llm.models: model names must be unique, repeated: {duplicates}")
        unknown = unknown_models("llm.fallback_chain", self.fallback_chain, names)
        if unknown:
            raise ValueError(unknown)
        if len(set(self.fallback_chain)) != len(self.fallback_chain):
            raise ValueError(f"llm.fallback_chain repeats a model: {list(self.fallback_chain)}")
        return self

    def model_names(self) -> list[str]:
        """The configured models' names, in configuration order."""
        return [model.name for model in self.models]

    def model(self, name: str) -> ModelConfig:
        """The model configured under ``name`` (KeyError if none)."""
        for model in self.models:
            if model.name == name:
                return model
        raise KeyError(f"no model named {name!r}; configured: {[m.name for m in self.models]}")


def unknown_models(key: str, named: str | Sequence[str] | None, configured: Sequence[str]) -> str | None:
    """The one-line answer when the configuration's ``key`` names a model not in ``configured``.

    ``named`` is the key's value: one model name, a list of them, or None (nothing to check).
    None when every name resolves.
    """
    listed = ", ".join(configured) or "none (add an [[llm.models]] entry)"
    if isinstance(named, str):
        if named in configured:
            return None
        return (f"{key}: {named!r} is not a configured llm model; configured models: {listed}"
                f"{did_you_mean(named, configured)}")
    unknown = [name for name in named or () if name not in configured]
    if not unknown:
        return None
    return f"{key}: unknown models {unknown}; configured models: {listed}{did_you_mean(unknown[0], configured)}"


def default_llm_settings() -> LLMSettings:
    """The five models of the product card, with list prices (USD per million tokens).

    Each is used only when its key is in the environment (or, for Qwen, Ollama answers).
    """
    return LLMSettings(
        models=(
            ModelConfig(name="claude", provider=Provider.ANTHROPIC, model_id="claude-sonnet-4-5",
                        prices=TokenPrices(input_usd_per_mtok=3.0, output_usd_per_mtok=15.0)),
            ModelConfig(name="gpt", provider=Provider.OPENAI, model_id="gpt-4o",
                        prices=TokenPrices(input_usd_per_mtok=2.5, output_usd_per_mtok=10.0)),
            ModelConfig(name="grok", provider=Provider.XAI, model_id="grok-4",
                        prices=TokenPrices(input_usd_per_mtok=3.0, output_usd_per_mtok=15.0)),
            ModelConfig(name="deepseek", provider=Provider.DEEPSEEK, model_id="deepseek-chat",
                        prices=TokenPrices(input_usd_per_mtok=0.28, output_usd_per_mtok=0.42)),
            ModelConfig(name="qwen", provider=Provider.OLLAMA, model_id="qwen2.5:7b",
                        timeout_s=30.0),
        ),
        fallback_chain=("claude", "gpt", "qwen"),
    )


class TokenUsage(BaseModel):
    """Tokens the provider billed for one answer."""

    model_config = ConfigDict(frozen=True)

    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)


class FailureKind(StrEnum):
    """Why a call produced no answer at all (as opposed to an answer that was rejected)."""

    NOT_CONFIGURED = "not_configured"
    TIMEOUT = "timeout"
    RATE_LIMITED = "rate_limited"
    LOCAL_RATE_LIMIT = "local_rate_limit"
    SERVER_ERROR = "server_error"
    CONNECTION_ERROR = "connection_error"
    CLIENT_ERROR = "client_error"
    BAD_RESPONSE = "bad_response"
    NOT_CACHED = "not_cached"


class CallOutcome(StrEnum):
    """How one call ended."""

    DECIDED = "decided"
    REJECTED = "rejected"
    FAILED = "failed"


class CallPurpose(StrEnum):
    """Whether a call is the first ask or the one retry after a rejected answer."""

    ASK = "ask"
    VALIDATION_RETRY = "validation_retry"


# The answer kind of a call asked for a TradingDecision (the default); other kinds are named by
# the deliberation modules that define their answer schemas (reviews, verdicts, research cases).
TRADING_DECISION_KIND = "trading_decision"


class LLMCall(BaseModel):
    """One request to one model, as stored: what was asked, what came back, what it became.

    Exactly one result is set: ``decision`` or ``answer`` (DECIDED), ``rejection`` (REJECTED) or
    ``failure`` (FAILED). ``answer_kind`` names the schema asked for; a TradingDecision lands in
    ``decision``, any other validated answer in ``answer`` as its JSON form.
    ``time`` is when the call started; ``http_attempts`` counts the HTTP requests behind it
    (retries after 429/5xx included);
    ``latency_ms`` is the wall time of all of them; a replayed answer costs nothing.
    """

    model_config = ConfigDict(frozen=True)

    call_id: str
    request_id: str
    time: datetime
    model_name: str
    provider: Provider
    model_id: str
    symbol: str
    purpose: CallPurpose
    prompt_hash: str
    system_prompt: str
    user_prompt: str
    raw_answer: str | None
    outcome: CallOutcome
    decision: TradingDecision | None = None
    rejection: Rejection | None = None
    failure: FailureKind | None = None
    error_detail: str | None = None
    http_attempts: int = Field(ge=0)
    latency_ms: float = Field(ge=0.0)
    usage: TokenUsage = TokenUsage()
    cost_usd: float = Field(default=0.0, ge=0.0)
    from_cache: bool = False
    answer_kind: str = Field(default=TRADING_DECISION_KIND, pattern=r"^[a-z_]+$")
    answer: JsonValue | None = None

    @model_validator(mode="after")
    def _one_result(self) -> LLMCall:
        if self.decision is not None and self.answer is not None:
            raise ValueError("a call carries a decision or an answer, not both")
        expected = {
            CallOutcome.DECIDED: (True, False, False),
            CallOutcome.REJECTED: (False, True, False),
            CallOutcome.FAILED: (False, False, True),
        }[self.outcome]
        decided = self.decision is not None or self.answer is not None
        actual = (decided, self.rejection is not None, self.failure is not None)
        if actual != expected:
            raise ValueError(f"{self.outcome} call must carry exactly its own result, got {actual}")
        return self


class ModelResult(BaseModel):
    """One model's turn: its calls (the ask, maybe one validation retry) and what they came to."""

    model_config = ConfigDict(frozen=True)

    model_name: str
    calls: tuple[LLMCall, ...] = Field(min_length=1)

    @property
    def final(self) -> LLMCall:
        """The call that counts: the last one made."""
        return self.calls[-1]

    @property
    def outcome(self) -> CallOutcome:
        """How the turn ended (the final call's outcome)."""
        return self.final.outcome

    @property
    def decision(self) -> TradingDecision | None:
        """The validated decision, or None (rejected twice, failed, timed out)."""
        return self.final.decision

    @property
    def latency_ms(self) -> float:
        """Time spent in all the turn's calls."""
        return sum(call.latency_ms for call in self.calls)

    @property
    def cost_usd(self) -> float:
        """What all the turn's calls cost."""
        return sum(call.cost_usd for call in self.calls)

    @property
    def why_no_answer(self) -> str:
        """The machine-readable reason the final call gave no valid answer (its rejection reason
        or failure kind; the outcome itself for a call that did answer)."""
        final = self.final
        if final.rejection is not None:
            return final.rejection.reason.value
        return final.failure.value if final.failure is not None else final.outcome.value


class LLMStatus(StrEnum):
    """Whether any model can be asked at all."""

    READY = "ready"
    NO_MODELS_CONFIGURED = "no_models_configured"


NO_MODELS_MESSAGE = (
    "No LLM is configured (no ANTHROPIC_API_KEY, OPENAI_API_KEY, XAI_API_KEY or DEEPSEEK_API_KEY "
    "in the environment and no Ollama reachable): trading on the rules alone."
)


class ModelAvailability(BaseModel):
    """Whether one configured model can be asked now, and why not.

    ``mistake`` marks a reason that is the user's to fix (a key set but unusable), as opposed to
    a model simply not set up: the availability's message then says what is wrong.
    """

    model_config = ConfigDict(frozen=True)

    name: str
    available: bool
    reason: str
    mistake: bool = False


class LLMAvailability(BaseModel):
    """Which configured models can be asked; ``message`` is what a caller shows a person."""

    model_config = ConfigDict(frozen=True)

    models: tuple[ModelAvailability, ...]

    @property
    def available(self) -> tuple[str, ...]:
        """Names of the models that can be asked, in configuration order."""
        return tuple(m.name for m in self.models if m.available)

    @property
    def status(self) -> LLMStatus:
        """READY when at least one model can be asked, else NO_MODELS_CONFIGURED."""
        return LLMStatus.READY if self.available else LLMStatus.NO_MODELS_CONFIGURED

    @property
    def message(self) -> str:
        """A sentence for a person: which models are ready, or that none is, and what the user
        got wrong in setting up the others."""
        mistakes = "; ".join(f"model {m.name}: {m.reason}" for m in self.models if m.mistake)
        if not self.available:
            if mistakes:
                return f"No LLM can be asked ({mistakes}): trading on the rules alone."
            return NO_MODELS_MESSAGE
        ready = f"LLM models ready: {', '.join(self.available)}"
        return f"{ready}; not asked: {mistakes}" if mistakes else ready


class FanOutResult(BaseModel):
    """Every available model's answer to the same prompt, asked at once.

    With no model available, ``results`` is empty and ``status`` says NO_MODELS_CONFIGURED:
    the caller trades on the rules alone and shows ``message``.
    """

    model_config = ConfigDict(frozen=True)

    request_id: str
    symbol: str
    availability: LLMAvailability
    results: tuple[ModelResult, ...]
    wall_ms: float = Field(ge=0.0)

    @property
    def status(self) -> LLMStatus:
        """Whether any model could be asked."""
        return self.availability.status

    @property
    def message(self) -> str:
        """What to show a person about the models (none configured: rules alone)."""
        return self.availability.message

    @property
    def decisions(self) -> dict[str, TradingDecision]:
        """The validated decisions, by model name."""
        return {r.model_name: r.decision for r in self.results if r.decision is not None}


class ChainResult(BaseModel):
    """A decision asked of the fallback chain: the first model with a valid answer decides."""

    model_config = ConfigDict(frozen=True)

    request_id: str
    symbol: str
    availability: LLMAvailability
    results: tuple[ModelResult, ...]

    @property
    def status(self) -> LLMStatus:
        """Whether any model could be asked."""
        return self.availability.status

    @property
    def message(self) -> str:
        """What to show a person about the models (none configured: rules alone)."""
        return self.availability.message

    @property
    def decision(self) -> TradingDecision | None:
        """The first validated decision along the chain, or None."""
        for result in self.results:
            if result.decision is not None:
                return result.decision
        return None

    @property
    def answered_by(self) -> str | None:
        """The model name whose decision counts, or None."""
        decision = self.decision
        return decision.model if decision is not None else None
