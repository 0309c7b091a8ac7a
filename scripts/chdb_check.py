#!/usr/bin/env python3
"""Runs SQL on chDB, a current ClickHouse engine in process, for the tests.

Reads {"statements": [...], "queries": [...]} as JSON on stdin; executes the
statements in order in a fresh session, then answers with JSON on stdout:
{"version": ..., "queries": [text of each answer, TSVRaw]}. A statement that
fails is named on stderr and the exit status is 1.
"""
import json
import sys
import tempfile

from chdb import session


def main() -> int:
    job = json.load(sys.stdin)
    with tempfile.TemporaryDirectory() as path:
        s = session.Session(path)
        for st in job.get("statements", []):
            try:
                s.query(st)
            except Exception as e:  # chdb raises its own error types
                print(f"statement failed: {e}\n{st}", file=sys.stderr)
                return 1
        answers = []
        for q in job.get("queries", []):
            try:
                answers.append(s.query(q, "TSVRaw").bytes().decode())
            except Exception as e:
                print(f"query failed: {e}\n{q}", file=sys.stderr)
                return 1
        version = s.query("SELECT version()", "TSVRaw").bytes().decode().strip()
        s.close()
    json.dump({"version": version, "queries": answers}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
