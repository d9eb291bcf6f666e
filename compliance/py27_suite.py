"""Autobahn|Testsuite's side of the harness: find pyenv's Python 2.7 (the
suite runs on nothing newer), install the suite into a private site
directory once, and ask it which cases a spec selects.  Used by
``compliance/autobahn.py``; no third-party code is vendored.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

COMPLIANCE_DIR = Path(__file__).resolve().parent
REPO_ROOT = COMPLIANCE_DIR.parent
WRAPPER = COMPLIANCE_DIR / "wstest_wrapper.py"
CONSTRAINTS = COMPLIANCE_DIR / "py27-constraints.txt"
CACHE_DIR = REPO_ROOT / ".autobahn"
SITE_DIR = CACHE_DIR / "py27-site"
INSTALL_MARKER = ".parley-install.json"
PY27_VERSION = "2.7.18"
SUITE_REQUIREMENT = "autobahntestsuite==25.10.1"


class HarnessError(Exception):
    """The conformance run could not be carried out (as opposed to: a case failed)."""


# --------------------------------------------------------------------------- Python 2.7


def pyenv_roots() -> list[Path]:
    """Candidate pyenv roots, in the order the brief gives: `pyenv root`, $PYENV_ROOT, ~/.pyenv."""
    roots: list[Path] = []
    pyenv = shutil.which("pyenv")
    if pyenv:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(  # noqa: S603 - the pyenv found on PATH, fixed argv
                [pyenv, "root"], capture_output=True, text=True, timeout=30, check=True
            ).stdout.strip()
            if out:
                roots.append(Path(out))
    if os.environ.get("PYENV_ROOT"):
        roots.append(Path(os.environ["PYENV_ROOT"]))
    roots.append(Path.home() / ".pyenv")
    unique: list[Path] = []
    for root in roots:
        if root not in unique:
            unique.append(root)
    return unique


def python27_version(python: Path) -> str | None:
    try:
        proc = subprocess.run(  # noqa: S603 - a local interpreter, fixed argv
            [str(python), "-c", "import sys; print('.'.join(map(str, sys.version_info[:3])))"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def find_python27(explicit: Path | None) -> Path:
    candidates = (
        [explicit]
        if explicit
        else [root / "versions" / PY27_VERSION / "bin" / "python" for root in pyenv_roots()]
    )
    looked: list[str] = []
    for candidate in candidates:
        if not candidate.exists():
            looked.append(f"  {candidate}: does not exist")
            continue
        version = python27_version(candidate)
        if version == PY27_VERSION:
            return candidate
        looked.append(f"  {candidate}: reports version {version or 'nothing (does not run)'}")
    raise HarnessError(
        f"Python {PY27_VERSION} not found.  Autobahn|Testsuite only runs on Python 2.7,\n"
        "and this harness looks for pyenv's build of it.  Looked at:\n"
        + "\n".join(looked)
        + f"\n\nFix: `pyenv install {PY27_VERSION}` (or pass --python27 /path/to/python2.7)."
    )


# --------------------------------------------------------------------------- install


def install_fingerprint(python27: Path) -> dict[str, str]:
    return {
        "requirement": SUITE_REQUIREMENT,
        "python": str(python27),
        "constraints_sha256": hashlib.sha256(CONSTRAINTS.read_bytes()).hexdigest(),
    }


def ensure_suite(python27: Path) -> Path:
    """Install autobahntestsuite into SITE_DIR unless an identical install is there already."""
    wanted = install_fingerprint(python27)
    marker = SITE_DIR / INSTALL_MARKER
    with contextlib.suppress(OSError, ValueError):
        if (
            json.loads(marker.read_text()) == wanted
            and (SITE_DIR / "autobahntestsuite" / "wstest.py").is_file()
        ):
            print(f"autobahn: reusing {SUITE_REQUIREMENT} in {SITE_DIR.relative_to(REPO_ROOT)}")
            return SITE_DIR

    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    for stale in CACHE_DIR.glob(f"{SITE_DIR.name}.partial-*"):
        shutil.rmtree(stale, ignore_errors=True)
    partial = CACHE_DIR / f"{SITE_DIR.name}.partial-{os.getpid()}"
    print(
        f"autobahn: installing {SUITE_REQUIREMENT} for Python {PY27_VERSION} into "
        f"{SITE_DIR.relative_to(REPO_ROOT)} (once; ~30 s)",
        flush=True,
    )
    argv = [
        str(python27), "-m", "pip", "install", "--disable-pip-version-check",
        "--no-warn-script-location", "--quiet", "--target", str(partial),
        "-c", str(CONSTRAINTS), SUITE_REQUIREMENT,
    ]  # fmt: skip
    proc = subprocess.run(  # noqa: S603 - fixed argv
        argv, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0 or not (partial / "autobahntestsuite" / "wstest.py").is_file():
        shutil.rmtree(partial, ignore_errors=True)
        output = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
        raise HarnessError(
            f"pip could not install {SUITE_REQUIREMENT} for Python {PY27_VERSION} "
            f"(exit {proc.returncode}).\ncommand: {shlex.join(argv)}\n{output}"
        )
    (partial / INSTALL_MARKER).write_text(json.dumps(wanted, indent=2) + "\n")
    if SITE_DIR.exists():
        shutil.rmtree(SITE_DIR)
    partial.rename(SITE_DIR)
    return SITE_DIR


def wrapper_argv(python27: Path, site_dir: Path, *args: str) -> list[str]:
    # -s: no user site-packages, -E: ignore PYTHONPATH/PYTHONHOME, -u: unbuffered progress.
    return [str(python27), "-s", "-E", "-u", str(WRAPPER), str(site_dir), *args]


def resolve_cases(python27: Path, site_dir: Path, spec_path: Path) -> list[str]:
    """Ask the suite itself which case ids the spec selects (the set that must be reported)."""
    proc = subprocess.run(  # noqa: S603 - our own wrapper, fixed argv
        wrapper_argv(python27, site_dir, "--list-cases", str(spec_path)),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if proc.returncode != 0:
        raise HarnessError(
            f"wstest_wrapper.py --list-cases failed (exit {proc.returncode}):\n"
            f"{proc.stdout}{proc.stderr}"
        )
    cases: list[str] = json.loads(proc.stdout)
    if not cases:
        raise HarnessError(f"the case patterns in {spec_path} select no Autobahn case at all")
    return cases
