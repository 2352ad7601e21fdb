"""LLM deliberation foundation: providers, prompts, the TradingDecision schema, record/replay.

Entry points: :class:`~triplegain_core.llm.client.LLMClient` (``ask``, ``ask_for``, ``fan_out``, ``decide``),
:func:`~triplegain_core.llm.prompts.build_prompt`, :func:`~triplegain_core.llm.trading_decision.parse_decision`,
and :class:`~triplegain_core.storage.llm_store.LLMStore` for the stored calls.

Deliberation, one module per mode: ``voting`` (parallel, confidence-weighted consensus),
``model_selector`` (weights and primary from scored performance), ``debate`` (bull, bear,
portfolio manager), ``council`` (pitches, anonymous reviews, chairman), ``gate`` (confirm or
veto a rules signal), ``checkpoints`` (STAY/EXIT/FLIP/REDUCE per open position) and
``leaderboard`` (per-model paper accounts). The decision lifecycle lives in ``triplegain_core.decisions``.
"""
