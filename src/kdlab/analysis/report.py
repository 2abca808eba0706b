"""The ``kdlab analyze`` report: results.json plus a self-contained report.html (and report.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kdlab.analysis import claims, figures
from kdlab.analysis.comparison import verdicts
from kdlab.analysis.stats import RULE
from kdlab.analysis.subjects import Subjects
from kdlab.core.files import write_json
from kdlab.reporting.pages import Section, write_report


def _f(value: float) -> str:
    return f"{value:.2f}"


def comparison_table(
    block: dict[str, Any], quantity: str, higher: bool = True, paper: dict[str, float] | None = None
) -> tuple[list[str], list[list[str]]]:
    """One row per method of a comparison block (:func:`kdlab.analysis.comparison.compare`) with its verdict, and
    the control's row."""
    words = verdicts(block, higher, paper)
    by_method: dict[str, list[float]] = {}
    for label, row in block["pairs"].items():
        by_method.setdefault(claims.method_of(label), []).extend(row.values())
    by_method["control (Ind vs Ind)"] = list(block.get("control_pairs", {}).values())

    def row(name: str, e: dict[str, Any], word: str) -> list[str]:
        values = by_method[name]
        return [name, _f(e["mean"]), _f(e["std"]), f"{_f(min(values))} – {_f(max(values))}",
                f"[{_f(e['low'])}, {_f(e['high'])}]", str(e["pairs"]), str(e["ties"]), word]  # fmt: skip

    rows = [row(m, e, words[m]) for m, e in block["methods"].items()]
    if "control" in block:
        rows.append(row("control (Ind vs Ind)", block["control"], ""))
    return [quantity, "mean", "std", "pairs' range", f"{100 * block['bootstrap']['confidence']:.0f} % interval",
            "pairs", "ties", "verdict"], rows  # fmt: skip


def control_diagnosis(diagnosis: dict[str, Any], images: int) -> tuple[str, tuple[list[str], list[list[str]]]]:
    """Why a control pair can sit far from 50 %: ties, the image sampling, the upsampling, the similarity measure or
    the seeds — a paragraph that follows the numbers, and the control pairs under every CAM similarity."""
    measures = diagnosis["measures"]
    names = list(measures)
    pairs = list(measures["cosine"]["control_pairs"])
    rates = {m: measures[m]["control_pairs"] for m in names}
    main = list(rates["cosine"].values())
    band = diagnosis["sampling_band"]
    kept = sum(len({rates[m][p] > 50 for m in names}) == 1 for p in pairs)
    seeds = (max(main) - min(main)) / 2 > band and kept >= 0.75 * len(pairs)
    cause = (
        "the seeds — pairs of independent students differ far beyond what image sampling does, and each keeps its "
        "side of 50 % whichever similarity is taken"
        if seeds
        else "not settled by these numbers"
    )
    text = (
        f"Why a single control pair can sit far from 50 %: ties are {measures['cosine']['ties']} of "
        f"{len(pairs) * images:,} per-image comparisons; image sampling alone moves a fair comparison by ±{band:.1f} "
        f"points (95 %, binomial at {images} images, computed); the control pairs range {min(main):.1f}–"
        f"{max(main):.1f} %, and {kept} of {len(pairs)} keep their side of 50 % at the layers' own resolution (no "
        f"upsampling) and under Pearson correlation (a different similarity). The cause: {cause}."
    )
    rows = [[p, *[_f(rates[m][p]) for m in names]] for p in pairs]
    rows.append(["ties", *[str(measures[m]["ties"]) for m in names]])
    return text, (["control pair (win rate %)", *names], rows)


def sections(s: Subjects, results: dict[str, Any], out: Path) -> list[Section]:
    x, y = s.test_images(8)
    loc = results["localisation"]
    cam = Section("Localisation (Grad-CAM of the true class, last conv stage)")
    if "skipped" in loc:
        cam.paragraphs.append(f"Not measured: {loc['skipped']}.")
    else:
        boot = loc["bootstrap"]
        cam.paragraphs.append(
            "Win rate: % of test images whose student CAM is closer (cosine) to the teacher's than a reference "
            "independent student's CAM is, a tie counted half — for every (student, reference) pair. The control is "
            "the same statistic between independent students, over every ordered pair of two of them: a comparison "
            "and its reverse add up to 100 %, so its mean is 50 % and its spread is what seeds alone do. Intervals: "
            f"{100 * boot['confidence']:.0f} % percentile bootstrap, {boot['rounds']} rounds, resampling "
            f"{boot['resampled']}."
        )
        refs = loc["references"]
        cam.tables.append((["student", *[f"vs {r}" for r in refs]],
                           [[n, *[_f(row[r]) for r in refs]] for n, row in loc["pairs"].items()]))  # fmt: skip
        paper = {"kd": claims.PAPER_KD_WIN_RATE}
        cam.tables.append(comparison_table(loc, "win rate by method (%)", paper=paper))
        if "control_pairs" in loc:
            cam.tables.append((["control pair", "win rate %"], [[k, _f(v)] for k, v in loc["control_pairs"].items()]))
        if "diagnosis" in loc and loc["diagnosis"]["measures"]["cosine"]["control_pairs"]:
            text, table = control_diagnosis(loc["diagnosis"], loc["images"])
            cam.paragraphs.append(text)
            cam.tables.append(table)
        cam.paragraphs.append(f"Verdict rule: {RULE}.")
        cam.figures.append((figures.cam_overlays(s, x, y, out), "Grad-CAM overlays: image, teacher, Ind, students."))
    adv = results["adversarial"]
    attack = Section("Adversarial vulnerability (I-FGSM, 5 steps)")
    attack.paragraphs.append(
        f"ε = {adv['epsilon']:.4f} (pixel scale [0, 1]) fools the teacher on {_f(adv['teacher_attack']['attacked'])} % "
        f"of {adv['images']} test images; a student's rate counts only images that fooled the attacked network, and "
        "'fooled' means its prediction changed from its own clean prediction."
    )
    names = [n for n in results["models"] if n in adv["teacher_attack"]]
    rows = [
        [n, _f(adv["teacher_attack"][n]), _f(adv["control_attack"][n]) if n in adv.get("control_attack", {}) else "-"]
        for n in names
    ]
    attack.tables.append((["model", "attack on teacher %", "attack on Ind′ %"], rows))
    for key, source in (("transfer", "teacher"), ("control_transfer", "Ind′")):
        if key in adv:
            attack.tables.append(comparison_table(adv[key], f"fooled minus Ind, attack on {source} (points)"))
    attack.figures.append((figures.fooling(adv, out), "Fooling rates per student and attack source."))
    inv = Section("Invariances (agreement between two views of each image, same views for every model)")
    inv.figures.append(
        (figures.invariance_curves(results["invariance"], out), "Invariance against the transform strength.")
    )
    for kind, curves in results["invariance"].items():
        headers = [kind, *[f"s = {v:g}" for v in curves["strengths"]]]
        inv.tables.append((headers, [[n, *map(_f, vals)] for n, vals in curves.items() if n != "strengths"]))
        inv.tables.append(
            comparison_table(results["invariance_transfer"][kind], f"{kind}: agreement minus Ind (points)")
        )
    bound = Section("Decision boundaries (IoU of predicted regions on planes through 50 test-image triplets)")
    bound.tables.append(
        (
            ["model vs teacher", "IoU", "std"],
            [[n, f"{v['iou']:.4f}", f"{v['std']:.4f}"] for n, v in results["boundaries"].items()],
        )
    )
    for domain, block in results.get("boundary_transfer", {}).items():
        bound.tables.append(comparison_table(block, f"{domain}: IoU minus Ind (points)"))
    bound.figures.append(
        (figures.boundary_planes(s, x, out), "Predicted regions on the plane through three test images.")
    )
    out_sections = [cam, attack, inv, bound]
    if results["cka"]:
        cka = Section("Representations (linear CKA, teacher stages × student stages)")
        cka.figures.append(
            (figures.cka_heatmaps(results["cka"], out), "Linear CKA between stages (1,000 test images).")
        )
        if "cka_transfer" in results:
            cka.tables.append(comparison_table(results["cka_transfer"], "last-stage CKA minus Ind (points)"))
        out_sections.append(cka)
    if "domains" in results:
        dom = Section("Domain knowledge (teacher trained on every domain; students' data decides theirs)")
        rows = [
            [
                d,
                _f(r["teacher"]["accuracy"]),
                *[f"{_f(r[n]['accuracy'])} / {_f(r[n]['consensus'])}" for n in results["models"]],
            ]
            for d, r in results["domains"].items()
        ]
        dom.tables.append((["domain", "teacher acc. %", *[f"{n} acc. / consensus %" for n in results["models"]]], rows))
        for domain, block in results.get("domain_transfer", {}).items():
            dom.tables.append(comparison_table(block, f"{domain}: accuracy minus Ind (points)"))
        out_sections.append(dom)
    return out_sections


def write(s: Subjects, results: dict[str, Any], out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", results)
    intro = [
        f"Teacher {s.teacher_name}; students {', '.join(s.students) or '(none)'}; independent students "
        f"{', '.join(s.independent)}. {results['images']} test images. Every number was measured by this command.",
        "Every figure below compares each student with each independent student on the same units (images, image "
        "triplets, or one number per model), as a win rate or a difference in points; per method it gives the mean "
        "and std over its (student seed × reference seed) pairs and a percentile bootstrap interval that draws the "
        "units and the seeds again. The control is the same statistic between the independent students themselves "
        f"(every ordered pair): what seeds alone do. Verdict rule — {RULE}.",
    ]
    verdicts = Section("The paper's claims on these models", claims.paragraphs(results))
    write_report(out, "kdlab analyze — what did the students inherit?", intro, [verdicts, *sections(s, results, out)])
    return out
