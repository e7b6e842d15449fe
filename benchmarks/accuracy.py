"""Accuracy benchmark over several seeds: HR and LR baselines, MSAD teacher and student, with 95 % intervals.

Every row is trained once per seed (``run.seed = 0 … N-1``), each run as its own ``msad`` process:
(hr) the FCOS baseline at HR, (lr) the conventional LR baseline (``data.scale=0.5``), (teacher) the aligned
multi-scale teacher (fused branch; its HR and LR branches are evaluated too), (student) the MSAD student (LR
input only) and (no_kd) the same student schedule with ``distill.kd_weight=0`` (teacher initialisation only).
It prints mean ± std per row and the paired differences (same seed) that carry MSAD's claims, each with its
two-sided 95 % Student-t interval: teacher − HR baseline, student − LR baseline, student − no_kd (the KD gain)
and student − HR baseline. A difference whose interval contains 0 is reported as undecided, with the number of
seeds it would take at the measured spread.

    python benchmarks/accuracy.py --profile coco --seeds 3                # recipes/bench_coco.toml, data/synth_coco
    python benchmarks/accuracy.py --profile small --seeds 3               # recipes/tiny.toml, data/synth
    python benchmarks/accuracy.py --profile coco --seeds 3 --jobs 8 --set run.device=cuda --set data.num_workers=2

Controls, each trained with every seed and compared with its reference row (overrides separated by ``;``):

    --baseline-variant 'lr_2x:data.scale=0.5;solver.iters=600;solver.steps=[450,550]'   # compared with the student
    --teacher-variant 'hr_only:teacher.loss_weights={hr = 1.0, lr = 0.0, fused = 0.0};teacher.eval_branch="hr"'
    --teacher-variant 'private_bn:teacher.bn="per_resolution"'
    --teacher-variant 'lr_third:teacher.solver.lr=0.0033'              # the effective learning rate of 3 losses
    --student-variant 'kd4:distill.kd_weight=4'  --student-variant 'kd0_ramp0:distill.ramp_iters=0'
    --student-variant 'bn_train:distill.teacher_bn="train"'
    --student-variant 'from_private_bn@private_bn:'                    # a student of the private_bn teacher

Runs go to ``--out/seed{S}/{row}``; ``--resume`` reuses finished runs (``result.json``) and continues interrupted
ones; results go to ``--out/accuracy.{md,json}`` (and ``accuracy.png`` when ``msad.plots`` is installed).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from msad.evaluation.stats import paired_difference, runs_needed, summarize

PROFILES = {
    "coco": {"recipe": "recipes/bench_coco.toml", "data": "data/synth_coco", "train": 800, "val": 200},
    "coco_cpu": {"recipe": "recipes/bench_coco_cpu.toml", "data": "data/synth_coco_256", "train": 400, "val": 100,
                 "synth": "coco", "size": (256, 320)},
    "small": {"recipe": "recipes/tiny.toml", "data": "data/synth", "train": 400, "val": 100},
}
METRICS = ("AP", "AP50", "APs", "APm", "APl")
#: (row a, row b, claim, kind): kind ">0" needs the interval above 0; ">=0" fails only when it is below 0.
CLAIMS = (
    ("teacher", "hr", "teacher (fused) − HR baseline", ">=0"),
    ("student", "lr", "student − LR baseline", ">0"),
    ("student", "no_kd", "KD gain: student − student without KD", ">0"),
    ("student", "hr", "student − HR baseline", ">=0"),
    ("teacher_hr", "hr", "teacher HR branch − HR baseline", "=0"),
)


@dataclass(frozen=True)
class Run:
    """One ``msad`` invocation of one row and seed."""

    row: str
    seed: int
    command: str  # train | teacher | distill | eval
    overrides: tuple[str, ...] = ()
    teacher: str | None = None  # row whose last.safetensors this run reads
    branch: str | None = None  # teacher branch, for eval

    def dir(self, out: Path) -> Path:
        return out / f"seed{self.seed}" / self.row.replace(":", "-").replace("@", "-")


@dataclass
class Plan:
    """All runs, per row a human-readable description, and the extra ``--difference`` pairs (row a, row b)."""

    runs: list[Run] = field(default_factory=list)
    rows: dict[str, str] = field(default_factory=dict)
    differences: list[tuple[str, str]] = field(default_factory=list)


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="coco", help="dataset profile and default recipe")
    parser.add_argument("--recipe", help="recipe of every run (default: the profile's)")
    parser.add_argument("--seeds", type=int, default=3, help="runs per row (run.seed = 0 … N-1)")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel (e.g. several per GPU)")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="override for every run, dotted.key=value")
    parser.add_argument("--teacher-set", action="append", default=[], help="override of the teacher runs only")
    parser.add_argument("--distill-set", action="append", default=[], help="override of the student runs only")
    parser.add_argument("--baseline-variant", action="append", default=[],
                        help="NAME:override;… another FCOS baseline the student is compared with (e.g. a longer LR one)")
    parser.add_argument("--teacher-variant", action="append", default=[], help="NAME:override;override…")
    parser.add_argument("--student-variant", action="append", default=[], help="NAME[@TEACHER_VARIANT]:override;…")
    parser.add_argument("--difference", action="append", default=[], metavar="A,B",
                        help="also report the paired difference of rows A − B (> 0 claimed), e.g. "
                             "student:short,student:short_nokd")
    parser.add_argument("--rows", metavar="A,B,…",
                        help="train only these rows (and the teachers they need), e.g. hr,baseline:NAME; default all")
    parser.add_argument("--out", help="run directories and results (default: runs/bench_<profile>)")
    parser.add_argument("--data", help="synthetic dataset root (default: the profile's; generated when missing)")
    parser.add_argument("--train-images", type=int, help="images generated for training (default: the profile's)")
    parser.add_argument("--val-images", type=int, help="images generated for validation (default: the profile's)")
    parser.add_argument("--resume", action="store_true", help="reuse finished runs, continue interrupted ones")
    args = parser.parse_args()
    if args.seeds < 1 or args.jobs < 1:
        parser.error("--seeds and --jobs must be >= 1")
    profile = PROFILES[args.profile]
    args.recipe = args.recipe or profile["recipe"]
    args.data = Path(args.data or profile["data"])
    args.out = Path(args.out or f"runs/bench_{args.profile}")
    args.train_images = args.train_images or profile["train"]
    args.val_images = args.val_images or profile["val"]
    args.synth, args.size = profile.get("synth", args.profile), profile.get("size")
    return args


def _variant(text: str, what: str) -> tuple[str, str | None, tuple[str, ...]]:
    """``NAME[@TEACHER]:a=1;b=2`` → (name, teacher variant or None, overrides)."""
    name, sep, rest = text.partition(":")
    if not sep or not name:
        sys.exit(f"accuracy.py: --{what}-variant {text!r}: expected NAME:override;override… (overrides may be empty)")
    name, _, teacher = name.partition("@")
    return name, teacher or None, tuple(item.strip() for item in rest.split(";") if item.strip())


def plan_runs(args: argparse.Namespace) -> Plan:
    """The runs of every row and seed, in dependency order (teachers before their students)."""
    data = args.data
    common = (
        *[f'data.{k}="{v}"' for k, v in (
            ("train_images", data / "train"), ("train_annotations", data / "annotations" / "train.json"),
            ("val_images", data / "val"), ("val_annotations", data / "annotations" / "val.json"))],
        *args.sets,
    )
    teacher_sets, distill_sets = (*common, *args.teacher_set), (*common, *args.distill_set)
    plan = Plan()
    plan.rows = {"hr": "(a) FCOS baseline, HR", "lr": "(b) FCOS baseline, LR (data.scale=0.5)",
                 "teacher": "(c) MSAD teacher, fused", "teacher_hr": "    teacher, HR branch",
                 "teacher_lr": "    teacher, LR branch", "student": "(d) MSAD student, LR",
                 "no_kd": "(e) student init from teacher, no KD"}
    baselines = [_variant(v, "baseline") for v in args.baseline_variant]
    teachers = [_variant(v, "teacher") for v in args.teacher_variant]
    students = [_variant(v, "student") for v in args.student_variant]
    known = {name for name, _, _ in teachers}
    for name, teacher, _ in students:
        if teacher is not None and teacher not in known:
            sys.exit(f"accuracy.py: --student-variant {name}@{teacher}: no --teacher-variant named {teacher!r}")
    for name, _, overrides in baselines:
        plan.rows[f"baseline:{name}"] = f"    baseline variant {name}: {'; '.join(overrides)}"
    for name, _, overrides in teachers:
        plan.rows[f"teacher:{name}"] = f"    teacher variant {name}: {'; '.join(overrides) or '(no change)'}"
    for name, teacher, overrides in students:
        source = f" (teacher {teacher})" if teacher else ""
        plan.rows[f"student:{name}"] = f"    student variant {name}{source}: {'; '.join(overrides) or '(no change)'}"
    for seed in range(args.seeds):
        s = (f"run.seed={seed}",)
        plan.runs += [
            Run("hr", seed, "train", (*common, *s)),
            Run("lr", seed, "train", (*common, *s, "data.scale=0.5")),
            *[Run(f"baseline:{n}", seed, "train", (*common, *s, *o)) for n, _, o in baselines],
            Run("teacher", seed, "teacher", (*teacher_sets, *s)),
            *[Run(f"teacher:{n}", seed, "teacher", (*teacher_sets, *s, *o)) for n, _, o in teachers],
            Run("teacher_hr", seed, "eval", common, teacher="teacher", branch="hr"),
            Run("teacher_lr", seed, "eval", common, teacher="teacher", branch="lr"),
            Run("student", seed, "distill", (*distill_sets, *s), teacher="teacher"),
            Run("no_kd", seed, "distill", (*distill_sets, *s, "distill.kd_weight=0"), teacher="teacher"),
            *[Run(f"student:{n}", seed, "distill", (*distill_sets, *s, *o),
                  teacher=f"teacher:{t}" if t else "teacher") for n, t, o in students],
        ]
    for pair in args.difference:  # checked before anything trains: a misspelt row must not cost hours
        a, _, b = pair.partition(",")
        if a not in plan.rows or b not in plan.rows:
            sys.exit(f"accuracy.py: --difference {pair!r}: expected ROW_A,ROW_B with rows from {', '.join(plan.rows)}")
        plan.differences.append((a, b))
    if args.rows:
        _keep_rows(plan, args.rows)
    return plan


def _keep_rows(plan: Plan, rows: str) -> None:
    """Drop every run and row outside ``rows`` and the teacher rows they read; differences must stay inside."""
    wanted = {row.strip() for row in rows.split(",") if row.strip()}
    unknown = sorted(wanted - set(plan.rows))
    if unknown:
        sys.exit(f"accuracy.py: --rows: unknown rows {', '.join(unknown)}; rows are {', '.join(plan.rows)}")
    wanted |= {run.teacher for run in plan.runs if run.row in wanted and run.teacher}
    outside = [f"{a},{b}" for a, b in plan.differences if not {a, b} <= wanted]
    if outside:
        sys.exit(f"accuracy.py: --difference {' '.join(outside)}: a row is not among --rows")
    plan.runs = [run for run in plan.runs if run.row in wanted]
    plan.rows = {row: label for row, label in plan.rows.items() if row in wanted}


def _command(run: Run, args: argparse.Namespace, out: Path) -> list[str]:
    sets = [item for override in run.overrides for item in ("--set", override)]
    cmd = [sys.executable, "-m", "msad", run.command, args.recipe, *sets]
    if run.command == "eval":
        weights = Run(run.teacher, run.seed, "teacher").dir(out) / "last.safetensors"
        return [*cmd, "-w", str(weights), "--branch", run.branch, "--json", str(run.dir(out) / "eval.json")]
    if run.teacher:
        cmd += ["--teacher", str(Run(run.teacher, run.seed, "teacher").dir(out) / "last.safetensors")]
    cmd += ["--output", str(run.dir(out))]
    if args.resume and (run.dir(out) / "state.json").exists():
        cmd.append("--resume")
    return cmd


def _collect(run: Run, out: Path, seconds: float) -> dict | None:
    """Write and return ``result.json`` of a finished run (``None`` when it produced no final metrics)."""
    folder = run.dir(out)
    if run.command == "eval":
        metrics = json.loads((folder / "eval.json").read_text())["metrics"]
        train_seconds = None
    else:
        records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line.strip()]
        evals = [r for r in records if r.get("type") == "eval"]
        if not evals:
            return None
        metrics = {k: v for k, v in evals[-1].items() if k not in ("type", "iteration")}
        trains = [r for r in records if r.get("type") == "train"]
        train_seconds = trains[-1].get("elapsed") if trains else None
    result = {"row": run.row, "seed": run.seed, "metrics": metrics, "train_seconds": train_seconds,
              "wall_seconds": seconds, "command": run.command, "overrides": list(run.overrides)}
    (folder / "result.json").write_text(json.dumps(result, indent=1))
    return result


def execute(plan: Plan, args: argparse.Namespace) -> dict[tuple[str, int], dict]:
    """Run every run not finished yet, ``--jobs`` at a time; return results keyed by (row, seed)."""
    out = args.out
    results: dict[tuple[str, int], dict] = {}
    pending: list[Run] = []
    for run in plan.runs:
        done = run.dir(out) / "result.json"
        if done.exists() and args.resume:
            results[(run.row, run.seed)] = json.loads(done.read_text())
        elif run.dir(out).exists() and not args.resume:
            sys.exit(f"accuracy.py: {run.dir(out)} already holds a run; pass --resume to reuse or continue it, "
                     "or choose another --out")
        else:
            pending.append(run)
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // args.jobs)))
    running: dict[subprocess.Popen, tuple[Run, float]] = {}
    failed: set[tuple[str, int]] = set()
    total, started = len(pending), 0
    while pending or running:
        for run in list(pending):
            if len(running) >= args.jobs:
                break
            dep = (run.teacher, run.seed) if run.teacher else None
            if dep in failed:
                pending.remove(run)
                failed.add((run.row, run.seed))
                print(f"skip  seed{run.seed}/{run.row}: its teacher failed", flush=True)
            elif dep is None or dep in results:
                pending.remove(run)
                started += 1
                run.dir(out).mkdir(parents=True, exist_ok=True)
                log = (run.dir(out) / f"{run.command}.log").open("a")
                proc = subprocess.Popen(_command(run, args, out), stdout=log, stderr=subprocess.STDOUT, env=env)
                running[proc] = (run, time.monotonic())
                print(f"start [{started}/{total}] seed{run.seed}/{run.row} ({run.command})", flush=True)
        time.sleep(1.0)
        for proc in [p for p in running if p.poll() is not None]:
            run, start = running.pop(proc)
            seconds = time.monotonic() - start
            result = _collect(run, out, seconds) if proc.returncode == 0 else None
            if result is None:
                failed.add((run.row, run.seed))
                print(f"FAIL  seed{run.seed}/{run.row} (exit {proc.returncode}); see {run.dir(out)}", flush=True)
            else:
                results[(run.row, run.seed)] = result
                print(f"done  seed{run.seed}/{run.row}: AP {result['metrics'].get('AP', float('nan')):.2f} "
                      f"({seconds:.0f} s)", flush=True)
    return results


def _values(results: dict, row: str, seeds: list[int], metric: str = "AP") -> list[float]:
    values = [results[(row, s)]["metrics"].get(metric) for s in seeds]
    return [math.nan if v is None else float(v) for v in values]  # None: undefined (no object of that size)


def _verdict(diff, kind: str) -> str:
    if diff.n < 2:
        return "needs ≥ 2 seeds for an interval"
    needed = runs_needed(diff)
    more = f"; ≈{needed} seeds would decide it at this spread" if needed else "; no decision in sight at this spread"
    if kind == ">0":
        return {"> 0": "holds (interval above 0)", "< 0": "fails (interval below 0)"}.get(
            diff.verdict, "undecided: interval contains 0" + more)
    if kind == ">=0":
        return {"> 0": "holds (interval above 0)", "< 0": "fails (interval below 0)"}.get(
            diff.verdict, "not below 0 (interval contains 0)" + more)
    return {"> 0": "differs (interval above 0)", "< 0": "differs (interval below 0)"}.get(
        diff.verdict, "equal within noise (interval contains 0)")


def _cell(stat) -> str:
    if math.isnan(stat.mean):
        return "–"
    return f"{stat.mean:.2f} ± {stat.std:.2f}" if stat.n > 1 else f"{stat.mean:.2f}"


def _finite(values: dict) -> dict:
    """NaN (an undefined spread or interval) as ``None``, so the JSON stays valid."""
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in values.items()}


def report(plan: Plan, results: dict, args: argparse.Namespace) -> tuple[str, dict]:
    """Markdown tables (rows; claims) and the JSON of the study."""
    seeds_of = {row: sorted(s for r, s in results if r == row) for row in plan.rows}
    lines = [f"Profile `{args.profile}`, recipe `{args.recipe}`, seeds 0…{args.seeds - 1}; mean ± std over seeds.", "",
             "| model | n | " + " | ".join(METRICS) + " | train s |", "|---|---:|" + "---:|" * (len(METRICS) + 1)]
    rows_json = {}
    for row, label in plan.rows.items():
        seeds = seeds_of[row]
        if not seeds:
            lines.append(f"| {label} | 0 |" + " |" * (len(METRICS) + 1))
            continue
        stats = {m: summarize(_values(results, row, seeds, m)) for m in METRICS}
        secs = [results[(row, s)]["train_seconds"] for s in seeds if results[(row, s)]["train_seconds"]]
        cells = [_cell(stats[m]) for m in METRICS]
        cells.append(f"{summarize(secs).mean:.0f}" if secs else "")
        lines.append(f"| {label} | {len(seeds)} | " + " | ".join(cells) + " |")
        rows_json[row] = {"label": label, "seeds": seeds, "AP_per_seed": _values(results, row, seeds),
                          **{m: _finite(vars(stats[m])) for m in METRICS}}
    claims = list(CLAIMS)
    claims += [("student", r, f"student − {r}", ">0") for r in plan.rows if r.startswith("baseline:")]
    claims += [(r, "hr", f"{r} − HR baseline", ">=0") for r in plan.rows if r.startswith("teacher:")]
    claims += [(r, "no_kd", f"{r} − student without KD", ">0") for r in plan.rows if r.startswith("student:")]
    claims += [(a, b, f"{a} − {b}", ">0") for a, b in plan.differences]
    claims = [claim for claim in claims if claim[0] in plan.rows and claim[1] in plan.rows]
    lines += ["", "| paired difference (AP, same seed) | mean [95 % interval] | verdict |", "|---|---|---|"]
    claims_json = []
    for a, b, text, kind in claims:
        seeds = sorted(set(seeds_of.get(a, [])) & set(seeds_of.get(b, [])))
        if not seeds:
            lines.append(f"| {text} | – | not measured |")
            continue
        diff = paired_difference(_values(results, a, seeds), _values(results, b, seeds))
        lines.append(f"| {text} | {diff} | {_verdict(diff, kind)} |")
        claims_json.append({"a": a, "b": b, "claim": text, "kind": kind, **_finite(vars(diff)),
                            "verdict": _verdict(diff, kind), "seeds_needed": runs_needed(diff)})
    data = {"profile": args.profile, "recipe": args.recipe, "seeds": args.seeds, "sets": args.sets,
            "teacher_sets": args.teacher_set, "distill_sets": args.distill_set, "rows": rows_json,
            "differences": claims_json, "runs": [results[k] for k in sorted(results)]}
    return "\n".join(lines), data


def _ensure_data(args: argparse.Namespace) -> None:
    if (args.data / "annotations" / "val.json").exists():
        return
    from msad import api

    print(f"generating the {args.synth} synthetic dataset in {args.data} …", flush=True)
    api.synth_data(args.data, train=args.train_images, val=args.val_images, seed=0, profile=args.synth,
                   image_size=args.size)


def _figure(plan: Plan, results: dict, path: Path) -> None:
    try:
        from msad.plots import plot_accuracy_comparison
    except ImportError:
        return
    rows = {label.strip(): [results[(row, s)]["metrics"].get("AP") for (r, s) in sorted(results) if r == row]
            for row, label in plan.rows.items()}
    plot_accuracy_comparison(rows, path, title="AP over seeds")


def main() -> None:
    args = _parse()
    _ensure_data(args)
    plan = plan_runs(args)
    args.out.mkdir(parents=True, exist_ok=True)
    results = execute(plan, args)
    table, data = report(plan, results, args)
    print("\n" + table)
    (args.out / "accuracy.md").write_text(table + "\n")
    (args.out / "accuracy.json").write_text(json.dumps(data, indent=1, default=str))
    _figure(plan, results, args.out / "accuracy.png")


if __name__ == "__main__":
    main()
