"""The independent-student control (a student of another teacher t′, judged against t) and student_init=λ."""

import json

import pytest

from kdlab.cli import main
from kdlab.pipeline.config import load

SMALL = ["data=synthetic", "data.val_fraction=0.25", "independent=false", "--quiet"]
LAYERNORM = ["student=cnn", "student.norm=layer"]


@pytest.fixture(scope="module")
def two_teachers(tmp_path_factory):
    runs = tmp_path_factory.mktemp("teachers")
    # LayerNorm nets: no running statistics, so λ = 1 is exactly the teacher
    code = main(["train", *SMALL, *LAYERNORM, "epochs=3", "optim.lr=0.1", "seeds=0,1", f"runs_dir={runs}", "name=t"])
    assert code == 0
    return runs / "t" / "seed0", runs / "t" / "seed1"


def summary(folder):
    return json.loads((folder / "summary.json").read_text())


def test_the_control_learns_from_the_other_teacher_and_is_judged_against_the_first(capsys, two_teachers, tmp_path):
    t, t2 = two_teachers
    base = ["distill", f"teacher={t}", f"control_teacher={t2}", *SMALL, "student=cnn", "student.width=4", "epochs=2"]
    assert main([*base, f"runs_dir={tmp_path}", "name=job"]) == 0
    assert "control: kd from teacher t′" in capsys.readouterr().out
    main_run, control = summary(tmp_path / "job" / "seed0"), summary(tmp_path / "job" / "control-seed0")
    assert control["teacher"]["name"] == main_run["teacher"]["name"] == str(t)
    assert control["student"]["learned_from"] == str(t2)
    judged, own = control["student"]["test"], control["student"]["test_own_teacher"]
    assert judged["agreement"] != own["agreement"] and judged["accuracy"] == own["accuracy"]
    assert "learned_from" not in main_run["student"]
    roles = json.loads((tmp_path / "job" / "summary.json").read_text())["roles"]
    assert set(roles) == {"main", "control"}


def test_student_init_at_one_starts_at_the_teacher(two_teachers, tmp_path):
    t, _ = two_teachers
    args = ["distill", f"teacher={t}", *SMALL, *LAYERNORM, "epochs=1", "optim.lr=1e-9", f"runs_dir={tmp_path}"]
    assert main([*args, "student_init=1.0", "name=at_teacher"]) == 0
    assert main([*args, "student_init=0.0", "name=fresh"]) == 0
    near = summary(tmp_path / "at_teacher")["student"]["test"]
    fresh = summary(tmp_path / "fresh")["student"]["test"]
    assert near["agreement"] == 1.0 and near["kl"] < 1e-6
    assert fresh["agreement"] < 0.9 and fresh["kl"] > 0.01


def test_student_init_needs_the_teachers_architecture_and_one_teacher(capsys, two_teachers, tmp_path):
    t, t2 = two_teachers
    common = [*SMALL, "epochs=1", f"runs_dir={tmp_path}", "student_init=0.5"]
    assert main(["distill", f"teacher={t}", *LAYERNORM, "student.width=4", *common]) == 2
    assert "architecture" in capsys.readouterr().err
    assert main(["distill", f"teacher=ensemble({t}, {t2})", *LAYERNORM, *common]) == 2
    assert "not an ensemble" in capsys.readouterr().err


def test_ensemble_syntax_and_bad_values():
    assert load(None, ["teacher=ensemble(a, b,c)"]).teacher == ["a", "b", "c"]
    with pytest.raises(Exception, match=r"student_init .* \[0, 1\]"):
        load(None, ["student_init=2"])


def test_evaluate_measures_cka_between_named_layers(capsys, two_teachers):
    import kdlab
    from kdlab.models.files import load_model_file

    t, t2 = two_teachers
    same = load_model_file(t / "model.pt")[0]
    result = kdlab.evaluate(str(t), same, "synthetic", split="train", cka=[("stage3", "stage3"), ("stage1", "stage3")])
    assert result["cka"]["stage3~stage3"]["linear"] == pytest.approx(1.0, abs=1e-9)
    assert result["cka"]["stage3~stage3"]["rbf"] == pytest.approx(1.0, abs=1e-9)
    assert result["cka"]["stage1~stage3"]["linear"] < 0.999
    code = main(
        ["evaluate", str(t2 / "model.pt"), "--teacher", str(t), "--data", "synthetic", "--cka", "stage2:stage2"]
    )
    out = capsys.readouterr().out
    assert code == 0 and "CKA stage2 vs stage2: linear 0." in out
    assert main(["evaluate", str(t2), "--teacher", str(t), "--data", "synthetic", "--cka", "stage2"]) == 2
    assert "STUDENT_LAYER:TEACHER_LAYER" in capsys.readouterr().err
    assert main(["evaluate", str(t2), "--teacher", str(t), "--data", "synthetic", "--cka", "nope:stage2"]) == 2
    assert "nope" in capsys.readouterr().err
