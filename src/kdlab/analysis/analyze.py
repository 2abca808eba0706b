"""``kdlab analyze``: every what-transferred analysis on one teacher, its students and the independent students."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from kdlab.analysis.adversarial import calibrate_epsilon, fooling_rates
from kdlab.analysis.boundaries import boundary_similarities
from kdlab.analysis.domains import domain_transfer
from kdlab.analysis.gradcam import teacher_similarity
from kdlab.analysis.invariance import invariance_agreement
from kdlab.analysis.representations import cka_matrix
from kdlab.analysis.stats import CONFIDENCE, RESAMPLED, ROUNDS, estimate, paired_scores
from kdlab.analysis.subjects import Subjects
from kdlab.data.domains import domain_test_sets
from kdlab.data.loader import TensorLoader, to_float

STRENGTHS = {"jitter": (0.3, 0.4, 0.5, 0.6), "crop": (0.3, 0.4, 0.5, 0.6), "shift": (0.05, 0.1, 0.15, 0.2)}


def _last_stage(model: torch.nn.Module) -> str | None:
    names = getattr(model, "stage_names", ())
    return names[-1] if names else None


def localisation(s: Subjects, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    """The CAM win rate of every student against every independent student (the references), per image with ties
    split; per method the mean over its (student seed × reference seed) pairs with a bootstrap interval over images
    and seeds; the control is the same statistic between independent students (every ordered pair of two of them:
    its mean is 50 % by symmetry, its spread is the null the methods are judged against)."""
    layers = {name: _last_stage(m) for name, m in {"teacher": s.teacher, **s.students, **s.independent}.items()}
    missing = [name for name, layer in layers.items() if layer is None]
    if missing:
        return {"skipped": f"no stage_names (last conv stage) on {', '.join(missing)}"}
    teacher = (s.teacher, layers["teacher"])
    sims = {name: teacher_similarity(teacher, (m, layers[name]), x, y) for name, m in {**s.students,
                                                                                      **s.independent}.items()}
    refs = list(s.independent)
    out: dict[str, Any] = {"layer": layers["teacher"], "images": len(x), "references": refs, "pairs": {},
                           "methods": {}, "bootstrap": {"rounds": ROUNDS, "confidence": CONFIDENCE,
                                                       "resampled": RESAMPLED}}  # fmt: skip
    for name in s.students:
        out["pairs"][name] = {r: 100.0 * float(paired_scores(sims[name], sims[r]).mean()) for r in refs}
    for method, names in _by_method(s.students, s.methods).items():
        scores = torch.stack([torch.stack([paired_scores(sims[n], sims[r]) for r in refs]) for n in names])
        ties = int(torch.stack([sims[n] == sims[r] for n in names for r in refs]).sum())
        out["methods"][method] = estimate(scores, ties).as_dict()
    ordered = [(a, b) for a in refs for b in refs if a != b]
    if ordered:
        scores = torch.stack([paired_scores(sims[a], sims[b]) for a, b in ordered])
        rates = (100.0 * scores.mean(-1)).tolist()
        out["control_pairs"] = {f"{a} vs {b}": rate for (a, b), rate in zip(ordered, rates, strict=True)}
        ties = int(torch.stack([sims[a] == sims[b] for a, b in ordered]).sum())
        out["control"] = estimate(scores, ties).as_dict()
    return out


def _by_method(students: dict[str, torch.nn.Module], methods: dict[str, str]) -> dict[str, list[str]]:
    """Student labels grouped by their method, in order."""
    grouped: dict[str, list[str]] = {}
    for name in students:
        grouped.setdefault(methods.get(name, name), []).append(name)
    return grouped


def vulnerability(s: Subjects, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    """Fooling rates under I-FGSM crafted on the teacher (ε for ≈ 85 % teacher fooling), and under the same
    attack crafted on the control independent student Ind′ (an unrelated network for the others)."""
    epsilon, reached = calibrate_epsilon(s.teacher, x, y, target=0.85)
    models = {**s.students, **s.independent}
    out: dict[str, Any] = {"epsilon": epsilon, "teacher_attack": fooling_rates(s.teacher, models, x, y, epsilon)}
    ind = list(s.independent)
    if len(ind) > 1:
        others = {k: v for k, v in models.items() if k != ind[1]}
        out["control_attack"] = fooling_rates(s.independent[ind[1]], others, x, y, epsilon)
    out["calibration_rate"], out["images"] = 100 * reached, len(x)
    return out


def invariances(s: Subjects, x: torch.Tensor) -> dict[str, Any]:
    models = {"teacher": s.teacher, **s.students, **s.independent}
    out: dict[str, Any] = {}
    for kind, levels in STRENGTHS.items():
        out[kind] = {"strengths": list(levels)}
        for name, model in models.items():
            out[kind][name] = [invariance_agreement(model, x, kind, level) for level in levels]  # type: ignore[arg-type]
    return out


def analyze(s: Subjects, images: int = 1000) -> dict[str, Any]:
    """Every analysis; plain numbers (percentages where rates)."""
    x, y = s.test_images(images)
    models = {**s.students, **s.independent}
    results: dict[str, Any] = {
        "teacher": s.teacher_name,
        "models": {name: s.methods[name] for name in models},
        "images": len(x),
        "localisation": localisation(s, x, y),
        "adversarial": vulnerability(s, x[:500], y[:500]),
        "invariance": invariances(s, x),
        "boundaries": boundary_similarities(s.teacher, models, x, s.info.num_classes),
    }
    batches = TensorLoader(x, y, 250)
    stages = getattr(s.teacher, "stage_names", ())
    results["cka"] = {
        n: {
            "teacher": list(stages),
            "student": list(m.stage_names),
            "matrix": cka_matrix(s.teacher, m, batches.epoch(0)).tolist(),
        }  # type: ignore[union-attr]
        for n, m in models.items()
        if stages and getattr(m, "stage_names", ())
    }
    if s.data.get("name") == "domains":
        base, seed = str(s.data.get("base", "mnist")), int(s.data.get("seed", 0))  # type: ignore[call-overload]
        results["domains"] = domain_transfer(s.teacher, models, base=base, seed=seed)
        results["boundaries_by_domain"] = {
            domain: boundary_similarities(s.teacher, models, to_float(dx[:images]), s.info.num_classes)
            for domain, (dx, _) in domain_test_sets(base, seed).items()
        }
    return results


def default_out(paths: list[Path]) -> Path:
    return Path(paths[0]).parent / "analysis"
