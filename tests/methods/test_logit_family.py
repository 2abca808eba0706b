"""reverse_kd, symmetric_kl, brier, hard_kd, anneal_kd, dkd and dist as registered methods."""

import dataclasses

import pytest
import torch

import kdlab.methods.decoupled  # noqa: F401  (registers the methods)
from kdlab.core.batch import Batch
from kdlab.core.errors import ConfigError
from kdlab.core.outputs import ModelOutput
from kdlab.data.loader import ImageExtras
from kdlab.losses import kd, label_cross_entropy
from kdlab.losses.decoupled import dist, dkd
from kdlab.losses.logits import brier, ensemble_logits, hard_kd, reverse_kd, symmetric_kl
from kdlab.methods import METHODS, MethodContext, build_method, method_params
from kdlab.methods.logit import anneal_beta
from kdlab.models import MODELS
from kdlab.training.teachers import Teacher

NAMES = ["reverse_kd", "symmetric_kl", "brier", "hard_kd", "anneal_kd", "dkd", "dist"]
GNOSIS_ALPHA = {"reverse_kd": 0.0, "symmetric_kl": 0.5, "brier": 0.5, "hard_kd": 0.5, "anneal_kd": 0.0}


def outputs(b: int = 8, c: int = 10, m: int = 0, seed: int = 0) -> tuple[ModelOutput, ModelOutput, Batch]:
    g = torch.Generator().manual_seed(seed)
    student = ModelOutput(torch.randn(b, c, generator=g).requires_grad_())
    members = torch.randn(b, m, c, generator=g) * 3 if m else None
    t = ensemble_logits(members) if m else torch.randn(b, c, generator=g) * 3
    y = torch.randint(0, c, (b,), generator=g)
    return student, ModelOutput(t, member_logits=members), Batch(x=torch.zeros(b, 1), y=y, index=torch.arange(b))


def method(name: str, epochs: int = 10, **values):
    return build_method(name, values, MethodContext(torch.nn.Linear(1, 1), None, 10, epochs=epochs))


def test_defaults_are_the_papers():
    for name, ce_weight in GNOSIS_ALPHA.items():
        params = METHODS.get(name).params()
        assert (params.ce_weight, params.temperature) == (ce_weight, 4.0)  # gnosis' configs' α; τ = 4
    assert METHODS.get("hard_kd").params().mode == "argmax"
    assert (METHODS.get("anneal_kd").params().beta_start, METHODS.get("anneal_kd").params().anneal_epochs) == (1.0, 0)
    dkd_params = dataclasses.asdict(METHODS.get("dkd").params())
    assert dkd_params == {"ce_weight": 1.0, "alpha": 1.0, "beta": 8.0, "temperature": 4.0, "warmup_epochs": 20}
    dist_params = dataclasses.asdict(METHODS.get("dist").params())
    assert dist_params == {"ce_weight": 1.0, "beta": 1.0, "gamma": 1.0, "temperature": 4.0}


@pytest.mark.parametrize(
    ("name", "loss"),
    [
        ("reverse_kd", lambda s, t: reverse_kd(s, t, 4.0)),
        ("symmetric_kl", lambda s, t: symmetric_kl(s, t, 4.0)),
        ("brier", lambda s, t: brier(s, t, 4.0)),
        ("hard_kd", lambda s, t: hard_kd(s, t, 4.0)),
    ],
)
@pytest.mark.parametrize("alpha", [0.0, 0.3])
def test_gnosis_variants_weigh_labels_by_alpha_and_use_the_ensemble_reduction(name, loss, alpha):
    student, teacher, batch = outputs(m=3)
    terms = method(name, ce_weight=alpha)(student, teacher, batch)
    assert terms[name].item() == pytest.approx((1 - alpha) * loss(student.logits, teacher.member_logits).item())
    if alpha == 0:
        assert set(terms) == {name}
    else:
        assert terms["ce"].item() == pytest.approx(alpha * label_cross_entropy(student.logits, batch.y).item())


def test_anneal_kd_runs_from_hard_labels_to_kd_and_resumes_on_schedule():
    student, teacher, batch = outputs()
    anneal = method("anneal_kd", epochs=8)
    expected = [1.0 - e / 8 for e in range(8)] + [0.0, 0.0]
    betas = []
    for epoch in range(10):
        anneal.start_epoch(epoch, 8)
        betas.append(anneal_beta(anneal))
    assert betas == pytest.approx(expected)
    anneal.start_epoch(0, 8)
    hard = hard_kd(student.logits, teacher.logits, 4.0, "argmax")
    assert anneal(student, teacher, batch)["anneal_kd"].item() == pytest.approx(hard.item())
    anneal.start_epoch(8, 8)
    assert anneal(student, teacher, batch)["anneal_kd"].item() == pytest.approx(
        kd(student.logits, teacher.logits).item()
    )
    resumed = method("anneal_kd", epochs=8)  # a resumed run: a fresh method told the epoch it restarts at
    resumed.start_epoch(5, 8)
    assert anneal_beta(resumed) == pytest.approx(expected[5])
    shorter = method("anneal_kd", epochs=8, anneal_epochs=4, beta_start=0.8)
    shorter.start_epoch(2, 8)
    assert anneal_beta(shorter) == pytest.approx(0.4)


def test_dkd_warms_its_weight_up_linearly_also_in_short_runs_and_after_a_resume():
    student, teacher, batch = outputs()
    d = method("dkd", epochs=40)
    assert d.kd_weight == pytest.approx(1 / 20)  # before any start_epoch: the first epoch's weight
    weights = []
    for epoch in range(25):
        d.start_epoch(epoch, 40)
        weights.append(d.kd_weight)
    assert weights == pytest.approx([min((e + 1) / 20, 1.0) for e in range(25)])
    short = method("dkd", epochs=5)
    short.start_epoch(4, 5)
    assert short.kd_weight == pytest.approx(5 / 20)  # still rising linearly, never reaching 1
    resumed = method("dkd", epochs=40)
    resumed.start_epoch(9, 40)
    terms = resumed(student, teacher, batch)
    full = dkd(student.logits, teacher.logits, batch.y, 1.0, 8.0, 4.0)
    assert terms["dkd"].item() == pytest.approx(0.5 * full.item())
    assert terms["ce"].item() == pytest.approx(label_cross_entropy(student.logits, batch.y).item())
    assert method("dkd", warmup_epochs=0).kd_weight == 1.0


def test_dkd_targets_the_teacher_argmax_for_unlabelled_examples_and_mixes_targets_under_mixup():
    student, teacher, batch = outputs()
    d = method("dkd", warmup_epochs=0, ce_weight=0.0)
    batch.y[:3] = -1
    target = torch.where(batch.y >= 0, batch.y, teacher.logits.argmax(-1))
    assert set(d(student, teacher, batch)) == {"dkd"}
    assert d(student, teacher, batch)["dkd"].item() == pytest.approx(dkd(student.logits, teacher.logits, target).item())
    perm = torch.arange(8).flip(0)
    mixed = Batch(x=batch.x, y=batch.y, index=batch.index, extras=ImageExtras(mix_perm=perm, mix_lambda=0.7))
    # the second image's label; where it has none, the teacher's argmax on the mixed image that was seen
    second = torch.where(batch.y[perm] >= 0, batch.y[perm], teacher.logits.argmax(-1))
    expected = 0.7 * dkd(student.logits, teacher.logits, target) + 0.3 * dkd(student.logits, teacher.logits, second)
    assert d(student, teacher, mixed)["dkd"].item() == pytest.approx(expected.item())


def test_dist_terms():
    student, teacher, batch = outputs(m=2)
    terms = method("dist", beta=2.0)(student, teacher, batch)
    assert terms["dist"].item() == pytest.approx(dist(student.logits, teacher.member_logits, 2.0, 1.0, 4.0).item())
    assert terms["ce"].item() == pytest.approx(label_cross_entropy(student.logits, batch.y).item())


def test_sampled_hard_labels_replay_under_the_same_global_seed():
    student, teacher, batch = outputs()
    hard = method("hard_kd", mode="sample", ce_weight=0.0)
    draws = []
    for _ in range(2):
        torch.manual_seed(3)
        draws.append([hard(student, teacher, batch)["hard_kd"].item() for _ in range(4)])
    assert draws[0] == draws[1] and len(set(draws[0])) > 1  # same seed, same labels; successive draws differ


@pytest.mark.parametrize(
    "values",
    [{"temperature": 0.0}, {"ce_weight": 1.5}, {"ce_weight": -0.1}, {"temperature": float("inf")}],
)
@pytest.mark.parametrize("name", ["reverse_kd", "symmetric_kl", "brier", "hard_kd", "anneal_kd"])
def test_bad_hyper_parameters_are_config_errors(name, values):
    with pytest.raises(ConfigError):
        method(name, **values)


@pytest.mark.parametrize(
    ("name", "values"),
    [
        ("dkd", {"temperature": -1.0}),
        ("dkd", {"warmup_epochs": -1}),
        ("dist", {"temperature": 0.0}),
        ("anneal_kd", {"beta_start": 2.0}),
        ("anneal_kd", {"anneal_epochs": -3}),
        ("hard_kd", {"mode": "top1"}),
    ],
)
def test_more_bad_hyper_parameters(name, values):
    with pytest.raises(ConfigError):
        method(name, **values)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_only_the_student_from_an_ensemble_teacher(name):
    torch.manual_seed(0)
    teacher = Teacher([MODELS.get("resnet8")(num_classes=10, in_channels=1) for _ in range(2)])
    student = MODELS.get("cnn")(num_classes=10, in_channels=1, width=4)
    m = build_method(name, {}, MethodContext(student, teacher, 10, epochs=3))
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    terms = m(ModelOutput(student(x)), teacher(x), Batch(x=x, y=y, index=torch.arange(8)))
    sum(terms.values()).backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in student.parameters())
    assert METHODS.get(name).summary


@pytest.mark.parametrize("name", NAMES)
def test_a_few_steps_of_the_distillation_term_alone_reduce_it_and_raise_agreement(name):
    _, teacher, batch = outputs(b=32, seed=1)
    values = {"ce_weight": 0.0}
    if name == "dkd":
        values["warmup_epochs"] = 0
    m = method(name, **values)
    # reverse CE's infimum is −τ² log max q (all mass on the teacher's mode); every other loss here has 0
    floor = -16 * torch.log_softmax(teacher.logits / 4, -1).max(-1).values.mean().item() if name == "reverse_kd" else 0
    z = torch.randn(32, 10, generator=torch.Generator().manual_seed(5)).requires_grad_()
    optimizer = torch.optim.Adam([z], lr=0.1)

    def loss() -> torch.Tensor:
        return sum(m(ModelOutput(z), teacher, batch).values())

    start = loss().item()
    for _ in range(200):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    assert loss().item() - floor < 0.5 * (start - floor)
    assert (z.argmax(-1) == teacher.logits.argmax(-1)).float().mean().item() > 0.9


def test_noisy_soft_labels_targets_are_fixed_per_example_and_reach_the_loss():
    import math

    from kdlab.losses import soft_target_cross_entropy

    context = MethodContext(torch.nn.Identity(), None, 4, num_train=10)
    method = build_method("noisy_soft_labels", {}, context)
    batch = Batch(x=torch.zeros(3, 1), y=torch.tensor([0, 2, 3]), index=torch.tensor([4, 5, 6]))
    q = method.targets(batch)
    assert torch.allclose(q.sum(-1), torch.ones(3)) and (q.argmax(-1) != batch.y).sum() <= 1
    again = method.targets(Batch(x=torch.zeros(2, 1), y=torch.tensor([2, 3]), index=torch.tensor([5, 6])))
    assert torch.equal(again, q[1:])
    clean = build_method("noisy_soft_labels", {"noise_std": 0.0}, context).targets(batch)
    peak = math.exp(1 / 0.15) / (math.exp(1 / 0.15) + 3)
    assert clean[0, 0].item() == pytest.approx(peak)
    logits = torch.randn(3, 4)
    loss = method(ModelOutput(logits=logits), None, batch)["ce"]
    assert loss.item() == pytest.approx(soft_target_cross_entropy(logits, q).item())
    batch.y[1] = -1  # unlabelled examples do not count
    part = method(ModelOutput(logits=logits), None, batch)["ce"]
    keep = torch.tensor([0, 2])
    assert part.item() == pytest.approx(soft_target_cross_entropy(logits[keep], q[keep]).item())
    with pytest.raises(ConfigError, match="temperature must be > 0"):
        build_method("noisy_soft_labels", {"temperature": 0.0}, context)


@pytest.mark.parametrize("name", ["kd", "reverse_kd", "symmetric_kl", "brier", "hard_kd", "anneal_kd"])
def test_the_old_label_weight_name_is_an_error_naming_the_new_one(name):
    with pytest.raises(ConfigError, match=r"method.alpha is now called method.ce_weight .*alpha=A becomes ce_weight=A"):
        method_params(name, {"alpha": 0.5})


def test_the_logit_variants_share_one_implementation():
    classes = {type(method(name)) for name in ["kd", "reverse_kd", "symmetric_kl", "brier", "hard_kd", "anneal_kd"]}
    assert len(classes) == 1
