"""Record and replay of model answers, keyed by a hash of the model and the exact prompt.

In RECORD mode every answer that arrives is kept (rejected ones too, so a replay rejects them
the same way); in REPLAY mode the network is never used: a cached answer is served at no cost,
and a prompt that was never recorded fails plainly as ``not_cached``. The storage behind the
:class:`AnswerCache` protocol is PostgreSQL (:mod:`triplegain_core.storage.llm_store`).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from pydantic import BaseModel, ConfigDict

from triplegain_core.llm.models import ModelConfig, TokenUsage


class CacheMode(StrEnum):
    """LIVE asks the providers; RECORD asks and keeps the answers; REPLAY only reads them back."""

    LIVE = "live"
    RECORD = "record"
    REPLAY = "replay"


class CachedAnswer(BaseModel):
    """A recorded raw answer with the prompt that produced it."""

    model_config = ConfigDict(frozen=True)

    prompt_hash: str
    provider: str
    model_id: str
    system_prompt: str
    user_prompt: str
    raw_answer: str
    usage: TokenUsage
    recorded_at: datetime


class AnswerCache(Protocol):
    """Where recorded answers live."""

    async def get_answer(self, prompt_hash: str) -> CachedAnswer | None:
        """The answer recorded under ``prompt_hash``, if any."""

    async def put_answer(self, answer: CachedAnswer) -> None:
        """Keep ``answer``; the first recording of a hash wins, so replays stay deterministic."""


def prompt_hash(model: ModelConfig, system: str, user: str) -> str:
    """SHA-256 over everything that shapes the answer: provider, model id, sampling, prompts."""
    material = json.dumps(
        {
            "provider": model.provider.value,
            "model_id": model.model_id,
            "temperature": model.temperature,
            "max_output_tokens": model.max_output_tokens,
            "system": system,
            "user": user,
        },
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(material.encode()).hexdigest()
