#!/usr/bin/python3
"""The documentation tells the truth:
- example.pgdog.toml / example.users.toml pass `pgdog configcheck`;
- every metric family pgdog serves is in docs/metrics.md, and every family documented there is
  served (by a pgdog with mirroring and a failure threshold, so that every family exists);
- every key the configuration loader accepts is in docs/configuration.md and in the examples.
"""
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

SRC = os.environ["PGDOG_SOURCE_DIR"]
BIN = os.environ["PGDOG_BIN"]
PRIMARY = os.environ["PRIMARY_PORT"]
MIRROR = os.environ["MIRROR_PORT"]

failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def read(path):
    with open(os.path.join(SRC, path), encoding="utf-8") as f:
        return f.read()


# 1. The examples are valid.
r = subprocess.run([BIN, "configcheck", "--config", os.path.join(SRC, "example.pgdog.toml"),
                    "--users", os.path.join(SRC, "example.users.toml")],
                   capture_output=True, text=True, timeout=30)
check(r.returncode == 0, "configcheck accepts the example configuration: " + r.stdout + r.stderr)

# 2. Metric families served == documented.
documented = set(re.findall(r"^\| `(pgdog_[a-z_]+)` \|", read("docs/metrics.md"), re.M))
check(len(documented) >= 20, f"docs/metrics.md documents the families ({len(documented)})")

work = tempfile.mkdtemp(prefix="pgdog-docs-")
port, metrics = free_port(), free_port()
with open(os.path.join(work, "pgdog.toml"), "w") as f:
    f.write(f"""[general]
host = "127.0.0.1"
port = {port}
workers = 1
openmetrics_port = {metrics}
openmetrics_host = "127.0.0.1"
mirror_failure_threshold = 0.01

[admin]
password = "admin"

[[databases]]
name = "pgdog"
host = "127.0.0.1"
port = {PRIMARY}

[[databases]]
name = "mirror"
host = "127.0.0.1"
port = {MIRROR}
database_name = "pgdog"

[[mirroring]]
source_db = "pgdog"
destination_db = "mirror"
""")
with open(os.path.join(work, "users.toml"), "w") as f:
    f.write('[[users]]\nname = "pgdog"\ndatabase = "pgdog"\npassword = "pgdog"\n')
log = open(os.path.join(work, "pgdog.log"), "w")
proc = subprocess.Popen([BIN, "--config", os.path.join(work, "pgdog.toml"), "--users",
                         os.path.join(work, "users.toml")], stdout=log, stderr=log)
try:
    body = ""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            body = urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=2).read().decode()
            break
        except OSError:
            time.sleep(0.1)
    # One login so that the proxy families have a pool with traffic.
    env = dict(os.environ, PGPASSWORD="pgdog")
    subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "pgdog", "-d", "pgdog",
                    "-Atc", "select 1"], env=env, capture_output=True, timeout=30)
    body = urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5).read().decode()
    served = set(re.findall(r"^# TYPE (\S+) ", body, re.M))
    check(len(served) >= 20, f"pgdog serves metric families ({len(served)})")
    for name in sorted(served - documented):
        check(False, f"{name} is served but not documented in docs/metrics.md")
    for name in sorted(documented - served):
        check(False, f"{name} is documented in docs/metrics.md but not served")
    if served == documented:
        check(True, "every served family is documented and every documented family is served")
finally:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()

# 3. Every configuration key is documented, in the reference and in the example.
# [general] and [admin] are read from the key lists (X(key, read, ...)), the other tables by name.
parse = read("pgdog/src/config/parse.cpp")
keys = set(re.findall(r'r\.[a-z_]+(?:<[A-Za-z]+>)?\("([a-z_]+)"', parse))
keys |= set(re.findall(r'^\s*X\(([a-z_]+),', read("pgdog/src/config/keys.hpp"), re.M))
check(len(keys) >= 40, f"found the keys the loader reads ({len(keys)})")
reference = read("docs/configuration.md")
examples = read("example.pgdog.toml") + read("example.users.toml")
for key in sorted(keys):
    if f"`{key}`" not in reference:
        check(False, f"config key {key} is not in docs/configuration.md")
    if not re.search(rf"^#? ?{key} =", examples, re.M):
        check(False, f"config key {key} is not in example.pgdog.toml / example.users.toml")

print(f"{len(failures)} failed")
sys.exit(1 if failures else 0)
