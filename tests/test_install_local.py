"""The llama-cpp-python wheel cache: what its key is made of, and that a matching key never compiles."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import pytest

from conftest import ROOT


def load_installer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("install_local", ROOT / "scripts" / "lib" / "install_local.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["install_local"] = module
    spec.loader.exec_module(module)
    return module


installer = load_installer()


def test_the_key_is_stable_and_changes_with_every_input() -> None:
    key = installer.build_key({}, "0.3.36")
    assert installer.build_key({}, "0.3.36") == key and key.digest() == installer.build_key({}, "0.3.36").digest()
    changed = {
        "version": installer.build_key({}, "0.3.37"),
        "flags": installer.build_key({"CMAKE_ARGS": "-DGGML_NATIVE=ON"}, "0.3.36"),
        "cpu": replace(key, cpu=key.cpu + " avx512f"),
        "platform": replace(key, platform="Linux-aarch64-glibc-2.36"),
        "lean build file": replace(key, lean_build="0" * 16),
    }
    for what, other in changed.items():
        assert other.digest() != key.digest(), f"a changed {what} must build anew"
        assert other.folder() != key.folder()


def test_the_key_does_not_depend_on_where_the_checkout_is() -> None:
    key = installer.build_key({}, "0.3.36")
    assert str(ROOT) not in key.cmake_args, "every checkout on a machine must share one key"
    assert "-DCMAKE_PROJECT_llama.cpp_INCLUDE=llama-lean.cmake" in key.cmake_args


def test_flags_are_lean_first_then_portable_or_the_users() -> None:
    portable = installer.cmake_args({}, "x86_64")
    assert portable.startswith(installer.LEAN_FLAGS)
    assert "-DGGML_NATIVE=OFF" in portable and "-DGGML_AVX2=ON" in portable
    own = installer.cmake_args({"CMAKE_ARGS": "  -DGGML_CUDA=ON   -DLLAVA_BUILD=ON "}, "x86_64")
    assert own == f"{installer.LEAN_FLAGS} -DGGML_CUDA=ON -DLLAVA_BUILD=ON", "the user's flags come last, so they win"
    assert "-DGGML_AVX2=ON" not in installer.cmake_args({}, "aarch64")


def test_the_version_is_the_lower_bound_pyproject_declares(tmp_path: Path) -> None:
    assert installer.pinned_version() == "0.3.36"
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project.optional-dependencies]\nlocal = ["llama-cpp-python"]\n')
    with pytest.raises(SystemExit, match="llama-cpp-python>=VERSION"):
        installer.pinned_version(pyproject)


def test_the_cpu_signature_reads_model_and_flags(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: sse avx2 avx\n\n"
                       "processor\t: 1\nmodel name\t: Some CPU\nflags\t\t: sse avx2 avx\n")
    assert installer.cpu_signature(cpuinfo) == "flags=avx avx2 sse; model name=Some CPU"


def test_a_cached_wheel_is_used_without_compiling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = installer.build_key({}, "0.3.36")
    compiled: list[object] = []

    def compile_wheel(key: object, target: Path, log: Path) -> Path:
        compiled.append(key)
        target.mkdir(parents=True)
        wheel = target / "llama_cpp_python-0.3.36-py3-none-linux_x86_64.whl"
        wheel.write_bytes(b"wheel")
        return Path(wheel)

    monkeypatch.setattr(installer, "compile_wheel", compile_wheel)
    interrupted = tmp_path / ".building-abc"
    interrupted.mkdir()
    first = installer.ensure_wheel(key, tmp_path, tmp_path / "log")
    assert not interrupted.exists(), "an interrupted build's leftovers are removed"
    again = installer.ensure_wheel(key, tmp_path, tmp_path / "log")
    assert first == again and compiled == [key], "the second checkout installs from the cache"
    other = replace(key, cmake_args=key.cmake_args + " -DGGML_BLAS=ON")
    assert installer.ensure_wheel(other, tmp_path, tmp_path / "log") != first and compiled == [key, other]


def test_the_cache_is_outside_the_checkout_and_can_be_moved(tmp_path: Path) -> None:
    assert installer.cache_root({"STREAMCHAT_WHEEL_CACHE": str(tmp_path)}) == tmp_path
    assert installer.cache_root({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "streamchat" / "wheels"
    assert ROOT not in installer.cache_root({}).parents
