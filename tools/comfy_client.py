"""The pack's one ComfyUI client: HTTP requests and websocket progress on ``aiohttp`` (a ComfyUI
dependency), used by ``scripts/`` (queue_workflow, dragbench_batch), ``tools/comfy_server.py``
(servers the tests and the demo start) and the tests.

A client owns a private ``asyncio`` loop and one ``aiohttp`` session and is used like a blocking
client (from one thread at a time; a worker thread per server works). :meth:`ComfyClient.open_progress`
opens the server's websocket (``/ws?clientId=…``) — call it before queueing so no event is missed;
:meth:`ComfyClient.wait` follows a queued prompt over it (the events for that prompt go to
``on_event``, and nodes' progress texts as ``("progress_text", {"node", "text"})``) and reads
the result from ``/history``; when the websocket cannot be opened or is
lost it polls ``/history`` instead. :meth:`ComfyClient.close` ends the session.

API used (ComfyUI 0.8.0, ``server.py``): ``POST /prompt {"prompt", "client_id"}`` → ``prompt_id``
(HTTP 400 with ``node_errors`` when validation refuses it), ``GET /history/{id}``,
``POST /upload/image`` (multipart), ``GET /view?filename&subfolder&type``, ``GET /object_info``.
"""
from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

DONE_EVENTS = ("execution_success", "execution_error", "execution_interrupted")


PROGRESS_TEXT = 3   # protocol.BinaryEventTypes.TEXT: a node's progress text (send_progress_text)


def decode_progress_text(data: bytes) -> dict | None:
    """A binary websocket frame of ComfyUI's progress text → {"node": id, "text": str}
    (frame: event type (u32 BE), node-id length (u32 BE), node id, UTF-8 text; not tied to a
    prompt id). None for other binary events (preview images)."""
    if len(data) < 8 or int.from_bytes(data[:4], "big") != PROGRESS_TEXT:
        return None
    n = int.from_bytes(data[4:8], "big")
    return {"node": data[8:8 + n].decode("utf-8", "replace"),
            "text": data[8 + n:].decode("utf-8", "replace")}


class ComfyError(RuntimeError):
    """The server refused, failed or could not be reached. ``exit_code`` 2 = refused by the
    server's validation (``answer`` holds its reply), 1 = anything else (``status``: the failed
    prompt's history status, when there is one)."""

    def __init__(self, message: str, exit_code: int = 1, answer: dict | None = None,
                 status: dict | None = None):
        super().__init__(message)
        self.exit_code = exit_code
        self.answer = answer
        self.status = status


def describe_failure(status: dict) -> str:
    """Readable text for a failed prompt's history status (node, exception, traceback)."""
    for kind, data in status.get("messages", []):
        if kind == "execution_error":
            tb = "".join(data.get("traceback", []))
            return (f"node {data.get('node_id')} ({data.get('node_type')}): "
                    f"{data.get('exception_type')}: {data.get('exception_message')}\n{tb}")
        if kind == "execution_interrupted":
            return f"interrupted at node {data.get('node_id')}"
    return json.dumps(status, indent=1)[:4000]


class ComfyClient:
    """HTTP + websocket client of one ComfyUI server at ``url``."""

    error = ComfyError  # the exception class raised (subclasses may narrow it)
    wait_timeout = 3600.0  # seconds a prompt may run by default

    def __init__(self, url: str, client_id: str | None = None, timeout: float = 60.0):
        self.url = url.rstrip("/")
        if "://" not in self.url:
            self.url = "http://" + self.url
        self.client_id = client_id or uuid.uuid4().hex
        self.timeout = timeout
        self.ws_failed: str | None = None  # why progress came from polling, if it did
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def base_url(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url})"

    # -- plumbing --------------------------------------------------------------------------------
    def _run(self, coro):
        if self._loop is None or self._loop.is_closed():
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(coro)

    async def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    def close(self) -> None:
        """Close the websocket and the HTTP session (the client can be used again afterwards)."""
        async def go():
            if self.ws is not None:
                await self.ws.close()
            if self._session is not None:
                await self._session.close()
        if self._loop is not None and not self._loop.is_closed():
            self._loop.run_until_complete(go())
            self._loop.close()
        self.ws, self._session, self._loop = None, None, None

    # -- HTTP ------------------------------------------------------------------------------------
    async def _request(self, method: str, path: str,
                       body: bytes | aiohttp.FormData | None = None,
                       content_type: str | None = "application/json",
                       timeout: float | None = None) -> tuple[int, bytes]:
        headers = {"Content-Type": content_type} if body is not None and content_type else None
        t = aiohttp.ClientTimeout(total=timeout or self.timeout)
        session = await self._get_session()
        try:
            async with session.request(method, self.url + path, data=body, headers=headers,
                                       timeout=t) as r:
                return r.status, await r.read()
        except (aiohttp.ClientConnectionError, asyncio.TimeoutError, OSError) as e:
            raise self.error(f"cannot reach ComfyUI at {self.url}: {type(e).__name__}: {e}") from None

    def request(self, method: str, path: str, body: bytes | None = None,
                content_type: str = "application/json", timeout: float | None = None
                ) -> tuple[int, bytes]:
        """(status, body) of one request; HTTP errors are returned, not raised."""
        return self._run(self._request(method, path, body, content_type, timeout))

    def get_json(self, path: str, timeout: float | None = None) -> Any:
        status, body = self.request("GET", path, timeout=timeout)
        if status != 200:
            raise self.error(f"GET {self.url}{path} -> HTTP {status}: {body[:2000]!r}")
        return json.loads(body)

    def object_info(self) -> dict:
        return self.get_json("/object_info", timeout=max(60.0, self.timeout))

    def history(self, prompt_id: str) -> dict | None:
        return self.get_json(f"/history/{prompt_id}").get(prompt_id)

    def post_prompt(self, prompt: dict) -> tuple[int, dict]:
        """POST /prompt; (HTTP status, decoded answer) whatever the status."""
        body = json.dumps({"prompt": prompt, "client_id": self.client_id}).encode()
        status, answer = self.request("POST", "/prompt", body)
        try:
            return status, json.loads(answer)
        except json.JSONDecodeError:
            return status, {"error": answer.decode("utf-8", "replace")[:2000]}

    def describe_refusal(self, answer: dict, prompt: dict) -> str:
        return json.dumps(answer, indent=1)[:6000]

    def queue(self, prompt: dict) -> str:
        """Queue an API-format prompt; its prompt id. A refusal (also when ComfyUI accepted the
        prompt but dropped some outputs as invalid) raises with ``exit_code`` 2 and the answer."""
        status, answer = self.post_prompt(prompt)
        if status != 200 or "prompt_id" not in answer:
            raise self.error(f"{self.url} refused the prompt (HTTP {status}):\n"
                             f"{self.describe_refusal(answer, prompt)}", exit_code=2, answer=answer)
        if answer.get("node_errors"):
            raise self.error(f"{self.url} queued only part of the prompt:\n"
                             f"{self.describe_refusal({'error': 'some outputs failed validation', **answer}, prompt)}",
                             exit_code=2, answer=answer)
        return answer["prompt_id"]

    def upload_image(self, path: str | Path, name: str | None = None, overwrite: bool = True,
                     subfolder: str = "") -> str:
        """Upload a file to the input folder through /upload/image; the name to use in LoadImage
        (without ``overwrite`` a file of the same name and content is reused, another one is
        renamed by the server)."""
        path = Path(path)
        form = aiohttp.FormData(quote_fields=False)  # names as given (ComfyUI does not unquote)
        form.add_field("overwrite", "true" if overwrite else "false")
        form.add_field("type", "input")
        form.add_field("subfolder", subfolder)
        form.add_field("image", path.read_bytes(), filename=name or path.name,
                       content_type="application/octet-stream")

        status, answer = self._run(self._request("POST", "/upload/image", form, None))
        if status != 200:
            raise self.error(f"upload of {path} to {self.url} failed: HTTP {status}: {answer[:2000]!r}")
        info = json.loads(answer)
        return f"{info['subfolder']}/{info['name']}" if info.get("subfolder") else info["name"]

    def view(self, filename: str, subfolder: str = "", kind: str = "output") -> bytes:
        """A file the server wrote (``/view``)."""
        q = urllib.parse.urlencode({"filename": filename, "subfolder": subfolder, "type": kind})
        status, data = self.request("GET", f"/view?{q}")
        if status != 200:
            raise self.error(f"download of {filename} from {self.url} failed: HTTP {status}")
        return data

    # -- progress --------------------------------------------------------------------------------
    def _ws_url(self) -> str:
        u = urllib.parse.urlsplit(self.url)
        scheme = "wss" if u.scheme == "https" else "ws"
        return f"{scheme}://{u.netloc}/ws?clientId={self.client_id}"

    def alive(self) -> str | None:
        """Why the server cannot finish a prompt any more (None: it may). Subclasses that own
        the server process say when it exited."""
        return None

    async def _connect(self) -> None:
        if self.ws is not None or self.ws_failed is not None:
            return
        session = await self._get_session()
        try:
            self.ws = await session.ws_connect(self._ws_url(), timeout=aiohttp.ClientWSTimeout(ws_close=5.0),
                                               max_msg_size=0)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            self.ws_failed = f"{type(e).__name__}: {e}"

    def open_progress(self) -> bool:
        """Open the websocket now (call before queueing); whether it is open (else see
        ``ws_failed``: progress then comes from polling /history)."""
        self._run(self._connect())
        return self.ws is not None

    def wait(self, prompt_id: str, timeout: float | None = None,
             on_event: Callable[[str, dict], None] | None = None) -> dict:
        """Follow a queued prompt until it ends; its /history entry (raises on failure)."""
        return self._run(self._wait(prompt_id, timeout or self.wait_timeout, on_event))

    def run(self, prompt: dict, timeout: float | None = None,
            on_event: Callable[[str, dict], None] | None = None) -> dict:
        """Queue and wait: the finished prompt's history entry."""
        self.open_progress()
        return self.wait(self.queue(prompt), timeout, on_event)

    async def _wait(self, prompt_id: str, timeout: float,
                    on_event: Callable[[str, dict], None] | None) -> dict:
        deadline = time.monotonic() + timeout
        await self._connect()
        last_poll = 0.0
        while time.monotonic() < deadline:
            done = False
            if self.ws is not None:
                try:
                    msg = await self.ws.receive(timeout=2.0)
                except asyncio.TimeoutError:
                    msg = None
                if msg is not None and msg.type == aiohttp.WSMsgType.TEXT:
                    data = json.loads(msg.data)
                    kind, d = data.get("type"), data.get("data") or {}
                    if d.get("prompt_id") == prompt_id:
                        if on_event:
                            on_event(kind, d)
                        done = kind in DONE_EVENTS or (kind == "executing" and d.get("node") is None)
                elif msg is not None and msg.type == aiohttp.WSMsgType.BINARY and on_event:
                    text_event = decode_progress_text(msg.data)
                    if text_event is not None:
                        on_event("progress_text", text_event)
                elif msg is not None and msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING,
                                                      aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    self.ws_failed, self.ws = f"lost: {msg.type.name}", None
            else:
                await asyncio.sleep(0.1)
            now = time.monotonic()
            if done or now - last_poll > (5.0 if self.ws is not None else 0.1):
                last_poll = now
                entry = await self._finished(prompt_id, settle=done)
                if entry is not None:
                    return entry
                why = self.alive()
                if why is not None:
                    raise self.error(f"{why} while running prompt {prompt_id}")
        raise self.error(f"prompt {prompt_id} on {self.url} did not finish in {timeout:.0f} s")

    async def _finished(self, prompt_id: str, settle: bool) -> dict | None:
        # the websocket says "done" a moment before the history entry is written
        for _ in range(40 if settle else 1):
            status, body = await self._request("GET", f"/history/{prompt_id}")
            if status != 200:
                raise self.error(f"GET {self.url}/history/{prompt_id} -> HTTP {status}: {body[:2000]!r}")
            entry = json.loads(body).get(prompt_id)
            if entry is not None:
                st = entry.get("status", {})
                if st.get("status_str") == "error":
                    raise self.error(f"prompt {prompt_id} failed on {self.url}:\n{describe_failure(st)}",
                                     status=st)
                if st.get("completed") or st.get("status_str") == "success":
                    return entry
            if settle:
                await asyncio.sleep(0.05)
        return None
