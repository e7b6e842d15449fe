"""The third-party example plugin package ``examples/msad-plugin-example``, installed for real.

The package is pip-installed (``--target``, no deps, no build isolation, no index: offline and without touching the
shared venv) into a temporary directory; the CLI then runs in subprocesses with that directory on ``PYTHONPATH``,
so ``importlib.metadata`` discovers its entry points exactly as it would for any installed plugin distribution.
The unit tests at the bottom import the plugin modules straight from ``examples/msad-plugin-example/src``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "msad-plugin-example"
EXAMPLE_RECIPE = EXAMPLE / "recipe.toml"
DIST = "msad-plugin-example"

sys.path.insert(0, str(EXAMPLE / "src"))
from msad_plugin_example.backbone import TinyVGG, build_tiny_vgg  # noqa: E402
from msad_plugin_example.losses import AttentionTransferLoss, attention_map, build_attention_transfer  # noqa: E402

sys.path.remove(str(EXAMPLE / "src"))


# --------------------------------------------------------------------------------------------------------------------
# Installing the package and running the CLI
# --------------------------------------------------------------------------------------------------------------------


def _install_by_hand(source: Path, site: Path) -> None:
    """Fallback when setuptools is missing: what pip would lay down (package + dist-info with entry points)."""
    project = tomllib.loads((source / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    shutil.copytree(source / "src" / "msad_plugin_example", site / "msad_plugin_example")
    info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n", encoding="utf-8"
    )
    lines = []
    for group, eps in project["entry-points"].items():
        lines += [f"[{group}]", *(f"{name} = {value}" for name, value in eps.items()), ""]
    (info / "entry_points.txt").write_text("\n".join(lines), encoding="utf-8")


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the installed example package (to put on ``PYTHONPATH``)."""
    work = tmp_path_factory.mktemp("example_plugin")
    site = work / "site"
    if importlib.util.find_spec("setuptools") is None:
        _install_by_hand(EXAMPLE, site)
        return site
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
           "--no-cache-dir", "--disable-pip-version-check", "--target", str(site), str(EXAMPLE)]
    before = _untracked(EXAMPLE)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=work)
    assert done.returncode == 0, f"pip install failed:\n{done.stdout}\n{done.stderr}"
    assert (site / "msad_plugin_example" / "backbone.py").is_file()
    # installed straight from the repository: quietly (no setuptools deprecation), leaving no build/ or *.egg-info
    assert "deprecat" not in (done.stdout + done.stderr).lower(), done.stderr
    assert _untracked(EXAMPLE) == before
    return site


def _untracked(folder: Path) -> set[str]:
    """Files under ``folder`` other than caches (a build would add ``build/…`` and ``*.egg-info/…``)."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if "__pycache__" not in p.parts}


def run_msad(args: list[str], *, site: Path, cwd: Path | None = None, plugins: str | None = None,
             timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """``python -m msad ARGS`` with ``site`` on ``PYTHONPATH``; ``plugins`` sets ``MSAD_PLUGINS`` (unset if ``None``)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), *filter(None, [env.get("PYTHONPATH")])])
    env.pop("MSAD_PLUGINS", None)
    if plugins is not None:
        env["MSAD_PLUGINS"] = plugins
    env["OMP_NUM_THREADS"] = "1"  # tiny models: one thread is as fast and robust when cores are shared
    env["COLUMNS"] = "200"
    return subprocess.run([sys.executable, "-m", "msad", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)


def _ok(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert done.returncode == 0, f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return done


def _plugin_rows(site: Path, plugins: str | None = None) -> dict[str, dict]:
    rows = json.loads(_ok(run_msad(["plugins", "--check", "--json"], site=site, plugins=plugins)).stdout)
    return {row["name"]: row for row in rows if row["distribution"] == DIST}


def _overrides(data: Path) -> list[str]:
    sets = [
        f'data.train_images="{data / "train"}"',
        f'data.train_annotations="{data / "annotations" / "train.json"}"',
        f'data.val_images="{data / "val"}"',
        f'data.val_annotations="{data / "annotations" / "val.json"}"',
        "solver.iters=2", "solver.steps=[1]", "solver.warmup_iters=1", "solver.batch_size=2",
        "data.train_sizes=[128]", "data.max_size=160", "data.test_size=128",
        "teacher.size_divisibility=64", "run.log_period=1",
        "distill.ramp_iters=0",  # full distillation weight from the first iteration
    ]
    return [arg for item in sets for arg in ("--set", item)]


def _metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


# --------------------------------------------------------------------------------------------------------------------
# Through the CLI
# --------------------------------------------------------------------------------------------------------------------


def test_example_recipe_bases_on_tiny_and_names_the_plugins() -> None:
    recipe = tomllib.loads(EXAMPLE_RECIPE.read_text(encoding="utf-8"))
    assert (EXAMPLE_RECIPE.parent / recipe["base"]).resolve() == REPO / "recipes" / "tiny.toml"
    assert recipe["model"]["backbone"]["name"] == "tiny_vgg"
    assert recipe["distill"]["loss"]["name"] == "attention"
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["entry-points"]["msad.backbones"] == {"tiny_vgg": "msad_plugin_example.backbone:build_tiny_vgg"}
    assert project["entry-points"]["msad.distill_losses"] == {
        "attention": "msad_plugin_example.losses:build_attention_transfer"
    }


def test_plugins_lists_the_installed_package(plugin_site: Path) -> None:
    rows = _plugin_rows(plugin_site)
    assert set(rows) == {"tiny_vgg", "attention"}
    assert rows["tiny_vgg"]["group"] == "msad.backbones"
    assert rows["attention"]["group"] == "msad.distill_losses"
    for row in rows.values():
        assert row["version"] == "0.1.0"
        assert row["status"] == "ok", row
    assert _plugin_rows(plugin_site, plugins=DIST)["tiny_vgg"]["status"] == "ok"  # explicitly allowed


def test_disabled_by_empty_allow_list(plugin_site: Path) -> None:
    rows = _plugin_rows(plugin_site, plugins="")
    assert {name: row["status"] for name, row in rows.items()} == {
        "tiny_vgg": "disabled (MSAD_PLUGINS)", "attention": "disabled (MSAD_PLUGINS)"}

    done = run_msad(["teacher", EXAMPLE_RECIPE], site=plugin_site, plugins="")
    assert done.returncode != 0
    assert done.returncode == 3  # a recipe error
    err = done.stderr.strip()
    assert "Traceback" not in done.stderr + done.stdout
    assert len(err.splitlines()) == 1, err
    assert "tiny_vgg" in err and DIST in err and "MSAD_PLUGINS" in err


def test_option_typo_suggests_the_option(plugin_site: Path, tmp_path: Path) -> None:
    text = EXAMPLE_RECIPE.read_text(encoding="utf-8")
    base = (REPO / "recipes" / "tiny.toml").as_posix()
    text = text.replace('base = "../../recipes/tiny.toml"', f'base = "{base}"').replace("channels = 16", "chanels = 16")
    assert "chanels = 16" in text and base in text
    recipe = tmp_path / "typo.toml"
    recipe.write_text(text, encoding="utf-8")
    done = run_msad(["teacher", recipe], site=plugin_site)
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr
    assert "model.backbone.chanels" in done.stderr
    assert "did you mean 'channels'" in done.stderr


def test_teacher_then_distill_end_to_end(plugin_site: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    _ok(run_msad(["data", "synth", data, "--train", "8", "--val", "4", "--height", "128", "--width", "160"],
                 site=plugin_site))
    sets = _overrides(data)
    # the commands of the README, run where it says (paths relative to the current folder, no --output)
    (documented,) = re.findall(r"--teacher (\S+)", (EXAMPLE / "README.md").read_text(encoding="utf-8"))
    _ok(run_msad(["teacher", EXAMPLE_RECIPE, *sets], site=plugin_site, cwd=tmp_path))
    teacher_weights = tmp_path / documented
    assert teacher_weights.is_file(), sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.safetensors"))
    _ok(run_msad(["distill", EXAMPLE_RECIPE, *sets, "--teacher", documented], site=plugin_site, cwd=tmp_path))
    student_dir = teacher_weights.parent.parent / "student"

    records = [json.loads(line) for line in (student_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    train = [r for r in records if r.get("type") == "train"]
    assert train, records
    assert all("loss_kd" in r for r in train)
    assert all(r["loss_kd"] > 0 for r in train), train

    for path, role in ((teacher_weights, "teacher"), (student_dir / "last.safetensors", "student")):
        meta = _metadata(path)
        assert meta["role"] == role
        recipe = json.loads(meta["recipe"])
        assert recipe["model"]["backbone"]["name"] == "tiny_vgg"
        assert recipe["model"]["backbone"]["options"]["channels"] == 16
        assert recipe["distill"]["loss"] == {"name": "attention", "options": {"weight": 1.0, "p": 2.0}}


# --------------------------------------------------------------------------------------------------------------------
# Units, imported from examples/msad-plugin-example/src
# --------------------------------------------------------------------------------------------------------------------


def test_attention_loss_is_zero_for_identical_features() -> None:
    torch.manual_seed(0)
    feats = {"p3": torch.randn(2, 4, 6, 5), "p4": torch.randn(2, 4, 3, 3)}
    loss = build_attention_transfer()(feats, {k: v.clone() for k, v in feats.items()})
    assert loss.dim() == 0
    assert loss.item() == pytest.approx(0.0, abs=1e-12)


def test_attention_loss_hand_checked_value() -> None:
    s = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])  # 1×1×2×2: attention [1, 0, 0, 0]
    t = torch.tensor([[[[0.0, 2.0], [0.0, 0.0]]]])  # attention [4, 0, 0, 0] → normalised [0, 1, 0, 0]
    # mean of (1, 1, 0, 0) = 0.5, times weight 2
    assert build_attention_transfer(weight=2.0)({"p3": s}, {"p3": t}).item() == pytest.approx(1.0)
    # p = 1: |[3, 4]| → [0.6, 0.8, 0, 0] against [1, 0, 0, 0]: mean(0.16, 0.64, 0, 0) = 0.2
    s1 = torch.tensor([[[[3.0, -4.0], [0.0, 0.0]]]])
    assert build_attention_transfer(p=1.0)({"p3": s1}, {"p3": s}).item() == pytest.approx(0.2)
    # mean over levels: (0.5 + 0) / 2
    both = build_attention_transfer()({"p3": s, "p4": s}, {"p3": t, "p4": s})
    assert both.item() == pytest.approx(0.25)
    # the map averages |F|^p over channels and does not depend on the channel count
    assert torch.allclose(attention_map(s.repeat(1, 3, 1, 1)), attention_map(s))


def test_attention_loss_gradients_reach_the_student_only() -> None:
    s = torch.randn(2, 3, 4, 4, requires_grad=True)
    t = torch.randn(2, 5, 4, 4, requires_grad=True)  # channel counts may differ
    build_attention_transfer()({"p3": s}, {"p3": t}).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None


def test_attention_loss_validates_inputs() -> None:
    loss = AttentionTransferLoss()
    x = torch.randn(1, 2, 4, 4)
    with pytest.raises(ValueError, match=r"levels differ: student \['p3'\], teacher \['p4'\]"):
        loss({"p3": x}, {"p4": x})
    with pytest.raises(ValueError, match="level p3: .* differ in batch or spatial size"):
        loss({"p3": x}, {"p3": torch.randn(1, 2, 2, 4)})
    with pytest.raises(ValueError, match=r"must be \[B, C, H, W\]"):
        loss({"p3": x}, {"p3": torch.randn(2, 4, 4)})
    with pytest.raises(ValueError, match="no levels"):
        loss({}, {})
    with pytest.raises(ValueError, match="p must be positive"):
        build_attention_transfer(p=0.0)
    with pytest.raises(ValueError, match="weight must be non-negative"):
        build_attention_transfer(weight=-1.0)


@pytest.mark.parametrize("norm", ["bn", "gn", "none"])
def test_tiny_vgg_feature_info_and_shapes(norm: str) -> None:
    model = build_tiny_vgg(channels=8, convs_per_stage=1, norm=norm)
    assert isinstance(model, TinyVGG)
    info = [(f.name, f.channels, f.stride) for f in model.feature_info]
    assert info == [("res2", 8, 4), ("res3", 16, 8), ("res4", 32, 16), ("res5", 64, 32)]
    out = model(torch.randn(2, 3, 64, 96))
    assert list(out) == ["res2", "res3", "res4", "res5"]
    for f in model.feature_info:
        assert tuple(out[f.name].shape) == (2, f.channels, 64 // f.stride, 96 // f.stride)


def test_tiny_vgg_options_are_typed_keywords() -> None:
    from msad.plugins import builder_options

    options = builder_options(build_tiny_vgg)
    assert list(options) == ["channels", "convs_per_stage", "norm"]
    assert options["channels"] == (int, 32)
    assert options["norm"][1] == "bn"
    with pytest.raises(ValueError, match="norm must be"):
        TinyVGG(norm="ln")
    with pytest.raises(TypeError):
        build_tiny_vgg(16)  # type: ignore[misc]  # keyword-only
