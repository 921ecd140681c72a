"""Folds the RESULT lines of bench/run.sh into min / median / max per figure, the goals' ratios, the JSON
record and the Markdown table (bench/results/<date>.json and .md). Run by bench/run.sh."""
import json
import platform
import statistics
import subprocess
import sys
from collections import defaultdict

raw, out_json, out_md = sys.argv[1:4]
values, units = defaultdict(list), {}
for line in open(raw, encoding="utf-8"):
    _, name, value, unit = line.rstrip("\n").split("\t")
    try:
        values[name].append(float(value))
    except ValueError:
        continue
    units[name] = unit

figures = {
    name: {"unit": units[name], "min": min(v), "median": statistics.median(v), "max": max(v), "runs": len(v)}
    for name, v in sorted(values.items())
}


def median(name):
    return figures[name]["median"] if name in figures else None


def ratio(a, b):
    x, y = median(a), median(b)
    return None if x is None or not y else x / y


# Each goal: (what, measured ratio or value, bound, "<=" or ">=").
goals = [
    ("connrun / curl, ms per probe (sequential)", ratio("probe.seq.connrun.ms_per_probe", "probe.seq.curl.ms_per_probe"), 0.5, "<="),
    ("connrun --jobs 8 / curl --parallel", ratio("probe.jobs8.connrun.ms_per_probe", "probe.jobs8.curl_parallel.ms_per_probe"), 0.5, "<="),
    ("image streaming phr / nginx, MB/s", ratio("stream.image_seq.phr.mbps", "stream.image_seq.nginx.mbps"), 1.0, ">="),
    ("export streaming phr / nginx, MB/s", ratio("stream.export.phr.mbps", "stream.export.nginx.mbps"), 1.0, ">="),
    ("connrun release binary, MB (scripts/dist.sh: debug info split off)", (median("build.connrun.bytes") or 0) / 1e6 or None, 40, "<="),
    ("phr-server release binary, MB (scripts/dist.sh)", (median("build.phr-server.bytes") or 0) / 1e6 or None, 40, "<="),
]
for n in sorted({k.split(".")[1] for k in figures if k.startswith("harness.n")}):
    goals.append((f"verify / sha256sum at {n}", ratio(f"harness.{n}.verify.wall", f"harness.{n}.sha256sum.wall"), 1.2, "<="))
    goals.append((f"peak RSS of a run at {n}, MiB", (median(f"harness.{n}.run.peak_rss") or 0) / 1024 or None, 64, "<="))
    if n == "n10000":  # issue 13: diff and report html of 10k-probe runs
        goals.append(("diff of two 10k runs, s", median("harness.n10000.diff.wall"), 1.0, "<="))
        goals.append(("diff of two 10k runs, MiB", (median("harness.n10000.diff.peak_rss") or 0) / 1024 or None, 64, "<="))
        goals.append(("report html of a 10k run, s", median("harness.n10000.report_html.wall"), 1.0, "<="))
for backend in ("postgres", "sqlite"):
    goals.append((f"PHR-04 / nginx at c=64 ({backend})", ratio(f"server.{backend}.phr04.c64.phr.rps", f"server.{backend}.phr04.c64.nginx.rps"), 0.25, ">="))
    goals.append((f"PHR-11 / nginx at c=64 ({backend})", ratio(f"server.{backend}.phr11.c64.phr.rps", f"server.{backend}.phr11.c64.nginx.rps"), 0.12, ">="))
    goals.append((f"PHR-04 p99 at c=64 ({backend}), ms", median(f"server.{backend}.phr04.c64.phr.p99"), 25, "<="))
for f, label in (("f1", "one facility: one chain"), ("f8", "8 facilities: 8 chains")):
    goals.append((f"audit rows/s on PostgreSQL, 64 writers, {label}", median(f"audit_append.postgres.w64.{f}.rows_per_s"), 10000, ">="))
    goals.append((f"audit append / pgbench one commit per row, 64 writers, {label} (PostgreSQL)",
                  ratio(f"audit_append.postgres.w64.{f}.rows_per_s", "pgbench.insert_per_commit.w64.rows_per_s"), 1.0, ">="))

machine = {
    "cpus": subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip(),
    "kernel": platform.release(),
    "python": platform.python_version(),
    "rustc": subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip(),
    "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
}
record = {"machine": machine, "figures": figures, "goals": [
    {"goal": g, "measured": m, "bound": b, "op": op, "met": None if m is None else (m <= b if op == "<=" else m >= b)}
    for g, m, b, op in goals
]}
json.dump(record, open(out_json, "w", encoding="utf-8"), indent=2)

def shown_value(value):
    """Whole numbers with thousands separators (bytes, KiB), others as they came."""
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


lines = [f"Commit `{machine['commit']}`, {machine['cpus']} CPUs, Linux {machine['kernel']}, {machine['rustc']}.", "",
         "| goal | measured | bound | met |", "| --- | --- | --- | --- |"]
for g in record["goals"]:
    shown = "not measured" if g["measured"] is None else f"{g['measured']:.2f}"
    met = "-" if g["met"] is None else ("yes" if g["met"] else "**no**")
    lines.append(f"| {g['goal']} | {shown} | {g['op']} {g['bound']} | {met} |")
lines += ["", "| figure | unit | min | median | max | runs |", "| --- | --- | --- | --- | --- | --- |"]
for name, f in figures.items():
    lines.append(f"| {name} | {f['unit']} | {shown_value(f['min'])} | {shown_value(f['median'])} | "
                 f"{shown_value(f['max'])} | {f['runs']} |")
open(out_md, "w", encoding="utf-8").write("\n".join(lines) + "\n")
print("\n".join(lines))
