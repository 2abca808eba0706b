"""The bench record as text for the terminal and as markdown for ``benchmarks/RESULTS.md``."""

from __future__ import annotations

from typing import Any

from kdlab.bench.machine import machine_line
from kdlab.reporting.pages import markdown_table
from kdlab.reporting.table import format_table

SPLIT_COLUMNS = {
    "teacher_forward": "teacher fwd",
    "student_forward_backward": "student fwd+bwd",
    "loss": "loss",
    "optimizer": "optimizer",
    "other": "data/other",
}


def _gpu(result: dict[str, Any]) -> bool:
    return result["settings"]["device"].startswith("cuda")


def _unit(pair: dict[str, Any]) -> str:
    """What the pair counts: ``images`` or ``examples`` (records written before text pairs count images)."""
    return pair.get("unit", "images")


def pair_table(pair: dict[str, Any], gpu: bool) -> tuple[list[str], list[list[str]]]:
    """Headers and rows (one per mode): images/s (examples/s), ms/step, the split in ms/step, the epoch in s (``*``:
    extrapolated), and on a GPU the MFU and the projected recipe time."""
    recipe, unit = pair["recipe_epochs"], _unit(pair)
    headers = ["mode", f"{unit}/s", "ms/step", *(f"{v} ms" for v in SPLIT_COLUMNS.values()), "epoch s"]
    headers += ["MFU %"] if gpu else []
    headers += [f"{recipe}-epoch recipe h"] if recipe else []
    rows = []
    for mode in pair["modes"].values():
        row = [mode["label"], f"{mode[f'{unit}_per_s']:,.0f}", f"{mode['ms_per_step']:.2f}"]
        row += [f"{mode['split_ms'][k]:.2f}" for k in SPLIT_COLUMNS]
        row.append(f"{mode['epoch_s']:.1f}{'' if mode['epoch_measured'] else '*'}")
        row += [f"{100 * mode['mfu']:.1f}"] if gpu else []
        row += [f"{mode['projected_recipe_h']:.2f}"] if recipe else []
        rows.append(row)
    return headers, rows


def pair_heading(pair: dict[str, Any]) -> str:
    """What was measured: the models, their cost, the data and the batch."""
    unit = _unit(pair)
    per = f"M MACs/{unit.removesuffix('s')}"
    tokens = f" at {pair['macs_tokens']} tokens" if pair.get("macs_tokens") else ""
    return (
        f"{pair['name']}: teacher {pair['teacher']['name']} ({pair['teacher']['macs'] / 1e6:.1f} {per}{tokens}) → "
        f"student {pair['student']['name']} ({pair['student']['macs'] / 1e6:.2f} {per}{tokens}) · {pair['data']}, "
        f"{pair['train_size']:,} {unit} an epoch · batch {pair['batch_size']}"
    )


def pair_notes(pair: dict[str, Any]) -> list[str]:
    """How it was timed, the ratios and the one-off cost of filling the cache."""
    modes, ratios, notes, unit = pair["modes"], pair["ratios"], [], _unit(pair)
    first = next(iter(modes.values()))
    timed = first["timed"]
    if timed["epochs"]:
        notes.append(f"timed over {timed['epochs']} whole epoch(s) of {pair[unit]:,} {unit}")
    else:
        notes.append(
            f"timed over {timed['steps']} steps; * epoch extrapolated to {pair['train_size']:,} {unit} "
            f"from the measured {unit}/s"
        )
    notes.append(f"split: a separate pass of {first['split_steps']} steps, each phase timed with a device sync")
    labels = {
        "cached_epoch_per_student_epoch": "cached-teacher epoch ÷ student-alone epoch",
        "online_epoch_per_student_epoch": "online-teacher epoch ÷ student-alone epoch",
        "online_speedup_over_reference": f"kdlab with the teacher online ÷ reference loop, {unit}/s",
        "cached_speedup_over_reference": f"kdlab with the teacher cached ÷ reference loop (teacher online), {unit}/s",
        "tinybert_step_per_online_step": "TinyBERT step (hidden-state and attention taps) ÷ KD step, teacher online",
    }
    notes += [f"{labels[k]}: {v:.2f}×" for k, v in ratios.items()]
    if pair["cache_build_s"] is not None:
        notes.append(
            f"filling the cache (one teacher pass over the {pair[unit]:,} {unit}, once per data set): "
            f"{pair['cache_build_s']:.1f} s"
        )
    if pair.get("tokenize_s") is not None:
        notes.append(
            f"tokenising the {pair[unit]:,} texts once before training (kdlab; the reference tokenises every batch "
            f"in its collate_fn, inside the step): {pair['tokenize_s']:.2f} s"
        )
    return notes


def _preamble(result: dict[str, Any]) -> list[str]:
    s = result["settings"]
    lines = [
        f"machine: {machine_line(result['machine'])}",
        f"device {s['device']} · kdlab {s['kdlab_precision']}{', compiled' if s['compile'] else ''} · "
        f"reference {s['reference_precision']} · warm-up {s['warmup']} steps",
    ]
    if _gpu(result):
        lines.append(f"MFU against {s['peak']}")
    return lines


def text(result: dict[str, Any]) -> str:
    """The record as plain text: per pair a heading, a table and the notes."""
    blocks = ["\n".join(_preamble(result))]
    for pair in result["pairs"]:
        headers, rows = pair_table(pair, _gpu(result))
        table = format_table(headers, rows, align="l" + "r" * (len(headers) - 1))
        blocks.append("\n".join([pair_heading(pair), table, *pair_notes(pair)]))
    return "\n\n".join(blocks)


def markdown(result: dict[str, Any]) -> str:
    """The record as markdown: the machine and settings, then per pair a section with its table and notes."""
    lines = [*(f"- {line}" for line in _preamble(result)), f"- measured {result['created']}", ""]
    for pair in result["pairs"]:
        headers, rows = pair_table(pair, _gpu(result))
        lines += [f"### {pair['name']}", "", pair_heading(pair).split(": ", 1)[1], ""]
        lines += [markdown_table(headers, rows), ""]
        lines += [*(f"- {note}" for note in pair_notes(pair)), ""]
    return "\n".join(lines)
