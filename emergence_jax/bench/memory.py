"""`emergence-jax bench memory`: will a preset's train and evaluation steps fit the target's chips?

    emergence-jax bench memory --preset open_llama_13b --mesh fsdp=16 --batch 32x512 --eval-batch 32x2048
    emergence-jax bench memory --config configs/paper/open_llama_v1.yaml   # re-measure a config's listed figures

Both steps are compiled ahead of time for the target mesh on fake CPU devices
(`--xla_force_host_platform_device_count`), from abstract parameters (`abstract_model`: shapes,
dtypes and shardings, no memory), so a 70B model is measured on a laptop. The train step is the
finetuning step itself (`train.step.make_train_step`: AdamW + clipping, float32 master weights,
donated state), with the finetuning config's layer layout and remat policy (`--remat`, `--no-scan-layers`;
`--config` takes them from the sweep's finetuning recipe); the evaluation step is the scorer's compiled
forward (`evaluate.scoring.QueryScorer`) on per-layer (unscanned) weights, as checkpoints are loaded.
Per device it reports, in GiB (2^30 bytes):

- params / optimizer / batch: the bytes of each input's shard on one device, from its sharding
  (exact; a parameter the rules cannot split shows up here as a replicated full copy);
- temporaries: XLA's temp buffer for the step (activations kept for the backward pass, gathered
  FSDP weights, gradients, logits, workspace), from `compiled.memory_analysis()`, compiled with
  XLA:CPU's memory-minimising scheduler (`CPU_SCHEDULER_FLAG`);
- peak: arguments + temporaries + outputs not aliased to (donated) arguments, an upper bound on
  what the step holds at once.

XLA:CPU fuses and lays out buffers differently from XLA:TPU/GPU, so the temporaries are an estimate
of the accelerator's (parameters, optimizer state and batch are exact). `requirements.memory` in a
sweep config lists these figures for its hardware; `check_memory_requirements` (run by the config
check) fails a config whose listed peak exceeds its chips' memory, or that leaves a model size out.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
from typing import Any

from emergence_jax.errors import UserError

GIB = 2**30
# Fraction of a chip's memory a step may plan to use: the runtime, XLA's own buffers and
# fragmentation take the rest.
HEADROOM = 0.9


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default=None, help="model preset (emergence_jax.models.presets), e.g. open_llama_13b")
    parser.add_argument("--mesh", default="fsdp=8", help="target mesh, e.g. fsdp=16 or fsdp=32,tensor=2 (no -1: the mesh sets the device count)")
    parser.add_argument("--batch", default="8x2048", help="train batch ROWSxTOKENS per optimizer step, all devices together (default 8x2048)")
    parser.add_argument("--eval-batch", default=None, help="evaluation batch ROWSxTOKENS (default: --batch)")
    parser.add_argument("--accumulation-steps", type=int, default=1, help="microbatches per optimizer step (the batch is split into them)")
    parser.add_argument("--param-dtype", choices=("float32", "bfloat16"), default="float32", help="weights (and AdamW moments) dtype")
    parser.add_argument("--compute-dtype", choices=("float32", "bfloat16"), default="bfloat16", help="activation dtype")
    parser.add_argument("--remat", choices=("none", "full", "dots"), default="dots",
                        help="per-layer remat policy of the train step (model.remat; default dots, as configs/finetune_full.yaml)")
    parser.add_argument("--no-scan-layers", action="store_true", help="decoder layers as a Python loop (model.scan_layers: false; default: scanned)")
    parser.add_argument("--device-gib", type=float, default=None, help="memory per chip in GiB: say whether the steps fit")
    parser.add_argument("--config", default=None, help="a sweep config: re-measure every entry of its requirements.memory and compare")
    parser.add_argument("--json", nargs="?", const="-", default=None, metavar="FILE", help="write the figures as JSON to FILE (no FILE: stdout)")


def parse_batch(text: str, flag: str = "--batch") -> tuple[int, int]:
    """(rows, tokens) from `ROWSxTOKENS`, e.g. `8x2048`."""
    rows, sep, tokens = str(text).lower().partition("x")
    try:
        value = int(rows), int(tokens)
    except ValueError:
        value = (0, 0)
    if not sep or min(value) < 1:
        raise UserError(f"{flag} {text}: expected ROWSxTOKENS with positive integers, e.g. 8x2048")
    return value


def mesh_devices(text: str) -> int:
    """Devices a `--mesh` value names (product of its sizes); -1 is refused, the mesh sets the count."""
    total = 1
    for part in filter(None, (p.strip() for p in text.split(","))):
        _, _, value = part.partition("=")
        try:
            size = int(value)
        except ValueError:
            raise UserError(f"--mesh {text}: {part!r} is not axis=size, e.g. fsdp=16 or fsdp=32,tensor=2") from None
        if size < 1:
            raise UserError(f"--mesh {text}: give every size explicitly (no -1): the mesh is the target's, not this machine's")
        total *= size
    return total


def _shard_bytes(tree: Any) -> int:
    """Bytes one device holds of a tree of `ShapeDtypeStruct`s with shardings (the largest shard)."""
    import jax

    total = 0
    for leaf in jax.tree.leaves(tree):
        shape = leaf.sharding.shard_shape(leaf.shape) if leaf.sharding is not None else leaf.shape
        total += math.prod(shape) * leaf.dtype.itemsize
    return total


def _with_shardings(abstract: Any, shardings: Any) -> Any:
    import jax

    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract, shardings)


def _analysis(compiled) -> dict[str, int]:
    stats = compiled.memory_analysis()
    return {
        "arguments": int(stats.argument_size_in_bytes),
        "outputs": int(stats.output_size_in_bytes),
        "aliased": int(stats.alias_size_in_bytes),
        "temporaries": int(stats.temp_size_in_bytes),
    }


def measure_memory(
    preset_name: Any,
    mesh_text: str,
    batch: tuple[int, int],
    eval_batch: tuple[int, int] | None = None,
    *,
    param_dtype: str = "float32",
    compute_dtype: str = "bfloat16",
    remat: bool | str = "dots",
    scan_layers: bool = True,
    accumulation_steps: int = 1,
) -> dict[str, Any]:
    """Per-device bytes of the train and evaluation steps of `preset_name` (a preset name or a
    `ModelConfig`) on `mesh_text`, compiled ahead of time on this process's devices (it needs at
    least as many as the mesh names). `remat` (a policy of `train.step.remat_policy`) and
    `scan_layers` are the finetuning config's `model.remat` and `model.scan_layers`."""
    import time

    import jax
    import jax.numpy as jnp
    from flax import nnx

    from emergence_jax import sharding
    from emergence_jax.evaluate.scoring import DATA_AXES, PureLanguageModel, QueryScorer, pure_language_model
    from emergence_jax.models import count_params
    from emergence_jax.models.presets import preset
    from emergence_jax.models.build import abstract_model
    from emergence_jax.train.config import OptimConfig
    from emergence_jax.train.optim import build_optimizer
    from emergence_jax.train.step import BATCH_KEYS, batch_sharding, data_parallel_size, make_train_step, remat_policy, replicated, train_state_shardings

    config = preset(preset_name) if isinstance(preset_name, str) else preset_name
    devices = mesh_devices(mesh_text)
    if jax.device_count() < devices:
        raise UserError(f"--mesh {mesh_text}: needs {devices} devices, this process has {jax.device_count()}")
    mesh = sharding.parse_mesh(mesh_text, devices=jax.devices()[:devices])
    rows, tokens = batch
    eval_rows, eval_tokens = eval_batch or batch
    parallel = data_parallel_size(mesh)
    if rows % (accumulation_steps * parallel):
        raise UserError(f"--batch {rows}x{tokens}: {rows} rows do not split into {accumulation_steps} microbatches over {parallel} data-parallel devices")
    eval_rows = -(-eval_rows // parallel) * parallel  # the scorer pads a batch with empty rows to split it, so does this
    remat = remat_policy(remat)
    model = abstract_model(config, dtype=getattr(jnp, compute_dtype), param_dtype=getattr(jnp, param_dtype), scan_layers=scan_layers)
    result: dict[str, Any] = {
        "preset": preset_name if isinstance(preset_name, str) else type(preset_name).__name__, "params": count_params(config), "mesh": mesh_text, "devices": devices,
        "batch": f"{rows}x{tokens}", "eval_batch": f"{eval_rows}x{eval_tokens}", "param_dtype": param_dtype,
        "compute_dtype": compute_dtype, "remat": remat, "scan_layers": scan_layers, "accumulation_steps": accumulation_steps,
        "platform": f"fake {jax.devices()[0].platform} devices",
    }

    # Train step: full finetuning, float32 (or --param-dtype) master weights, AdamW + clipping.
    started = time.perf_counter()
    graphdef, params, frozen = nnx.split(model, nnx.Param, ...)
    params_sharding = sharding.param_shardings(params, mesh)
    frozen_sharding = sharding.param_shardings(frozen, mesh)
    tx = build_optimizer(OptimConfig(), total_steps=1000)
    state_shardings = train_state_shardings(params_sharding, params, tx, mesh)
    step = make_train_step(graphdef, tx, mesh=mesh, state_shardings=state_shardings, frozen_shardings=frozen_sharding, remat=remat)
    state = {
        "step": jax.ShapeDtypeStruct((), jnp.int32, sharding=replicated(mesh)),
        "params": _with_shardings(params, params_sharding),
        "opt_state": _with_shardings(jax.eval_shape(tx.init, params), state_shardings["opt_state"]),
    }
    micro = (accumulation_steps, rows // accumulation_steps, tokens)
    batch_in = {key: jax.ShapeDtypeStruct(micro, jnp.int32, sharding=batch_sharding(mesh)) for key in BATCH_KEYS}
    with jax.set_mesh(mesh):
        compiled = step.step.lower(state, _with_shardings(frozen, frozen_sharding), batch_in).compile()
    analysis = _analysis(compiled)
    train = {
        "params": _shard_bytes(state["params"]) + _shard_bytes(_with_shardings(frozen, frozen_sharding)),
        "optimizer": _shard_bytes(state["opt_state"]),
        "batch": _shard_bytes(batch_in),
        "temporaries": analysis["temporaries"],
        "peak": analysis["arguments"] + analysis["temporaries"] + analysis["outputs"] - analysis["aliased"],
        "xla": analysis,
        "compile_s": round(time.perf_counter() - started, 1),
    }
    result["train"] = train

    # Evaluation step: the scorer's compiled forward + log-probabilities of query tokens.
    started = time.perf_counter()
    # Evaluation loads checkpoints per layer (unscanned), as `evaluate` and the sweep's stages run it.
    eval_model = abstract_model(config, dtype=getattr(jnp, compute_dtype), param_dtype=getattr(jnp, param_dtype)) if scan_layers else model
    pure = pure_language_model(eval_model)
    eval_params = _with_shardings(pure.params, sharding.param_shardings(pure.params, mesh))
    scorer = QueryScorer(PureLanguageModel(pure.apply, eval_params), mesh=mesh)
    rows_sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(DATA_AXES, None))
    queries = 8  # query positions per row (e.g. a few answer tokens); the [rows, tokens, vocab] logits dominate anyway
    inputs = [jax.ShapeDtypeStruct(shape, jnp.int32, sharding=rows_sharding) for shape in
              ((eval_rows, eval_tokens), (eval_rows, queries), (eval_rows, queries))]
    with jax.set_mesh(mesh):
        compiled = scorer._compiled.lower(eval_params, *inputs).compile()
    analysis = _analysis(compiled)
    result["eval"] = {
        "params": _shard_bytes(eval_params),
        "batch": _shard_bytes(inputs),
        "temporaries": analysis["temporaries"],
        "peak": analysis["arguments"] + analysis["temporaries"] + analysis["outputs"] - analysis["aliased"],
        "xla": analysis,
        "compile_s": round(time.perf_counter() - started, 1),
    }
    return result


def _subprocess_measure(argv: list[str], devices: int) -> dict[str, Any]:
    """`bench memory argv --json -` in a fresh process with `devices` fake CPU devices."""
    from emergence_jax.io import loads_json

    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": _xla_flags(os.environ.get("XLA_FLAGS", ""), devices)}
    done = subprocess.run([sys.executable, "-m", "emergence_jax.cli", "bench", "memory", *argv, "--json", "-"],
                          capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise UserError(f"bench memory {' '.join(argv)}: failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    return loads_json(done.stdout, source="bench memory output")


# XLA:CPU's default scheduler maximises concurrency: it starts every FSDP all-gather before the first
# layer runs, so all gathered weights look live at once. The memory-minimising scheduler keeps them
# per layer, as the accelerators' memory-aware schedulers do.
CPU_SCHEDULER_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"


def _xla_flags(flags: str, devices: int) -> str:
    kept = [f for f in flags.split() if not f.startswith(("--xla_force_host_platform_device_count", "--xla_cpu_enable_concurrency_optimized_scheduler"))]
    return " ".join([*kept, f"--xla_force_host_platform_device_count={devices}", CPU_SCHEDULER_FLAG])


def _entry_argv(entry: dict[str, Any]) -> list[str]:
    argv = ["--preset", str(entry["preset"]), "--mesh", str(entry["mesh"]), "--batch", str(entry["batch"])]
    if entry.get("eval_batch"):
        argv += ["--eval-batch", str(entry["eval_batch"])]
    for key, flag in (("param_dtype", "--param-dtype"), ("compute_dtype", "--compute-dtype"), ("accumulation_steps", "--accumulation-steps")):
        if key in entry:
            argv += [flag, str(entry[key])]
    from emergence_jax.train.step import remat_policy

    argv += ["--remat", remat_policy(entry.get("remat", "dots"))]
    if entry.get("scan_layers") is False:
        argv.append("--no-scan-layers")
    return argv


def report_lines(result: dict[str, Any], device_gib: float | None = None) -> list[str]:
    """The human-readable table of one `measure_memory` result."""
    lines = [
        f"{result['preset']} ({result['params'] / 1e9:.2f}B params) on mesh {result['mesh']} ({result['devices']} {result['platform']}); "
        f"params {result['param_dtype']}, compute {result['compute_dtype']}, remat {result['remat']}, "
        f"{'scanned' if result.get('scan_layers') else 'looped'} layers",
        f"{'GiB per device':<34}{'params':>9}{'optimizer':>11}{'batch':>8}{'temporaries':>13}{'peak':>9}{'compile s':>11}",
    ]
    for key, label in (("train", f"train step, batch {result['batch']}"), ("eval", f"evaluation step, batch {result['eval_batch']}")):
        step = result[key]
        optimizer = f"{step['optimizer'] / GIB:>11.2f}" if "optimizer" in step else f"{'-':>11}"
        lines.append(f"{label:<34}{step['params'] / GIB:>9.2f}{optimizer}{step['batch'] / GIB:>8.3f}"
                     f"{step['temporaries'] / GIB:>13.2f}{step['peak'] / GIB:>9.2f}{step['compile_s']:>11.1f}")
    if device_gib:
        for key in ("train", "eval"):
            peak = result[key]["peak"] / GIB
            verdict = "fits" if peak <= HEADROOM * device_gib else "DOES NOT FIT"
            lines.append(f"{key}: {verdict} ({peak:.2f} GiB of {device_gib:g} GiB per chip, {HEADROOM:.0%} usable)")
    return lines


def recipe_train_settings(recipe: Any) -> dict[str, Any]:
    """How a finetuning config (`train.config.FinetuneConfig`) runs its train step, in
    `requirements.memory` terms: batch ROWSxTOKENS, accumulation steps, compute dtype, remat policy
    and scanned layers."""
    from emergence_jax.train.step import remat_policy

    return {
        "batch": f"{recipe.optim.batch_size}x{recipe.data.max_length}",
        "accumulation_steps": recipe.optim.accumulation_steps,
        "compute_dtype": recipe.model.compute_dtype,
        "remat": remat_policy(recipe.model.remat),
        "scan_layers": recipe.model.scan_layers,
    }


def check_memory_requirements(config: Any, source: str = "config", recipe: Any = None) -> None:
    """Fail (UserError) a sweep config whose `requirements.memory` says a step does not fit its
    chips, that lists no memory figure for one of its model sizes, or whose figures were measured
    for another train step than its finetuning recipe runs (batch, accumulation steps, compute
    dtype, remat policy, scanned layers). Cheap: reads the listed figures (re-measure them with
    `emergence-jax bench memory --config FILE`). `recipe`: the sweep's resolved `FinetuneConfig`
    (default: read from `finetune.config` when the sweep finetunes)."""
    from emergence_jax.models.presets import PRESETS

    requirements = config.requirements if isinstance(config.requirements, dict) else {}
    memory = requirements.get("memory")
    if memory is None:
        return
    field = f"{source}: requirements.memory"
    if not isinstance(memory, dict) or not isinstance(memory.get("device_gib"), (int, float)) or not isinstance(memory.get("steps"), list):
        raise UserError(f"{field}: expected {{device_gib: GiB per chip, remat: POLICY, scan_layers: BOOL, steps: [{{preset, mesh, batch, train_gib, eval_gib}}, ...]}}")
    if recipe is None and "finetune" in config.stages and any(task.train_examples for task in config.tasks):
        from emergence_jax.sweep.jobs import finetune_recipe

        recipe = finetune_recipe(config)
    expected = recipe_train_settings(recipe) if recipe is not None else None
    device_gib = float(memory["device_gib"])
    listed = set()
    for i, entry in enumerate(memory["steps"]):
        if not isinstance(entry, dict) or not {"preset", "mesh", "batch", "train_gib", "eval_gib"} <= set(entry):
            raise UserError(f"{field}.steps[{i}]: needs preset, mesh, batch, train_gib and eval_gib (from emergence-jax bench memory)")
        listed.add(entry["preset"])
        if recipe is not None:
            _check_recipe_mesh(recipe, entry, f"{field}.steps[{i}]", config.finetune.config)
        if expected is not None:
            measured = _entry_settings(memory, entry)
            for key, value in expected.items():
                if measured[key] != value:
                    where = f"{field}.{key}" if key in ("remat", "scan_layers") else f"{field}.steps[{i}].{key}"
                    raise UserError(
                        f"{where}: the figures were measured with {key} {measured[key]}, but {config.finetune.config} (with finetune.set) "
                        f"runs {value}; re-measure with emergence-jax bench memory --config {source} and list what it prints"
                    )
        for key in ("train_gib", "eval_gib"):
            if float(entry[key]) > HEADROOM * device_gib:
                raise UserError(
                    f"{field}.steps[{i}]: {entry['preset']} needs {float(entry[key]):.1f} GiB per chip for its "
                    f"{key.removesuffix('_gib')} step on mesh {entry['mesh']}, more than {HEADROOM:.0%} of the {device_gib:g} GiB chips; "
                    "use LoRA, a smaller batch, more accumulation steps, remat full or a larger mesh"
                )
    for model in config.models:
        size = model.name.split("@")[0].replace("-", "_")
        if size in PRESETS and size not in listed and size.removesuffix("_v2") not in listed:
            raise UserError(f"{field}: lists no figures for {size} (models: {model.name}); add them from emergence-jax bench memory --preset {size} ...")


def mesh_sizes(text: str) -> dict[str, int]:
    """{data, fsdp, tensor} sizes of an explicit `--mesh` value (absent axes: 1)."""
    sizes = {"data": 1, "fsdp": 1, "tensor": 1}
    for part in filter(None, (p.strip() for p in str(text).split(","))):
        name, _, value = part.partition("=")
        if name.strip() not in sizes:
            raise UserError(f"mesh {text}: unknown axis {name.strip()!r}; axes are data, fsdp, tensor")
        sizes[name.strip()] = int(value)
    return sizes


def _check_recipe_mesh(recipe: Any, entry: dict[str, Any], where: str, recipe_file: str) -> None:
    """The entry's mesh must be the one the finetuning recipe's `mesh` makes on that many chips, and
    the recipe's batch must split over its data-parallel axes there."""
    listed = mesh_sizes(entry["mesh"])
    devices = mesh_devices(str(entry["mesh"]))
    wanted = {"data": recipe.mesh.data, "fsdp": recipe.mesh.fsdp, "tensor": recipe.mesh.tensor}
    fixed = math.prod(size for size in wanted.values() if size != -1)
    free = [axis for axis, size in wanted.items() if size == -1]
    if len(free) > 1 or devices % fixed or (not free and fixed != devices):
        raise UserError(f"{where}: mesh {entry['mesh']} ({devices} chips): {recipe_file}'s mesh {wanted} does not fit {devices} chips; set mesh.* in finetune.set")
    for axis in free:
        wanted[axis] = devices // fixed
    if wanted != listed:
        made = ",".join(f"{axis}={size}" for axis, size in wanted.items() if size != 1) or "fsdp=1"
        raise UserError(f"{where}: mesh {entry['mesh']}, but on {devices} chips {recipe_file} (with finetune.set) makes {made}; re-measure on that mesh or set mesh.* in finetune.set")
    micro = recipe.optim.batch_size // recipe.optim.accumulation_steps
    if micro % (wanted["data"] * wanted["fsdp"]):
        raise UserError(
            f"{where}: {entry['preset']} on mesh {entry['mesh']}: the microbatch of {micro} rows does not split over "
            f"{wanted['data'] * wanted['fsdp']} data-parallel chips; set mesh.tensor (fewer data-parallel chips) or optim.batch_size in finetune.set"
        )


def _entry_settings(memory: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    """The train-step settings one `requirements.memory.steps` entry was measured with (remat and
    scan_layers are listed once for all entries; absent = the bench's defaults)."""
    from emergence_jax.train.step import remat_policy

    return {
        "batch": str(entry["batch"]),
        "accumulation_steps": int(entry.get("accumulation_steps", 1)),
        "compute_dtype": entry.get("compute_dtype", "bfloat16"),
        "remat": remat_policy(memory.get("remat", "dots")),
        "scan_layers": bool(memory.get("scan_layers", True)),
    }


def _run_config(args: argparse.Namespace) -> int:
    """Re-measure every `requirements.memory.steps` entry of a sweep config with the train step its
    finetuning recipe runs; exit 2 when a listed figure or setting is out of date or does not fit."""
    from emergence_jax.config import load_config
    from emergence_jax.sweep.config import SweepConfig
    from emergence_jax.sweep.jobs import finetune_recipe

    config = load_config(SweepConfig, args.config)
    memory = config.requirements.get("memory") if isinstance(config.requirements, dict) else None
    if not memory or not isinstance(memory, dict) or not isinstance(memory.get("steps"), list):
        raise UserError(f"{args.config}: has no requirements.memory.steps to re-measure")
    finetunes = "finetune" in config.stages and any(task.train_examples for task in config.tasks)
    settings = recipe_train_settings(finetune_recipe(config)) if finetunes else {}
    failures = 0
    results, lines = [], []
    for entry in memory["steps"]:
        listed_settings = _entry_settings(memory, entry)
        run = {**entry, **listed_settings, **settings}  # the recipe's train step, whatever the entry says
        result = _subprocess_measure(_entry_argv(run), mesh_devices(str(entry["mesh"])))
        results.append(result)
        print("\n".join(report_lines(result, memory["device_gib"])))
        stale = sorted(key for key in settings if listed_settings[key] != settings[key])
        if stale:
            failures += 1
            print(f"  listed for another train step ({', '.join(f'{k} {listed_settings[k]} -> {settings[k]}' for k in stale)})  <- update the config")
        for key in ("train", "eval"):
            now, listed = result[key]["peak"] / GIB, float(entry[f"{key}_gib"])
            agrees = abs(now - listed) <= max(0.05 * listed, 0.05)
            failures += not agrees or now > HEADROOM * memory["device_gib"]
            print(f"  {key}: listed {listed:.2f} GiB, measured now {now:.2f} GiB{'' if agrees else '  <- update the config'}")
        fields = {key: entry[key] for key in ("preset", "mesh") if key in entry} | {"batch": run["batch"]}
        if run["accumulation_steps"] != 1:
            fields["accumulation_steps"] = run["accumulation_steps"]
        if entry.get("eval_batch"):
            fields["eval_batch"] = entry["eval_batch"]
        fields |= {"train_gib": round(result["train"]["peak"] / GIB, 2), "eval_gib": round(result["eval"]["peak"] / GIB, 2)}
        lines.append("      - {" + ", ".join(f"{k}: {_yaml_scalar(v)}" for k, v in fields.items()) + "}")
    print("requirements.memory as measured now:")
    if settings:
        print(f"    remat: {settings['remat']}\n    scan_layers: {str(settings['scan_layers']).lower()}")
    print("    steps:\n" + "\n".join(lines))
    _write_json(args.json, {"config": args.config, "device_gib": memory["device_gib"], "results": results})
    return 2 if failures else 0


def _yaml_scalar(value: Any) -> str:
    text = str(value)
    return f'"{text}"' if "," in text else text


def _write_json(target: str | None, obj: Any) -> None:
    from emergence_jax.io import to_json_text, write_json

    if target == "-":
        print(to_json_text(obj))
    elif target:
        write_json(target, obj)


def run(args: argparse.Namespace) -> int:
    if args.config:
        return _run_config(args)
    if not args.preset:
        raise UserError("bench memory: give --preset NAME (e.g. open_llama_13b) or --config FILE")
    devices = mesh_devices(args.mesh)
    batch = parse_batch(args.batch)
    eval_batch = parse_batch(args.eval_batch, "--eval-batch") if args.eval_batch else None
    if "jax" not in sys.modules:
        # Fake CPU devices for the target mesh; must be set before JAX starts.
        os.environ["JAX_PLATFORMS"] = "cpu"
        os.environ["XLA_FLAGS"] = _xla_flags(os.environ.get("XLA_FLAGS", ""), max(devices, 1))
    import jax

    if jax.device_count() < devices or jax.devices()[0].platform != "cpu":
        # JAX started already (e.g. on an accelerator, or with fewer devices): measure in a fresh process.
        entry = {"preset": args.preset, "mesh": args.mesh, "batch": args.batch, "eval_batch": args.eval_batch, "param_dtype": args.param_dtype,
                 "compute_dtype": args.compute_dtype, "accumulation_steps": args.accumulation_steps, "remat": args.remat,
                 "scan_layers": not args.no_scan_layers}
        result = _subprocess_measure(_entry_argv(entry), devices)
    else:
        result = measure_memory(
            args.preset, args.mesh, batch, eval_batch, param_dtype=args.param_dtype, compute_dtype=args.compute_dtype,
            remat=args.remat, scan_layers=not args.no_scan_layers, accumulation_steps=args.accumulation_steps,
        )
    out = sys.stderr if args.json == "-" else sys.stdout
    print("\n".join(report_lines(result, args.device_gib)), file=out)
    _write_json(args.json, result)
    if args.device_gib and max(result["train"]["peak"], result["eval"]["peak"]) > HEADROOM * args.device_gib * GIB:
        return 2
    return 0
