"""``minireason bench generate``: step-4 generation, NumPy against the same model in PyTorch.

Step 4 samples ``n_candidates`` reasons per prompt with a KV cache. This benchmark times that
generation two ways, on the same weights, the same prompts and the same sampling settings
(temperature, top-p), each producing exactly ``max_new_tokens`` tokens per candidate (no
early stop, so both do the same work whatever they sample):

- NumPy: :func:`minireason.reason.generate.generate`, the code ``explain`` and ``evaluate`` use;
- PyTorch eager with a KV cache: :func:`minireason.nn.torch_reference.sample_with_cache`.

Two figures each: the *latency* of one explanation's generation (one prompt, all its
candidates) and the *throughput* in reasons per second for a batch of prompts (as
``evaluate`` runs them). Systems alternate round by round (so load hits them alike); medians
and quartiles are reported, with ``load`` busy processes meanwhile when asked.

The model is the ``small`` preset's shape with random weights by default (the weights do not
change the work); prompts are random token ids of ``prompt_len`` tokens.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import ClassVar

import numpy as np

from minireason.bench.machine import (
    busy_load,
    json_option,
    load_option,
    machine_info,
    plan_option,
    spread,
    threads_option,
    time_interleaved,
    use_plan,
)
from minireason.nn.model import GPT, GPTConfig
from minireason.options import option
from minireason.train.run import Decoding

SMALL_SHAPE = {"n_layer": 4, "n_head": 4, "n_embd": 256, "block_size": 128}


@dataclass
class BenchGenerateConfig:
    """The options of ``minireason bench generate``; the decoding's defaults are step 4's
    (:class:`Decoding`)."""

    description: ClassVar[str] = (  # its --help
        "Sample N candidates per prompt with the KV cache, NumPy against the same model in "
        "PyTorch eager (same weights, prompts and sampling; no early stop): one "
        "explanation's latency and reasons per second for a batch of prompts."
    )

    preset: str = option("small", metavar="NAME|FILE", help="the preset whose model shape is timed")
    n_prompts: int = option(8, min=1, flag="--prompts", help="prompts in the throughput batch")
    prompt_len: int = option(56, min=1, help="tokens per prompt")
    rounds: int = option(5, min=1, help="timed rounds")
    threads: int | None = threads_option()
    plan: str | None = plan_option()
    load: int = load_option()
    no_torch: bool = option(False, help="skip the PyTorch comparison")
    json: str | None = json_option()
    candidates: int = option(Decoding.n_candidates, min=1, help="samples per prompt")
    max_new_tokens: int = option(Decoding.max_new_tokens, min=1, help="tokens per sample")

    def model_config(self) -> GPTConfig:
        """The model shape of ``preset``, with random weights."""
        from minireason.train.recipe import load_preset

        return GPTConfig(**load_preset(self.preset)["model"])

    def train_shape(self) -> tuple[int, int]:
        """``(batch_size, block_size)`` of the preset's pretraining: the shape whose measured
        thread plan generation uses, as after ``train``."""
        from minireason.train.recipe import load_preset

        pretrain = load_preset(self.preset)["pretrain"]
        return pretrain["batch_size"], pretrain["block_size"]

    def decoding(self) -> Decoding:
        """Step 4's decoding with these options' candidates and length."""
        return Decoding(n_candidates=self.candidates, max_new_tokens=self.max_new_tokens)


def run_generate_benchmark(
    config: GPTConfig | None = None,
    decoding: Decoding | None = None,
    n_prompts: int = BenchGenerateConfig.n_prompts,
    prompt_len: int = BenchGenerateConfig.prompt_len,
    rounds: int = BenchGenerateConfig.rounds,
    warmup: int = 1,
    threads: int | None = BenchGenerateConfig.threads,
    with_torch: bool = True,
    load: int = BenchGenerateConfig.load,
    seed: int = 0,
    plan: str | None = BenchGenerateConfig.plan,
    train_shape: tuple[int, int] | None = None,
) -> dict:
    """Run the benchmark; a JSON-ready dict of the figures (see :func:`format_report`).

    The thread plan: the one ``threads`` / ``plan`` force, else the one measured for
    training this model on ``train_shape`` ``(batch_size, seq_len)`` batches (measured now
    when none is cached), else (no ``train_shape``) the process's own."""
    from minireason.nn.calibrate import PlanChoice
    from minireason.nn.threads import plan as current
    from minireason.nn.threads import using_plan

    config = config or GPTConfig(**SMALL_SHAPE)
    decoding = decoding or Decoding()
    if prompt_len + decoding.max_new_tokens > config.block_size:
        raise ValueError(
            f"--prompt-len {prompt_len} + --max-new-tokens {decoding.max_new_tokens} exceeds the "
            f"model's block_size {config.block_size}"
        )
    with busy_load(load):
        if threads or plan or train_shape:
            choice = use_plan(config, *(train_shape or (1, 1)), threads, plan)
        else:
            choice = PlanChoice(current(), "default")
        with using_plan(choice.plan):
            result = _run(
                config, decoding, n_prompts, prompt_len, rounds, warmup, with_torch, load, seed
            )
    result["plan"] = choice.to_dict()
    result["plan_line"] = choice.line()
    return result


def _run(config, decoding, n_prompts, prompt_len, rounds, warmup, with_torch, load, seed) -> dict:
    from minireason.nn.threads import threads
    from minireason.reason.generate import generate

    machine = machine_info()
    model = GPT(config).eval()
    rng = np.random.default_rng(seed)
    prompts = rng.integers(6, config.vocab_size, (n_prompts, prompt_len)).tolist()
    d = decoding

    def numpy_gen(batch):
        return lambda: generate(
            model,
            batch,
            max_new_tokens=d.max_new_tokens,
            temperature=d.temperature,
            top_p=d.top_p,
            eos_id=None,
            rng=seed,
            n_samples=d.n_candidates,
        )

    steppers = {"numpy_one": numpy_gen(prompts[:1]), "numpy_batch": numpy_gen(prompts)}
    torch, note = None, None
    if with_torch:
        try:
            import torch
        except ImportError as exc:
            note = f"PyTorch not importable ({exc}); no comparison"
    else:
        note = "comparison skipped (--no-torch)"
    if torch is not None:
        from minireason.nn.torch_reference import build_torch_model, sample_with_cache

        torch_before = torch.get_num_threads()
        torch.set_num_threads(threads())
        net = build_torch_model(model).eval()

        def torch_gen(batch):
            return lambda: sample_with_cache(
                net, batch, d.n_candidates, d.max_new_tokens, d.temperature, d.top_p, seed
            )

        steppers["torch_one"] = torch_gen(prompts[:1])
        steppers["torch_batch"] = torch_gen(prompts)
    try:
        times, _ = time_interleaved(steppers, rounds, warmup)
    finally:
        if torch is not None:
            torch.set_num_threads(torch_before)
    rows = {"one": d.n_candidates, "batch": d.n_candidates * n_prompts}
    result = {
        "config": asdict(config),
        "decoding": asdict(d),
        "n_prompts": n_prompts,
        "prompt_len": prompt_len,
        "rounds": rounds,
        "warmup": warmup,
        "threads": threads(),
        "load_processes": load,
        "torch_note": note,
        "torch_version": None if torch is None else torch.__version__,
        "systems": {},
    }
    for name, ts in times.items():
        system, what = name.split("_")
        entry = result["systems"].setdefault(system, {})
        entry[f"{what}_s"] = spread(ts)
        entry[f"{what}_reasons_per_s"] = rows[what] / statistics.median(ts)
    if torch is not None:
        np_, th = result["systems"]["numpy"], result["systems"]["torch"]
        result["ratio_latency"] = th["one_s"]["median"] / np_["one_s"]["median"]
        result["ratio_throughput"] = np_["batch_reasons_per_s"] / th["batch_reasons_per_s"]
    result["machine"] = {**machine, "load_average_after": machine_info()["load_average"]}
    return result


def format_report(r: dict) -> str:
    c, d, m = r["config"], r["decoding"], r["machine"]
    lines = [
        r["plan_line"],
        f"model: n_layer {c['n_layer']}, n_head {c['n_head']}, n_embd {c['n_embd']}, vocab "
        f"{c['vocab_size']}; {d['n_candidates']} candidates x {d['max_new_tokens']} tokens, "
        f"temperature {d['temperature']}, top-p {d['top_p']}; prompts of {r['prompt_len']} tokens",
        f"threads {r['threads']}; busy processes meanwhile: {r['load_processes']}; median of "
        f"{r['rounds']} rounds; load average {m['load_average']} -> {m['load_average_after']}",
    ]
    for name, s in r["systems"].items():
        one = s["one_s"]
        lines.append(
            f"{name:6s} one explanation {one['median'] * 1e3:7.1f} ms (quartiles "
            f"{one['p25'] * 1e3:.0f}-{one['p75'] * 1e3:.0f}); {r['n_prompts']} prompts: "
            f"{s['batch_reasons_per_s']:7.1f} reasons/s"
        )
    if "ratio_latency" in r:
        lines.append(
            f"ratio NumPy / PyTorch: latency {r['ratio_latency']:.2f}, throughput "
            f"{r['ratio_throughput']:.2f} (above 1: NumPy faster)"
        )
    else:
        lines.append(r["torch_note"])
    return "\n".join(lines)
