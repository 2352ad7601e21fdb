"""Answers chosen by what a request asks: route replies by prompt text, and record calls in memory.

Deliberation asks the same model different questions in one round (a bull case, then a review,
then a verdict); a :func:`by_prompt` factory lets a stand-in model answer each by the text of
its prompt, whichever wire format carried it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tests.support.llm_standins.servers import Reply
from triplegain_core.llm.models import LLMCall


def _content_text(content: object) -> str:
    # Anthropic accepts a string or a list of content blocks; the others send strings.
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(block.get("text", "") for block in content if isinstance(block, dict))
    return ""


def system_text(body: dict) -> str:
    """The system prompt of a request in any of the three wire formats."""
    if isinstance(body.get("system"), (str, list)):
        return _content_text(body["system"])
    return "".join(_content_text(m.get("content")) for m in body.get("messages", []) if m.get("role") == "system")


def user_text(body: dict) -> str:
    """The user prompt(s) of a request in any of the three wire formats."""
    return "".join(_content_text(m.get("content")) for m in body.get("messages", []) if m.get("role") == "user")


@dataclass(frozen=True, slots=True)
class Route:
    """Answer ``reply`` (or ``answer(body)``) when every one of ``contains`` is in the prompts."""

    contains: tuple[str, ...]
    reply: Reply | None = None
    answer: Callable[[dict], Reply] | None = None

    def matches(self, body: dict) -> bool:
        text = system_text(body) + "\n" + user_text(body)
        return all(part in text for part in self.contains)

    def respond(self, body: dict) -> Reply:
        if self.answer is not None:
            return self.answer(body)
        assert self.reply is not None
        return self.reply


def by_prompt(routes: Sequence[Route], default: Reply | None = None) -> Callable[[dict], Reply]:
    """A :class:`~llm_standins.servers.Script` factory: the first matching route answers."""
    def factory(body: dict) -> Reply:
        for route in routes:
            if route.matches(body):
                return route.respond(body)
        if default is not None:
            return default
        return Reply(status=400, text=f"no route matches the prompt: {user_text(body)[:200]!r}")
    return factory


@dataclass
class MemoryRecorder:
    """A CallRecorder keeping every recorded call in a list (for tests without PostgreSQL)."""

    calls: list[LLMCall] = field(default_factory=list)

    async def record_call(self, call: LLMCall) -> None:
        """Keep ``call``."""
        self.calls.append(call)

    def of_kind(self, kind: str) -> list[LLMCall]:
        """The recorded calls that asked for ``kind`` answers."""
        return [call for call in self.calls if call.answer_kind == kind]
