#!/usr/bin/python3
"""The Debian package (scripts/package, cmake/Packaging.cmake, packaging/debian/).

Installs the .deb on this machine with dpkg -i (a throwaway CI machine, as root), then checks:
the files and their owners and modes, the pgdog system user and its state directory, the
conffiles (an edited /etc/pgdog/pgdog.toml survives a reinstall), the `dpkg -s` fields and that
Depends names the package of every shared library the installed binary loads; then runs pgdog
the way the installed unit says (systemctl start when systemd is PID 1, otherwise the unit's
ExecStartPre and ExecStart lines as its User and Group in its WorkingDirectory), configured in
/etc/pgdog for the test's primary, and runs a query through it with psql. It ends with
`dpkg --purge pgdog` and checks that the purge removed everything; the pgdog user is removed
too when the test created it.

The .deb comes from PGDOG_DEB when set, else scripts/package builds it from the build directory
of PGDOG_BIN (reusing the binary there).
"""

import grp
import os
import pwd
import re
import shlex
import signal
import subprocess

from optest import (free_port, parse_unit, port_open, run, run_main, src, tail,  # noqa: E402
                    wait_until)

UNIT = "/lib/systemd/system/pgdog.service"
ETC = "/etc/pgdog"
STATE = "/var/lib/pgdog"
BIN = "/usr/bin/pgdog"
DPKG_ENV = dict(os.environ, DEBIAN_FRONTEND="noninteractive")


def values(unit, key, section="Service"):
    return [v for k, v in unit.get(section, []) if k == key]


def exec_argv(line):
    """A unit's Exec*= line as argv: systemd's prefixes (-, @, +, !, :) are not part of it."""
    return shlex.split(line.lstrip("-@+!:"))


def dpkg_install(deb):
    # --force-confold: keep an edited conffile without asking (never wait on a prompt).
    return run(["dpkg", "-i", "--force-confold", deb], env=DPKG_ENV)


def file_text(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        return f"(cannot read {path}: {e})"


def owner(path):
    st = os.stat(path)
    return pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name, st.st_mode & 0o7777


def package_of(lib):
    """The Debian package that owns a shared library, trying the merged-/usr spellings."""
    candidates = [lib, os.path.realpath(lib)]
    for path in list(candidates):
        if path.startswith("/usr/lib/"):
            candidates.append(path[len("/usr"):])
        elif path.startswith("/lib/"):
            candidates.append("/usr" + path)
    for path in candidates:
        rc, out = run(["dpkg-query", "-S", path])
        if rc == 0:
            return out.split(":", 1)[0].strip()
    return None


def provided_names(pkg):
    """The package's name and its Provides (libspdlog1.10 provides libspdlog1.10-fmt9)."""
    name = pkg.split(":")[0]
    rc, out = run(["dpkg-query", "-W", "-f", "${Provides}", name])
    provides = {p.strip().split(" ")[0] for p in out.split(",") if p.strip()} if rc == 0 else set()
    return {name} | provides


def config(port, primary_port):
    return f"""[general]
host = "127.0.0.1"
port = {port}
unix_socket_dir = ""
default_pool_size = 2
min_pool_size = 0

[admin]
password = "admin"

[[databases]]
name = "pgdog"
host = "127.0.0.1"
port = {primary_port}
"""


USERS = """[[users]]
name = "pgdog"
database = "pgdog"
password = "pgdog"
"""


def write_keeping_mode(path, text):
    # Truncate and write in place: the owner and mode postinst gave the file stay.
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def find_deb(c):
    deb = os.environ.get("PGDOG_DEB")
    if deb:
        c.check(os.path.isfile(deb), f"PGDOG_DEB is a file ({deb})")
        return deb
    pgdog_bin = os.environ.get("PGDOG_BIN")
    if not c.check(pgdog_bin and os.access(pgdog_bin, os.X_OK),
                   f"PGDOG_BIN is an executable ({pgdog_bin}); integration/run sets it"):
        return None
    build = os.path.dirname(os.path.dirname(os.path.abspath(pgdog_bin)))
    rc, out = run([src("scripts", "package"), build], timeout=600)
    lines = out.strip().splitlines()
    deb = lines[-1] if lines else ""
    if not c.check(rc == 0 and deb.endswith(".deb") and os.path.isfile(deb),
                   f"scripts/package {build} built {deb}", out):
        return None
    return deb


def body(c):
    c.section("the package")
    if not c.check(os.geteuid() == 0, "running as root (dpkg -i installs on this machine)"):
        return
    deb = find_deb(c)
    if not deb:
        return
    rc, out = run(["dpkg-deb", "-f", deb, "Version"])
    deb_version = out.strip()
    c.check(rc == 0 and deb_version, f"dpkg-deb reads its version ({deb_version})", out)

    user_existed = True
    try:
        pwd.getpwnam("pgdog")
    except KeyError:
        user_existed = False
    print(f"  (user pgdog {'existed' if user_existed else 'does not exist'} before the install)")

    proc = None
    systemd = False
    try:
        rc, out = dpkg_install(deb)
        if not c.check(rc == 0, f"dpkg -i {os.path.basename(deb)}", out):
            return

        if not c.check(os.access(BIN, os.X_OK), f"{BIN} installed and executable"):
            return

        c.section("dpkg -s pgdog")
        rc, out = run(["dpkg-query", "-W", "-f", "${Status}|${Version}|${Depends}|${Conffiles}", "pgdog"])
        status, version, depends, conffiles = (out.split("|", 3) + ["", "", "", ""])[:4]
        c.check(rc == 0 and status == "install ok installed", f"Status: {status}", out)
        c.check(version == deb_version, f"Version: {version}")
        depends_names = {d.strip().split(" ")[0] for d in re.split(r"[,|]", depends) if d.strip()}
        c.check("adduser" in depends_names, "Depends on adduser (postinst creates the user)", depends)
        rc, out = run(["ldd", BIN])
        libs = re.findall(r"=>\s+(/\S+)", out)
        c.check(rc == 0 and libs, f"ldd {BIN} lists its shared libraries", out)
        for lib in libs:
            pkg = package_of(lib)
            names = provided_names(pkg) if pkg else set()
            c.check(names & depends_names,
                    f"Depends names {pkg} or what it provides (for {os.path.basename(lib)})", depends)
        listed = {line.split()[0] for line in conffiles.strip().splitlines() if line.strip()}
        c.check(listed == {f"{ETC}/pgdog.toml", f"{ETC}/users.toml"},
                "conffiles: /etc/pgdog/pgdog.toml and /etc/pgdog/users.toml", conffiles)

        c.section("files")
        rc, out = run([BIN, "--version"])
        c.check(rc == 0 and deb_version.split("-")[0] in out, f"{BIN} --version: {out.strip()}", out)
        # The example, with CUTOVER's state file where the pgdog user may write.
        state_line = 'cutover_state = "/var/lib/pgdog/pgdog-cutover.toml"'
        packaged = file_text(src("example.pgdog.toml")).replace("# " + state_line, state_line)
        c.check(state_line in packaged.splitlines(), "example.pgdog.toml names the state file")
        c.check(file_text(f"{ETC}/pgdog.toml") == packaged,
                f"{ETC}/pgdog.toml is example.pgdog.toml with cutover_state in /var/lib/pgdog")
        c.check(file_text(f"{ETC}/users.toml") == file_text(src("example.users.toml")),
                f"{ETC}/users.toml is example.users.toml")
        for path, want in ((ETC, ("root", "pgdog", 0o750)),
                           (f"{ETC}/pgdog.toml", ("root", "pgdog", 0o640)),
                           (f"{ETC}/users.toml", ("root", "pgdog", 0o640)),
                           (STATE, ("pgdog", "pgdog", 0o750))):
            got = owner(path) if os.path.exists(path) else None
            c.check(got == want, f"{path}: {want[0]}:{want[1]} {want[2]:o}", f"got {got}")

        c.section("the pgdog user")
        try:
            user = pwd.getpwnam("pgdog")
        except KeyError:
            user = None
        if c.check(user, "user pgdog exists"):
            c.check(user.pw_uid < 1000, f"a system user (uid {user.pw_uid})")
            c.check(user.pw_dir == STATE, f"home {user.pw_dir}")
            c.check(user.pw_shell in ("/usr/sbin/nologin", "/bin/false"), f"no login shell ({user.pw_shell})")
            c.check(grp.getgrgid(user.pw_gid).gr_name == "pgdog", "primary group pgdog")
        rc, out = run(["runuser", "-u", "pgdog", "--", "touch", f"{STATE}/.write-test"])
        c.check(rc == 0, f"pgdog can write in {STATE}", out)
        rc, out = run(["runuser", "-u", "pgdog", "--", "cat", f"{ETC}/users.toml"])
        c.check(rc == 0, f"pgdog can read {ETC}/users.toml", out)
        rc, out = run(["runuser", "-u", "nobody", "--", "cat", f"{ETC}/users.toml"])
        c.check(rc != 0, f"other users cannot read {ETC}/users.toml (it holds passwords)", out)

        c.section(f"the unit {UNIT}")
        if not c.check(os.path.isfile(UNIT), f"{UNIT} installed"):
            return
        unit = parse_unit(file_text(UNIT))
        start = values(unit, "ExecStart")
        c.check(len(start) == 1 and exec_argv(start[0])[0] == BIN, f"ExecStart runs {BIN}", start)
        c.check(all(exec_argv(v)[0] == BIN for v in values(unit, "ExecStartPre")),
                f"ExecStartPre runs {BIN}")
        c.check(values(unit, "User") == ["pgdog"] and values(unit, "Group") == ["pgdog"],
                "User=pgdog, Group=pgdog")
        c.check(values(unit, "StateDirectory") == ["pgdog"], "StateDirectory=pgdog (writable under ProtectSystem)")
        c.check("/usr/local" not in file_text(UNIT), "no /usr/local path left in the unit")
        rc, out = run(["dpkg-query", "-L", "pgdog"])
        c.check(rc == 0 and UNIT in out.split(), f"dpkg -L pgdog lists {UNIT}", out)
        rc, out = run(["systemd-analyze", "verify", UNIT])
        c.check(rc == 0 and not out.strip(), "systemd-analyze verify: no errors or warnings", out)

        c.section("configured for the test's primary; an edited conffile survives a reinstall")
        port = free_port()
        primary_port = int(os.environ.get("PRIMARY_PORT") or 5432)
        write_keeping_mode(f"{ETC}/pgdog.toml", config(port, primary_port))
        write_keeping_mode(f"{ETC}/users.toml", USERS)
        rc, out = dpkg_install(deb)
        c.check(rc == 0, "dpkg -i again (reinstall)", out)
        c.check(file_text(f"{ETC}/pgdog.toml") == config(port, primary_port)
                and file_text(f"{ETC}/users.toml") == USERS,
                "the edited /etc/pgdog files were kept", out)

        c.section("pgdog runs as the unit says")
        pid1 = file_text("/proc/1/comm").strip()
        systemd = pid1 == "systemd" and os.path.isdir("/run/systemd/system")
        log_path = os.path.join(STATE, "test.log")
        if systemd:
            print("  (systemd is PID 1: systemctl start pgdog)")
            run(["systemctl", "daemon-reload"])
            rc, out = run(["systemctl", "start", "pgdog"])
            c.check(rc == 0, "systemctl start pgdog", out)
            up = wait_until(lambda: port_open(port), 10)
            rc, out = run(["systemctl", "status", "--no-pager", "pgdog"])
            if not c.check(up, f"pgdog listens on {port}", out):
                return
        else:
            print(f"  (systemd is not PID 1 here, PID 1 is {pid1!r}: running the unit's ExecStartPre "
                  "and ExecStart lines as its User and Group, in its WorkingDirectory)")
            who = {"user": values(unit, "User")[0], "group": values(unit, "Group")[0], "extra_groups": [],
                   "cwd": (values(unit, "WorkingDirectory") or ["/"])[0]}
            for line in values(unit, "ExecStartPre"):
                p = subprocess.run(exec_argv(line), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, timeout=30, check=False, **who)
                if not c.check(p.returncode == 0, f"ExecStartPre: {line}", p.stdout):
                    return
            with open(log_path, "ab") as log:
                proc = subprocess.Popen(exec_argv(start[0]), stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, **who)
            up = wait_until(lambda: port_open(port) or proc.poll() is not None, 10) and proc.poll() is None
            if not c.check(up, f"ExecStart: pgdog listens on {port} as user pgdog", tail(log_path)):
                return
            rc, out = run(["ps", "-o", "user=", "-p", str(proc.pid)])
            c.check(out.strip() == "pgdog", f"the process runs as {out.strip()}")

        rc, out = run(["psql", "-X", "-tA", "-F", "|", "-c",
                       "select 6 * 7, current_user, current_setting('port')",
                       f"host=127.0.0.1 port={port} user=pgdog dbname=pgdog password=pgdog "
                       "sslmode=disable connect_timeout=5"])
        c.check(rc == 0 and out.strip() == f"42|pgdog|{primary_port}",
                f"psql through pgdog reaches the primary on {primary_port}: {out.strip()}",
                out + ("" if systemd else tail(log_path)))

        if systemd:
            rc, out = run(["systemctl", "stop", "pgdog"])
            c.check(rc == 0, "systemctl stop pgdog", out)
        else:
            proc.send_signal(getattr(signal, (values(unit, "KillSignal") or ["SIGTERM"])[0]))
            try:
                code = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                code = None
            c.check(code == 0, "KillSignal: pgdog drained and exited 0", f"exit {code}\n{tail(log_path)}")
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
        if systemd:
            run(["systemctl", "stop", "pgdog"])
        c.section("dpkg --purge pgdog")
        rc, out = run(["dpkg", "--purge", "pgdog"], env=DPKG_ENV)
        c.check(rc == 0, "dpkg --purge pgdog", out)
        left = [p for p in (BIN, UNIT, ETC, STATE) if os.path.exists(p)]
        c.check(not left, "nothing left of the package", left)
        if not user_existed:
            rc, out = run(["deluser", "--system", "--quiet", "pgdog"])
            c.check(rc == 0, "removed the pgdog user this test created", out)


if __name__ == "__main__":
    run_main("operator.debian_package", body)
