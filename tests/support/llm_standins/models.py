"""LLM settings pointing the real SDKs at a stand-in, one model per provider."""

from __future__ import annotations

from triplegain_core.llm.models import LLMSettings, ModelConfig, Provider, TokenPrices

TEST_KEYS = {
    "ANTHROPIC_API_KEY": "sk-ant-test-9f8e7d6c5b4a",
    "OPENAI_API_KEY": "sk-openai-test-1a2b3c4d5e6f",
    "XAI_API_KEY": "xai-test-0a9b8c7d6e5f",
    "DEEPSEEK_API_KEY": "sk-deepseek-test-5e4d3c2b1a0f",
}


def keys(*names: str) -> dict[str, str]:
    """An environment holding only the named test keys."""
    return {name: TEST_KEYS[name] for name in names}


PRICES = TokenPrices(input_usd_per_mtok=3.0, output_usd_per_mtok=15.0)


def standin_model(name: str, provider: Provider, url: str, **overrides: object) -> ModelConfig:
    """A model of ``provider`` served by the stand-in at ``url``; its model id is its name."""
    base_url = f"{url}/v1" if provider in (Provider.OPENAI, Provider.XAI, Provider.DEEPSEEK) else url
    values: dict[str, object] = {"name": name, "provider": provider, "model_id": name,
                                 "base_url": base_url, "prices": PRICES, "timeout_s": 5.0}
    values.update(overrides)
    return ModelConfig.model_validate(values)


def five_models(url: str, **overrides: object) -> tuple[ModelConfig, ...]:
    """Claude, GPT, Grok, DeepSeek and Qwen (Ollama), all on the stand-in."""
    return (
        standin_model("claude", Provider.ANTHROPIC, url, **overrides),
        standin_model("gpt", Provider.OPENAI, url, **overrides),
        standin_model("grok", Provider.XAI, url, **overrides),
        standin_model("deepseek", Provider.DEEPSEEK, url, **overrides),
        standin_model("qwen", Provider.OLLAMA, url, **overrides),
    )


def standin_settings(url: str, **settings: object) -> LLMSettings:
    """The five stand-in models, fast backoff, chain claude -> gpt -> qwen."""
    values: dict[str, object] = {"models": five_models(url), "fallback_chain": ("claude", "gpt", "qwen"),
                                 "backoff_s": 0.01, "backoff_max_s": 0.05}
    values.update(settings)
    return LLMSettings.model_validate(values)
