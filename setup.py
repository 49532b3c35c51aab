"""Build hook: a wheel or an sdist built from a checkout carries the chat page's browser libraries.

The project is configured in pyproject.toml; this file only adds the hook. markdown-it, DOMPurify and
highlight.js are not in git: `npm ci` installs them from src/streamchat/web/package-lock.json and
src/streamchat/web/vendor.mjs copies their minified builds into src/streamchat/web/static/vendor/,
which is package data (pyproject.toml). ./scripts/serve and ./scripts/test do both (ensure_page_assets
in scripts/lib/setup.sh); building a wheel or an sdist does them too when a file the page loads is
missing or was copied from another package-lock.json, so `pip wheel .` works from a fresh clone (with
npm). An sdist carries the copied files, so a wheel built from it needs no npm.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

WEB = Path(__file__).resolve().parent / "src" / "streamchat" / "web"
VENDOR = WEB / "static" / "vendor"
STAMP = VENDOR / ".stamp"
VENDOR_PACKAGE = "streamchat.web.static.vendor"


def wanted_files() -> list[Path]:
    """What index.html loads from /static/vendor/: the page itself says what a wheel must hold."""
    page = (WEB / "static" / "index.html").read_text(encoding="utf-8")
    return [VENDOR / name for name in sorted(set(re.findall(r"/static/vendor/([\w.-]+)", page)))]


def source_hash() -> str:
    """The same hash scripts/lib/setup.sh writes to the stamp: package-lock.json, then vendor.mjs."""
    digest = hashlib.sha256()
    for name in ("package-lock.json", "vendor.mjs"):
        digest.update((WEB / name).read_bytes())
    return digest.hexdigest()


def ensure_page_assets() -> None:
    in_checkout = (WEB / "package-lock.json").exists()
    missing = [path.name for path in wanted_files() if not path.exists()]
    stale = in_checkout and not missing and (not STAMP.exists() or STAMP.read_text().strip() != source_hash())
    if not missing and not stale:
        return
    if not in_checkout:
        raise SystemExit(f"the chat page's libraries are missing from {VENDOR} ({', '.join(missing)}), and this "
                         "source has no package-lock.json to install them from: build from a git checkout")
    npm = shutil.which("npm")
    node = shutil.which("node")
    if npm is None or node is None:
        raise SystemExit("building streamchat needs Node.js 20+ with npm once, to install the chat page's "
                         "libraries into src/streamchat/web/static/vendor/ (./scripts/serve does it too)")
    print("installing the chat page's libraries: npm ci, then node vendor.mjs", flush=True)
    subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=WEB, check=True)
    subprocess.run([node, "vendor.mjs"], cwd=WEB, check=True)
    STAMP.write_text(source_hash() + "\n")
    if missing := [path.name for path in wanted_files() if not path.exists()]:
        raise SystemExit(f"vendor.mjs did not produce {', '.join(missing)}, which index.html loads")


class BuildPy(build_py):
    def run(self) -> None:
        # An editable install serves the checkout's own static/ folder, which the scripts fill.
        if not getattr(self, "editable_mode", False):
            ensure_page_assets()
            # Packages were found before the folder existed on a first build: name it, as discovery would.
            if self.packages is not None and VENDOR_PACKAGE not in self.packages:
                self.packages.append(VENDOR_PACKAGE)
        super().run()


class Sdist(sdist):
    def run(self) -> None:
        ensure_page_assets()   # before the file list is made, so the sdist carries the files
        super().run()


setup(cmdclass={"build_py": BuildPy, "sdist": Sdist})
