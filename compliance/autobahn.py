"""RFC 6455 conformance: run Autobahn|Testsuite (fuzzingclient) against an echo server.

Run from the repository root with the project's venv (``make autobahn`` does)::

    .venv/bin/python compliance/autobahn.py                # parley gateway --echo, cases 1-10
    .venv/bin/python compliance/autobahn.py --cases '5.*,9.1.*'
    .venv/bin/python compliance/autobahn.py \\
        --server-cmd '{python} compliance/reference_echo.py --host {host} --port {port}' \\
        --agent reference-echo --known-failure 7.1.5      # validate the harness itself

What it does, in order (every step fails loudly, never silently passes):

1. finds pyenv's Python 2.7.18 (``--python27``, else ``pyenv root``, ``$PYENV_ROOT``,
   ``~/.pyenv``): autobahntestsuite only runs on Python 2;
2. installs ``autobahntestsuite==25.10.1`` (pinned by ``py27-constraints.txt``) into
   ``.autobahn/py27-site`` once, and reuses it afterwards;
3. writes the fuzzingclient spec (``autobahn-reports/fuzzingclient.json``) and asks the
   suite, through ``wstest_wrapper.py``, which case ids it resolves to;
4. starts the server under test (default ``parley gateway --echo --host 127.0.0.1 --gateway-port
   <free port>``, i.e. with its default 1 MiB message limit), waits until it accepts TCP,
   runs the suite, then stops the server (SIGTERM, SIGKILL after ``--stop-timeout``);
5. judges ``autobahn-reports/index.json`` and the per-case reports: every requested case
   must be reported with ``behavior`` OK / NON-STRICT / INFORMATIONAL and ``behaviorClose``
   OK / INFORMATIONAL, except the cases listed in ``expected_limit_cases.json``, whose
   messages exceed the 1 MiB limit and which must instead have been closed by the server
   with code 1009 (the per-case report's ``remoteCloseCode``).

Exit status: 0 all cases conform, 1 some case failed or is missing, 2 the run could not be
carried out (no Python 2.7.18, install failure, server did not start, suite crashed or
exceeded ``--timeout``).  HTML reports: ``autobahn-reports/index.html``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

# The suite's own side (run as a script: this directory is on sys.path).
from py27_suite import (
    HarnessError,
    ensure_suite,
    find_python27,
    resolve_cases,
    wrapper_argv,
)

COMPLIANCE_DIR = Path(__file__).resolve().parent
REPO_ROOT = COMPLIANCE_DIR.parent
LIMIT_CASES_FILE = COMPLIANCE_DIR / "expected_limit_cases.json"
DEFAULT_REPORTS_DIR = REPO_ROOT / "autobahn-reports"
SPEC_NAME = "fuzzingclient.json"

DEFAULT_CASES = tuple(f"{n}.*" for n in range(1, 11))
DEFAULT_SERVER_CMD = "{python} -m server.cli gateway --echo --host {host} --gateway-port {port}"
DEFAULT_AGENT = "parley-echo"

PASSING_BEHAVIOR = frozenset({"OK", "NON-STRICT", "INFORMATIONAL"})
PASSING_BEHAVIOR_CLOSE = frozenset({"OK", "INFORMATIONAL"})

EXIT_OK = 0
EXIT_NONCONFORMANT = 1
EXIT_HARNESS_ERROR = 2

_CASE_LINE = re.compile(r"Running test case ID (\S+) for agent")


def loud_error(message: str) -> None:
    bar = "=" * 78
    print(
        f"\n{bar}\nAUTOBAHN HARNESS ERROR\n\n{message.rstrip()}\n\n"
        "The RFC 6455 conformance suite did NOT run to completion: this is a failure,\n"
        f"not a pass.\n{bar}",
        file=sys.stderr,
        flush=True,
    )


def case_key(case_id: str) -> tuple[int, ...]:
    return tuple(int(part) for part in case_id.split("."))


def tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


# --------------------------------------------------------------------------- spec / reports


def prepare_reports_dir(reports_dir: Path) -> None:
    """Empty the reports directory so a stale index.json can never be judged."""
    if reports_dir.exists():
        ours = (
            reports_dir == DEFAULT_REPORTS_DIR
            or (reports_dir / "index.json").exists()
            or (reports_dir / SPEC_NAME).exists()
            or not any(reports_dir.iterdir())
        )
        if not ours:
            raise HarnessError(
                f"--reports-dir {reports_dir} exists and does not look like an Autobahn "
                "reports directory; refusing to empty it"
            )
        shutil.rmtree(reports_dir)
    reports_dir.mkdir(parents=True)


def write_spec(
    reports_dir: Path, url: str, agent: str, cases: Sequence[str], exclude: Sequence[str]
) -> Path:
    spec = {
        "outdir": str(reports_dir),
        "servers": [{"agent": agent, "url": url}],
        "cases": list(cases),
        "exclude-cases": list(exclude),
        "exclude-agent-cases": {},
    }
    path = reports_dir / SPEC_NAME
    path.write_text(json.dumps(spec, indent=2) + "\n")
    return path


@dataclass(frozen=True)
class LimitCases:
    close_code: int
    max_message_bytes: int
    reasons: dict[str, str]


def load_limit_cases(path: Path) -> LimitCases:
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
        return LimitCases(
            close_code=int(doc["expected_close_code"]),
            max_message_bytes=int(doc["max_message_bytes"]),
            reasons={str(k): str(v) for k, v in doc["cases"].items()},
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise HarnessError(f"cannot read the limit-case list {path}: {exc!r}") from exc


# --------------------------------------------------------------------------- server


class ServerUnderTest:
    """The echo server, in its own process group so that SIGTERM reaches all of it."""

    def __init__(self, argv: list[str], host: str, port: int, log_path: Path) -> None:
        self.argv = argv
        self.host = host
        self.port = port
        self.log_path = log_path
        self._log: IO[bytes] | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, startup_timeout: float) -> None:
        print(f"autobahn: starting server under test: {shlex.join(self.argv)}", flush=True)
        self._log = self.log_path.open("wb")
        try:
            self.proc = subprocess.Popen(  # noqa: S603 - the operator's --server-cmd
                self.argv,
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            raise HarnessError(f"cannot start the server under test: {exc}") from exc
        deadline = time.monotonic() + startup_timeout
        while True:
            code = self.proc.poll()
            if code is not None:
                raise HarnessError(
                    f"the server under test exited with code {code} before accepting "
                    f"connections on {self.host}:{self.port}.\n"
                    f"--- {self.log_path} (last lines) ---\n{tail(self.log_path)}"
                )
            with contextlib.suppress(OSError):
                socket.create_connection((self.host, self.port), timeout=0.5).close()
                return
            if time.monotonic() > deadline:
                raise HarnessError(
                    f"the server under test did not accept TCP on {self.host}:{self.port} "
                    f"within {startup_timeout:g} s.\n"
                    f"--- {self.log_path} (last lines) ---\n{tail(self.log_path)}"
                )
            time.sleep(0.1)

    def exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def stop(self, timeout: float) -> str:
        """SIGTERM, then SIGKILL after `timeout`; returns a one-line account of how it ended."""
        proc = self.proc
        if proc is None:
            return "never started"
        try:
            already = proc.poll()
            if already is not None:
                _signal_group(proc.pid, signal.SIGKILL)  # leftovers of its group, if any
                return f"had already exited with code {already}"
            return terminate_group(proc, timeout)
        finally:
            if self._log is not None:
                self._log.close()


def terminate_group(proc: subprocess.Popen[Any], grace: float) -> str:
    """SIGTERM the child's process group, SIGKILL it if still there after `grace` seconds."""
    _signal_group(proc.pid, signal.SIGTERM)
    try:
        code = proc.wait(grace)
        return f"stopped by SIGTERM (exit code {code})"
    except subprocess.TimeoutExpired:
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()
        return f"did not exit within {grace:g} s of SIGTERM; killed with SIGKILL"


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


# --------------------------------------------------------------------------- suite run


@dataclass
class SuiteRun:
    returncode: int | None
    timed_out: bool
    wall_seconds: float
    last_case: str | None
    group_seconds: dict[str, float] = field(default_factory=dict)


def group_of(case_id: str) -> str:
    """Timing group: '9.1' for the performance category (its groups differ a lot), else '5'."""
    parts = case_id.split(".")
    return ".".join(parts[:2]) if parts[0] == "9" else parts[0]


class _Progress:
    """Follows wstest's "Running test case ID x.y.z" lines: progress output and group timings."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.last_case: str | None = None
        self.group: str | None = None
        self.group_started = started
        self.group_seconds: dict[str, float] = {}

    def case_started(self, case_id: str, now: float) -> None:
        self.last_case = case_id
        group = group_of(case_id)
        if group == self.group:
            return
        category = case_id.split(".")[0]
        if self.group is None or self.group.split(".")[0] != category:
            print(f"  [{now - self.started:6.1f} s] cases {category}.*", flush=True)
        self.finish(now)
        self.group, self.group_started = group, now

    def finish(self, now: float) -> None:
        if self.group is not None:
            self.group_seconds[self.group] = now - self.group_started


def run_suite(
    python27: Path, site_dir: Path, spec_path: Path, log_path: Path, timeout: float
) -> SuiteRun:
    argv = wrapper_argv(python27, site_dir, "-m", "fuzzingclient", "-s", str(spec_path))
    started = time.monotonic()
    proc = subprocess.Popen(  # noqa: S603 - our own wrapper, fixed argv
        argv,
        cwd=spec_path.parent,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    progress = _Progress(started)

    def pump() -> None:
        assert proc.stdout is not None
        with log_path.open("w") as log:
            for line in proc.stdout:
                log.write(line)
                match = _CASE_LINE.search(line)
                if match:
                    progress.case_started(match.group(1), time.monotonic())

    reader = threading.Thread(target=pump, name="wstest-output", daemon=True)
    reader.start()
    timed_out = False
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:  # also on Ctrl-C / SIGTERM of this script: never leave wstest behind
        if proc.poll() is None:
            terminate_group(proc, 5.0)
    reader.join(10)
    ended = time.monotonic()
    progress.finish(ended)
    return SuiteRun(
        returncode=proc.returncode,
        timed_out=timed_out,
        wall_seconds=ended - started,
        last_case=progress.last_case,
        group_seconds=progress.group_seconds,
    )


# --------------------------------------------------------------------------- judging


@dataclass
class CaseFailure:
    case_id: str
    why: str
    report: dict[str, Any] = field(default_factory=dict)
    missing: bool = False


@dataclass
class Judgement:
    expected: list[str]
    behavior_counts: Counter[str] = field(default_factory=Counter)
    close_counts: Counter[str] = field(default_factory=Counter)
    failures: list[CaseFailure] = field(default_factory=list)
    tolerated: list[CaseFailure] = field(default_factory=list)
    limit_ok: list[str] = field(default_factory=list)
    limit_judged: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


def judge(
    reports_dir: Path,
    agent: str,
    expected: list[str],
    limits: LimitCases | None,
    known_failures: set[str],
) -> Judgement:
    result = Judgement(expected=expected)
    index_path = reports_dir / "index.json"
    try:
        index: dict[str, dict[str, dict[str, Any]]] = json.loads(index_path.read_text())
    except (OSError, ValueError) as exc:
        raise HarnessError(
            f"no usable {index_path} ({exc}); wstest writes it only when the run completes"
        ) from exc
    reported = index.get(agent, {})
    if not reported:
        result.notes.append(f"index.json has no results for agent {agent!r}")

    for case_id in expected:
        failure = _judge_case(reports_dir, case_id, reported.get(case_id), limits, result)
        if failure is None:
            if case_id in known_failures:
                result.notes.append(f"--known-failure {case_id} now passes; drop it")
            continue
        (result.tolerated if case_id in known_failures else result.failures).append(failure)

    extra = sorted(set(reported) - set(expected), key=case_key)
    if extra:
        result.notes.append(f"reported but not requested (ignored): {', '.join(extra)}")
    return result


def _judge_case(
    reports_dir: Path,
    case_id: str,
    entry: dict[str, Any] | None,
    limits: LimitCases | None,
    result: Judgement,
) -> CaseFailure | None:
    if entry is None:
        return CaseFailure(case_id, "missing from index.json", missing=True)
    behavior = str(entry.get("behavior"))
    behavior_close = str(entry.get("behaviorClose"))
    is_limit_case = limits is not None and case_id in limits.reasons
    if not is_limit_case:  # those are FAILED by Autobahn's measure, by design: counted apart
        result.behavior_counts[behavior] += 1
        result.close_counts[behavior_close] += 1
    try:
        report: dict[str, Any] = json.loads((reports_dir / str(entry["reportfile"])).read_text())
    except (OSError, ValueError, KeyError) as exc:
        return CaseFailure(case_id, f"per-case report unreadable: {exc!r}", {})

    if limits is not None and is_limit_case:
        result.limit_judged.append(case_id)
        code = report.get("remoteCloseCode")
        if code == limits.close_code:
            result.limit_ok.append(case_id)
            return None
        echoed = behavior == "OK"
        return CaseFailure(
            case_id,
            f"limit case ({limits.reasons[case_id]}): expected the server to close with "
            f"{limits.close_code}, got remoteCloseCode={code!r}"
            + (
                " - the oversized message was echoed, so the limit is not enforced"
                if echoed
                else ""
            ),
            report,
        )
    if behavior in PASSING_BEHAVIOR and behavior_close in PASSING_BEHAVIOR_CLOSE:
        return None
    why = f"behavior={behavior} behaviorClose={behavior_close}"
    if limits is not None and report.get("remoteCloseCode") == limits.close_code:
        why += f" - closed with {limits.close_code} although not a listed limit case"
    return CaseFailure(case_id, why, report)


# --------------------------------------------------------------------------- output


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counter.items(), key=lambda kv: -kv[1])) or "-"


def _one_line(text: object, limit: int = 220) -> str:
    """Autobahn texts carry HTML details after the first tag: keep the plain summary."""
    flat = " ".join(str(text or "").split("<", 1)[0].split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _describe(failure: CaseFailure) -> list[str]:
    r = failure.report
    lines = [f"  {failure.case_id:<8} {failure.why}"]
    if r:
        code, reason = r.get("remoteCloseCode"), r.get("remoteCloseReason")
        lines += [
            f"           description: {_one_line(r.get('description'))}",
            f"           expectation: {_one_line(r.get('expectation'))}",
            f"           result:      {_one_line(r.get('result'))}",
            f"           close:       {_one_line(r.get('resultClose'))} (server close code {code!r}"
            + (f", reason {reason!r}" if reason else "")
            + f", clean={r.get('wasClean')!r})",
        ]
    return lines


def print_summary(
    judgement: Judgement, run: SuiteRun, url: str, agent: str, reports_dir: Path
) -> None:
    n = len(judgement.expected)
    print()
    print(f"Autobahn|Testsuite fuzzingclient: {n} cases against {url} (agent {agent!r})")
    limit_note = " (limit cases not counted)" if judgement.limit_judged else ""
    print(f"  behavior:      {_counts(judgement.behavior_counts)}{limit_note}")
    print(f"  behaviorClose: {_counts(judgement.close_counts)}")
    if judgement.limit_judged:
        print(
            f"  limit cases:   {len(judgement.limit_ok)}/{len(judgement.limit_judged)} "
            "closed by the server with the expected code (expected_limit_cases.json)"
        )
    slow = sorted(run.group_seconds.items(), key=lambda kv: -kv[1])
    top = ", ".join(f"{g}: {s:.1f} s" for g, s in slow[:8])
    print(f"  suite wall time: {run.wall_seconds:.1f} s; slowest groups: {top or '-'}")
    for note in judgement.notes:
        print(f"  note: {note}")
    if judgement.tolerated:
        print(f"\nTOLERATED by --known-failure ({len(judgement.tolerated)}):")
        for failure in judgement.tolerated:
            print("\n".join(_describe(failure)))
    missing = [f.case_id for f in judgement.failures if f.missing]
    failed = sorted(
        (f for f in judgement.failures if not f.missing), key=lambda f: case_key(f.case_id)
    )
    if failed:
        print(f"\nFAILED CASES ({len(failed)}):")
        for failure in failed:
            print("\n".join(_describe(failure)))
    if missing:
        print(f"\nMISSING CASES ({len(missing)}; never ran, or their result was lost):")
        print(
            textwrap.fill(" ".join(missing), width=96, initial_indent="  ", subsequent_indent="  ")
        )
    verdict = (
        "PASS"
        if judgement.passed
        else f"FAIL ({len(judgement.failures)} of {n} cases do not conform)"
    )
    index_html = reports_dir / "index.html"
    shown = (
        index_html.relative_to(REPO_ROOT) if index_html.is_relative_to(REPO_ROOT) else index_html
    )
    print(f"\nRESULT: {verdict}; reports: {shown}", flush=True)


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Run Autobahn|Testsuite (fuzzingclient) against an RFC 6455 echo server.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    parser.add_argument(
        "--server-cmd",
        default=DEFAULT_SERVER_CMD,
        help="command starting the server under test; {python} {host} {port} are substituted "
        f"(default: {DEFAULT_SERVER_CMD!r})",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address the server listens on")
    parser.add_argument("--port", type=int, default=0, help="port for the server (default: free)")
    parser.add_argument(
        "--cases",
        action="append",
        help="case patterns, comma-separated or repeated (default: 1.* ... 10.*)",
    )
    parser.add_argument(
        "--exclude", action="append", default=[], help="case patterns to exclude (default: none)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        help="seconds the whole suite may take before it is killed and the run fails "
        "(default: 600; a full run against a fast server takes ~20 s)",
    )
    parser.add_argument("--startup-timeout", type=float, default=30.0)
    parser.add_argument("--stop-timeout", type=float, default=10.0)
    parser.add_argument("--agent", default=DEFAULT_AGENT, help="server name in the reports")
    parser.add_argument("--reports-dir", type=Path, default=DEFAULT_REPORTS_DIR)
    parser.add_argument("--python27", type=Path, help="Python 2.7.18 to use instead of pyenv's")
    parser.add_argument(
        "--limit-cases",
        type=Path,
        default=LIMIT_CASES_FILE,
        help="JSON list of cases that must close with 1009 instead of echoing",
    )
    parser.add_argument(
        "--no-limit-cases",
        action="store_true",
        help="judge the limit cases like all others (server runs without a message limit)",
    )
    parser.add_argument(
        "--known-failure",
        action="append",
        default=[],
        metavar="CASE",
        help="tolerate (but still print) this case's failure; for validating the harness "
        "against third-party servers, never for the gateway",
    )
    return parser.parse_args(argv)


def split_patterns(values: Sequence[str] | None, default: Sequence[str]) -> list[str]:
    if not values:
        return list(default)
    return [p.strip() for value in values for p in value.split(",") if p.strip()]


def server_argv(template: str, host: str, port: int) -> list[str]:
    values = {"python": sys.executable, "host": host, "port": str(port)}
    try:
        return [token.format(**values) for token in shlex.split(template)]
    except (KeyError, IndexError, ValueError) as exc:
        raise HarnessError(f"bad --server-cmd {template!r}: {exc!r}") from exc


@contextlib.contextmanager
def running_server(server: ServerUnderTest, args: argparse.Namespace) -> Iterator[None]:
    try:
        server.start(args.startup_timeout)
        yield
    finally:
        how = server.stop(args.stop_timeout)
        print(f"autobahn: server under test {how}", flush=True)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop processes


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        return run(args)
    except HarnessError as exc:
        loud_error(str(exc))
        return EXIT_HARNESS_ERROR


def run(args: argparse.Namespace) -> int:
    python27 = find_python27(args.python27)
    site_dir = ensure_suite(python27)
    limits = None if args.no_limit_cases else load_limit_cases(args.limit_cases)

    reports_dir: Path = args.reports_dir.resolve()
    prepare_reports_dir(reports_dir)
    port = args.port or free_port(args.host)
    url = f"ws://{args.host}:{port}"
    cases = split_patterns(args.cases, DEFAULT_CASES)
    spec_path = write_spec(reports_dir, url, args.agent, cases, split_patterns(args.exclude, ()))
    expected = resolve_cases(python27, site_dir, spec_path)
    unknown = sorted(set(args.known_failure) - set(expected))
    if unknown:
        print(f"autobahn: note: --known-failure {', '.join(unknown)}: not in this run, ignored")
    print(f"autobahn: {len(expected)} cases ({', '.join(cases)}) against {url}", flush=True)

    server = ServerUnderTest(
        server_argv(args.server_cmd, args.host, port), args.host, port, reports_dir / "server.log"
    )
    with running_server(server, args):
        suite = run_suite(python27, site_dir, spec_path, reports_dir / "wstest.log", args.timeout)
        server_exit = server.exit_code()

    problems: list[str] = []
    if suite.timed_out:
        problems.append(
            f"the suite did not finish within --timeout {args.timeout:g} s and was killed; "
            f"the case in progress was {suite.last_case or '(none started)'}; wstest writes "
            "its reports only at the end, so there are none"
        )
    elif suite.returncode != 0:
        problems.append(
            f"wstest exited with code {suite.returncode}.\n--- {reports_dir / 'wstest.log'} "
            f"(last lines) ---\n{tail(reports_dir / 'wstest.log')}"
        )
    if server_exit is not None:
        problems.append(
            f"the server under test exited with code {server_exit} during the run "
            f"(last case started: {suite.last_case}).\n--- {server.log_path} (last lines) ---\n"
            f"{tail(server.log_path)}"
        )
    if suite.timed_out or not (reports_dir / "index.json").exists():
        raise HarnessError("\n\n".join(problems) or "wstest wrote no index.json")

    judgement = judge(reports_dir, args.agent, expected, limits, set(args.known_failure))
    print_summary(judgement, suite, url, args.agent, reports_dir)
    if problems:
        loud_error("\n\n".join(problems))
        return EXIT_HARNESS_ERROR
    return EXIT_OK if judgement.passed else EXIT_NONCONFORMANT


if __name__ == "__main__":
    sys.exit(main())
