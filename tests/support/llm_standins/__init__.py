"""Local stand-ins for the LLM providers' HTTP APIs, driven by the real SDKs in tests."""

from tests.support.llm_standins.answers import INJECTION, decision_json
from tests.support.llm_standins.models import TEST_KEYS, five_models, keys, standin_model, standin_settings
from tests.support.llm_standins.routing import MemoryRecorder, Route, by_prompt, system_text, user_text
from tests.support.llm_standins.servers import LLMStandIn, ReceivedRequest, Reply, Script, StandInProcess

__all__ = ["INJECTION", "TEST_KEYS", "LLMStandIn", "MemoryRecorder", "ReceivedRequest", "Reply", "Route", "Script",
           "StandInProcess", "by_prompt", "decision_json", "five_models", "keys", "standin_model", "standin_settings",
           "system_text", "user_text"]
