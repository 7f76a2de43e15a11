"""``OpenAIServer``: an actor holding an aiohttp server that speaks the OpenAI API in front of LLM devices.

Existing agent frameworks and the ``openai`` client use a device through it::

    kernel.spawn(OpenAIServer, llm="llm", listen="127.0.0.1:8000", name="openai")
    client = openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="-")
    client.chat.completions.create(model="llm", messages=[...], stream=True)

The model id is the device's actor name. Every request becomes one streamed
``complete`` call on the device, so a client that hangs up cancels its sequence
and frees its KV blocks at once; ``X-Llmos-Priority`` (0..7) and ``X-Llmos-Objective``
become the call's priority and objective, the scheduling level on the device.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from ..actor import Actor
from ..errors import ActorDiedError, ActorNotFound, CallTimeout, ClosedError, LlmosError, RemoteError
from .openai_api import ApiError, Job, answer, chunk, parse_chat, parse_completion, usage_chunk

log = logging.getLogger(__name__)

#: Largest request body accepted (bytes).
MAX_BODY = 4 << 20
#: Devices one server fronts at most.
MAX_DEVICES = 64
PRIORITY_HEADER = "X-Llmos-Priority"
OBJECTIVE_HEADER = "X-Llmos-Objective"
CLIENT_ERRORS = {"ValueError", "TypeError"}


def parse_listen(listen: str) -> tuple[str, int]:
    """``"host:port"`` (``"[::1]:8000"`` for IPv6; port 0 picks a free one) as ``(host, port)``."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"listen must be HOST:PORT, like 127.0.0.1:8000, not {listen!r}")
    return host.strip("[]"), int(port)


class OpenAIServer(Actor):
    """The OpenAI-compatible HTTP endpoint: ``/v1/models``, ``/v1/completions``, ``/v1/chat/completions``.

    Args:
        llm: the device's name, or a list of names (each is a model id).
        listen: ``HOST:PORT`` to bind (port 0: any free port; ``address()`` tells which).
        api_key_file: a file holding the key clients must send as ``Authorization: Bearer KEY``
            (default: no key; bind to loopback then).
        request_timeout: seconds a device may take for each piece of an answer.
    """

    def __init__(
        self,
        llm: str | list[str] = "llm",
        listen: str = "127.0.0.1:8000",
        *,
        api_key_file: str | None = None,
        request_timeout: float = 600.0,
    ) -> None:
        names = [llm] if isinstance(llm, str) else list(llm)
        if not names or len(names) > MAX_DEVICES or not all(isinstance(n, str) and n for n in names):
            raise ValueError(f"llm must be a device name or a list of 1..{MAX_DEVICES} names")
        self.devices = names
        self.host, self.port = parse_listen(listen)
        self.api_key = Path(api_key_file).read_text().strip() if api_key_file else None
        if api_key_file and not self.api_key:
            raise ValueError(f"api_key_file {api_key_file!r} is empty")
        if not request_timeout > 0:
            raise ValueError("request_timeout must be > 0 seconds")
        self.request_timeout = float(request_timeout)
        self.counts = {"requests": 0, "errors": 0, "streams": 0, "active": 0}
        self._refs: dict[str, Any] = {}
        self._runner: web.AppRunner | None = None

    async def on_start(self) -> None:
        app = web.Application(client_max_size=MAX_BODY, middlewares=[self._errors])
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/v1/models/{model}", self._model)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/v1/chat/completions", self._chat)
        # A client that hangs up cancels its handler, which closes the device stream.
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        if self.api_key is None and self.host not in ("127.0.0.1", "::1", "localhost"):
            log.warning("OpenAI endpoint on %s:%d without an api key: anyone who can reach it can use it", *self.bound)
        log.info("OpenAI endpoint at %s for %s", self.address(), ", ".join(self.devices))

    async def on_stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def bound(self) -> tuple[str, int]:
        return self.host, self.port

    def address(self) -> str:
        """The base URL clients use (``openai.OpenAI(base_url=...)``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    def stats(self) -> dict:
        """Requests served, failed, streamed, in progress."""
        return dict(self.counts)

    # ------------------------------------------------------------------ HTTP plumbing
    @web.middleware
    async def _errors(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.api_key is not None:
            given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), self.api_key.encode()):
                return _error(ApiError(401, "invalid or missing API key", code="invalid_api_key"))
        try:
            return await handler(request)
        except ApiError as exc:
            self.counts["errors"] += 1
            return _error(exc)
        except web.HTTPException as exc:  # no such route, wrong method, body too large
            self.counts["errors"] += 1
            code = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(exc.status)
            return _error(ApiError(exc.status, f"{exc.reason}: {request.method} {request.path}", code=code))
        except (asyncio.CancelledError, ConnectionError):
            raise  # the client hung up
        except Exception as exc:
            self.counts["errors"] += 1
            log.exception("OpenAI endpoint: %s %s failed", request.method, request.path)
            return _error(ApiError(500, f"internal error: {type(exc).__name__}: {exc}", kind="server_error"))

    async def _body(self, request: web.Request) -> Any:
        try:
            return await request.json()
        except web.HTTPException:
            raise
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"the request body is not valid JSON: {exc}") from None

    def _level(self, request: web.Request) -> dict[str, Any]:
        options: dict[str, Any] = {"timeout": self.request_timeout}
        raw = request.headers.get(PRIORITY_HEADER)
        if raw is not None:
            if not raw.strip().isdigit() or not 0 <= int(raw) <= 7:
                raise ApiError(400, f"{PRIORITY_HEADER} must be an integer 0..7, not {raw!r}", param=PRIORITY_HEADER)
            options["priority"] = int(raw)
        raw = request.headers.get(OBJECTIVE_HEADER)
        if raw is not None:
            try:
                options["objective"] = float(raw)
            except ValueError:
                raise ApiError(
                    400, f"{OBJECTIVE_HEADER} must be a number, not {raw!r}", param=OBJECTIVE_HEADER
                ) from None
        return options

    async def _device(self, name: str) -> Any:
        if name not in self.devices:
            raise ApiError(
                404,
                f"the model {name!r} does not exist; models here: {', '.join(self.devices)}",
                param="model",
                code="model_not_found",
            )
        ref = self._refs.get(name)
        if ref is None:
            try:
                ref = self._refs[name] = await self.actor_kernel_async.lookup(name)
            except ActorNotFound:
                raise ApiError(503, f"the LLM device {name!r} is not running", kind="server_error") from None
        return ref

    # ------------------------------------------------------------------ routes
    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [_model_card(n) for n in self.devices]})

    async def _model(self, request: web.Request) -> web.Response:
        name = request.match_info["model"]
        await self._device(name)
        return web.json_response(_model_card(name))

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, parse_completion(await self._body(request)))

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, parse_chat(await self._body(request)))

    async def _serve(self, request: web.Request, job: Job) -> web.StreamResponse:
        self.counts["requests"] += 1
        options = self._level(request)
        ref = await self._device(job.model)
        created = int(time.time())
        stream = ref.options(**options).stream("complete", **job.device_kwargs())
        self.counts["active"] += 1
        try:
            if not job.stream:
                pieces, info = await _collect(stream, job.model)
                return web.json_response(answer(job, created, "".join(pieces), info))
            self.counts["streams"] += 1
            return await self._sse(request, job, created, stream)
        except ApiError as exc:
            if exc.status == 503:  # look the name up again next time: the device may be a new one
                self._refs.pop(job.model, None)
            raise
        finally:
            self.counts["active"] -= 1
            stream.close()  # a no-op when it ended; otherwise the device cancels the sequence

    async def _sse(self, request: web.Request, job: Job, created: int, stream: Any) -> web.StreamResponse:
        # The first piece (or the device's refusal) comes before the 200, so bad input is a plain 400.
        it = aiter(stream)
        first = await _next(it, job.model)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        info: dict = {}
        try:
            await _event(resp, chunk(job, created, None, first=True) if job.chat else None)
            item = first
            while item is not None:
                if isinstance(item, dict):
                    info = item
                elif item:
                    await _event(resp, chunk(job, created, item))
                item = await _next(it, job.model)
            await _event(resp, chunk(job, created, None, info.get("finish_reason", "stop")))
            if job.include_usage:
                await _event(resp, usage_chunk(job, created, info))
        except ApiError as exc:  # the device failed mid-answer: say so in the stream
            self.counts["errors"] += 1
            await _event(resp, exc.body())
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp


def _model_card(name: str) -> dict:
    return {"id": name, "object": "model", "created": 0, "owned_by": "llmos"}


def _error(exc: ApiError) -> web.Response:
    return web.json_response(exc.body(), status=exc.status)


async def _event(resp: web.StreamResponse, obj: dict | None) -> None:
    if obj is not None:
        await resp.write(b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n")


async def _next(it: Any, model: str) -> Any:
    """The device stream's next item (None at its end), its failures as ``ApiError``."""
    try:
        return await anext(it)
    except StopAsyncIteration:
        return None
    except RemoteError as exc:
        if exc.remote_type in CLIENT_ERRORS:
            raise ApiError(400, exc.remote_message) from None
        raise ApiError(500, f"the LLM device {model!r} failed: {exc.remote_message}", kind="server_error") from None
    except (ActorDiedError, ActorNotFound, ClosedError) as exc:
        raise ApiError(503, f"the LLM device {model!r} is not available: {exc}", kind="server_error") from None
    except CallTimeout as exc:
        raise ApiError(504, f"the LLM device {model!r} did not answer in time: {exc}", kind="timeout") from None
    except LlmosError as exc:
        raise ApiError(500, f"the LLM device {model!r} failed: {exc}", kind="server_error") from None


async def _collect(stream: Any, model: str) -> tuple[list[str], dict]:
    pieces: list[str] = []
    info: dict = {}
    it = aiter(stream)
    while (item := await _next(it, model)) is not None:
        if isinstance(item, dict):
            info = item
        else:
            pieces.append(item)
    return pieces, info


__all__ = ["OpenAIServer", "parse_listen"]
