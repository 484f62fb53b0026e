"""streamGenerateContent as Google streams it: server-sent events (`alt=sse`) or a JSON array.

Each chunk is a GenerateContentResponse holding the text decoded since the previous chunk, sent
as soon as its tokens are; a candidate's last chunk carries its `finishReason` (MAX_TOKENS when
maxOutputTokens cut it, else STOP) and the very last one the whole usage. A client that goes away
cancels the decoding: its rows leave the batch at the next token.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio.to_thread
from fastapi import Request
from fastapi.responses import StreamingResponse

from tunespec.engine.wire import ApiException, Enum, Present, compact

FINISH_REASONS = {"STOP": 1, "MAX_TOKENS": 2}  # google.ai.generativelanguage Candidate.FinishReason


def _candidate(index: int, text: str, finish: str | None) -> dict[str, Any]:
    cand: dict[str, Any] = {"content": {"parts": [{"text": Present(text)}], "role": "model"}, "index": index}
    if finish is not None:
        cand["finishReason"] = Enum(finish, FINISH_REASONS.get(finish, 0))
    return cand


def chunk(candidates: list[dict[str, Any]], model: str, prompt_tokens: int,
          out_tokens: int | None = None) -> dict[str, Any]:
    """One GenerateContentResponse of a stream; `out_tokens` (the last chunk) completes the usage."""
    usage: dict[str, Any] = {"promptTokenCount": prompt_tokens}
    if out_tokens is not None:
        usage |= {"candidatesTokenCount": out_tokens, "totalTokenCount": prompt_tokens + out_tokens}
    return {"candidates": candidates, "usageMetadata": usage, "modelVersion": model}


def chunks(stream: Any, model: str) -> Iterator[dict[str, Any]]:
    """The chunks of a generate.Stream, blocking while its tokens are decoded."""
    last: list[dict[str, Any]] = []
    for delta in stream:
        if delta.finish_reason is None:
            yield chunk([_candidate(delta.index, delta.text, None)], model, stream.prompt_tokens)
        else:
            last.append(_candidate(delta.index, delta.text, delta.finish_reason))
    result = stream.result
    yield chunk(last, model, result.prompt_tokens, sum(c.tokens for c in result.completions))


def _frame(body: dict[str, Any], sse: bool, first: bool) -> bytes:
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    if sse:
        return f"data: {text}\r\n\r\n".encode()
    return (("[" if first else ",\r\n") + text).encode()


async def _body(request: Request, stream: Any, model: str, sse: bool,
                int_enums: bool) -> AsyncIterator[bytes]:
    it = chunks(stream, model)
    first = True
    try:
        while True:
            try:
                # abandoned on cancel: a client gone mid-token is seen at once, not when the answer ends
                item = await anyio.to_thread.run_sync(next, it, None, abandon_on_cancel=True)
            except ApiException as exc:
                item = exc.body()
            except Exception as exc:  # mid-stream: the status line is sent, so the error is a chunk
                item = ApiException("INTERNAL", f"Internal error: {type(exc).__name__}: {exc}").body()
            if item is None:
                break
            yield _frame(compact(item, int_enums=int_enums), sse, first)
            first = False
            if "error" in item:
                break
        if not sse:
            yield b"[]" if first else b"]"
    finally:  # the server cancels this body when the client disconnects (or a write to it fails)
        stream.cancel()  # a no-op once decoded


def response(request: Request, stream: Any, model: str, *, sse: bool, int_enums: bool) -> StreamingResponse:
    """The HTTP answer writing `stream`'s chunks as they come."""
    media = "text/event-stream" if sse else "application/json; charset=UTF-8"
    return StreamingResponse(_body(request, stream, model, sse, int_enums), media_type=media,
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
