"""Small helpers shared by the operator-kit tests (integration/operator/*_test.py).

The tests run under Debian's /usr/bin/python3 with Debian packages only (python3-yaml,
python3-psycopg); no third-party test runner. Each test records named checks and ends with the
plain closing line `N passed, N failed`, exiting non-zero when any check failed.
"""

import json
import os
import socket
import subprocess
import sys
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request

SOURCE_DIR = os.path.abspath(
    os.environ.get("PGDOG_SOURCE_DIR")
    or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def src(*parts):
    return os.path.join(SOURCE_DIR, *parts)


class Checks:
    """Collects named checks; a failed check does not stop the test, the summary lists them all."""

    def __init__(self, name):
        self.name = name
        self.passed = 0
        self.failed = []
        self.started = time.monotonic()

    def ok(self, what):
        self.passed += 1
        print(f"  ok    {what}", flush=True)

    def fail(self, what, detail=""):
        self.failed.append(what)
        print(f"  FAIL  {what}", flush=True)
        if detail:
            for line in str(detail).rstrip().splitlines():
                print(f"        {line}", flush=True)

    def check(self, condition, what, detail=""):
        if condition:
            self.ok(what)
        else:
            self.fail(what, detail)
        return bool(condition)

    def section(self, title):
        print(f"\n== {title}", flush=True)

    def finish(self):
        elapsed = time.monotonic() - self.started
        print(f"\n{self.name}: {elapsed:.1f} s", flush=True)
        if self.failed:
            print("failed checks:")
            for f in self.failed:
                print(f"  - {f}")
        print(f"{self.passed} passed, {len(self.failed)} failed", flush=True)
        return 1 if self.failed else 0


def run_main(name, body):
    """Runs body(checks); an exception is a failed check, never a silent pass."""
    checks = Checks(name)
    try:
        body(checks)
    except Exception:  # noqa: BLE001 - report anything as a failure with its traceback
        checks.fail("unexpected error", traceback.format_exc())
    sys.exit(checks.finish())


def load_yaml(path):
    try:
        import yaml  # python3-yaml
    except ImportError as e:
        raise RuntimeError("python3-yaml is missing: apt-get install python3-yaml "
                           "(scripts/install-deps installs it)") from e
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def run(cmd, cwd=None, timeout=120, env=None):
    """Runs a command, returns (returncode, combined output)."""
    p = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=timeout, check=False)
    return p.returncode, p.stdout


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(predicate, timeout, interval=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def http_get(url, timeout=5, headers=None):
    """GET url; returns (status, body text). status is None when the connection failed."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as e:
        return None, str(e)


class PromAPI:
    """The bits of Prometheus's HTTP API the tests use."""

    def __init__(self, base):
        self.base = base.rstrip("/")

    def get(self, path, **params):
        url = self.base + path
        if params:
            url += "?" + urllib.parse.urlencode(params, doseq=True)
        status, body = http_get(url, timeout=10)
        if status is None:
            return {"status": "error", "error": body}
        try:
            return json.loads(body)
        except ValueError:
            return {"status": "error", "error": f"HTTP {status}: {body[:500]}"}

    def query(self, expr, at=None):
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        return self.get("/api/v1/query", **params)

    def series(self, match):
        return self.get("/api/v1/series", **{"match[]": match})

    def label_values(self, label):
        return self.get(f"/api/v1/label/{urllib.parse.quote(label)}/values")


def parse_unit(text):
    """A systemd unit as {section: [(key, value)]}, in order, comments dropped."""
    out, section = {}, None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            out.setdefault(section, [])
            continue
        key, _, value = line.partition("=")
        out[section].append((key.strip(), value.strip()))
    return out


def tail(path, lines=40):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError as e:
        return f"(cannot read {path}: {e})"
