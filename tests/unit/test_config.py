"""Configuration: one validated file, environment overrides, clear errors, paper by default."""

from __future__ import annotations

from pathlib import Path

import pytest

from triplegain_core.config import ConfigError, load_settings
from triplegain_core.model.market import Asset


def test_defaults_are_paper_on_kraken_with_the_starting_portfolio(tmp_path: Path) -> None:
    settings = load_settings(environ={}, data_dir=tmp_path)
    assert settings.mode == "paper"
    assert settings.ws_url == "wss://ws.kraken.com/v2"
    assert settings.starting_balances == {Asset.USDT: 1000.0, Asset.XRP: 500.0, Asset.BTC: 0.0}
    assert settings.risk.max_position_fraction == 0.20


def test_file_then_environment_then_explicit_overrides(tmp_path: Path) -> None:
    config = tmp_path / "tg.toml"
    config.write_text('account = "from-file"\nws_url = "ws://file"\n[risk]\nmax_drawdown = 0.05\n')
    settings = load_settings(config, environ={"TRIPLEGAIN_WS_URL": "ws://env"})
    assert (settings.account, settings.ws_url, settings.risk.max_drawdown) == ("from-file", "ws://env", 0.05)
    assert load_settings(config, environ={}, account="explicit").account == "explicit"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("account = \n", "not valid TOML"),
        ('symbols = ["DOGE/USDT"]\n', "unknown symbols"),
        ("fee_rate = 0.5\n", "fee_rate"),
        ("[risk]\nmax_position_fraction = 2.0\n", "max_position_fraction"),
        ("no_such_setting = 1\n", "no_such_setting"),
    ],
)
def test_a_broken_config_file_gives_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "tg.toml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings(config, environ={})


def test_a_named_config_file_that_is_missing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(environ={"TRIPLEGAIN_CONFIG": str(tmp_path / "absent.toml")})


def test_live_mode_needs_the_explicit_opt_in(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="opt-in"):
        load_settings(environ={"TRIPLEGAIN_MODE": "live"}, data_dir=tmp_path)
    live = load_settings(
        environ={"TRIPLEGAIN_MODE": "live", "TRIPLEGAIN_I_ACCEPT_LIVE_TRADING": "yes"}
    )
    assert live.mode == "live"


def test_risk_limits_default_to_the_architecture_and_are_configurable(tmp_path: Path) -> None:
    risk = load_settings(environ={}, data_dir=tmp_path).risk
    assert (risk.risk_per_trade, risk.max_stop_distance, risk.max_drawdown, risk.daily_loss_limit) == (
        0.01, 0.02, 0.10, 0.03)
    assert (risk.trailing_activation_r, risk.consecutive_losses, risk.cooldown_minutes) == (1.5, 5, 30.0)
    assert (risk.max_leverage, risk.long_leverage, risk.short_leverage) == (3.0, 1.5, 2.0)
    assert (risk.max_correlated_positions, risk.btc_correlation_threshold) == (2, 0.8)
    config = tmp_path / "tg.toml"
    config.write_text("[risk]\nmax_leverage = 2.0\nconsecutive_losses = 3\nmax_holding_minutes = 240\n")
    custom = load_settings(config, environ={}).risk
    assert (custom.max_leverage, custom.consecutive_losses, custom.max_holding_minutes) == (2.0, 3, 240.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[risk]\nmax_leverage = 50.0\n", "max_leverage"),
        ("[risk]\nconsecutive_losses = 0\n", "consecutive_losses"),
        ("[risk]\nno_such_limit = 1\n", "no_such_limit"),
    ],
)
def test_bad_risk_limits_are_clear_errors(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "tg.toml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings(config, environ={})


def test_the_readmes_example_configuration_loads_as_documented(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    example = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    config = tmp_path / "triplegain.toml"
    config.write_text(example)
    settings = load_settings(config, environ={})
    assert [m.name for m in settings.llm.models] == ["claude", "qwen"]
    assert settings.llm.model("qwen").provider.value == "ollama"
    assert settings.deliberation.mode.value == "parallel" and settings.deliberation.decision_ttl_s == 900
    assert settings.strategies.disabled == ("market_making",)
    assert settings.risk.max_drawdown == 0.10


def test_a_misconfigured_deliberation_is_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[deliberation]\nmode = "parliament"\n')
    with pytest.raises(ConfigError, match=r"deliberation\.mode"):
        load_settings(config, environ={})
    config.write_text('[[llm.models]]\nname = "x"\nprovider = "anthropic"\nmodel_id = "m"\napi_key = "sk-1"\n')
    with pytest.raises(ConfigError, match="api_key"):  # keys are never configuration
        load_settings(config, environ={})


def test_gated_strategies_need_a_configured_gate_model(tmp_path: Path) -> None:
    config = tmp_path / "gate.toml"
    config.write_text('[strategies]\ngated = ["trend_momentum"]\n')
    assert load_settings(config, environ={}).gate_model() == "claude"  # the fallback chain's primary
    config.write_text('[strategies]\ngated = ["trend_momentum"]\ngate_model = "gpt"\ngate_policy = "baseline"\n')
    settings = load_settings(config, environ={})
    assert settings.gate_model() == "gpt" and settings.strategies.gate_policy.value == "baseline"
    config.write_text('[strategies]\ngated = ["trend_momentum"]\ngate_model = "oracle"\n')
    with pytest.raises(ConfigError, match="'oracle' is not a configured llm model"):
        load_settings(config, environ={})


def _refusal(tmp_path: Path, text: str) -> str:
    """The one-line message load_settings refuses ``text`` with."""
    config = tmp_path / "names.toml"
    config.write_text(text)
    with pytest.raises(ConfigError) as refused:
        load_settings(config, environ={})
    message = str(refused.value)
    assert "\n" not in message and str(config) in message
    return message


@pytest.mark.parametrize("key", ["enabled", "disabled", "tested", "gated"])
def test_a_misspelt_strategy_name_is_refused_with_the_known_ones(tmp_path: Path, key: str) -> None:
    message = _refusal(tmp_path, f'[strategies]\n{key} = ["trend_momentum", "market_makng"]\n')
    assert f"strategies.{key}: unknown strategy 'market_makng'; known strategies: ema9_trend_flip, grid_rsi, " \
        "market_making," in message
    assert message.endswith("; did you mean 'market_making'?")


def test_disabling_a_misspelt_strategy_no_longer_lets_it_trade(tmp_path: Path) -> None:
    config = tmp_path / "tg.toml"
    config.write_text('[strategies]\ndisabled = ["market_making"]\n')
    assert load_settings(config, environ={}).strategies.disabled == ("market_making",)
    config.write_text('[strategies]\ndisabled = ["market_makng"]\n')
    with pytest.raises(ConfigError, match=r"strategies\.disabled: unknown strategy 'market_makng'"):
        load_settings(config, environ={})


def test_a_strategy_config_for_an_unknown_strategy_is_refused(tmp_path: Path) -> None:
    message = _refusal(tmp_path, '[strategies.config.wavetrnd]\ntimeframe = "1h"\n')
    assert "strategies.config: unknown strategy 'wavetrnd'; known strategies: " in message
    assert message.endswith("did you mean 'wavetrend'?")


def test_a_name_far_from_every_strategy_gets_no_suggestion(tmp_path: Path) -> None:
    message = _refusal(tmp_path, '[strategies]\ntested = ["zzzz"]\n')
    assert "strategies.tested: unknown strategy 'zzzz'" in message and "did you mean" not in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[llm]\nfallback_chain = ["claud"]\n[[llm.models]]\nname = "claude"\nprovider = "anthropic"\n'
         'model_id = "m"\n',
         "llm.fallback_chain: unknown models ['claud']; configured models: claude; did you mean 'claude'?"),
        ('[llm]\nfallback_chain = ["claude"]\n',
         "llm.fallback_chain: unknown models ['claude']; configured models: none (add an [[llm.models]] entry)"),
        ('[strategies]\ngate_model = "gtp"\n',
         "strategies.gate_model: 'gtp' is not a configured llm model; configured models: claude, gpt, grok, "
         "deepseek, qwen; did you mean 'gpt'?"),
        ('[deliberation]\nmode = "debate"\n[deliberation.debate]\nbull_model = "gpt"\nbear_model = "grokk"\n'
         'manager_model = "claude"\n',
         "deliberation.debate.bear_model: 'grokk' is not a configured llm model; configured models: claude, gpt, "
         "grok, deepseek, qwen; did you mean 'grok'?"),
        ('[deliberation]\nmode = "debate"\n[deliberation.debate]\nbull_model = "bard"\nbear_model = "gpt"\n'
         'manager_model = "claude"\n',
         "deliberation.debate.bull_model: 'bard' is not a configured llm model"),
        ('[deliberation]\nmode = "debate"\n[deliberation.debate]\nbull_model = "gpt"\nbear_model = "gpt"\n'
         'manager_model = "boss"\n',
         "deliberation.debate.manager_model: 'boss' is not a configured llm model"),
        ('[deliberation]\nmode = "council"\n[deliberation.council]\nchairman = "chair"\n',
         "deliberation.council.chairman: 'chair' is not a configured llm model; configured models: claude, gpt, "
         "grok, deepseek, qwen"),
        ('[deliberation]\nmode = "council"\n[deliberation.council]\nchairman = "claude"\nmembers = ["gpt", "qwen2"]\n',
         "deliberation.council.members: unknown models ['qwen2']; configured models: claude, gpt, grok, deepseek, "
         "qwen; did you mean 'qwen'?"),
    ],
)
def test_every_key_naming_a_model_names_a_configured_one(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in _refusal(tmp_path, text)


def test_the_configured_roles_load_when_every_name_resolves(tmp_path: Path) -> None:
    config = tmp_path / "roles.toml"
    config.write_text('[deliberation]\nmode = "council"\n[deliberation.council]\nchairman = "claude"\n'
                      'members = ["gpt", "qwen"]\n[strategies]\ngate_model = "grok"\n')
    settings = load_settings(config, environ={})
    assert settings.deliberation.council is not None and settings.deliberation.council.members == ("gpt", "qwen")
    assert settings.strategies.gate_model == "grok"


def test_an_unknown_symbol_is_refused_with_the_known_ones(tmp_path: Path) -> None:
    message = _refusal(tmp_path, 'symbols = ["BTC/USDT", "XRP/USTD"]\n')
    assert "symbols: unknown symbols ['XRP/USTD']; known symbols: BTC/USDT, XRP/USDT, XRP/BTC" in message
    assert message.endswith("did you mean 'XRP/USDT'?")


def test_an_unknown_starting_balance_asset_is_refused_with_the_known_ones(tmp_path: Path) -> None:
    message = _refusal(tmp_path, "[starting_balances]\nDOGE = 10.0\n")
    assert message.endswith("starting_balances.DOGE: Input should be 'BTC', 'USDT' or 'XRP'")


def test_every_validation_error_is_one_line_and_never_echoes_the_value(tmp_path: Path) -> None:
    secret = "placeholder-secret-value-for-this-test"
    message = _refusal(tmp_path, f'fee_rate = 0.5\n[[llm.models]]\nname = "x"\nprovider = "anthropic"\n'
                                 f'model_id = "m"\napi_key = "{secret}"\n')
    assert "fee_rate: Input should be less than or equal to 0.01" in message
    assert "llm.models.0.api_key: Extra inputs are not permitted" in message
    assert secret not in message and "0.5" not in message
