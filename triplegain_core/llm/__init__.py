"""LLM deliberation foundation: providers, prompts, the TradingDecision schema, record/replay.

Entry points: :class:`~triplegain_core.llm.client.LLMClient` (``ask``, ``fan_out``, ``decide``),
:func:`~triplegain_core.llm.prompts.build_prompt`, :func:`~triplegain_core.llm.trading_decision.parse_decision`,
and :class:`~triplegain_core.storage.llm_store.LLMStore` for the stored calls.
"""
