"""The demo's two embedded configurations: the default (≈ 15 minutes on 2 CPU cores) and `--quick`
(≈ 3 minutes, used by the tests). Both are complete runs of the method, only smaller."""

from __future__ import annotations

import dataclasses

from emergence_jax.demo.corpus import WorldSpec
from emergence_jax.demo.finetune import FinetuneSettings
from emergence_jax.demo.pretrain import PretrainSettings, Rung
from emergence_jax.laws.fit import SamplerSettings


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """world: corpus and task. rungs: the ladder. eval_episodes: few-shot episodes per checkpoint
    (4 scored queries each). heldout_sequences: held-out corpus size for the pretraining loss.
    amounts / subsets: finetuning amounts D and subsets per D (which checkpoints are finetuned is
    each rung's `finetune_steps`). form / likelihood: the law's performance form ("auto": chosen by
    PSIS-LOO) and likelihood, used for the fit and for the held-out truth alike."""

    name: str
    world: WorldSpec
    rungs: tuple[Rung, ...]
    pretrain: PretrainSettings
    finetune: FinetuneSettings
    amounts: tuple[int, ...]
    subsets: int
    eval_episodes: int
    heldout_sequences: int
    form: str
    likelihood: str
    sampler: SamplerSettings

    def fingerprint(self) -> dict:
        """What the cached stages depend on; a run directory made with other settings is refused.
        The fit's settings are left out: changing them only redoes the fit."""
        fit_settings = ("form", "likelihood", "sampler")
        return json_safe({k: v for k, v in dataclasses.asdict(self).items() if k not in fit_settings})


def json_safe(value):
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def _steps(start: int, stop: int, every: int) -> tuple[int, ...]:
    return tuple(range(start, stop + 1, every))


# Both rungs' recall circuits form between steps 3250 and 3500 (measured in the default run: d40
# few-shot 0.251 at 3250, 0.702 at 3450; d48 0.291 at 3250, 0.942 at 3350), so checkpoints are every
# 50 steps there to pin the held-out truth. Earlier checkpoints are finetuned: 800 steps at lr 1e-3
# make a checkpoint up to ~1000 steps before emergence recall if D is large enough (d48 at 2500:
# D ≥ 4096 → 1.0, D = 1024 → 0.29, D ≤ 256 → chance), so emergence moves with D.
_LADDER_CHECKPOINTS = _steps(500, 3000, 250) + _steps(3050, 3500, 50) + (3750, 4000)
DEFAULT = DemoSettings(
    name="default",
    world=WorldSpec(task_fraction=0.25),
    rungs=(
        Rung("d40", hidden_size=40, num_layers=2, num_heads=2, steps=4000, checkpoint_steps=_LADDER_CHECKPOINTS, finetune_steps=(2750, 3250)),
        Rung("d48", hidden_size=48, num_layers=2, num_heads=2, steps=4000, checkpoint_steps=_LADDER_CHECKPOINTS, finetune_steps=(2250, 2500, 2750, 3000)),
    ),
    pretrain=PretrainSettings(),
    finetune=FinetuneSettings(steps=800, batch_size=32, learning_rate=1e-3),
    amounts=(64, 256, 1024, 4096, 16384),
    subsets=2,
    eval_episodes=1000,
    heldout_sequences=2000,
    form="auto",
    likelihood="beta_binomial",
    sampler=SamplerSettings(chains=4, warmup=500, samples=500, progress=False),
)

# The quick ladder (task twice as common) forms its recall circuit between steps 2050 and 2250
# (measured: few-shot 0.251 at 2050, 0.439 at 2150, 0.998 at 2250), so its checkpoints are dense
# there; 400 finetuning steps at lr 1e-3 make step 2050 recall for D ≥ 1024 (D = 64: 0.28) and
# step 1875 only partly for D = 16384 (0.34 / 0.42). Smaller
# evaluation sets, two finetuned checkpoints, three D, one fixed form (jump, as the default run's
# PSIS-LOO chooses) keep it near 2.5 minutes on 2 CPU cores; its NUTS needs a long warmup
# (with 300 warmup steps R-hat was 1.42, with 700 it is 1.03).
QUICK = DemoSettings(
    name="quick",
    world=WorldSpec(task_fraction=0.5),
    rungs=(Rung("d48", hidden_size=48, num_layers=2, num_heads=2, steps=2250, checkpoint_steps=(1000, 1500, 1750, 1875, 2000, 2050, 2100, 2150, 2200, 2250), finetune_steps=(1875, 2050)),),
    pretrain=PretrainSettings(),
    finetune=FinetuneSettings(steps=400, batch_size=32, learning_rate=1e-3),
    amounts=(64, 1024, 16384),
    subsets=2,
    eval_episodes=250,
    heldout_sequences=500,
    form="jump",
    likelihood="beta_binomial",
    sampler=SamplerSettings(chains=4, warmup=700, samples=300, progress=False),
)

SETTINGS = {"default": DEFAULT, "quick": QUICK}
