"""deploy/: the Prometheus alerting rules, checked and unit-tested with promtool (each alert
fires on its series and stays quiet on healthy ones), and the Grafana dashboard. Every
expression of both names only metrics the service exports, with labels they carry (a
scrape of /metrics after a few requests). docs/operating.md's "Dashboard and alerts" is
run as written: its promtool commands are the ones run here, its snippets make the
configuration promtool checks.

promtool comes from Debian's `prometheus` package (.ci/run installs it): missing, these
tests are skipped, and fail under CI=true."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import textwrap

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support import (
    BEARER,
    JOBS,
    REDACT,
    ROOT,
    TOKEN,
    add_account,
    add_records,
    basic,
    record,
    unavailable,
)

RULES = ROOT / "deploy" / "prometheus" / "redact-alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "redact-alerts.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "redact-dashboard.json"
OPERATING = ROOT / "docs" / "operating.md"
RECORDS = "/v1/redact/records"

PROMETHEUS_OWN = {"up": {"job", "instance"}}
"""Series Prometheus writes itself for each target: the only names not the service's."""
TARGET_LABELS = {"job", "instance"}
"""Labels Prometheus adds to every series it scrapes."""
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = GROUPING | {"and", "or", "unless", "bool", "offset", "inf", "nan"}
TOKENS = re.compile(
    r"""(?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*')
    | (?P<matchers>\{(?:"(?:\\.|[^"\\])*"|[^}"])*\})
    | (?P<range>\[[^\]]*\])
    | (?P<name>[A-Za-z_:][A-Za-z0-9_:]*)
    | (?P<number>\d[\w.+-]*)
    | (?P<other>\S)""",
    re.X,
)
MATCHER = re.compile(r"""([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)\s*"(?:\\.|[^"\\])*\"""")


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        unavailable("promtool is missing (Debian's prometheus package; .ci/run installs it)")
    return found


def run(command: list[str], cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)


# ---------------------------------------------------------------------- PromQL's names


def selectors(expr: str) -> list[tuple[str, set[str]]]:
    """The series an expression selects: (metric name, label names its matchers use), in
    order; a selector without a name is ("", labels)."""
    tokens = [(m.lastgroup, m.group()) for m in TOKENS.finditer(expr)]
    found: list[tuple[str, set[str]]] = []
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        following = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        if kind == "name" and text in GROUPING and following == "(":
            i = tokens.index(("other", ")"), i)  # a list of labels, not of series
        elif kind == "name" and following not in ("(", "by", "without") and text not in KEYWORDS:
            labels = set()
            if following.startswith("{"):
                labels = set(MATCHER.findall(following))
                i += 1
            found.append((text, labels))
        elif kind == "matchers":
            found.append(("", set(MATCHER.findall(text))))
        i += 1
    return found


def test_selectors_finds_every_series_and_its_labels():
    expr = (
        'sum by (le, operation) (rate(a_bucket{operation=~"x|y", b="}"}[5m])) / on (job) '
        "group_left (instance) c > bool 0.5 and d offset 1h unless histogram_quantile(0.9, e)"
    )
    assert selectors(expr) == [
        ("a_bucket", {"operation", "b"}),
        ("c", set()),
        ("d", set()),
        ("e", set()),
    ]
    assert selectors('{__name__="x"}') == [("", {"__name__"})]


@pytest.fixture
def exported(make_app, sqlite_url, tmp_path):
    """{series name: its label names} as a Prometheus server stores what /metrics serves,
    after requests that give every labelled metric a sample."""
    app = make_app(
        sqlite_url,
        metrics_token=TOKEN,
        rate_limit="3/minute",
        queue_url=f"sqlite:///{tmp_path / 'q.db'}",
    )
    headers = add_account("acct0001")
    add_records(record("M1", product="voice"))
    with app.test_client() as client:
        redaction = {"id": "M1", "product": "voice"}
        assert client.post(REDACT, json=redaction, headers=headers).status_code == 204
        assert client.post(REDACT, json=redaction, headers=basic("acct0001", "no")).is_error
        stored = {k: v for k, v in record("M2").items() if k != "api_key"}
        assert client.post(RECORDS, json={"records": [stored]}, headers=headers).is_success
        assert 429 in [client.get(JOBS, headers=headers).status_code for _ in range(3)]
        text = client.get("/metrics", headers=BEARER).text
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for suffix in suffixes.get(family.type, [""]):
            name = family.name + suffix
            names[name] = {
                label for sample in family.samples if sample.name == name for label in sample.labels
            }
    return names


def unknown(expr: str, exported: dict[str, set[str]]) -> list[str]:
    """What `expr` selects that the service does not export: names, and labels the name
    does not carry."""
    known = {**exported, **PROMETHEUS_OWN}
    wrong = []
    for name, labels in selectors(expr):
        if name not in known:
            wrong.append(name or f"a selector without a name: {sorted(labels)}")
        elif labels - known[name] - TARGET_LABELS:
            wrong.append(f"{name} has no label {sorted(labels - known[name] - TARGET_LABELS)}")
    return wrong


def test_the_scrape_has_every_metric_and_the_check_finds_what_it_has_not(exported):
    assert exported["redact_http_requests_total"] >= {"operation", "status"}
    assert exported["redact_http_request_duration_seconds_bucket"] >= {"operation", "le"}
    assert exported["redact_redactions_total"] == {"product"}
    assert exported["redact_rate_limited_requests_total"] == {"api_key"}
    assert "redact_store_up" in exported and "redact_job_queue_depth" in exported
    assert unknown("sum(rate(redact_http_requests_total[5m]))", exported) == []
    assert unknown("rate(redact_http_requests[5m])", exported) == ["redact_http_requests"]
    assert unknown('redact_jobs{state="ready"}', exported) == ["redact_jobs has no label ['state']"]
    assert unknown('redact_store_up{instance="a"} == 0 and up', exported) == []


# -------------------------------------------------------------------------- the alerts


def rules() -> list[dict]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_the_alerts_name_only_what_the_service_exports(exported):
    alerts = rules()
    assert len(alerts) >= 10 and all("alert" in rule for rule in alerts)
    for rule in alerts:
        assert selectors(rule["expr"]), rule["alert"]
        assert unknown(rule["expr"], exported) == [], rule["alert"]


def test_the_down_alert_looks_for_the_documented_scrape_job():
    [down] = [rule for rule in rules() if rule["alert"] == "RedactDown"]
    [scrape] = [block for block in yaml_blocks(OPERATING.read_text()) if "scrape_configs" in block]
    job = yaml.safe_load(scrape)["scrape_configs"][0]["job_name"]
    assert down["expr"] == f'up{{job="{job}"}} == 0'


def test_every_alert_has_a_case_that_fires_it_and_one_where_it_stays_quiet():
    cases = [
        case
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test["alert_rule_test"]
    ]
    for rule in rules():
        mine = [case for case in cases if case["alertname"] == rule["alert"]]
        assert any(case["exp_alerts"] for case in mine), f"nothing fires {rule['alert']}"
        assert any(not case["exp_alerts"] for case in mine), f"{rule['alert']}: no quiet case"
    assert {case["alertname"] for case in cases} <= {rule["alert"] for rule in rules()}


def test_the_documented_promtool_commands_check_and_unit_test_the_rules():
    commands = [shlex.split(line) for line in sh_lines(section()) if "rules" in line]
    assert commands == [
        ["promtool", "check", "rules", str(RULES.relative_to(ROOT))],
        ["promtool", "test", "rules", str(RULE_TESTS.relative_to(ROOT))],
    ]
    tool = promtool()
    checked = run([tool, *commands[0][1:]])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules())} rules found" in checked.stdout
    tested = run([tool, *commands[1][1:]])
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_the_unit_tests_fail_when_an_alert_is_broken(tmp_path):
    """The cases bite: an alert that never fires, or always does, fails them."""
    tool = promtool()
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    original = RULES.read_text()
    for broken in ("vector(0) > 1", "vector(1)"):
        expr = f'expr: "{broken}"'
        text = original.replace("expr: max(redact_tree_head_lag_seconds) > 600", expr)
        assert text != original
        (tmp_path / RULES.name).write_text(text)
        result = run([tool, "test", "rules", RULE_TESTS.name], cwd=tmp_path)
        assert result.returncode != 0
        assert "RedactTreeHeadsNotSigned" in result.stdout + result.stderr


def test_the_documented_configuration_loads_the_rules(tmp_path):
    """prometheus.yml made of the documentation's snippets (the scrape job, rule_files),
    checked by the documented command where the rules were copied beside it."""
    text = OPERATING.read_text()
    scrape = next(block for block in yaml_blocks(text) if "scrape_configs" in block)
    [rule_files] = [block for block in yaml_blocks(section()) if "rule_files" in block]
    config = {**yaml.safe_load(scrape), **yaml.safe_load(rule_files)}
    for name in config["rule_files"]:
        shutil.copy(RULES, tmp_path / name)
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    [command] = [line for line in sh_lines(section()) if "check config" in line]
    done = run([promtool(), *shlex.split(command)[1:]], cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules())} rules found" in done.stdout


# ------------------------------------------------------------------------ the dashboard


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels() -> list[dict]:
    return [panel for panel in dashboard()["panels"] if panel["type"] != "row"]


def expressions() -> list[str]:
    return [target["expr"] for panel in panels() for target in panel["targets"]]


def as_prometheus_sees_it(expr: str) -> str:
    """A panel's expression with Grafana's variables as it would fill them in."""
    for variable, value in {
        "$__rate_interval": "1m",
        "$instance": ".*",
        "$operation": ".*",
    }.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, expr
    return expr


def test_the_dashboard_names_only_what_the_service_exports(exported):
    document = dashboard()
    assert document["title"] and document["uid"] and document["schemaVersion"] >= 36
    for expr in expressions():
        assert unknown(expr, exported) == [], expr
    for variable in document["templating"]["list"]:
        if variable["type"] != "query":
            continue
        metric, label = re.fullmatch(
            r"label_values\((\w+), (\w+)\)", variable["query"]["query"]
        ).groups()
        assert metric in exported and label in exported[metric] | TARGET_LABELS
    shown = {name for expr in expressions() for name, _ in selectors(expr)}
    for metric in (
        "redact_http_requests_total",
        "redact_http_request_duration_seconds_bucket",
        "redact_rate_limited_requests_total",
        "redact_store_up",
        "redact_limiter_storage_unavailable_total",
        "redact_jobs",
        "redact_job_queue_depth",
        "redact_webhook_backlog",
        "redact_retention_lag_seconds",
        "redact_tree_head_lag_seconds",
        "redact_commit_batch_size_bucket",
    ):
        assert metric in shown, f"no panel shows {metric}"


def test_the_dashboard_uses_its_data_source_variable_everywhere():
    """Imported or provisioned, it needs no editing: each panel and query variable reads
    the `datasource` variable, which offers the Prometheus data sources."""
    document = dashboard()
    variables = {v["name"]: v for v in document["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    wanted = {"type": "prometheus", "uid": "${datasource}"}
    for panel in panels():
        assert panel["datasource"] == wanted, panel["title"]
        assert all(target["datasource"] == wanted for target in panel["targets"])
    assert all(v["datasource"] == wanted for v in variables.values() if v["type"] == "query")
    assert len({panel["id"] for panel in document["panels"]}) == len(document["panels"])


def test_the_dashboard_expressions_are_promql(tmp_path):
    """Each panel's query, its variables filled in, parses (as a recording rule promtool
    checks)."""
    records = [
        {"record": f"dashboard:query_{n}", "expr": as_prometheus_sees_it(expr)}
        for n, expr in enumerate(expressions())
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}))
    done = run([promtool(), "check", "rules", str(path)])
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(records)} rules found" in done.stdout


# --------------------------------------------------------------------- the documentation


def section() -> str:
    text = OPERATING.read_text()
    start = text.index("## Dashboard and alerts")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def yaml_blocks(text: str) -> list[str]:
    return [textwrap.dedent(b) for b in re.findall(r"```yaml\n(.*?)^\s*```", text, re.S | re.M)]


def sh_lines(text: str) -> list[str]:
    return [
        line.strip()
        for block in re.findall(r"```sh\n(.*?)```", text, re.S)
        for line in block.splitlines()
        if line.strip()
    ]


def test_the_metrics_table_names_every_metric_of_the_service(exported):
    text = OPERATING.read_text()
    table = text[text.index("| metric | labels |") : text.index("## Dashboard and alerts")]
    documented = set(re.findall(r"`(redact_\w+)`", table))
    for name in (name for name in exported if name.startswith("redact_")):
        family = re.sub(r"_(bucket|sum|count|created)$", "", name)
        shown = {name, family, f"{family}_total"} & documented  # _created: a counter's
        assert shown, f"{name} is not in the table"


def test_the_section_names_the_files_there_are():
    named = set(re.findall(r"deploy/[\w/.-]+\w", section()))
    assert named == {str(path.relative_to(ROOT)) for path in (RULES, RULE_TESTS, DASHBOARD)}
    assert all(line.startswith("promtool ") for line in sh_lines(section()))
