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
    amounts / subsets: finetuning amounts D and subsets per D. finetune_checkpoints: how many of the
    strongest pre-emergence checkpoints (per rung) are finetuned."""

    name: str
    world: WorldSpec
    rungs: tuple[Rung, ...]
    pretrain: PretrainSettings
    finetune: FinetuneSettings
    amounts: tuple[int, ...]
    subsets: int
    finetune_checkpoints: int
    eval_episodes: int
    heldout_sequences: int
    sampler: SamplerSettings

    def fingerprint(self) -> dict:
        """What the cached stages depend on; a run directory made with other settings is refused."""
        return json_safe(dataclasses.asdict(self) | {"sampler": None})


def json_safe(value):
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def _steps(start: int, stop: int, every: int) -> tuple[int, ...]:
    return tuple(range(start, stop + 1, every))


DEFAULT = DemoSettings(
    name="default",
    world=WorldSpec(task_fraction=0.25),
    rungs=(
        Rung("d48", hidden_size=48, num_layers=2, num_heads=2, steps=3750, checkpoint_steps=_steps(1250, 3750, 250)),
        Rung("d64", hidden_size=64, num_layers=2, num_heads=2, steps=4000, checkpoint_steps=_steps(1000, 4000, 250)),
    ),
    pretrain=PretrainSettings(),
    finetune=FinetuneSettings(steps=400, batch_size=32),
    amounts=(128, 512, 2048, 8192),
    subsets=2,
    finetune_checkpoints=4,
    eval_episodes=1000,
    heldout_sequences=2000,
    sampler=SamplerSettings(chains=4, warmup=500, samples=500, progress=False),
)

# The quick ladder's recall circuit forms between steps 2000 and 2250 (measured: few-shot 0.245 at
# 2000, 0.997 at 2250), so its checkpoints are dense there to pin the held-out truth; the
# strongest pre-emergence ones are finetuned. Smaller evaluation sets and a shorter sampler keep it
# within ~3 minutes on 2 CPU cores, still with 4 NUTS chains so R-hat means something.
QUICK = DemoSettings(
    name="quick",
    world=WorldSpec(task_fraction=0.5),
    rungs=(Rung("d48", hidden_size=48, num_layers=2, num_heads=2, steps=2250, checkpoint_steps=(1000, 1500, 1750, 2000, 2050, 2100, 2150, 2200, 2250)),),
    pretrain=PretrainSettings(),
    finetune=FinetuneSettings(steps=200, batch_size=32),
    amounts=(128, 2048),
    subsets=2,
    finetune_checkpoints=3,
    eval_episodes=250,
    heldout_sequences=500,
    sampler=SamplerSettings(chains=4, warmup=300, samples=300, progress=False),
)

SETTINGS = {"default": DEFAULT, "quick": QUICK}
