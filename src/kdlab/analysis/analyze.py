"""``kdlab analyze``: every what-transferred analysis on one teacher, its students and the independent students."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from kdlab.analysis.adversarial import calibrate_epsilon, fooled_per_image, rates
from kdlab.analysis.boundaries import boundary_ious, summarise
from kdlab.analysis.comparison import compare, control_pairs, win_rates
from kdlab.analysis.domains import domain_predictions, domain_rows
from kdlab.analysis.gradcam import MEASURES, cam_similarities
from kdlab.analysis.invariance import invariance_matches
from kdlab.analysis.representations import cka_matrix
from kdlab.analysis.stats import paired_scores
from kdlab.analysis.subjects import Subjects
from kdlab.data.domains import domain_test_sets
from kdlab.data.loader import TensorLoader, to_float

STRENGTHS = {"jitter": (0.3, 0.4, 0.5, 0.6), "crop": (0.3, 0.4, 0.5, 0.6), "shift": (0.05, 0.1, 0.15, 0.2)}


def _last_stage(model: torch.nn.Module) -> str | None:
    names = getattr(model, "stage_names", ())
    return names[-1] if names else None


def _candidates(s: Subjects) -> dict[str, str]:
    """The students' labels → their methods (the candidates of every comparison)."""
    return {name: s.methods.get(name, name) for name in s.students}


def localisation(s: Subjects, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    """The CAM win rate of every student against every independent student (the references), per image with ties
    split; per method the mean over its (student seed × reference seed) pairs with a bootstrap interval over images
    and seeds; the control is the same statistic between independent students (every ordered pair of two of them:
    its mean is 50 % by symmetry, its spread is the null the methods are judged against). ``diagnosis``: the
    control pairs under every CAM similarity of :data:`MEASURES`, their ties, and the image-sampling band."""
    layers = {name: _last_stage(m) for name, m in {"teacher": s.teacher, **s.students, **s.independent}.items()}
    missing = [name for name, layer in layers.items() if layer is None]
    if missing:
        return {"skipped": f"no stage_names (last conv stage) on {', '.join(missing)}"}
    teacher = (s.teacher, layers["teacher"])
    sims = {
        name: cam_similarities(teacher, (m, layers[name]), x, y) for name, m in {**s.students, **s.independent}.items()
    }
    refs = list(s.independent)
    out = win_rates({n: v["cosine"] for n, v in sims.items()}, _candidates(s), refs)
    diagnosis: dict[str, Any] = {"sampling_band": 100.0 * 1.96 * (0.25 / len(x)) ** 0.5, "measures": {}}
    for measure in MEASURES:
        pairs, ties = (
            control_pairs({r: sims[r][measure] for r in refs}, refs, paired_scores) if len(refs) > 1 else ({}, 0)
        )
        diagnosis["measures"][measure] = {"control_pairs": pairs, "ties": ties}
    return {"layer": layers["teacher"], "images": len(x), **out, "diagnosis": diagnosis}


def vulnerability(s: Subjects, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    """Fooling rates under I-FGSM crafted on the teacher (ε for ≈ 85 % teacher fooling), and under the same
    attack crafted on the control independent student Ind′ (an unrelated network for the others); ``transfer``
    and ``control_transfer``: each student's fooling minus each independent student's, per image that fooled the
    attacked network (points), against the same difference between independent students."""
    epsilon, reached = calibrate_epsilon(s.teacher, x, y, target=0.85)
    models = {**s.students, **s.independent}
    out: dict[str, Any] = {"epsilon": epsilon, "calibration_rate": 100 * reached, "images": len(x)}
    fooled, hits = fooled_per_image(s.teacher, models, x, y, epsilon)
    out["teacher_attack"] = rates(fooled, hits)
    if fooled.any():
        out["transfer"] = compare(hits, _candidates(s), list(s.independent))
    ind = list(s.independent)
    if len(ind) > 1:
        others = {k: v for k, v in models.items() if k != ind[1]}
        fooled, hits = fooled_per_image(s.independent[ind[1]], others, x, y, epsilon)
        out["control_attack"] = rates(fooled, hits)
        if fooled.any():
            out["control_transfer"] = compare(hits, _candidates(s), [r for r in ind if r != ind[1]])
    return out


def invariances(s: Subjects, x: torch.Tensor) -> tuple[dict[str, Any], dict[str, Any]]:
    """The agreement curves per transform (``{kind: {"strengths", name: [%]}}``) and, per transform, the comparison
    of each image's agreement averaged over the strengths (the teacher is a candidate too: the claim is testable
    only where it is more invariant than the independent students)."""
    models = {"teacher": s.teacher, **s.students, **s.independent}
    curves: dict[str, Any] = {}
    transfer: dict[str, Any] = {}
    for kind, levels in STRENGTHS.items():
        curves[kind] = {"strengths": list(levels)}
        units = {}
        for name, model in models.items():
            matches = torch.stack([invariance_matches(model, x, kind, level) for level in levels])  # type: ignore[arg-type]
            curves[kind][name] = (100.0 * matches.double().mean(-1)).tolist()
            units[name] = matches.float().mean(0)
        transfer[kind] = compare(units, {"teacher": "teacher", **_candidates(s)}, list(s.independent))
    return curves, transfer


def boundaries(s: Subjects, x: torch.Tensor) -> tuple[dict[str, Any], dict[str, Any]]:
    """Region IoU with the teacher per model (mean, std over the triplets) and its comparison per triplet."""
    ious = boundary_ious(s.teacher, {**s.students, **s.independent}, x, s.info.num_classes)
    return summarise(ious), compare(ious, _candidates(s), list(s.independent))


def representations(s: Subjects, x: torch.Tensor, y: torch.Tensor) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Linear-CKA matrices (teacher stages × student stages), and the comparison of the last stages' CKA — one
    number per model, so its interval resamples the model seeds only."""
    stages = getattr(s.teacher, "stage_names", ())
    models = {**s.students, **s.independent}
    batches = TensorLoader(x, y, 250)
    cka = {
        n: {"teacher": list(stages), "student": list(m.stage_names),  # type: ignore[union-attr]
            "matrix": cka_matrix(s.teacher, m, batches.epoch(0)).tolist()}
        for n, m in models.items()
        if stages and getattr(m, "stage_names", ())
    }  # fmt: skip
    if set(cka) != set(models):
        return cka, None
    units = {n: torch.tensor([c["matrix"][-1][-1]], dtype=torch.float64) for n, c in cka.items()}
    return cka, compare(units, _candidates(s), list(s.independent), resampled="model seeds")


def analyze(s: Subjects, images: int = 1000) -> dict[str, Any]:
    """Every analysis; plain numbers (percentages where rates, points where differences)."""
    x, y = s.test_images(images)
    models = {**s.students, **s.independent}
    results: dict[str, Any] = {
        "teacher": s.teacher_name,
        "models": {name: s.methods[name] for name in models},
        "images": len(x),
        "localisation": localisation(s, x, y),
        "adversarial": vulnerability(s, x[:500], y[:500]),
    }
    results["invariance"], results["invariance_transfer"] = invariances(s, x)
    results["boundaries"], test_boundaries = boundaries(s, x)
    results["boundary_transfer"] = {"test": test_boundaries}  # replaced by the domains' own when there are domains
    results["cka"], cka_transfer = representations(s, x, y)
    if cka_transfer is not None:
        results["cka_transfer"] = cka_transfer
    if s.data.get("name") == "domains":
        base, seed = str(s.data.get("base", "mnist")), int(s.data.get("seed", 0))  # type: ignore[call-overload]
        sets = domain_test_sets(base, seed)
        predictions = domain_predictions({"teacher": s.teacher, **models}, sets)
        results["domains"], results["domain_transfer"] = domain_rows(predictions), {}
        for domain, (labels, predicted) in predictions.items():
            correct = {name: p == labels for name, p in predicted.items()}
            results["domain_transfer"][domain] = compare(correct, _candidates(s), list(s.independent))
        results["boundaries_by_domain"], results["boundary_transfer"] = {}, {}
        for domain, (dx, _) in sets.items():
            shown = to_float(dx[:images])
            same = torch.equal(shown, x)  # the students' test split is this rendering: measured above already
            results["boundaries_by_domain"][domain], results["boundary_transfer"][domain] = (
                (results["boundaries"], test_boundaries) if same else boundaries(s, shown)
            )
    return results


def default_out(paths: list[Path]) -> Path:
    return Path(paths[0]).parent / "analysis"
