"""Local stand-ins for the LLM providers' HTTP APIs, driven by the real SDKs in tests."""

from llm_standins.models import TEST_KEYS, five_models, keys, standin_model, standin_settings
from llm_standins.servers import LLMStandIn, ReceivedRequest, Reply, Script, StandInProcess

__all__ = ["TEST_KEYS", "LLMStandIn", "ReceivedRequest", "Reply", "Script", "StandInProcess", "five_models", "keys",
           "standin_model", "standin_settings"]
