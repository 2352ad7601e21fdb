"""The backtest group of commands on a file: walkforward, ml-export, lookahead, warmup."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from streamer.cli.main import main

XRP_FILE = "binance_xrp-eth_1m.parquet"


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TRIPLEGAIN_DATA_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)  # no triplegain.toml of the checkout's
    return tmp_path


def _args(shared_data: Path, grid: Path, *extra: str) -> list[str]:
    return ["walkforward", "--file", f"XRP/USDT={shared_data / XRP_FILE}", "--grid", str(grid),
            "--train-hours", "24", "--test-hours", "12", *extra]


def test_a_walk_forward_prints_each_strategy_and_draws_its_windows(
    shared_data: Path, data_dir: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    grid = data_dir / "grid.toml"
    grid.write_text("[momentum_scalp]\nfast_ema = [5, 8]\n")
    assert main(_args(shared_data, grid, "--anchored")) == 0
    out = capsys.readouterr()
    assert "2 anchored windows" in out.err and "window 2 of 2" in out.err
    [row] = [line for line in out.out.splitlines() if line.startswith("momentum_scalp")]
    assert row.count("fast_ema=") == 2  # one choice per window
    [picture] = (data_dir / "walkforward").glob("walkforward-*.png")
    assert picture.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(("text", "answer"), [
    ("[momentum_scalp]\nfast_ema = 5\n", "[momentum_scalp] must map each parameter to a non-empty list"),
    ("[nonesuch]\nx = [1]\n", "no strategy nonesuch to walk forward"),
    ("[momentum_scalp\n", "not valid TOML"),
    ("", "no strategy in it"),
])
def test_a_bad_grid_is_one_line_naming_it(
    shared_data: Path, data_dir: Path, capsys: pytest.CaptureFixture[str], text: str, answer: str,
) -> None:
    grid = data_dir / "grid.toml"
    grid.write_text(text)
    assert main(_args(shared_data, grid)) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"--grid {grid}" in error and answer in error


def test_windows_longer_than_the_history_are_one_line(
    shared_data: Path, data_dir: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    grid = data_dir / "grid.toml"
    grid.write_text("[momentum_scalp]\nfast_ema = [5]\n")
    args = _args(shared_data, grid)
    args[args.index("--train-hours") + 1] = "200"
    assert main(args) == 2
    assert "shorter than one train window and one test window" in capsys.readouterr().err


def test_the_ml_dataset_is_exported_per_timeframe(
    shared_data: Path, data_dir: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["ml-export", "--file", f"XRP/USDT={shared_data / XRP_FILE}", "--timeframes", "1m", "1h",
                 "--horizons", "1", "3"]) == 0
    written = sorted((data_dir / "ml").glob("*.parquet"))
    assert [p.name for p in written] == ["XRP-USDT_1h.parquet", "XRP-USDT_1m.parquet"]
    out = capsys.readouterr().out
    assert out.count("rows") == 2
    hourly = pd.read_parquet(written[0])
    assert {"rsi_14", "regime", "fwd_return_1", "fwd_return_3"} <= set(hourly.columns) and len(hourly) > 50


def test_the_strategy_checks_report_each_strategy_in_one_line(
    shared_data: Path, data_dir: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    source = ["--file", f"XRP/USDT={shared_data / XRP_FILE}"]
    assert main(["lookahead", *source, "--strategies", "momentum_scalp", "order_flow"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert any(line.startswith("momentum_scalp XRP/USDT 1m: no look-ahead") for line in out)
    assert any("order_flow XRP/USDT: not checkable from candles: reads" in line for line in out)
    assert main(["warmup", *source, "--strategies", "momentum_scalp", "--warmup", "100"]) == 0
    [line] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("momentum_scalp")]
    assert "warm-up 100 vs 200: signals unchanged" in line and "ema_50" in line
    assert main(["lookahead", *source, "--strategies", "momentum_scalpp"]) == 2
    assert "did you mean 'momentum_scalp'" in capsys.readouterr().err


@pytest.mark.parametrize(("config", "extra", "mistake"), [
    ("", ["--models-every", "30"], "--models-every needs --models"),
    ("[llm]\nmodels = []\n", ["--models"], "--models: the configuration names no model (llm.models is empty)"),
    ("", ["--warmup-minutes", "60"], "--warmup-minutes needs --from"),
    ("", ["--from", "2026-11-01", "--warmup-minutes", "-5"], "--warmup-minutes -5: give 0 or more minutes"),
])
def test_backtest_option_mistakes_get_one_line_before_any_server_is_reached(
    data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    config: str, extra: list[str], mistake: str,
) -> None:
    # A database that does not answer: the options must be judged before it is needed.
    monkeypatch.setenv("TRIPLEGAIN_DATABASE_URL", "postgresql://nobody@127.0.0.1:9/none")
    (data_dir / "triplegain.toml").write_text(config)
    assert main(["--config", str(data_dir / "triplegain.toml"), "backtest", "--symbols", "XRP/USDT", *extra]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"triplegain: {mistake}")
