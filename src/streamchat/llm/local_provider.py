"""The embedded model (see local_models.py) run by llama-cpp-python.

An instruction-tuned model is prompted with the chat template in its GGUF file; a base model with a
plain `User:` / `Assistant:` transcript. Either way the common turn markers are stop sequences, so a
reply never runs on into a next turn it made up (llama-cpp-python holds back text that could still
become a stop sequence, so no marker is ever sent in part either).

The model loads in the background (`start`): the server answers meanwhile, `readiness` says what is
still being prepared, and a reply asked for meanwhile waits for it. Generation runs on one worker
thread (a llama context is not thread-safe); pieces cross into the event loop through
`call_soon_threadsafe`, so the loop never blocks, and a consumer that stops reading stops the
generation at the next token.

Token usage is counted with the model's own tokenizer: the prompt as its chat template (or the
transcript) renders it, and the reply's text. The finish reason is llama.cpp's: "length" when the
reply reached its cap, "stop" when the model ended its turn or wrote a turn marker.

Unlike a remote server, an embedded model always gets a cap: the small models it runs sometimes
never end a turn, and each token costs this machine's CPU.

The embedded models cannot call tools: a request with tools is refused, and the tool calls and results
of a history (from another model of the conversation) are left out, the replies' text kept.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, overload

from streamchat.llm.base import (
    ChatTurn,
    ProviderError,
    Sampling,
    TokenCount,
    ToolCallDelta,
    ToolSpecs,
    with_system_prompt,
)
from streamchat.llm.local_models import LocalModel, PromptStyle

logger = logging.getLogger("streamchat.llm.local")

#: Turn markers of the common chat templates (ChatML, Gemma, Llama 3, Zephyr): never part of a reply.
TURN_MARKERS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<start_of_turn>", "<end_of_turn>",
                "<|eot_id|>", "<|start_header_id|>", "<|user|>", "<|assistant|>", "</s>"]
#: A base model continuing a transcript also writes the next speaker's line.
TRANSCRIPT_STOPS = ["\nUser:", "\nuser:", "User:", "\n\n\n"]
#: Tokens a chat template adds around one turn, beyond its text (a generous estimate).
TEMPLATE_TOKENS_PER_TURN = 8
#: A reply's cap when neither the provider's settings nor the request give one.
DEFAULT_MAX_TOKENS = 512
_END = object()


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


def text_turns(turns: Sequence[ChatTurn]) -> list[ChatTurn]:
    """The turns an embedded model can read: no tool results, and assistant turns by their text alone."""
    return [ChatTurn(turn.role, turn.content) if turn.tool_calls else turn for turn in turns
            if turn.role != "tool" and (turn.content or not turn.tool_calls)]


def fit(turns: Sequence[ChatTurn], measure: Callable[[Sequence[ChatTurn]], int], budget: int) -> list[ChatTurn]:
    """Drop the oldest non-system turns until `measure` (prompt tokens) is within `budget`;
    the newest turn (the question) always stays."""
    kept = list(turns)
    while measure(kept) > budget:
        removable = [i for i, turn in enumerate(kept[:-1]) if turn.role != "system"]
        if not removable:
            break
        del kept[removable[0]]
    return kept


class LocalProvider:
    name = "local"

    def __init__(
        self, spec: LocalModel, *, models_dir: Path, max_tokens: int | None = None, temperature: float | None = None,
    ) -> None:
        self.spec = spec
        self.model = spec.id
        self.models_dir = models_dir
        self.max_tokens = DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens
        #: The model's decoding settings (local_models.Sampling), with the configured temperature.
        self.decoding = spec.sampling if temperature is None else replace(spec.sampling, temperature=temperature)
        self.prompt: PromptStyle = spec.prompt
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama")
        self._llama: Any = None
        self._template: Any = None
        self._loading: asyncio.Future[None] | None = None
        self._state = f"{'unpacking' if spec.unpacks else 'loading'} {spec.id}"

    def start(self) -> None:
        """Begin preparing the model in the background; returns at once."""
        if self._loading is None:
            self._loading = asyncio.get_running_loop().run_in_executor(self._executor, self._load_sync)
            self._loading.add_done_callback(lambda done: done.cancelled() or done.exception())

    async def load(self) -> None:
        """Wait until the model is ready (starting it if nobody has); ProviderError if it cannot be."""
        self.start()
        assert self._loading is not None
        await asyncio.shield(self._loading)

    def readiness(self) -> str:
        return "ok" if self._llama is not None else self._state

    def _load_sync(self) -> None:
        try:
            from llama_cpp import Llama

            started = time.perf_counter()
            path = self.spec.locate(self.models_dir)
            unpacked = time.perf_counter()
            self._state = f"loading {self.spec.id}"
            llama = Llama(model_path=str(path), n_ctx=self.spec.context_tokens, n_threads=os.cpu_count() or 2,
                          verbose=False)
        except ImportError as error:
            self._state = "failed: llama-cpp-python is not installed (pip install 'streamchat[local]')"
            raise ProviderError(self._state) from error
        except Exception as error:
            self._state = f"failed: {type(error).__name__}: {error}"
            raise ProviderError(f"the embedded model could not be loaded ({self._state})") from error
        if self.prompt == "auto":
            self.prompt = "template" if "tokenizer.chat_template" in llama.metadata else "transcript"
        if self.prompt == "template":
            self._template = _chat_template(llama)
        self._llama = llama
        logger.info("local model ready", extra={
            "model": self.spec.id, "prompt": self.prompt, "unpackSeconds": round(unpacked - started, 2),
            "loadSeconds": round(time.perf_counter() - unpacked, 2)})

    def _tokens(self, text: str) -> int:
        return len(self._llama.tokenize(text.encode(), add_bos=False, special=True))

    def _options(self, sampling: Sampling | None) -> dict[str, Any]:
        """llama.cpp's generation options: the request's values over the provider's."""
        max_tokens, temperature = self.max_tokens, self.decoding.temperature
        if sampling is not None:
            max_tokens = max_tokens if sampling.max_tokens is None else sampling.max_tokens
            temperature = temperature if sampling.temperature is None else sampling.temperature
        return {"max_tokens": max_tokens, "stream": True, "temperature": temperature, "top_p": self.decoding.top_p,
                "top_k": self.decoding.top_k, "min_p": self.decoding.min_p,
                "repeat_penalty": self.decoding.repeat_penalty}

    def _pieces(self, turns: Sequence[ChatTurn], count: TokenCount, sampling: Sampling | None) -> Iterator[str]:
        """The reply's text pieces, generated on the worker thread; the prompt's tokens and the finish
        reason go in `count`."""
        turns = with_system_prompt(text_turns(turns), self.spec.system_prompt(self.prompt))
        options = self._options(sampling)
        # Room for the reply, but never more than half the context: a large cap must not push the
        # history out (llama.cpp stops a reply where the context ends anyway, as "length").
        budget = self.spec.context_tokens - min(options["max_tokens"], self.spec.context_tokens // 2)
        if self.prompt == "template":
            kept = fit(turns, lambda kept: sum(self._tokens(t.content) + TEMPLATE_TOKENS_PER_TURN for t in kept),
                       budget)
            messages = [{"role": turn.role, "content": turn.content} for turn in kept]
            if self._template is not None:
                rendered = self._template(messages=messages)
                count.prompt = len(self._llama.tokenize(rendered.prompt.encode(), add_bos=not rendered.added_special,
                                                        special=True))
            for chunk in self._llama.create_chat_completion(messages=messages, stop=TURN_MARKERS, **options):
                choice = chunk["choices"][0]
                if choice["finish_reason"] is not None:
                    count.finish_reason = choice["finish_reason"]
                yield choice["delta"].get("content") or ""
        else:
            kept = fit(turns, lambda kept: self._tokens(transcript(kept)) + 1, budget)
            count.prompt = self._tokens(transcript(kept)) + 1
            for piece in self._llama.create_completion(transcript(kept), stop=TRANSCRIPT_STOPS + TURN_MARKERS,
                                                       **options):
                choice = piece["choices"][0]
                if choice["finish_reason"] is not None:
                    count.finish_reason = choice["finish_reason"]
                yield choice["text"]

    @overload
    def stream(
        self, turns: Sequence[ChatTurn], count: TokenCount | None = None, sampling: Sampling | None = None,
        tools: None = None,
    ) -> AsyncGenerator[str, None]: ...

    @overload
    def stream(
        self, turns: Sequence[ChatTurn], count: TokenCount | None = None, sampling: Sampling | None = None,
        tools: ToolSpecs | None = None,
    ) -> AsyncGenerator[str | ToolCallDelta, None]: ...

    async def stream(
        self, turns: Sequence[ChatTurn], count: TokenCount | None = None, sampling: Sampling | None = None,
        tools: ToolSpecs | None = None,
    ) -> AsyncGenerator[str | ToolCallDelta, None]:
        if tools:
            raise ProviderError(f"the embedded model {self.model} cannot call tools")
        await self.load()
        counted = count if count is not None else TokenCount()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        cancelled = threading.Event()

        def generate() -> None:
            pieces: list[str] = []
            try:
                for piece in self._pieces(turns, counted, sampling):
                    if cancelled.is_set():
                        break
                    if piece:
                        pieces.append(piece)
                        loop.call_soon_threadsafe(queue.put_nowait, piece)
                counted.completion = self._tokens("".join(pieces))
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
        """Waits (off the loop) for a load or generation already on the worker thread: llama.cpp
        swaps the process's stdout and stderr while it loads, so a load left running past close
        would swallow the output of whatever runs next in this process."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        await asyncio.to_thread(self._executor.shutdown, wait=True)
        self._llama = None


def _chat_template(llama: Any) -> Any:
    """The GGUF file's chat template as llama-cpp-python renders it, to count a prompt's tokens."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    def text(token: int) -> str:
        return "" if token == -1 else llama.detokenize([token], special=True).decode(errors="ignore")

    return Jinja2ChatFormatter(template=llama.metadata["tokenizer.chat_template"],
                               eos_token=text(llama.token_eos()), bos_token=text(llama.token_bos()))
