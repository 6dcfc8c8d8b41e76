#!/usr/bin/python3
"""deploy/systemd/pgdog.service and docs/deployment.md.

- docs/deployment.md embeds the unit verbatim and covers systemd, docker-compose, several
  instances behind a load balancer, Prometheus aggregation and the metrics port;
- `systemd-analyze verify` accepts the unit (with the binary path pointed at PGDOG_BIN);
- the unit does what it says, run by hand the way systemd runs it against a real pgdog:
  ExecStartPre accepts a good configuration and refuses a broken one; ExecStart serves; the
  ExecReload lines reload a changed configuration (seen in SHOW CONFIG) and, with a broken file,
  stop at the check without signalling pgdog (which keeps running on the previous one);
  KillSignal drains and pgdog exits 0 well within TimeoutStopSec, which is above the default
  shutdown_timeout that pgdog reports in SHOW CONFIG.
"""

import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time

from optest import (free_port, parse_unit, port_open, run, run_main, src, tail,  # noqa: E402
                    wait_until)

UNIT = src("deploy", "systemd", "pgdog.service")
DOC = src("docs", "deployment.md")


def values(unit, section, key):
    return [v for k, v in unit.get(section, []) if k == key]


def seconds(text):
    m = re.fullmatch(r"(\d+)\s*(s|sec|min|m)?", text)
    if not m:
        raise ValueError(f"unsupported time span {text!r}")
    n = int(m.group(1))
    return n * 60 if m.group(2) in ("min", "m") else n


def config_text(port, primary_port, pool_size, broken=False):
    text = f"""[general]
host = "127.0.0.1"
port = {port}
default_pool_size = {pool_size}
min_pool_size = 0

[admin]
password = "admin"

[[databases]]
name = "pgdog"
host = "127.0.0.1"
port = {primary_port}
"""
    if broken:
        text += "\n[general.unknown_table]\nnot_a_key = 1\n"
    return text


USERS = """[[users]]
name = "pgdog"
database = "pgdog"
password = "pgdog"
"""


def show_config(port):
    rc, out = run(["psql", "-X", "-tA", "-F", "|", "-c", "SHOW CONFIG",
                   f"host=127.0.0.1 port={port} user=admin dbname=admin password=admin "
                   "sslmode=disable connect_timeout=5"])
    if rc != 0:
        return None, out
    # key|value|pending|changeable: the value in force.
    return {f[0]: f[1] for f in (line.split("|") for line in out.splitlines()) if len(f) > 1}, out


def body(c):
    with open(UNIT, encoding="utf-8") as f:
        unit_text = f.read()
    unit = parse_unit(unit_text)

    c.section("docs/deployment.md")
    with open(DOC, encoding="utf-8") as f:
        doc = f.read()
    blocks = re.findall(r"```ini\n(.*?)```", doc, re.S)
    c.check(unit_text in blocks, "embeds deploy/systemd/pgdog.service verbatim (```ini block)")
    for heading in ("## systemd", "## docker-compose", "## Several pgdog instances behind a TCP load balancer",
                    "### Prometheus with several instances", "## Where the metrics port should listen"):
        c.check(heading in doc, f"section {heading!r}")
    for needle in ("KillSignal", "TimeoutStopSec", "shutdown_timeout", "SIGHUP", "HAProxy", "keepalived",
                   "sum by (cluster)", "pgdog_mirror_success_rate", "openmetrics_host"):
        c.check(needle in doc, f"mentions {needle}")

    c.section("unit file")
    svc = "Service"
    c.check(values(unit, svc, "KillSignal") == ["SIGTERM"], "KillSignal=SIGTERM (drain)")
    reload_lines = values(unit, svc, "ExecReload")
    c.check(reload_lines and "-HUP $MAINPID" in reload_lines[-1], "ExecReload ends with SIGHUP to $MAINPID")
    user = values(unit, svc, "User")
    c.check(user and user[0] not in ("root", "0"), f"runs as a non-root user ({user})")
    start = values(unit, svc, "ExecStart")
    c.check(len(start) == 1 and "--config" in start[0] and "--users" in start[0],
            "ExecStart passes --config and --users")
    timeout_stop = seconds(values(unit, svc, "TimeoutStopSec")[0]) if values(unit, svc, "TimeoutStopSec") else 90
    c.check(values(unit, "Install", "WantedBy") == ["multi-user.target"], "WantedBy=multi-user.target")

    pgdog_bin = os.environ.get("PGDOG_BIN")
    if not c.check(pgdog_bin and os.access(pgdog_bin, os.X_OK),
                   f"PGDOG_BIN is an executable ({pgdog_bin}); integration/run sets it"):
        return

    tmp = tempfile.mkdtemp(prefix="pgdog-unit-test.")
    etc = os.path.join(tmp, "etc", "pgdog")
    os.makedirs(etc)
    local_unit = unit_text.replace("/usr/local/bin/pgdog", pgdog_bin).replace("/etc/pgdog/", etc + "/")
    unit_path = os.path.join(tmp, "pgdog.service")
    with open(unit_path, "w", encoding="utf-8") as f:
        f.write(local_unit)
    local = parse_unit(local_unit)

    analyze = shutil.which("systemd-analyze")
    if analyze:
        rc, out = run([analyze, "verify", unit_path])
        c.check(rc == 0 and not out.strip(), "systemd-analyze verify: no errors or warnings", out)
    else:
        print("  SKIP  systemd-analyze verify (systemd-analyze is not installed)")

    c.section("the unit's commands against a real pgdog")
    port = free_port()
    primary_port = int(os.environ.get("PRIMARY_PORT") or 5432)
    cfg, users = os.path.join(etc, "pgdog.toml"), os.path.join(etc, "users.toml")
    with open(users, "w", encoding="utf-8") as f:
        f.write(USERS)

    def write_config(pool_size, broken=False):
        with open(cfg, "w", encoding="utf-8") as f:
            f.write(config_text(port, primary_port, pool_size, broken))

    def run_lines(key, mainpid=None):
        """Runs the unit's KEY command lines in order like systemd; stops at the first failure."""
        outputs = []
        for line in values(local, svc, key):
            argv = shlex.split(line.replace("$MAINPID", str(mainpid)))
            rc, out = run(argv)
            outputs.append(f"$ {line}\n{out}")
            if rc != 0:
                return rc, "\n".join(outputs)
        return 0, "\n".join(outputs)

    write_config(3, broken=True)
    rc, out = run_lines("ExecStartPre")
    c.check(rc != 0, "ExecStartPre refuses a broken configuration", out)
    write_config(3)
    rc, out = run_lines("ExecStartPre")
    c.check(rc == 0, "ExecStartPre accepts the configuration", out)

    log_path = os.path.join(tmp, "pgdog.log")
    log = open(log_path, "ab")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(shlex.split(values(local, svc, "ExecStart")[0]), stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        if not c.check(wait_until(lambda: port_open(port) or proc.poll() is not None, 10)
                       and proc.poll() is None, f"ExecStart: pgdog listens on {port}", tail(log_path)):
            return
        conf, out = show_config(port)
        if c.check(conf, "SHOW CONFIG on the admin console", out):
            default_ms = int(re.sub(r"\D", "", conf.get("shutdown_timeout", "")) or 0)
            c.check(default_ms > 0 and timeout_stop >= default_ms / 1000 + 5,
                    f"TimeoutStopSec {timeout_stop}s leaves a margin over the default "
                    f"shutdown_timeout {default_ms / 1000:g}s")
            c.check(conf.get("default_pool_size") == "3", "running with default_pool_size 3")

        write_config(7)
        rc, out = run_lines("ExecReload", proc.pid)
        c.check(rc == 0, "ExecReload with a valid change", out)
        reloaded = wait_until(lambda: (show_config(port)[0] or {}).get("default_pool_size") == "7", 5)
        c.check(reloaded and proc.poll() is None, "pgdog reloaded (default_pool_size 7) and runs", tail(log_path))

        write_config(9, broken=True)
        rc, out = run_lines("ExecReload", proc.pid)
        c.check(rc != 0 and "-HUP" not in out, "ExecReload with a broken file stops at the check", out)
        time.sleep(0.5)
        conf, _ = show_config(port)
        c.check(proc.poll() is None and (conf or {}).get("default_pool_size") == "7",
                "pgdog keeps running on the previous configuration", tail(log_path))
        write_config(7)

        t0 = time.monotonic()
        proc.send_signal(getattr(signal, values(unit, svc, "KillSignal")[0]))
        try:
            code = proc.wait(timeout=timeout_stop)
        except subprocess.TimeoutExpired:
            code = None
        took = time.monotonic() - t0
        c.check(code == 0, f"KillSignal: pgdog drained and exited 0 in {took:.1f} s "
                           f"(TimeoutStopSec {timeout_stop}s)", f"exit {code}\n{tail(log_path)}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
        log.close()
        if c.failed:
            print(f"\n(kept {tmp})")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    run_main("operator.deployment", body)
