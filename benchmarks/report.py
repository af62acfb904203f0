"""The markdown tables of a benchmark results dict (what `benchmarks.run` writes beside the JSON)."""

from typing import Dict, List


def _ms(seconds: Dict[str, float]) -> str:
  return f"{1e3 * seconds['median']:.2f} [{1e3 * seconds['q25']:.2f}, {1e3 * seconds['q75']:.2f}]"


def _table(header: List[str], rows: List[List[str]]) -> List[str]:
  return (
    ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    + ["| " + " | ".join(row) + " |" for row in rows]
    + [""]
  )


def _diffusion_tables(diffusion: Dict) -> List[str]:
  twin = diffusion["torch"]
  peak = diffusion["peak"].get("flops_per_second")
  lines = [
    "## Diffusion: denoiser train steps and samplers against their PyTorch twins",
    "",
    (
      f"PyTorch {twin['version']}, {twin['threads']} threads"
      if "version" in twin
      else f"PyTorch: {twin['skipped']}"
    )
    + (
      f"; matrix-product peak {peak / 1e9:.0f} GFLOP/s (float32 "
      f"{diffusion['peak']['matmul_size']}^3, timed in the same rounds)."
      if peak
      else "."
    ),
    "",
  ]
  percent = lambda e: f"{100 * e['fraction_of_peak']:.1f}%" if "fraction_of_peak" in e else "-"
  ratio = lambda e: f"{e['jax_over_torch']:.2f}x" if "jax_over_torch" in e else "-"
  if diffusion["train_steps"]:
    rows = [
      [
        workload,
        str(e["batch_size"]),
        f"{e['first_call_seconds']:.2f}",
        _ms(e["step_seconds"]),
        f"{e['samples_per_second']:.0f}",
        percent(e),
        _ms(e["torch_step_seconds"]) if "torch_step_seconds" in e else "-",
        f"{e['torch_samples_per_second']:.0f}" if "torch_samples_per_second" in e else "-",
        ratio(e),
      ]
      for workload, e in diffusion["train_steps"].items()
    ]
    lines += _table(
      [
        "train step",
        "batch",
        "compile + 1st step s",
        "step ms",
        "samples/s",
        "of peak",
        "torch step ms",
        "torch samples/s",
        "jax / torch",
      ],
      rows,
    )
  if diffusion["sampling"]:
    rows = [
      [
        workload,
        f"{e['sampler']}, {e['num_steps']} steps",
        str(e["num_samples"]),
        f"{e['first_call_seconds']:.2f}",
        f"{e['seconds']['median']:.2f}",
        f"{e['samples_per_second']:.0f}",
        percent(e),
        f"{e['torch_seconds']['median']:.2f}" if "torch_seconds" in e else "-",
        f"{e['torch_samples_per_second']:.0f}" if "torch_samples_per_second" in e else "-",
        ratio(e),
      ]
      for workload, e in diffusion["sampling"].items()
    ]
    lines += _table(
      [
        "sampler",
        "steps",
        "samples",
        "compile + 1st call s",
        "call s",
        "samples/s",
        "of peak",
        "torch call s",
        "torch samples/s",
        "jax / torch",
      ],
      rows,
    )
  return lines


def to_markdown(results: Dict) -> str:
  machine = results["machine"]
  lines = [
    f"# Benchmarks: {machine['cpu_model']}, {machine['cores']} cores, "
    f"{machine['backend']} ({machine['num_devices']} x {machine['device_kind']})",
    "",
    f"{machine['date']}; jax {machine['jax']}, jaxlib {machine['jaxlib']}; load average "
    f"{machine['load_average_at_start'][0]} at the start, "
    f"{machine.get('load_average_at_end', ['?'])[0]} at the end; data-parallel mode "
    f"{results['options'].get('parallel_mode') or 'of the configs (auto)'}. Step times: "
    "median [quartiles] in ms.",
    "",
  ]
  if "interrupted" in results:
    stop = results["interrupted"]
    lines += [
      f"**Interrupted by {stop['signal']}**: partial results. Finished: "
      f"{', '.join(results.get('sections_finished', [])) or 'nothing'}; not run: "
      f"{', '.join(stop['sections_not_run']) or 'nothing'}.",
      "",
    ]
  if "peak" in results:
    peak = results["peak"]
    lines += [
      f"Matrix-product peak (float32 {peak['matmul_size']}^3, timed in the same rounds): "
      f"{peak['flops_per_second'] / 1e9:.0f} GFLOP/s.",
      "",
    ]
  torch_networks = results.get("torch", {}).get("networks", {})
  if "steps" in results:
    lines += ["## Train step (compiled, data on the devices)", ""]
    rows = []
    for name, e in results["steps"].items():
      flops = e.get("flops_per_step")
      row = [
        name,
        str(e["batch_size"]),
        str(e["num_devices"]),
        f"{e['first_call_seconds']:.2f}",
        _ms(e["step_seconds"]),
        f"{e['samples_per_second']:.0f}",
        f"{flops / 1e9:.3f}" if flops else "-",
        f"{e['flops_per_second'] / 1e9:.1f}" if flops else "-",
        f"{100 * e['fraction_of_peak']:.1f}%" if flops else "-",
      ]
      if name in torch_networks:
        t = torch_networks[name]
        row += [
          _ms(t["step_seconds"]),
          f"{t['samples_per_second']:.0f}",
          f"{e['samples_per_second'] / t['samples_per_second']:.2f}x",
        ]
      else:
        row += ["-", "-", "-"]
      rows.append(row)
    lines += _table(
      [
        "network",
        "batch",
        "devices",
        "compile + 1st step s",
        "step ms",
        "samples/s",
        "GFLOP/step",
        "GFLOP/s",
        "of peak",
        "torch step ms",
        "torch samples/s",
        "jax / torch",
      ],
      rows,
    )
  if "skipped" in results.get("torch", {}):
    lines += [f"PyTorch: {results['torch']['skipped']}", ""]
  if "diffusion" in results:
    lines += _diffusion_tables(results["diffusion"])
  if "loop" in results:
    lines += ["## Training loop (`train_and_evaluate`, logging and checkpointing on)", ""]
    rows = [
      [
        name,
        str(e["num_steps"]),
        f"{e['samples_per_second']:.0f}",
        f"{e['bare_samples_per_second']:.0f}",
        f"{100 * e['fraction_of_bare_step']:.0f}%",
      ]
      for name, e in results["loop"].items()
    ]
    lines += _table(
      ["network", "steps", "loop samples/s", "bare step samples/s", "loop / step"], rows
    )
  if "input" in results:
    lines += ["## Input pipeline (`data.create_iterator`, digits28 train split)", ""]
    rows = [
      [
        str(e["batch_size"]),
        f"{e['batches_per_second']:.0f}",
        _ms(e["seconds_per_batch"]),
        _ms(e["put_batch_seconds"]),
      ]
      for e in results["input"].values()
    ]
    lines += _table(["batch", "batches/s", "ms per batch", "host -> device ms"], rows)
  if "eval" in results or "evaluate_cli" in results:
    lines += ["## Evaluation", ""]
    rows = []
    if "eval" in results:
      ssim, prdc = results["eval"]["ssim"], results["eval"]["prdc"]
      rows.append(
        [
          f"SSIM, {ssim['num_images']} images 28x28",
          f"{ssim['first_call_seconds']:.2f}",
          f"{ssim['seconds']['median']:.2f}",
        ]
      )
      rows.append(
        [
          f"precision/recall + density/coverage, {prdc['num_real']} x "
          f"{prdc['num_fake']} features of width {prdc['width']}",
          f"{prdc['first_call_seconds']:.2f}",
          f"{prdc['seconds']['median']:.2f}",
        ]
      )
    if "evaluate_cli" in results:
      e = results["evaluate_cli"]
      rows.append(
        [
          f"`python -m experiments.evaluate`, {e['config']}, {e['num_samples']} samples",
          f"{e['seconds']:.1f}",
          "-",
        ]
      )
    lines += _table(["what", "first call s", "again s"], rows)
  if "scaling" in results:
    scaling = results["scaling"]
    counts = sorted({int(c) for v in scaling["samples_per_second"].values() for c in v})
    kind = "forced host devices" if scaling["forced_host_devices"] else "devices"
    lines += [f"## Samples/s by device count ({kind}, same global batch)", ""]
    rows = [
      [name] + [f"{per_count[str(c)]:.0f}" for c in counts]
      for name, per_count in scaling["samples_per_second"].items()
    ]
    lines += _table(["network"] + [str(c) for c in counts], rows)
  if "multi_seed" in results:
    lines += _multi_seed_tables(results["multi_seed"])
  return "\n".join(lines)


def _multi_seed_tables(multi_seed: Dict) -> List[str]:
  lines = [
    f"## Several seeds at once (`training.multi_seed`, {multi_seed['steps_per_call']} steps "
    "per call)",
    "",
    "Per step of all S seeds; ratios are over S single-seed steps called from Python with "
    "the same conv implementation (and with xla's).",
    "",
  ]
  rows = []
  for network, entry in multi_seed["networks"].items():
    for count, per_count in entry["seeds"].items():
      for impl, modes in per_count["conv_impls"].items():
        for mode, e in modes.items():
          peak = e.get("fraction_of_peak")
          rows.append(
            [
              network,
              count,
              impl,
              mode,
              f"{e['first_call_seconds']:.1f}",
              _ms(e["step_seconds"]),
              f"{e['over_python_per_seed']:.2f}x",
              f"{e['over_xla_python_per_seed']:.2f}x" if "over_xla_python_per_seed" in e else "-",
              f"{100 * peak:.1f}%" if peak is not None else "-",
            ]
          )
  return lines + _table(
    [
      "network",
      "S",
      "conv_impl",
      "mode",
      "compile + 1st call s",
      "step ms",
      "/ python per seed",
      "/ xla python per seed",
      "of peak",
    ],
    rows,
  )
