"""The EKD study's report: one table of every condition × depth, accuracy vs multiply-adds, and verdicts
computed from the measured numbers (our pass criteria for the EKD paper's claims)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from kdlab.core.files import write_json
from kdlab.reporting.pages import Section, write_report
from kdlab.reporting.plotting import pyplot, save_png
from kdlab.studies.runner import Stat
from kdlab.studies.verdicts import RULE, word

LABELS = {
    "alone": "(a) each depth alone",
    "joint_ce": "(b) joint, CE only",
    "joint_kl": "(c) joint + KL",
    "ekd": "(d) EKD (joint + KL + attention)",
    "ekd_sad": "(d′) EKD, SAD form (weight 1)",
    "ekd_at50": "(d″) EKD, AT with β/2 = 50",
    "offline_kd": "(e) offline KD from (a)'s full net",
}
TOLERANCE = 0.005  # within 0.5 point counts as matching (our criterion)


def _stat(runs: list[dict[str, Any]], metric: str) -> Stat:
    return Stat([r[metric] for r in runs if metric in r])


def _table(figures: dict[str, dict[int, list[dict[str, Any]]]]) -> tuple[list[str], list[list[str]]]:
    headers = [
        "condition",
        "depth",
        "accuracy %",
        "acc. with full-net BN %",
        "agreement with own full net %",
        "params",
        "MACs",
        "CPU ms/img",
        "train min",
    ]
    rows = []
    for condition, depths in figures.items():
        for d in sorted(depths):
            runs = depths[d]
            first = runs[0]
            rows.append(
                [
                    LABELS[condition],
                    str(d),
                    _stat(runs, "accuracy").show(),
                    _stat(runs, "accuracy_full_bn").show(),
                    _stat(runs, "full_agreement").show(),
                    f"{first['parameters'] / 1e3:.1f}k",
                    f"{first['macs'] / 1e6:.2f}M",
                    f"{statistics.median(r['latency_ms'] for r in runs):.2f}",
                    f"{_stat(runs, 'train_time_s').mean / 60:.1f}",
                ]
            )
    return headers, rows


def _plot(path: Path, figures: dict[str, dict[int, list[dict[str, Any]]]]) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, (condition, depths) in enumerate(figures.items()):
        ds = sorted(depths)
        macs = [depths[d][0]["macs"] / 1e6 * (1 + 0.012 * (i - 2)) for d in ds]  # small offsets keep bars apart
        acc = [_stat(depths[d], "accuracy") for d in ds]
        ax.errorbar(
            macs,
            [100 * a.mean for a in acc],
            yerr=[100 * a.std for a in acc],
            marker="o",
            capsize=3,
            label=LABELS[condition],
        )
    ax.set_xlabel("multiply-adds per image (M)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Accuracy vs cost per depth (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_png(fig, path)


def _diff(a: Stat, b: Stat) -> str:
    return f"{100 * (a.mean - b.mean):+.2f} pt ({a.show()} vs {b.show()})"


def verdicts(
    figures: dict[str, dict[int, list[dict[str, Any]]]], checks: dict[str, dict[str, float]]
) -> tuple[list[str], dict[str, Any]]:
    """Paragraphs and numbers for each claim, computed from ``figures``."""
    depths = sorted(figures["alone"])
    full, subs = depths[-1], depths[:-1]
    acc = {c: {d: _stat(runs, "accuracy") for d, runs in ds.items()} for c, ds in figures.items()}
    out, numbers = [], {}
    gaps = {d: acc["ekd"][d].mean - acc["alone"][d].mean for d in subs}
    held = all(g >= -TOLERANCE for g in gaps.values())
    numbers["subnets_vs_alone"] = gaps
    worst = min(subs, key=lambda d: gaps[d])
    out.append(
        f"Claim 'sub-nets trained with EKD are at least as good as the same nets trained individually' (within "
        f"−0.5 pt): {word(held, acc['ekd'][worst], acc['alone'][worst], -TOLERANCE)}. "
        + "; ".join(f"depth {d}: {_diff(acc['ekd'][d], acc['alone'][d])}" for d in subs)
        + "."
    )
    drop = acc["ekd"][full].mean - acc["alone"][full].mean
    numbers["full_vs_alone"] = drop
    out.append(
        f"Claim 'the full net keeps its accuracy' (drop ≤ 0.5 pt vs the full net trained alone): "
        f"{word(drop >= -TOLERANCE, acc['ekd'][full], acc['alone'][full], -TOLERANCE)}; "
        f"{_diff(acc['ekd'][full], acc['alone'][full])}."
    )
    for a, b, claim in (
        ("ekd", "joint_ce", "EKD sub-nets beat joint training with labels only"),
        ("joint_kl", "joint_ce", "the KL term helps the sub-nets"),
        ("ekd", "joint_kl", "the attention term adds on top of KL"),
        ("ekd", "offline_kd", "EKD sub-nets match or beat offline KD from a separately trained full net"),
    ):
        diffs = {d: acc[a][d].mean - acc[b][d].mean for d in subs}
        tolerance = TOLERANCE if b == "offline_kd" else 0.0
        ok = all(v > -tolerance if tolerance else v > 0 for v in diffs.values())
        numbers[f"{a}_vs_{b}"] = diffs
        least = min(subs, key=lambda d: diffs[d])
        out.append(
            f"Claim '{claim}': {word(ok, acc[a][least], acc[b][least], -tolerance)}; "
            + "; ".join(f"depth {d}: {_diff(acc[a][d], acc[b][d])}" for d in subs)
            + "."
        )
    variants = [c for c in ("ekd_sad", "ekd_at50") if c in figures]
    if variants:
        numbers["variants_vs_joint_kl"] = {
            c: {d: acc[c][d].mean - acc["joint_kl"][d].mean for d in depths} for c in variants
        }
        out.append(
            "Attention-term variants (our reconstruction's free choices), each against joint + KL without attention: "
            + "; ".join(
                f"{LABELS[c]}: " + ", ".join(f"depth {d} {_diff(acc[c][d], acc['joint_kl'][d])}" for d in depths)
                for c in variants
            )
            + "."
        )
    bn = {
        d: _stat(figures["ekd"][d], "accuracy").mean - _stat(figures["ekd"][d], "accuracy_full_bn").mean for d in subs
    }
    numbers["recalibration_gain"] = bn
    out.append(
        "BatchNorm recalibration (each sub-net's statistics re-estimated on up to 2,048 training images; the full "
        "net's statistics and all weights unchanged) moves the EKD sub-nets' accuracy by "
        + ", ".join(f"{100 * v:+.2f} pt at depth {d}" for d, v in bn.items())
        + " compared with using the full net's statistics (the main pitfall of sub-nets sharing BatchNorm)."
    )
    worst_switch = max((v for c in checks.values() for v in c.values()), default=0.0)
    numbers["switch_max_accuracy_difference"] = worst_switch
    out.append(
        f"Switching depth at inference, exported plain networks and the accuracy recorded after training agree: "
        "the largest accuracy difference over every depth of the seed-0 run of (b), (c), (d) is "
        f"{100 * worst_switch:.2f} pt."
    )
    return out, numbers


def write(
    folder: Path,
    preset: str,
    scale: dict[str, Any],
    figures: dict[str, dict[int, list[dict[str, Any]]]],
    checks: dict[str, dict[str, float]],
    wall_s: float,
    runs: int,
) -> None:
    paragraphs, numbers = verdicts(figures, checks)
    section = Section(
        "Results",
        paragraphs=paragraphs,
        tables=[_table(figures)],
        figures=[(_plot(folder / "accuracy_vs_macs.png", figures), "Test accuracy vs multiply-adds, per condition")],
    )
    intro = [
        f"Preset '{preset}': Fashion-MNIST, {scale['train_size'] or 'all'} training images (stratified subset), "
        f"{scale['test_size'] or 'all 10,000'} test images; depth-switchable CIFAR ResNet of width {scale['width']} "
        f"with depths {', '.join(map(str, scale['depths']))} (blocks per stage "
        f"{', '.join(str((d - 2) // 6) for d in scale['depths'])}, first blocks kept, shared affine BatchNorm with "
        f"recalibrated statistics per sub-net); SGD 0.1 (Nesterov, weight decay 5e-4, cosine), {scale['epochs']} "
        f"epochs, batch {scale['batch_size']}, seeds {', '.join(map(str, scale['seeds']))} (mean ± sample std). "
        "EKD: τ = 3, CE + τ²·KL per sub-net, attention transfer (β/2 = 500 per stage), teacher terms detached. "
        "Offline KD: kd with τ = 3, α = 0.5. Every number was measured by this run; every verdict is computed "
        f"from them. Verdict rule: {RULE}.",
        f"Compute: {wall_s / 60:.1f} min of run wall time over {runs} runs on this machine.",
    ]
    flat = {c: {str(d): runs for d, runs in ds.items()} for c, ds in figures.items()}
    write_json(
        folder / "results.json",
        {
            "preset": preset,
            "scale": scale,
            "figures": flat,
            "checks": checks,
            "verdicts": numbers,
            "run_wall_time_s": wall_s,
        },
    )
    write_report(folder, "kdlab study ekd — depth-level dynamic networks with embedded KD", intro, [section])
