"""The local runner's output (local/lines.py): functions writing at once from many threads, as Powertools' metrics
flush (``print``: the text, then the newline), leave whole lines, each in the file as soon as it is written."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import json, sys, threading
from local import lines
lines.install()

def function(n):
    for i in range(200):
        print(json.dumps({"thread": n, "line": i, "pad": "x" * (i * 7)}))  # two writes: the text, then the newline
        sys.stderr.write(json.dumps({"thread": n, "line": i, "stream": "err"}) + "\\n")

threads = [threading.Thread(target=function, args=(n,)) for n in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(json.dumps({"done": True}))
sys.stdin.read()  # stays up until the test has read the file: nothing is flushed at exit
"""


def test_lines_of_concurrent_threads_stay_whole_and_reach_the_file_at_once(tmp_path):
    log_path = tmp_path / "functions.log"
    with log_path.open("ab") as log:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD], cwd=ROOT, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 60
        while b'{"done": true}' not in log_path.read_bytes():
            assert child.poll() is None, log_path.read_text()[-2000:]
            assert time.monotonic() < deadline, "the child's last line never reached the file"
            time.sleep(0.05)
        records = [json.loads(line) for line in log_path.read_text().splitlines()]  # a spoiled line fails here
    finally:
        child.communicate(b"", timeout=30)
    printed = {(r["thread"], r["line"]) for r in records if "pad" in r}
    errors = {(r["thread"], r["line"]) for r in records if r.get("stream") == "err"}
    expected = {(n, i) for n in range(8) for i in range(200)}
    assert printed == expected
    assert errors == expected
    assert len(records) == 2 * len(expected) + 1
