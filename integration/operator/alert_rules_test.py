#!/usr/bin/python3
"""docs/prometheus: the alert rules are valid, unit-tested alert by alert, and the example
Prometheus configuration loads them.

- promtool check rules docs/prometheus/alerts.yml
- promtool test rules docs/prometheus/alerts_test.yml
- promtool check config docs/prometheus/prometheus.yml (it loads alerts.yml)
- every alert has `for:`, a severity, summary and description annotations (naming the cluster
  for the mirror alerts), and at least one unit test where it fires and one where it does not.
"""

import os
import shutil

from optest import load_yaml, run, run_main, src

PROMTOOL = os.environ.get("PROMTOOL", "promtool")


def body(c):
    promtool = shutil.which(PROMTOOL)
    if not c.check(promtool, f"{PROMTOOL} is installed (Debian package prometheus)"):
        return

    c.section("promtool")
    for cmd, what in (
        ([promtool, "check", "rules", "alerts.yml"], "promtool check rules alerts.yml"),
        ([promtool, "test", "rules", "alerts_test.yml"], "promtool test rules alerts_test.yml"),
        ([promtool, "check", "config", "prometheus.yml"], "promtool check config prometheus.yml"),
    ):
        rc, out = run(cmd, cwd=src("docs", "prometheus"))
        c.check(rc == 0, what, out)

    c.section("every alert is complete and unit-tested")
    rules = load_yaml(src("docs", "prometheus", "alerts.yml"))
    tests = load_yaml(src("docs", "prometheus", "alerts_test.yml"))
    c.check("alerts.yml" in (tests.get("rule_files") or []), "alerts_test.yml loads alerts.yml")

    alerts = []
    for group in rules.get("groups", []):
        for rule in group.get("rules", []):
            if "alert" in rule:
                alerts.append(rule)
    names = [a["alert"] for a in alerts]
    c.check(len(names) == len(set(names)), "alert names are unique", str(names))
    c.check(len(alerts) >= 6, f"{len(alerts)} alerts defined")

    firing, quiet = set(), set()
    for t in tests.get("tests", []):
        for case in t.get("alert_rule_test", []) or []:
            (firing if case.get("exp_alerts") else quiet).add(case["alertname"])

    for a in alerts:
        name = a["alert"]
        ann = a.get("annotations") or {}
        labels = a.get("labels") or {}
        problems = []
        if not a.get("for"):
            problems.append("no `for:` clause")
        if labels.get("severity") not in ("info", "warning", "critical"):
            problems.append("severity label is not info|warning|critical")
        for key in ("summary", "description"):
            if not ann.get(key):
                problems.append(f"no {key} annotation")
            elif "pgdog_mirror_" in a["expr"] and "$labels.cluster" not in ann[key]:
                problems.append(f"{key} does not name the cluster ($labels.cluster)")
        c.check(not problems, f"{name}: for, severity, summary and description", "; ".join(problems))
        c.check(name in firing, f"{name}: a unit test where it fires")
        c.check(name in quiet, f"{name}: a unit test where it does not fire")

    unknown = (firing | quiet) - set(names)
    c.check(not unknown, "unit tests name only alerts that exist", ", ".join(sorted(unknown)))


if __name__ == "__main__":
    run_main("operator.alert_rules", body)
