"""``kdlab study fidelity``: Stanton et al. (2021), "Does knowledge distillation really work?", small scale.

Six experiments on Fashion-MNIST (Stanton et al. 2021, *Does Knowledge Distillation Really Work?*), each a list of
conditions run through the ordinary
workflow, each ending in a table, a figure and a paragraph that says whether the paper's claim held on our
data and by how much. The verdicts are computed from the measured numbers, never written in advance.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from kdlab.core.errors import ConfigError, suggest
from kdlab.core.files import write_json
from kdlab.reporting.pages import write_report
from kdlab.studies.fidelity_data import augmentation, easy, ensemble, temperature
from kdlab.studies.fidelity_optim import interpolation, optimization
from kdlab.studies.fidelity_setup import PRESETS, Scale, base_config
from kdlab.studies.runner import StudyContext
from kdlab.studies.verdicts import RULE, Outcome, word

EXPERIMENTS: dict[str, Callable[[StudyContext, Scale], Outcome]] = {
    "easy": easy,
    "ensemble": ensemble,
    "temperature": temperature,
    "augmentation": augmentation,
    "optimization": optimization,
    "interpolation": interpolation,
}


def run_study(
    preset: str, folder: Path, only: list[str] | None = None, progress: bool = True, overrides: list[str] | None = None
) -> Path:
    """Run the preset's experiments (all, or ``only`` these) into ``folder`` and write the report."""
    if preset not in PRESETS:
        raise ConfigError(
            f"Unknown study preset {preset!r}.{suggest(preset, PRESETS)} Valid presets: {', '.join(PRESETS)}."
        )
    names = only or list(EXPERIMENTS)
    for name in names:
        if name not in EXPERIMENTS:
            raise ConfigError(
                f"Unknown experiment {name!r}.{suggest(name, EXPERIMENTS)} Valid experiments: {', '.join(EXPERIMENTS)}."
            )
    scale = PRESETS[preset]
    ctx = StudyContext(folder, base_config(scale), progress, list(overrides or []))
    sections, numbers = [], {}
    for name in names:
        ctx.current = {}
        outcome = EXPERIMENTS[name](ctx, scale)
        cost = sum(ctx.current.values())
        outcome.section.paragraphs.append(
            f"Compute: {cost / 60:.1f} min of run wall time on this machine over the {len(ctx.current)} runs "
            "(teachers included) this experiment uses; runs shared with another experiment count in both."
        )
        sections.append(outcome.section)
        numbers[name] = outcome.numbers | {"run_wall_time_s": cost}
    intro = [
        f"Preset '{preset}': Fashion-MNIST, {scale.train_size or 'all'} training images (stratified subset), "
        f"{scale.test_size or 'all 10,000'} test images, {len(scale.seeds)} seeds (mean ± sample std), students "
        f"trained {scale.epochs} epochs, teachers {scale.teacher_epochs}. Every number below was measured by this run; "
        f"every verdict is computed from them. Verdict rule: {RULE}.",
        f"Total compute: {sum(ctx.used.values()) / 60:.1f} min of run wall time over {len(ctx.used)} runs (each "
        "counted once; a second invocation reuses finished runs).",
    ]
    write_json(folder / "results.json", {"preset": preset, "scale": vars(scale) | {}, "experiments": numbers})
    write_report(folder, "kdlab study fidelity — does knowledge distillation really work?", intro, sections)
    return folder


__all__ = ["EXPERIMENTS", "PRESETS", "Scale", "run_study", "word"] + [
    f.__name__ for f in (augmentation, easy, ensemble, interpolation, optimization, temperature)
]
