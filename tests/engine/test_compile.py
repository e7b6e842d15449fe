"""``run.compile``: the training forward goes through torch.compile and trains like the eager run."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import toytask

from msad.engine.trainer import Trainer


def _fit(output: Path, compile_: bool) -> Trainer:
    solver, run = toytask.settings(output, iters=6)
    run = dataclasses.replace(run, compile=compile_)
    trainer = Trainer(toytask.ToyTask(), solver=solver, run=run, make_train_loader=toytask.make_loader(3, solver.batch_size),
                      echo=lambda _: None)
    trainer.fit()
    return trainer


@pytest.mark.slow  # inductor compiles C++ on the CPU: tens of seconds
def test_compiled_training_matches_eager(tmp_path: Path) -> None:
    eager = _fit(tmp_path / "eager", False)
    compiled = _fit(tmp_path / "compiled", True)
    assert isinstance(compiled.ddp_model, torch._dynamo.eval_frame.OptimizedModule)
    assert compiled.eval_model() is compiled.model  # evaluation and checkpoints use the eager module
    for (name, a), b in zip(eager.model.state_dict().items(), compiled.model.state_dict().values(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=name)
