#!/usr/bin/python3
"""docker-compose.yml, Dockerfile, .dockerignore and deploy/compose/ are consistent and complete.

No Docker engine runs here, so this checks everything that can be checked without one:
- `docker-compose config -q` (Debian's docker-compose) accepts the file;
- every file or directory the compose file bind-mounts or builds from exists, named volumes
  are declared, the expected services are there;
- the Dockerfile: the build stage installs exactly `scripts/install-deps --build-only --print`,
  runs the CMake build of ARCHITECTURE.md, copies every directory the top-level CMakeLists.txt
  adds, .dockerignore excludes none of those sources, and the sources laid out as the COPY
  lines put them pass the CMake configure step; the runtime stage is slim, runs as a
  non-root user, EXPOSEs 6432 and the metrics port, and installs the package of every shared
  library the pgdog binary links (ldd of PGDOG_BIN);
- deploy/compose/pgdog.toml + users.toml pass `pgdog configcheck`, have a [[mirroring]] entry and
  an openmetrics_port that the Prometheus target, the EXPOSE line and the published ports agree
  on; stop_grace_period covers shutdown_timeout;
- Prometheus, with its mounts laid out as in the container, passes `promtool check config`;
- Grafana's provisioning: the data source uid the dashboard defaults to, the dashboard
  provider's path is where the dashboard is mounted;
- the PostgreSQL init script creates a working role and database (run for real against the
  primary cluster of integration/run (PRIMARY_PORT), with a throwaway role name, twice).
"""

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import tomllib

from optest import SOURCE_DIR, load_yaml, run, run_main, src

EXPECTED_SERVICES = {"primary", "mirror", "pgdog", "prometheus", "grafana"}
CMAKE_BUILD = ("cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo && "
               "cmake --build build")


# ------------------------------------------------------------------ Dockerfile parsing


def dockerfile_instructions(path):
    """[(stage index, INSTRUCTION, arguments)] with continuations joined and comments dropped."""
    out, stage, buf = [], -1, ""
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = raw.rstrip("\n")
            if not buf and (not line.strip() or line.lstrip().startswith("#")):
                continue
            if buf and line.lstrip().startswith("#"):
                continue
            if line.endswith("\\"):
                buf += line[:-1] + " "
                continue
            buf += line
            word, _, args = buf.strip().partition(" ")
            word = word.upper()
            if word == "FROM":
                stage += 1
            out.append((stage, word, " ".join(args.split())))
            buf = ""
    return out


def apt_packages(run_args):
    """Packages of every `apt-get install` in a RUN command."""
    pkgs = []
    for part in re.split(r"&&|;|\|\|", run_args):
        tokens = shlex.split(part)
        if len(tokens) >= 2 and tokens[0] in ("apt-get", "apt") and "install" in tokens:
            after = tokens[tokens.index("install") + 1:]
            pkgs += [t for t in after if not t.startswith("-")]
    return pkgs


# ------------------------------------------------------------------ .dockerignore


def dockerignore_patterns(path):
    pats = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                pats.append(line.lstrip("/"))
    return pats


def ignored(relpath, patterns):
    """Whether .dockerignore excludes relpath (or a directory above it); `!` re-includes."""
    parts = relpath.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    result = False
    for pat in patterns:
        negate = pat.startswith("!")
        p = pat[1:] if negate else pat
        variants = {p}
        while p.startswith("**/"):
            p = p[3:]
            variants.add(p)
        hit = False
        for v in variants:
            for prefix in prefixes:
                if fnmatch.fnmatchcase(prefix, v) and (v.count("/") == prefix.count("/")
                                                       or "**" in v):
                    hit = True
            if v != pat and any(fnmatch.fnmatchcase(part, v) for part in parts) and "/" not in v:
                hit = True
        if hit:
            result = not negate
    return result


# ------------------------------------------------------------------ helpers


def dpkg_package_of(path):
    candidates = [path, os.path.realpath(path)]
    for c in list(candidates):
        if c.startswith("/lib"):
            candidates.append("/usr" + c)
    for c in candidates:
        rc, out = run(["dpkg", "-S", c])
        if rc == 0:
            return out.split(":", 1)[0].strip()
    return None


def linked_libraries(binary):
    rc, out = run(["ldd", binary])
    libs = []
    for line in out.splitlines():
        m = re.search(r"=>\s+(/\S+)", line) or re.match(r"\s*(/\S+)\s+\(", line)
        if m:
            libs.append(m.group(1))
    return rc, libs, out


def duration_seconds(text):
    m = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", str(text).strip())
    if not m or not any(m.groups()):
        raise ValueError(f"unsupported duration {text!r}")
    return int(m.group(1) or 0) * 60 + int(m.group(2) or 0)


def bind_mounts(service):
    """(source, target, read_only) of a normalized service's bind mounts."""
    out = []
    for v in service.get("volumes") or []:
        if isinstance(v, dict):
            if v.get("type") == "bind":
                out.append((v["source"], v["target"], bool(v.get("read_only"))))
            continue
        parts = v.split(":")
        if parts[0].startswith(("/", ".", "~")):
            out.append((parts[0], parts[1], len(parts) > 2 and "ro" in parts[2].split(",")))
    return out


def named_volumes(service):
    out = []
    for v in service.get("volumes") or []:
        if isinstance(v, dict):
            if v.get("type") == "volume":
                out.append(v["source"])
            continue
        src_part = v.split(":")[0]
        if not src_part.startswith(("/", ".", "~")) and ":" in v:
            out.append(src_part)
    return out


def published_targets(service):
    ports = set()
    for p in service.get("ports") or []:
        if isinstance(p, dict):
            ports.add(int(p["target"]))
        else:
            ports.add(int(str(p).split(":")[-1].split("/")[0]))
    return ports


# ------------------------------------------------------------------ the test


def body(c):
    compose_bin = shutil.which("docker-compose")
    c.section("docker-compose config")
    if not c.check(compose_bin, "docker-compose is installed (Debian package docker-compose)"):
        return
    rc, out = run([compose_bin, "config", "-q"], cwd=SOURCE_DIR)
    c.check(rc == 0, "docker-compose config -q", out)
    proc = subprocess.run([compose_bin, "config"], cwd=SOURCE_DIR, capture_output=True, text=True,
                          check=False)
    if not c.check(proc.returncode == 0, "docker-compose config (normalized)", proc.stderr):
        return
    import yaml  # python3-yaml; load_yaml below reports it when missing
    compose = yaml.safe_load(proc.stdout)
    raw = load_yaml(src("docker-compose.yml"))
    services = compose.get("services") or {}
    c.check(EXPECTED_SERVICES <= set(services), f"services {sorted(EXPECTED_SERVICES)}",
            f"found {sorted(services)}")

    c.section("every mounted or built file exists")
    declared = set((compose.get("volumes") or {}).keys())
    for name, svc in sorted(services.items()):
        build = svc.get("build")
        if build:
            ctx = build["context"] if isinstance(build, dict) else build
            dockerfile = os.path.join(ctx, build.get("dockerfile", "Dockerfile")
                                      if isinstance(build, dict) else "Dockerfile")
            c.check(os.path.isdir(ctx), f"{name}: build context {ctx} exists")
            c.check(os.path.isfile(dockerfile), f"{name}: {dockerfile} exists")
        for source, target, ro in bind_mounts(svc):
            c.check(os.path.exists(source), f"{name}: {os.path.relpath(source, SOURCE_DIR)} -> {target} exists")
            c.check(ro, f"{name}: {target} is mounted read-only")
        for vol in named_volumes(svc):
            c.check(vol in declared, f"{name}: named volume {vol} is declared")
        for env_file in svc.get("env_file") or []:
            c.check(os.path.isfile(env_file), f"{name}: env_file {env_file} exists")

    for name in ("primary", "mirror"):
        svc = services.get(name, {})
        env = svc.get("environment") or {}
        c.check(str(svc.get("image", "")).startswith("postgres:15"), f"{name}: image postgres:15")
        c.check(env.get("POSTGRES_PASSWORD") and env.get("PGDOG_DB_PASSWORD"),
                f"{name}: POSTGRES_PASSWORD and PGDOG_DB_PASSWORD are set")
        c.check(any(t == "/docker-entrypoint-initdb.d" for _, t, _ in bind_mounts(svc)),
                f"{name}: init scripts mounted in /docker-entrypoint-initdb.d")

    c.section("Dockerfile")
    instructions = dockerfile_instructions(src("Dockerfile"))
    froms = [(s, a) for s, w, a in instructions if w == "FROM"]
    c.check(froms and re.match(r"debian:12(\s|$)", froms[0][1]), f"build stage FROM debian:12 ({froms[:1]})")
    c.check(len(froms) >= 2 and re.match(r"debian:12-slim(\s|$)", froms[-1][1]),
            f"multi-stage, runtime stage FROM debian:12-slim ({froms[-1:]})")
    last = len(froms) - 1
    build_pkgs = [p for s, w, a in instructions if w == "RUN" and s == 0 for p in apt_packages(a)]
    runtime_pkgs = [p for s, w, a in instructions if w == "RUN" and s == last for p in apt_packages(a)]
    rc, out = run([src("scripts", "install-deps"), "--build-only", "--print"])
    expected = out.split()
    c.check(rc == 0 and expected, "scripts/install-deps --build-only --print", out)
    c.check(sorted(build_pkgs) == sorted(expected),
            "build stage apt packages == scripts/install-deps --build-only --print",
            f"only in Dockerfile: {sorted(set(build_pkgs) - set(expected))}\n"
            f"only in install-deps: {sorted(set(expected) - set(build_pkgs))}")
    c.check(any(w == "RUN" and s == 0 and CMAKE_BUILD in a for s, w, a in instructions),
            f"build stage runs `{CMAKE_BUILD}`")

    # Sources: every directory the top-level CMakeLists.txt adds is copied and not ignored.
    with open(src("CMakeLists.txt"), encoding="utf-8") as f:
        subdirs = re.findall(r"add_subdirectory\(\s*([\w./-]+)", f.read())
    copied = []
    for s, w, a in instructions:
        if w == "COPY" and s == 0 and "--from" not in a:
            args = [x for x in shlex.split(a) if not x.startswith("--")]
            copied += [os.path.normpath(x) for x in args[:-1]]
    for need in ["CMakeLists.txt"] + subdirs:
        c.check(need in copied or "." in copied, f"build stage copies {need}", f"COPY sources: {copied}")
    for x in copied:
        c.check(os.path.exists(src(x)), f"COPY source {x} exists")

    c.check(os.path.isfile(src(".dockerignore")), ".dockerignore exists")
    patterns = dockerignore_patterns(src(".dockerignore"))
    excluded = []
    for top in copied:
        base = src(top)
        if os.path.isfile(base):
            if ignored(top, patterns):
                excluded.append(top)
            continue
        for root, dirs, files in os.walk(base):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            for fn in files:
                rel = os.path.relpath(os.path.join(root, fn), SOURCE_DIR)
                if not fn.endswith(".pyc") and ignored(rel, patterns):
                    excluded.append(rel)
    c.check(not excluded, ".dockerignore excludes none of the copied sources", "\n".join(excluded[:20]))
    for junk in ("build", "build-it", ".git", "build/pgdog/pgdog"):
        c.check(ignored(junk, patterns), f".dockerignore excludes {junk}")

    configure_build_context(c, instructions, patterns)

    users = [a for s, w, a in instructions if w == "USER" and s == last]
    c.check(users and users[-1].split(":")[0] not in ("root", "0"),
            f"runtime stage runs as a non-root user ({users})")
    exposed = {int(p.split("/")[0]) for s, w, a in instructions if w == "EXPOSE" and s == last
               for p in a.split()}

    pgdog_bin = os.environ.get("PGDOG_BIN")
    if c.check(pgdog_bin and os.access(pgdog_bin, os.X_OK),
               f"PGDOG_BIN is an executable ({pgdog_bin}); integration/run sets it"):
        rc, libs, out = linked_libraries(pgdog_bin)
        needed = {}
        for lib in libs:
            pkg = dpkg_package_of(lib)
            if pkg is None:
                c.fail(f"{lib} (linked by pgdog) belongs to no Debian package")
            elif pkg not in ("libc6",):
                needed.setdefault(pkg, []).append(os.path.basename(lib))
        missing = {p: l for p, l in needed.items() if p not in runtime_pkgs}
        c.check(rc == 0 and not missing,
                f"runtime stage installs the packages of every linked library {sorted(needed)}",
                f"missing: {missing}\n{out}")

    c.section("pgdog configuration for compose")
    cfg_path, users_path = src("deploy", "compose", "pgdog.toml"), src("deploy", "compose", "users.toml")
    with open(cfg_path, "rb") as f:
        cfg = tomllib.load(f)
    general = cfg.get("general", {})
    metrics_port = general.get("openmetrics_port")
    c.check(isinstance(metrics_port, int), f"openmetrics_port is set ({metrics_port})")
    c.check(general.get("port", 6432) == 6432, "pgdog listens on 6432")
    mirroring = cfg.get("mirroring") or []
    dbs = {d["name"]: d for d in cfg.get("databases", [])}
    c.check(any(dbs.get(m["source_db"], {}).get("host") == "primary"
                and dbs.get(m["destination_db"], {}).get("host") == "mirror" for m in mirroring),
            "[[mirroring]] from the primary service to the mirror service")
    c.check({6432, metrics_port} <= exposed, f"Dockerfile EXPOSEs 6432 and {metrics_port} ({sorted(exposed)})")
    pg = services.get("pgdog", {})
    c.check({6432, metrics_port} <= published_targets(pg), "compose publishes 6432 and the metrics port")
    mounts = {t: s for s, t, _ in bind_mounts(pg)}
    cmd = pg.get("command") or []
    for flag, path in (("--config", cfg_path), ("--users", users_path)):
        target = cmd[cmd.index(flag) + 1] if flag in cmd else None
        c.check(target and os.path.realpath(mounts.get(target, "")) == os.path.realpath(path),
                f"pgdog {flag} {target} is {os.path.relpath(path, SOURCE_DIR)}")
    grace = duration_seconds(raw["services"]["pgdog"].get("stop_grace_period", "10s"))
    shutdown = general.get("shutdown_timeout", 60000) / 1000
    c.check(grace > shutdown, f"stop_grace_period {grace}s > shutdown_timeout {shutdown:g}s")
    if pgdog_bin and os.access(pgdog_bin, os.X_OK):
        rc, out = run([pgdog_bin, "configcheck", "--config", cfg_path, "--users", users_path])
        c.check(rc == 0, "pgdog configcheck deploy/compose/pgdog.toml users.toml", out)

    c.section("prometheus")
    prom = services.get("prometheus", {})
    with tempfile.TemporaryDirectory() as root:
        # Lay the mounts out as the container sees them, then check the config there.
        for source, target, _ in bind_mounts(prom):
            dest = os.path.join(root, target.lstrip("/"))
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            (shutil.copytree if os.path.isdir(source) else shutil.copy)(source, dest)
        config_flag = [a for a in prom.get("command") or [] if a.startswith("--config.file=")]
        config_in_container = config_flag[0].split("=", 1)[1] if config_flag else "/etc/prometheus/prometheus.yml"
        local = os.path.join(root, config_in_container.lstrip("/"))
        promtool = shutil.which("promtool")
        if c.check(promtool, "promtool is installed"):
            rc, out = run([promtool, "check", "config", local])
            c.check(rc == 0 and "1 rule files found" in out,
                    "promtool check config (as mounted in the container, alerts.yml loaded)", out)
        prom_cfg = load_yaml(local)
    jobs = {j["job_name"]: j for j in prom_cfg.get("scrape_configs", [])}
    targets = [t for sc in (jobs.get("pgdog") or {}).get("static_configs", []) for t in sc.get("targets", [])]
    c.check(f"pgdog:{metrics_port}" in targets, f"job pgdog scrapes pgdog:{metrics_port} ({targets})")

    c.section("grafana provisioning")
    gf = services.get("grafana", {})
    gmounts = {t: s for s, t, _ in bind_mounts(gf)}
    prov = gmounts.get("/etc/grafana/provisioning")
    if c.check(prov and os.path.isdir(prov), "provisioning directory mounted at /etc/grafana/provisioning"):
        ds_files = [os.path.join(prov, "datasources", f) for f in sorted(os.listdir(os.path.join(prov, "datasources")))]
        datasources = [d for f in ds_files for d in (load_yaml(f) or {}).get("datasources", [])]
        prom_ds = [d for d in datasources if d.get("type") == "prometheus"]
        c.check(prom_ds and prom_ds[0].get("url") == "http://prometheus:9090",
                "a Prometheus data source at http://prometheus:9090", str(prom_ds))
        with open(src("docs", "grafana", "pgdog-mirror.json"), encoding="utf-8") as f:
            dashboard = json.load(f)
        dsvar = [v for v in dashboard["templating"]["list"] if v.get("type") == "datasource"]
        default_uid = dsvar[0]["current"]["value"] if dsvar else None
        c.check(prom_ds and prom_ds[0].get("uid") == default_uid,
                f"the dashboard's default data source uid {default_uid!r} is provisioned")
        db_files = [os.path.join(prov, "dashboards", f) for f in sorted(os.listdir(os.path.join(prov, "dashboards")))]
        paths = [p.get("options", {}).get("path") for f in db_files for p in (load_yaml(f) or {}).get("providers", [])]
        dash_targets = [t for t, s in gmounts.items()
                        if os.path.realpath(s) == os.path.realpath(src("docs", "grafana", "pgdog-mirror.json"))]
        c.check(dash_targets and any(os.path.dirname(dash_targets[0]) == p for p in paths),
                f"a dashboard provider reads {dash_targets} (providers: {paths})")

    c.section("PostgreSQL init script")
    init_dir = [s for s, t, _ in bind_mounts(services.get("primary", {})) if t == "/docker-entrypoint-initdb.d"]
    scripts = sorted(os.path.join(init_dir[0], f) for f in os.listdir(init_dir[0])) if init_dir else []
    c.check(scripts, f"init scripts: {[os.path.basename(s) for s in scripts]}")
    for script in scripts:
        if script.endswith(".sh"):
            rc, out = run(["bash", "-n", script])
            c.check(rc == 0, f"bash -n {os.path.basename(script)}", out)
    primary_port = os.environ.get("PRIMARY_PORT")
    if c.check(primary_port, "PRIMARY_PORT is set (integration/run) to run the init script for real"):
        init_script_live(c, scripts, int(primary_port))


def configure_build_context(c, instructions, patterns):
    """Lays out the build stage's COPY instructions (honouring .dockerignore) in a temporary
    directory and runs the CMake configure step there: a source the image build needs but does
    not copy fails here, without a Docker engine."""
    cmake = shutil.which("cmake")
    if not c.check(cmake, "cmake is installed"):
        return
    with tempfile.TemporaryDirectory(prefix="pgdog-docker-context.") as ctx:
        for s, w, a in instructions:
            if w != "COPY" or s != 0 or "--from" in a:
                continue
            args = [x for x in shlex.split(a) if not x.startswith("--")]
            dest = os.path.join(ctx, args[-1])  # relative to WORKDIR, the context's root here
            for source in args[:-1]:
                if os.path.isfile(src(source)):
                    target = dest
                    if args[-1].endswith("/") or os.path.isdir(dest):
                        target = os.path.join(dest, os.path.basename(source))
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    shutil.copy2(src(source), target)
                    continue
                # A directory source: its contents go into dest.
                for root, dirs, files in os.walk(src(source)):
                    rel_root = os.path.relpath(root, SOURCE_DIR)
                    dirs[:] = [d for d in dirs if not ignored(os.path.join(rel_root, d), patterns)]
                    for fn in files:
                        if ignored(os.path.join(rel_root, fn), patterns):
                            continue
                        out = os.path.join(dest, os.path.relpath(os.path.join(root, fn), src(source)))
                        os.makedirs(os.path.dirname(out), exist_ok=True)
                        shutil.copy2(os.path.join(root, fn), out)
        rc, out = run([cmake, "-S", ctx, "-B", os.path.join(ctx, "build"), "-G", "Ninja",
                       "-DCMAKE_BUILD_TYPE=RelWithDebInfo"], timeout=300)
        c.check(rc == 0, "the build context as the Dockerfile copies it passes the CMake configure step",
                out[-3000:])


def init_script_live(c, scripts, port):
    """Runs the init scripts as the postgres image would (POSTGRES_USER, POSTGRES_DB) against the
    primary cluster, with a throwaway role and database, twice (they must be re-runnable)."""
    name = f"opkit_init_{os.getpid()}"
    password = "s3cret 'quoted\""
    env = dict(os.environ, PGHOST="127.0.0.1", PGPORT=str(port), PGPASSWORD="pgdog",
               POSTGRES_USER="pgdog", POSTGRES_DB="pgdog", PGDOG_DB_USER=name, PGDOG_DB_NAME=name,
               PGDOG_DB_PASSWORD=password)
    admin = ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(port), "-U", "pgdog",
             "-d", "pgdog", "-tA"]
    admin_env = dict(os.environ, PGPASSWORD="pgdog")
    try:
        for attempt in (1, 2):
            for script in scripts:
                if script.endswith(".sh"):
                    rc, out = run(["bash", script], env=env)
                elif script.endswith(".sql"):
                    rc, out = run(admin + ["-f", script], env=admin_env)
                else:
                    continue
                c.check(rc == 0, f"run {os.path.basename(script)} (run {attempt})", out)
        rc, out = run(["psql", "-X", "-tA", "-h", "127.0.0.1", "-p", str(port), "-U", name, "-d", name,
                       "-c", "SELECT current_user || ' ' || current_database() || ' ' || "
                             "(SELECT datdba::regrole::text FROM pg_database WHERE datname = current_database())"],
                      env=dict(os.environ, PGPASSWORD=password))
        c.check(rc == 0 and out.strip() == f"{name} {name} {name}",
                "the role logs in with PGDOG_DB_PASSWORD and owns its database", out)
    finally:
        run(admin + ["-c", f'DROP DATABASE IF EXISTS "{name}"'], env=admin_env)
        run(admin + ["-c", f'DROP ROLE IF EXISTS "{name}"'], env=admin_env)


if __name__ == "__main__":
    run_main("operator.compose", body)
