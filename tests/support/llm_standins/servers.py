"""One local HTTP server speaking three LLM wire formats, with scriptable answers and faults.

Routes (the real providers' paths, so the real SDKs are pointed at it by base URL only):

* ``POST /v1/messages``          Anthropic Messages API
* ``POST /v1/chat/completions``  OpenAI Chat Completions (also xAI and DeepSeek, which copy it)
* ``POST /api/chat``             Ollama chat (``stream: false``), ``GET /api/tags`` and ``/api/version``

Each request names a model; the model's :class:`Script` decides the answer: a text, a delay,
an HTTP error status (429 with ``retry-after``, 5xx), a broken response envelope or a dropped
connection. ``with LLMStandIn()`` runs the server on its own loop in a background thread (for
sync tests); ``async with LLMStandIn()`` runs it on the caller's loop, which spares the thread
hand-offs under the GIL when timing matters (benchmarks, long fault runs).
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

from aiohttp import web


@dataclass(frozen=True, slots=True)
class Reply:
    """One scripted answer.

    ``text`` is the model's answer; ``status`` an HTTP status (200 = success, else the
    provider's error envelope); ``raw_body`` replaces the whole response body (a broken
    envelope); ``delay_s`` waits before answering; ``drop`` closes the connection unanswered.
    """

    text: str = ""
    status: int = 200
    delay_s: float = 0.0
    retry_after_s: float | None = None
    raw_body: str | None = None
    drop: bool = False
    input_tokens: int = 120
    output_tokens: int = 40


@dataclass
class Script:
    """What one model answers: queued replies first, then ``default`` (or a factory) forever."""

    replies: deque[Reply] = field(default_factory=deque)
    default: Reply | None = None
    factory: Callable[[dict], Reply] | None = None

    def next_reply(self, request_body: dict) -> Reply:
        """The reply to the next request (404 when the model is not scripted)."""
        if self.replies:
            return self.replies.popleft()
        if self.factory is not None:
            return self.factory(request_body)
        if self.default is not None:
            return self.default
        return Reply(status=404, text=f"model {request_body.get('model')!r} is not scripted")


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    """A request the stand-in received, for assertions (header names in lower case)."""

    route: str
    model: str
    headers: dict[str, str]
    body: dict
    received_at: float


class LLMStandIn:
    """The stand-in server. Use as a context manager; ``url`` is its base (``http://127.0.0.1:PORT``)."""

    def __init__(self) -> None:
        self._scripts: dict[str, Script] = {}
        self._lock = threading.Lock()
        self.requests: list[ReceivedRequest] = []
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self.port = 0

    @property
    def url(self) -> str:
        """The base URL to point the SDKs at (OpenAI-compatible ones add ``/v1``)."""
        return f"http://127.0.0.1:{self.port}"

    def script(self, model: str, *replies: Reply, default: Reply | None = None,
               factory: Callable[[dict], Reply] | None = None) -> None:
        """Set what ``model`` answers: ``replies`` in order, then ``default`` or ``factory``."""
        with self._lock:
            self._scripts[model] = Script(deque(replies), default, factory)

    def requests_for(self, model: str) -> list[ReceivedRequest]:
        """The requests received for ``model``, in arrival order."""
        with self._lock:
            return [r for r in self.requests if r.model == model]

    def __enter__(self) -> LLMStandIn:
        self._thread = threading.Thread(target=self._serve, name="llm-standin", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("LLM stand-in did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._thread is not None
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def __aenter__(self) -> LLMStandIn:
        await self._start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stop()

    def _serve(self) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/messages", self._anthropic)
        app.router.add_post("/v1/chat/completions", self._openai)
        app.router.add_post("/api/chat", self._ollama)
        app.router.add_get("/api/tags", self._ollama_tags)
        app.router.add_get("/api/version", self._ollama_version)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # the OS-chosen free port

    async def _stop(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _reply_for(self, route: str, request: web.Request) -> tuple[Reply, dict]:
        body = await request.json()
        model = str(body.get("model", ""))
        with self._lock:
            self.requests.append(
                ReceivedRequest(route, model, {k.lower(): v for k, v in request.headers.items()},
                                body, time.monotonic())
            )
            script = self._scripts.get(model, Script())
            reply = script.next_reply(body)
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        if reply.drop and request.transport is not None:
            request.transport.close()
        return reply, body

    def _headers(self, reply: Reply) -> dict[str, str]:
        if reply.retry_after_s is None:
            return {}
        return {"retry-after": f"{reply.retry_after_s:g}"}

    async def _anthropic(self, request: web.Request) -> web.StreamResponse:
        reply, body = await self._reply_for("anthropic", request)
        if reply.raw_body is not None:
            return web.Response(status=reply.status, text=reply.raw_body,
                                content_type="application/json", headers=self._headers(reply))
        if reply.status != 200:
            kind = {429: "rate_limit_error", 529: "overloaded_error"}.get(reply.status, "api_error")
            return web.json_response(
                {"type": "error", "error": {"type": kind, "message": reply.text or kind}},
                status=reply.status, headers=self._headers(reply))
        return web.json_response({
            "id": f"msg_{next(self._ids):08d}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model"),
            "content": [{"type": "text", "text": reply.text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens},
        })

    async def _openai(self, request: web.Request) -> web.StreamResponse:
        reply, body = await self._reply_for("openai", request)
        if reply.raw_body is not None:
            return web.Response(status=reply.status, text=reply.raw_body,
                                content_type="application/json", headers=self._headers(reply))
        if reply.status != 200:
            return web.json_response(
                {"error": {"message": reply.text or "error", "type": "server_error",
                           "param": None, "code": str(reply.status)}},
                status=reply.status, headers=self._headers(reply))
        return web.json_response({
            "id": f"chatcmpl-{next(self._ids):08d}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": reply.text, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }],
            "usage": {
                "prompt_tokens": reply.input_tokens,
                "completion_tokens": reply.output_tokens,
                "total_tokens": reply.input_tokens + reply.output_tokens,
            },
        })

    async def _ollama(self, request: web.Request) -> web.StreamResponse:
        reply, body = await self._reply_for("ollama", request)
        if reply.raw_body is not None:
            return web.Response(status=reply.status, text=reply.raw_body,
                                content_type="application/json", headers=self._headers(reply))
        if reply.status != 200:
            return web.json_response({"error": reply.text or "error"}, status=reply.status,
                                     headers=self._headers(reply))
        return web.json_response({
            "model": body.get("model"),
            "created_at": "2026-01-01T00:00:00.000000Z",
            "message": {"role": "assistant", "content": reply.text},
            "done": True,
            "done_reason": "stop",
            "total_duration": 1_000_000,
            "load_duration": 100_000,
            "prompt_eval_count": reply.input_tokens,
            "prompt_eval_duration": 400_000,
            "eval_count": reply.output_tokens,
            "eval_duration": 500_000,
        })

    async def _ollama_tags(self, request: web.Request) -> web.StreamResponse:
        with self._lock:
            names = sorted(self._scripts)
        return web.json_response({"models": [
            {"name": name, "model": name, "modified_at": "2026-01-01T00:00:00Z", "size": 1,
             "digest": "0" * 64, "details": {}} for name in names
        ]})

    async def _ollama_version(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"version": "0.12.0"})


def _serve_fixed(defaults: dict[str, Reply], control: Connection) -> None:
    with LLMStandIn() as standin:
        for model, reply in defaults.items():
            standin.script(model, default=reply)
        control.send(standin.port)
        control.recv()  # until the parent says stop


class StandInProcess:
    """A stand-in in its own process, each model always giving the same reply.

    Like a remote provider, it starts its delays the moment a request arrives, whatever the
    client process is busy with: the fan-out benchmark needs that.
    """

    def __init__(self, defaults: dict[str, Reply]) -> None:
        self._defaults = defaults
        self._control: Connection | None = None
        self._process: multiprocessing.process.BaseProcess | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """The base URL of the server process."""
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> StandInProcess:
        context = multiprocessing.get_context("spawn")
        self._control, child = context.Pipe()
        self._process = context.Process(target=_serve_fixed, args=(self._defaults, child), daemon=True)
        self._process.start()
        if not self._control.poll(30):
            raise RuntimeError("stand-in process did not start")
        self.port = self._control.recv()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._control is not None and self._process is not None
        self._control.send("stop")
        self._process.join(10)
