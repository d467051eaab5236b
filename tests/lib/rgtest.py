"""rgtest: what the Python tests of the binary share: where it is, a
process that is ready once it printed its serving line, checks that say
what failed, and a runner of named cases.
"""

import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
BIN = os.environ.get("TEST_RPCGATE_BIN", str(ROOT / "build" / "rpcgate"))
READY_S = 20

class Failed(Exception):
    pass

def expect(cond, what):
    if not cond:
        raise Failed(what)

def clean_env():
    return {k: v for k, v in os.environ.items()
            if not k.startswith("RPCGATE_")}

def raise_nofile(want):
    """This process's descriptor limit up to `want` (as far as the hard
    limit goes, or raises it as root)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

class Proc:
    """An rpcgate process, ready once it printed its serving line.
    nofile: its descriptor limit (soft and hard)."""

    def __init__(self, *args, nofile=None):
        def limits():
            if nofile:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.args = args
        self.p = subprocess.Popen([BIN, *args], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True,
                                  env=clean_env(), preexec_fn=limits)
        self.err = []
        threading.Thread(target=self._drain, daemon=True).start()
        end = time.monotonic() + READY_S
        line = ""
        while time.monotonic() < end:
            line = self.p.stdout.readline()
            if "serving" in line or not line:
                break
        where = line.split(" on ")[-1] if line else ""
        m = re.search(r":(\d+)", where)
        if not m and re.match(r"unix:\S+", where):
            self.port = None  # a Unix socket: no port
            threading.Thread(target=self._drain_out, daemon=True).start()
            return
        if not m:
            self.stop()
            raise Failed(f"{args}: not serving: {line!r}\n"
                         + "".join(self.err[-20:]))
        self.port = int(m.group(1))
        threading.Thread(target=self._drain_out, daemon=True).start()

    def _drain(self):
        for line in self.p.stderr:
            self.err.append(line)

    def _drain_out(self):
        for _ in self.p.stdout:
            pass

    def log(self, pattern):
        """The lines of its log that match `pattern`."""
        return [ln for ln in list(self.err) if re.search(pattern, ln)]

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()

    def kill9(self):
        self.p.kill()
        self.p.wait()

def run_cases(prog, cases, argv, errors=(Failed, OSError,
                                         subprocess.SubprocessError)):
    """Runs the cases named in argv (all when none), a line each; the exit
    status: 0 when all passed."""
    names = argv[1:] or list(cases)
    failed = 0
    for name in names:
        t0 = time.monotonic()
        try:
            what = cases[name]()
            print(f"{prog}: ok - {name} ({time.monotonic() - t0:.1f} s)"
                  + (f": {what}" if what else ""), flush=True)
        except errors as x:
            failed += 1
            print(f"{prog}: FAIL - {name}: {x}", flush=True)
    print(f"{prog}: {len(names) - failed}/{len(names)} passed")
    return 1 if failed else 0

