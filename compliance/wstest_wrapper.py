"""Python 2.7 entry point for Autobahn|Testsuite's ``wstest``.

autobahntestsuite only runs on Python 2.7, so ``compliance/autobahn.py``
installs it with ``pip install --target SITE_DIR`` (never into any shared
site-packages) and runs this file with pyenv's Python 2.7.18::

    python2.7 -s -E compliance/wstest_wrapper.py SITE_DIR -m fuzzingclient -s SPEC
    python2.7 -s -E compliance/wstest_wrapper.py SITE_DIR --list-cases SPEC

``site.addsitedir`` (not a bare sys.path insert) is needed because some of
the suite's dependencies (zope.interface) are namespace packages set up by
``.pth`` files.  The SITE_DIR entries are moved to the front of sys.path so
that nothing in the interpreter's own site-packages shadows them.

``--list-cases SPEC`` prints, as JSON, the case ids the suite resolves from
the spec's "cases"/"exclude-cases" patterns, so that the harness can tell a
case that was never reported from one that was never requested.

This file must stay valid Python 2.7 (it is not run by the project's venv)
and ASCII-only; it avoids print() so it needs no __future__ import.
"""

import json
import site
import sys


def _activate(site_dir):
    before = list(sys.path)
    site.addsitedir(site_dir)
    added = [p for p in sys.path if p not in before]
    sys.path[:] = added + before


def _list_cases(spec_path):
    from autobahntestsuite.case import (
        CaseBasename,
        CaseCategories,
        Cases,
        CaseSetname,
        CaseSubCategories,
    )
    from autobahntestsuite.caseset import CaseSet

    with open(spec_path) as f:
        spec = json.load(f)
    case_set = CaseSet(CaseSetname, CaseBasename, Cases, CaseCategories, CaseSubCategories)
    cases = case_set.parseSpecCases(spec)
    unknown = [c for c in cases if c not in case_set.CasesIndices]
    if unknown:
        sys.stderr.write("unknown case ids in spec: " + ", ".join(unknown) + "\n")
        return 2
    sys.stdout.write(json.dumps(cases) + "\n")
    return 0


def main():
    if len(sys.argv) < 2:
        sys.stderr.write("usage: wstest_wrapper.py SITE_DIR [--list-cases SPEC | wstest args...]\n")
        return 2
    site_dir = sys.argv[1]
    _activate(site_dir)
    rest = sys.argv[2:]
    if rest[:1] == ["--list-cases"] and len(rest) == 2:
        return _list_cases(rest[1])

    from autobahntestsuite import wstest

    del sys.argv[1]  # SITE_DIR: what is left is wstest's own command line
    wstest.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
