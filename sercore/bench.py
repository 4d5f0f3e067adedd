"""Throughput benchmarks: training and inference samples/s of sercore's models, and feature extraction.

``sercore bench`` (and ``make bench``) calls :func:`run_bench`, which prints one table and writes the
figures to a JSON file. For each model it measures, on random log-mel-shaped data:

* parameters, and GFLOP per sample of the forward pass and of a training step (XLA's own cost
  analysis of the compiled programs, so the count is the work the machine really does);
* first-step compile time (lowering + XLA compilation of the training step);
* training samples/s (batch 32, Adam, softmax cross-entropy, BatchNorm in training mode) and
  inference samples/s (batch 64, softmax of the logits): the median, min and max of ``repeats``
  timed blocks of ``steps`` steps each, after a warm-up;
* the share of this machine's FP32 peak, when the CPU is one whose peak is known (see :func:`cpu_info`).

Feature extraction clips/s compares librosa (``melspectrogram`` + ``power_to_db``, one clip at a
time, one core), sercore's own NumPy path (:func:`sercore.features.compute`) and the jitted JAX
log-mel (:func:`sercore.features.logmel_jax`, batched), and records the largest dB difference
between the JAX and librosa log-mels.

Speed figures from shared machines drift by 10 % or more between runs; compare frameworks within one
run (``reference_python`` runs the PyTorch / Keras reference scripts in the same call).
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from .errors import ConfigError

#: Models :func:`run_bench` measures by default: the paper net and the three designs the study trains most.
DEFAULT_MODELS = ("zhao2d", "poolfix2d", "attn_blstm", "td_cnn_lstm")
TRAIN_BATCH = 32
INFER_BATCH = 64

# FP32 FMA issue per core per cycle (pipes x lanes) for CPU families whose numbers are public and
# stable. Anything else: the peak is reported as unknown rather than guessed.
_AMD_FMA = {23: ("Zen/Zen 2", 2, 8), 25: ("Zen 3/Zen 4", 2, 8), 26: ("Zen 5", 2, 8)}


def cpu_info() -> dict:
    """This machine's CPU: model name, cores usable by this process, clock and FP32 peak if known.

    Returns
    -------
    dict
        ``model`` (str), ``vendor``, ``family`` (int or None), ``cores`` (int), ``mhz`` (float or
        None), ``flags`` (avx2/fma/avx512f present), ``peak_gflops`` (float or None) and
        ``peak_note`` (how the peak was derived, or why it is unknown). Peak = cores x FMA pipes x
        SIMD lanes x 2 FLOP x clock; known only for AMD Zen families with AVX2 + FMA.
    """
    fields: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            if ":" in line:
                key, value = (s.strip() for s in line.split(":", 1))
                fields.setdefault(key, value)
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    flags = set(fields.get("flags", "").split())
    vendor = fields.get("vendor_id", platform.processor() or "unknown")
    family = int(fields["cpu family"]) if fields.get("cpu family", "").isdigit() else None
    mhz = float(fields["cpu MHz"]) if fields.get("cpu MHz") else None
    info = {"model": fields.get("model name", platform.processor() or "unknown"), "vendor": vendor,
            "family": family, "cores": cores, "mhz": mhz,
            "flags": {f: f in flags for f in ("avx2", "fma", "avx512f")},
            "peak_gflops": None, "peak_note": "unknown CPU family: peak not stated"}
    if vendor == "AuthenticAMD" and family in _AMD_FMA and {"avx2", "fma"} <= flags and mhz:
        name, pipes, lanes = _AMD_FMA[family]
        peak = cores * pipes * lanes * 2 * mhz / 1000
        info["peak_gflops"] = round(peak, 1)
        info["peak_note"] = (f"AMD {name}: {cores} cores x {pipes} FMA x {lanes} fp32 lanes x 2 FLOP x "
                             f"{mhz / 1000:.2f} GHz")
    return info


def _timed_blocks(run_block: Callable[[], None], repeats: int) -> list[float]:
    """Seconds of each of ``repeats`` calls to ``run_block`` (which must block until done)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run_block()
        times.append(time.perf_counter() - t0)
    return times


def _rates(samples: int, seconds: Sequence[float]) -> dict:
    rates = [samples / s for s in seconds]
    return {"median": round(statistics.median(rates), 2), "min": round(min(rates), 2),
            "max": round(max(rates), 2), "all": [round(r, 2) for r in rates]}


def _flops(compiled) -> float | None:
    """FLOPs of a lowered or compiled XLA program from its cost analysis (None when XLA reports none)."""
    try:
        cost = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 - cost analysis is best effort on every backend
        return None
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    flops = (cost or {}).get("flops")
    return float(flops) if flops and flops > 0 else None


def bench_model(name: str, *, steps: int = 5, repeats: int = 3, warmup: int = 1,
                train_batch: int = TRAIN_BATCH, infer_batch: int = INFER_BATCH,
                input_shape: Sequence[int] | None = None, num_classes: int = 7, seed: int = 0,
                peak_gflops: float | None = None, **model_kwargs) -> dict:
    """Measure one model's training and inference throughput.

    Parameters
    ----------
    name : str
        A model of :func:`sercore.models.list_models` (classifiers only).
    steps, repeats, warmup : int
        Each figure is ``repeats`` timed blocks of ``steps`` steps, after ``warmup`` untimed steps.
    train_batch, infer_batch : int
        Batch sizes (32 and 64 in the published figures).
    input_shape : tuple of int, optional
        Per-example shape (default: the model's default features, e.g. (128, 251, 1)).
    peak_gflops : float, optional
        This machine's FP32 peak, to report the share of it the training step reaches.

    Returns
    -------
    dict
        ``params``, ``input_shape``, ``gflop_per_sample`` {"infer", "train"} (the direct
        convolution's count, from XLA's cost analysis with Winograd off),
        ``gflop_per_sample_executed`` (the compiled program's count), ``compile_s``,
        ``first_step_s``, ``train_samples_per_s`` and ``infer_samples_per_s`` (each median/min/max/all),
        ``train_pct_peak``/``infer_pct_peak`` (or None), ``first_loss``.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from flax import nnx

    from . import models, ops

    if models.model_info(name)["task"] != "classify":
        raise ConfigError(f"sercore bench measures classifiers; {name!r} is an autoencoder")
    if min(steps, repeats) < 1 or warmup < 0:
        raise ConfigError(f"steps and repeats must be >= 1 and warmup >= 0, got {steps}, {repeats}, {warmup}")
    shape = tuple(input_shape) if input_shape else tuple(models.default_input_shape(name))
    model = models.create(name, num_classes=num_classes, input_shape=shape, seed=seed, **model_kwargs)
    n_params = int(sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param))))
    model.train()
    graphdef_train, params, rest = nnx.split(model, nnx.Param, ...)
    model.eval()
    graphdef_eval = nnx.split(model, nnx.Param, ...)[0]
    tx = optax.adam(1e-3)

    def train_step(params, rest, opt_state, x, y):
        def loss_fn(params):
            m = nnx.merge(graphdef_train, params, rest, copy=True)
            loss = optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean()
            return loss, nnx.split(m, nnx.Param, ...)[2]

        (loss, rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), rest, opt_state, loss

    def infer_step(params, rest, x):
        return jax.nn.softmax(nnx.merge(graphdef_eval, params, rest, copy=True)(x), axis=-1)

    rng = np.random.default_rng(seed)
    x_train = jnp.asarray(rng.standard_normal((train_batch, *shape), dtype=np.float32))
    y_train = jnp.asarray(rng.integers(0, num_classes, train_batch), dtype=jnp.int32)
    x_infer = jnp.asarray(rng.standard_normal((infer_batch, *shape), dtype=np.float32))
    opt_state = tx.init(params)

    t0 = time.perf_counter()
    train = jax.jit(train_step, donate_argnums=(0, 1, 2)).lower(params, rest, opt_state, x_train, y_train).compile()
    compile_s = time.perf_counter() - t0
    infer = jax.jit(infer_step).lower(params, rest, x_infer).compile()
    t0 = time.perf_counter()
    params, rest, opt_state, loss = train(params, rest, opt_state, x_train, y_train)
    first_loss = float(loss)
    first_step_s = time.perf_counter() - t0
    state = [params, rest, opt_state]

    def train_block(n):
        p, r, o = state
        for _ in range(n):
            p, r, o, out = train(p, r, o, x_train, y_train)
        out.block_until_ready()
        state[:] = [p, r, o]

    def infer_block(n):
        p, r, _ = state
        for _ in range(n):
            out = infer(p, r, x_infer)
        out.block_until_ready()

    if warmup:
        train_block(warmup)
        infer_block(warmup)
    train_rates = _rates(train_batch * steps, _timed_blocks(lambda: train_block(steps), repeats))
    infer_rates = _rates(infer_batch * steps, _timed_blocks(lambda: infer_block(steps), repeats))
    # The model's FLOPs are those of the plain ops, the direct convolution and BatchNorm on the
    # conv's output (as the papers and the references count them); Winograd, and the first block's
    # statistics from the input's Gram matrix, execute fewer for the same function, so the share of
    # peak below is an effective one and can exceed what the executed count alone would allow.
    # XLA's cost analysis counts a loop's body once, so both counts take whole batches (the
    # batch chunks of sercore.ops.batch_chunk are the same operations, a few examples at a time).
    def count(**switches):
        saved = {k: getattr(ops, k) for k in switches}
        for k, v in switches.items():
            setattr(ops, k, v)
        try:
            # Fresh function objects: JAX reuses a function's trace, made with other switches.
            return (_flops(jax.jit(lambda *a: train_step(*a)).lower(params, rest, opt_state, x_train, y_train)),
                    _flops(jax.jit(lambda *a: infer_step(*a)).lower(params, rest, x_infer)))
        finally:
            for k, v in saved.items():
                setattr(ops, k, v)

    flops_train, flops_infer = count(WINOGRAD=False, CONV_POOL=False, CHUNK=0)
    executed_train, executed_infer = count(CHUNK=0)
    per_sample = lambda flops, batch: None if flops is None else round(flops / batch / 1e9, 4)  # noqa: E731
    gflop = {"train": per_sample(flops_train, train_batch), "infer": per_sample(flops_infer, infer_batch)}
    gflop_executed = {"train": per_sample(executed_train, train_batch),
                      "infer": per_sample(executed_infer, infer_batch)}

    def pct(kind, rates):
        if not peak_gflops or gflop[kind] is None:
            return None
        return round(100 * gflop[kind] * rates["median"] / peak_gflops, 1)

    return {"model": name, "params": n_params, "input_shape": list(shape),
            "train_batch": train_batch, "infer_batch": infer_batch, "steps": steps, "repeats": repeats,
            "warmup": warmup, "gflop_per_sample": gflop, "gflop_per_sample_executed": gflop_executed,
            "compile_s": round(compile_s, 2),
            "first_step_s": round(first_step_s, 3), "first_loss": round(first_loss, 5),
            "train_samples_per_s": train_rates, "infer_samples_per_s": infer_rates,
            "train_pct_peak": pct("train", train_rates), "infer_pct_peak": pct("infer", infer_rates)}


def bench_devices(name: str = "zhao2d", *, batch_size: int = TRAIN_BATCH, steps: int = 5, repeats: int = 3,
                  input_shape: Sequence[int] | None = None, counts: Sequence[int] | None = None,
                  echo: Callable[[str], None] | None = print) -> list[dict]:
    """Training samples/s of :func:`sercore.training.fit` with each batch split over 1, 2, ... devices.

    Each device count trains ``name`` for ``1 + repeats`` epochs of ``steps`` batches on random data
    (the first epoch compiles and is not timed); an epoch's time includes one validation batch.
    ``counts`` defaults to every power of two up to ``jax.local_device_count()`` that divides
    ``batch_size``. On CPU, force devices with ``XLA_FLAGS=--xla_force_host_platform_device_count=N``
    (they share the same cores: this measures the overhead of the sharded step, not a speed-up).

    Returns
    -------
    list of dict
        ``devices``, ``samples_per_s`` (median), ``samples_per_s_per_device``, ``all`` (every epoch's).
    """
    import jax
    import numpy as np

    from . import models as model_zoo
    from .training import TrainConfig, fit

    say = echo or (lambda s: None)
    n_dev = jax.local_device_count()
    if counts is None:
        counts = [c for c in (2 ** i for i in range(8)) if c <= n_dev and batch_size % c == 0]
    shape = tuple(input_shape) if input_shape else model_zoo.default_input_shape(name)
    rng = np.random.default_rng(0)
    n = batch_size * steps
    X = rng.standard_normal((n, *shape)).astype(np.float32)
    y = rng.integers(0, 7, n).astype(np.int32)
    cfg = TrainConfig(epochs=1 + repeats, batch_size=batch_size, patience=0, seed=0)
    out = []
    for c in counts:
        net = model_zoo.create(name, num_classes=7, input_shape=shape, seed=0)
        res = fit(net, (X, y), (X[:batch_size], y[:batch_size]), cfg, num_classes=7, progress=False,
                  data_parallel=c)
        rates = [n / h["seconds"] for h in res.history[1:]]
        med = float(np.median(rates))
        out.append({"devices": c, "samples_per_s": round(med, 2), "samples_per_s_per_device": round(med / c, 2),
                    "all": [round(r, 2) for r in rates]})
        say(f"{name} {shape} batch {batch_size}: {c} device(s) [{jax.devices()[0].platform}]: {med:.1f} samples/s "
            f"({med / c:.1f} per device)")
    return out


def _timed_grid(spec: dict) -> dict:
    """One study grid (``spec``: corpus, models, protocols, profile, root, executor, address): its runs'
    test UARs and the seconds Ray took to start (0 for ``serial``). :func:`bench_executors` runs it in a
    fresh interpreter each time, so that no pass reuses another's in-memory compiled programs, and
    times the whole process itself."""
    from . import analysis
    from .executors import RayExecutor

    t0 = time.perf_counter()
    analysis.enable_compilation_cache()
    executor, start_s = "serial", 0.0   # named, so that $SERCORE_EXECUTOR cannot turn the serial pass into Ray
    if spec["executor"] == "ray":
        executor = RayExecutor(address=spec.get("address"))
        executor.connect()
        start_s = time.perf_counter() - t0
    folds = {"folds": list(range(spec["folds"]))} if spec.get("folds") else {}
    res, _ = analysis.run_grid(spec["corpus"], spec["models"], spec["protocols"], spec["profile"],
                               results_root=spec["root"], executor=executor, **folds)
    out = {"start_s": start_s, "runs": res[["model", "protocol", "fold", "seed", "uar"]].to_dict("records")}
    if spec["executor"] == "ray":
        import ray

        out["workers"] = int(ray.cluster_resources().get("CPU", 0))
        ray.shutdown()
    return out


def bench_executors(corpus: str = "synthetic-small", *, models: Sequence[str] | None = None,
                    protocols: Sequence[str] = ("speaker_kfold", "random"), profile: str = "smoke",
                    workdir: str | os.PathLike | None = None, address: str | None = None,
                    folds: int | None = None, echo: Callable[[str], None] | None = print) -> dict:
    """Wall time of one study grid run serially and as Ray tasks (the engine's overhead), same seeds.

    The grid is ``models`` (default: the profile's) x ``protocols`` x the profile's folds (or the
    first ``folds`` of its k) and seeds,
    run by :func:`sercore.analysis.run_grid` four times, each in a fresh interpreter and into a fresh
    results folder under ``workdir`` (default: a temporary folder): twice untimed (serially and on Ray),
    so that the feature cache and JAX's persistent compilation cache hold both executors' programs
    (Ray's one-thread workers compile other programs than a serial run), then timed serially (XLA on every core),
    then on Ray (``address``, default a local Ray with one single-threaded worker per core). Each time
    includes the interpreter's imports; Ray's includes its start-up, also reported apart. The runs'
    test UARs are compared: both executors train the same runs with the same seeds.

    Returns
    -------
    dict
        ``runs``, ``serial_s``, ``ray_s``, ``ray_start_s``, ``ratio`` (ray_s / serial_s),
        ``max_abs_uar_diff``, ``workers``.
    """
    import tempfile

    import pandas as pd

    from . import analysis

    say = echo or (lambda s: None)
    models = list(models or analysis.default_models(profile))
    tmp = tempfile.TemporaryDirectory(prefix="sercore-bench-executors-") if workdir is None else None
    root = Path(workdir or tmp.name)

    def grid(where: str, executor: str) -> tuple[dict, float]:
        spec = {"corpus": corpus, "models": models, "protocols": list(protocols), "profile": profile,
                "root": str(root / where), "executor": executor, "address": address, "folds": folds}
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "sercore.bench", "--timed-grid", json.dumps(spec)],
                              capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise ConfigError(f"the {executor} grid failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1]), wall

    try:
        grid("warm-up", "serial")
        grid("warm-up-ray", "ray")   # the workers' one-thread programs differ from the serial ones: cache both
        serial, serial_s = grid("serial", "serial")
        say(f"serial: {len(serial['runs'])} runs in {serial_s:.1f} s (fresh interpreter, imports included)")
        remote, remote_s = grid("ray", "ray")
        say(f"ray: {len(remote['runs'])} runs in {remote_s:.1f} s (of which {remote['start_s']:.1f} s starting "
            f"Ray; {remote.get('workers')} CPU(s))")
        key = ["model", "protocol", "fold", "seed"]
        both = pd.DataFrame(serial["runs"]).merge(pd.DataFrame(remote["runs"]), on=key, suffixes=("_serial", "_ray"))
        diff = float((both["uar_serial"] - both["uar_ray"]).abs().max()) if len(both) else float("nan")
        out = {"corpus": corpus, "profile": profile, "models": models, "protocols": list(protocols),
               "runs": len(serial["runs"]), "serial_s": round(serial_s, 1), "ray_s": round(remote_s, 1),
               "ray_start_s": round(remote["start_s"], 1), "ratio": round(remote_s / serial_s, 2),
               "max_abs_uar_diff": diff, "workers": remote.get("workers")}
        say(f"ray / serial = {out['ratio']:.2f} (max |UAR difference| over {len(both)} runs: {diff:.4f})")
        return out
    finally:
        if tmp is not None:
            tmp.cleanup()


def bench_features(*, n_clips: int = 16, repeats: int = 3, seed: int = 0) -> dict:
    """Clips/s of log-mel extraction: librosa, sercore's NumPy path and the jitted JAX log-mel.

    Each clip is ``FeatureConfig().duration`` seconds of noise at ``FeatureConfig().sr``; librosa and
    NumPy run one clip at a time on one core, JAX takes the batch of ``n_clips`` at once.

    Returns
    -------
    dict
        ``{"librosa": rates, "sercore_numpy": rates, "jax": rates or None, "jax_max_abs_db_vs_librosa":
        float or None, "note": ...}`` with rates as median/min/max clips/s.
    """
    import librosa
    import numpy as np

    from . import features

    cfg = features.FeatureConfig()
    rng = np.random.default_rng(seed)
    clips = (0.1 * rng.standard_normal((n_clips, cfg.n_samples))).astype(np.float32)
    fmax = cfg.fmax if cfg.fmax is not None else cfg.sr / 2

    def librosa_logmel(y):
        mel = librosa.feature.melspectrogram(y=y, sr=cfg.sr, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
                                             n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=fmax, power=2.0)
        return librosa.power_to_db(mel, ref=1.0, top_db=None)

    out: dict = {"n_clips": n_clips, "clip_seconds": cfg.duration, "sr": cfg.sr, "n_mels": cfg.n_mels,
                 "n_frames": cfg.n_frames}
    reference = [librosa_logmel(y) for y in clips[:2]]          # warm-up (numba / FFT plans)
    out["librosa"] = _rates(n_clips, _timed_blocks(lambda: [librosa_logmel(y) for y in clips], repeats))
    features.compute(clips[0], cfg)
    out["sercore_numpy"] = _rates(n_clips, _timed_blocks(lambda: [features.compute(y, cfg) for y in clips], repeats))
    logmel_jax = getattr(features, "logmel_jax", None)
    if logmel_jax is None:
        out.update(jax=None, jax_max_abs_db_vs_librosa=None, note="sercore.features.logmel_jax absent")
        return out
    batch = clips
    logmel_jax(batch).block_until_ready()
    out["jax"] = _rates(n_clips, _timed_blocks(lambda: logmel_jax(batch).block_until_ready(), repeats))
    got = np.asarray(logmel_jax(batch[:2]))[..., 0]
    out["jax_max_abs_db_vs_librosa"] = float(np.max(np.abs(got - np.stack(reference))))
    out["note"] = "librosa/numpy: one clip at a time; jax: one jitted call on the whole batch"
    return out


def run_reference(script: str | os.PathLike, python: str, *, steps: int, repeats: int,
                  timeout: float = 3600) -> dict:
    """Run one of the reference scripts (PyTorch / Keras zhao2d) and return its JSON line.

    Parameters
    ----------
    script : path
        ``bench_torch.py`` or ``bench_tf.py`` from the shared benchmark folder.
    python : str
        The interpreter of a venv that has the framework (see that folder's ``setup.sh``).
    """
    cmd = [python, str(script), "--steps", str(steps), "--repeats", str(repeats)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"error": f"{' '.join(cmd)}: {exc}"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {"error": f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()[-500:]}"}


def format_table(result: dict) -> str:
    """The human-readable table :func:`run_bench` prints."""
    cpu = result["machine"]["cpu"]
    peak = f"{cpu['peak_gflops']} GFLOP/s FP32 peak ({cpu['peak_note']})" if cpu["peak_gflops"] else cpu["peak_note"]
    lines = [f"machine: {cpu['model']}, {cpu['cores']} cores; {peak}",
             f"jax {result['versions']['jax']}, flax {result['versions']['flax']}; "
             f"train batch {result['protocol']['train_batch']} (Adam), inference batch "
             f"{result['protocol']['infer_batch']}; samples/s median [min-max] of {result['protocol']['repeats']} "
             f"x {result['protocol']['steps']} steps; GFLOP per sample (forward, direct convolution; "
             f"Winograd runs fewer multiplies, so % peak is an effective share)"]
    if result["machine"].get("memory"):
        lines.append(result["machine"]["memory"] + " (the references run with the same environment)")
    lines.append("")
    # wide enough for a GPU's five-digit samples/s and the longest model name (dcnn_blstm_attn)
    nw, rw = 17, 31
    header = (f"{'model':<{nw}}{'params':>10}{'GFLOP':>10}{'train samples/s':>{rw}}{'%peak':>7}"
              f"{'infer samples/s':>{rw}}{'%peak':>7}{'compile s':>11}")
    lines += [header, "-" * len(header)]
    for name, r in result["models"].items():
        if "error" in r:
            lines.append(f"{name:<{nw}} error: {r['error']}")
            continue
        tr, inf = r["train_samples_per_s"], r["infer_samples_per_s"]
        g = r["gflop_per_sample"]["infer"]
        train_txt = f"{tr['median']:.2f} [{tr['min']:.2f}-{tr['max']:.2f}]"
        infer_txt = f"{inf['median']:.1f} [{inf['min']:.1f}-{inf['max']:.1f}]"
        lines.append(f"{name:<{nw}}{r['params']:>10,}{'-' if g is None else f'{g:.3f}':>10}{train_txt:>{rw}}"
                     f"{'-' if r['train_pct_peak'] is None else r['train_pct_peak']:>7}{infer_txt:>{rw}}"
                     f"{'-' if r['infer_pct_peak'] is None else r['infer_pct_peak']:>7}{r['compile_s']:>11.1f}")
    for fw, ref in result.get("references", {}).items():
        if "error" in ref:
            lines.append(f"{fw:<{nw}} error: {ref['error']}")
            continue
        tr, inf = ref["train"], ref["infer"]
        train_txt = f"{tr['samples_per_s_median']:.2f} [min {tr['samples_per_s_min']:.2f}]"
        infer_txt = f"{inf['samples_per_s_median']:.1f} [min {inf['samples_per_s_min']:.1f}]"
        lines.append(f"{'zhao2d ' + fw:<{nw}}{ref.get('params', 0):>10,}{'':>10}{train_txt:>{rw}}{'':>7}"
                     f"{infer_txt:>{rw}}{'':>7}{ref.get('first_train_step_s', float('nan')):>11.1f}")
    for fw, ratio in result.get("speedup_vs", {}).items():
        lines.append(f"zhao2d speed-up vs {fw}: train x{ratio['train']}, inference x{ratio['infer']}")
    feats = result.get("features")
    if feats:
        lines.append("")
        parts = [f"librosa {feats['librosa']['median']:.1f}", f"sercore numpy {feats['sercore_numpy']['median']:.1f}"]
        if feats.get("jax"):
            parts.append(f"jax (batched) {feats['jax']['median']:.1f}; max |jax - librosa| "
                         f"{feats['jax_max_abs_db_vs_librosa']:.2e} dB")
        else:
            parts.append("jax log-mel: absent")
        lines.append(f"log-mel clips/s ({feats['clip_seconds']} s clips): " + ", ".join(parts))
    return "\n".join(lines)


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def run_bench(models: Sequence[str] = DEFAULT_MODELS, *, steps: int = 5, repeats: int = 3, warmup: int = 1,
              out: str | os.PathLike | None = "reports/bench.json", features: bool = True,
              reference_dir: str | os.PathLike | None = None, torch_python: str | None = None,
              tf_python: str | None = None, input_shape: Sequence[int] | None = None,
              train_batch: int = TRAIN_BATCH, infer_batch: int = INFER_BATCH,
              echo: Callable[[str], None] | None = print) -> dict:
    """Benchmark ``models`` (and feature extraction), print a table, write JSON to ``out``.

    Parameters
    ----------
    models : sequence of str
        Model names (default :data:`DEFAULT_MODELS`).
    steps, repeats, warmup : int
        Timing protocol of :func:`bench_model`.
    out : path or None
        JSON file to write (atomically); None writes nothing.
    features : bool
        Also time log-mel extraction (:func:`bench_features`).
    reference_dir, torch_python, tf_python : optional
        Folder with ``bench_torch.py`` / ``bench_tf.py`` and the interpreters to run them with, to
        measure the PyTorch / Keras zhao2d in the same run; ``speedup_vs`` then gives sercore's ratio.
    input_shape, train_batch, infer_batch : optional
        Override the per-example shape and batch sizes (tests use tiny ones).
    echo : callable or None
        Where progress lines and the table go (None: silent).

    Returns
    -------
    dict
        ``{"machine", "versions", "models": {name: bench_model(...)}, "features", "references",
        "speedup_vs", "time"}``.
    """
    import flax
    import jax

    from . import models as model_zoo
    from . import runtime

    unknown = [m for m in models if m not in model_zoo.list_models()]
    if unknown:
        raise ConfigError(f"unknown model(s) {', '.join(unknown)}; choose from: {', '.join(model_zoo.list_models())}")
    say = echo or (lambda s: None)
    cpu = cpu_info()
    result = {"time": time.strftime("%Y-%m-%d %H:%M:%S"),
              "machine": {"cpu": cpu, "host": platform.node(), "python": sys.version.split()[0],
                          "xla_flags": os.environ.get("XLA_FLAGS", ""),
                          # the reference frameworks run as subprocesses with this same environment
                          "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""), "memory": runtime.status()},
              "versions": {"jax": jax.__version__, "flax": flax.__version__},
              "protocol": {"steps": steps, "repeats": repeats, "warmup": warmup, "train_batch": train_batch,
                           "infer_batch": infer_batch, "optimizer": "adam 1e-3", "data": "standard normal"},
              "models": {}, "features": None, "references": {}, "speedup_vs": {}}
    for name in models:
        say(f"benchmarking {name} ...")
        result["models"][name] = bench_model(name, steps=steps, repeats=repeats, warmup=warmup,
                                             train_batch=train_batch, infer_batch=infer_batch,
                                             input_shape=input_shape, peak_gflops=cpu["peak_gflops"])
    if features:
        say("benchmarking log-mel extraction ...")
        result["features"] = bench_features(repeats=repeats)
    reference_dir = Path(reference_dir) if reference_dir else None
    for fw, python, script in (("pytorch", torch_python, "bench_torch.py"), ("keras", tf_python, "bench_tf.py")):
        if not python:
            continue
        if reference_dir is None or not (reference_dir / script).is_file():
            raise ConfigError(f"reference script {script} not found in {reference_dir}; pass --reference-dir "
                              "pointing at the shared bench folder (../shared/bench)")
        say(f"running the {fw} reference ...")
        ref = run_reference(reference_dir / script, python, steps=steps, repeats=repeats)
        result["references"][fw] = ref
        mine = result["models"].get("zhao2d")
        if mine and "error" not in ref:
            result["speedup_vs"][fw] = {
                "train": round(mine["train_samples_per_s"]["median"] / ref["train"]["samples_per_s_median"], 2),
                "infer": round(mine["infer_samples_per_s"]["median"] / ref["infer"]["samples_per_s_median"], 2)}
    say(format_table(result))
    if out is not None:
        _write_json(Path(out), result)
        say(f"wrote {out}")
    return result


if __name__ == "__main__":   # the subprocess of bench_executors: python -m sercore.bench --timed-grid SPEC
    if len(sys.argv) == 3 and sys.argv[1] == "--timed-grid":
        print(json.dumps(_timed_grid(json.loads(sys.argv[2]))))
    else:
        sys.exit("usage: python -m sercore.bench --timed-grid SPEC (internal; use `sercore bench`)")
