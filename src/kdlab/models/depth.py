"""Depth-switchable networks: sub-nets of several depths in one set of weights (DDNN, the depth-level dynamic networks
of the EKD paper).

A switchable network is a staged zoo network (:mod:`kdlab.models.ddnn`) whose stages are
:class:`DepthStage`\\ s. A *depth* names a per-stage block budget ``(n_1, ..., n_S)``; at that depth stage
``s`` runs ``n_s`` of its blocks — the first ones (``keep="first"``, the first block carries the down-sample)
or evenly spaced ones that include the first (``keep="uniform"``). Stem, kept blocks, head and classifier
are shared by every depth. ``model(x, depth=k)`` or ``model.set_depth(k)`` switch; the stages keep their
module names, so feature taps on ``layer1`` see the stage output at the current depth.

BatchNorm (``bn``): ``shared`` — one BatchNorm per position, updated by every depth's forward (the plain
reading of "one set of weights"); ``private`` — one BatchNorm (affine and statistics) per depth (switchable
BN); ``recalibrated`` — shared affine, the running statistics of the full depth are updated in training only
by full-depth forwards, and each sub-depth gets its own statistics afterwards from
:meth:`DepthSwitch.recalibrate` (until then it uses the full depth's).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal

import torch
from torch import nn

from kdlab.core.errors import ConfigError
from kdlab.models.depth_norms import RecalibratedBatchNorm, make_norm

BnMode = Literal["shared", "private", "recalibrated"]
Keep = Literal["first", "uniform"]
BN_MODES: tuple[str, ...] = ("shared", "private", "recalibrated")
KEEP_MODES: tuple[str, ...] = ("first", "uniform")


def deepest(budgets: Mapping[int, tuple[int, ...]]) -> int:
    """The full net's depth: the budget with the most blocks (it contains every other, see check_budgets)."""
    return max(budgets, key=lambda d: sum(budgets[d]))


def kept_blocks(budget: int, total: int, keep: str) -> tuple[int, ...]:
    """Indices of the ``budget`` blocks (of ``total``) a sub-net keeps: the first ones, or evenly spaced
    ones from the first to the last (``keep="uniform"``)."""
    if keep == "first" or budget >= total:
        return tuple(range(budget))
    if budget == 1:
        return (0,)
    return tuple(math.floor(i * (total - 1) / (budget - 1) + 0.5) for i in range(budget))


class DepthStage(nn.Sequential):
    """A stage whose forward runs only the blocks of the current depth.

    ``unit`` modules make one block (1 for residual blocks; 3 for VGG's conv-norm-ReLU), so module indices
    — and state-dict keys — are those of the plain stage."""

    def __init__(self, modules: Sequence[nn.Module], plan: Mapping[int, tuple[int, ...]], unit: int) -> None:
        super().__init__(*modules)
        self.plan = dict(plan)
        self.unit = unit
        self.depth = max(plan, key=lambda d: len(plan[d]))
        self.refresh()

    def refresh(self) -> None:
        """Re-read the children (after one of them was replaced)."""
        children = list(self)
        self._runs = {
            d: [children[b * self.unit + u] for b in kept for u in range(self.unit)] for d, kept in self.plan.items()
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in self._runs[self.depth]:
            x = module(x)
        return x


class DepthSwitch(nn.Module):
    """Mixed into a zoo network (before it in the bases): depth switching, stage outputs, recalibration.

    The subclass builds the full network, then calls :meth:`_make_switchable` with its stages' plans.
    """

    budgets: dict[int, tuple[int, ...]]
    keep: str
    bn: str
    recalibration_images: int

    def _make_switchable(
        self, budgets: Mapping[int, tuple[int, ...]], keep: str, bn: str, unit: int, recalibration_images: int
    ) -> None:
        full = deepest(budgets)
        self.budgets, self.keep, self.bn = dict(sorted(budgets.items())), keep, bn
        self.full_depth, self._depth = full, full
        self.recalibration_images = recalibration_images
        stage_names: tuple[str, ...] = self.stage_names  # type: ignore[attr-defined]
        owners: dict[str, list[int]] = {}  # module path prefix → depths that run it
        self._switches: list[nn.Module] = []
        for s, name in enumerate(stage_names):
            plain = getattr(self, name)
            total = len(plain) // unit
            plan = {d: kept_blocks(b[s], total, keep) for d, b in self.budgets.items()}
            stage = DepthStage(list(plain), plan, unit)
            setattr(self, name, stage)
            self._switches.append(stage)
            for block in range(total):
                users = [d for d, kept in plan.items() if block in kept]
                for u in range(unit):
                    owners[f"{name}.{block * unit + u}"] = users
        for path, module in list(self.named_modules()):
            if isinstance(module, nn.BatchNorm2d) and bn != "shared":
                prefix = ".".join(path.split(".")[:2])
                users = owners.get(prefix, list(self.budgets))
                norm = make_norm(bn, module.num_features, users, full)
                parent, _, leaf = path.rpartition(".")
                setattr(self.get_submodule(parent) if parent else self, leaf, norm)
                self._switches.append(norm)
        for name in stage_names:
            getattr(self, name).refresh()

    @property
    def depths(self) -> tuple[int, ...]:
        """The available depths, shallowest first."""
        return tuple(self.budgets)

    @property
    def depth(self) -> int:
        return self._depth

    def check_depth(self, depth: int | str) -> int:
        """``depth`` as an int, or a ConfigError naming it and the available depths."""
        text = str(depth).strip()
        if not text.lstrip("-").isdigit() or int(text) not in self.budgets:
            raise ConfigError(
                f"Depth {depth!r} is not a depth of this {type(self).__name__}; available depths: "
                f"{', '.join(map(str, self.depths))} (full: {self.full_depth})."
            )
        return int(text)

    def set_depth(self, depth: int | str) -> None:
        """Switch every later forward to sub-net ``depth`` (one of :attr:`depths`)."""
        self._depth = self.check_depth(depth)
        for module in self._switches:
            module.depth = self._depth

    @contextlib.contextmanager
    def at_depth(self, depth: int | str | None) -> Iterator[None]:
        """Run at ``depth`` inside the block (no change for None), then switch back."""
        if depth is None:
            yield
            return
        previous = self._depth
        self.set_depth(depth)
        try:
            yield
        finally:
            self.set_depth(previous)

    def forward(self, x: torch.Tensor, depth: int | str | None = None) -> torch.Tensor:  # type: ignore[override]
        with self.at_depth(depth):
            return super().forward(x)

    def forward_stages(
        self, x: torch.Tensor, depth: int | str | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits and every stage's output (``stage_names`` order) at ``depth``."""
        outputs: list[torch.Tensor] = []
        stages = [getattr(self, n) for n in self.stage_names]  # type: ignore[attr-defined]
        handles = [m.register_forward_hook(lambda _m, _i, out: outputs.append(out)) for m in stages]
        try:
            logits = self(x, depth)
        finally:
            for handle in handles:
                handle.remove()
        return logits, outputs

    def subnet_plan(self, depth: int | str) -> dict[str, tuple[int, ...]]:
        """Stage name → indices of the blocks sub-net ``depth`` runs."""
        d = self.check_depth(depth)
        return {n: getattr(self, n).plan[d] for n in self.stage_names}  # type: ignore[attr-defined]

    @torch.no_grad()
    def recalibrate(self, batches: Iterable[torch.Tensor], depths: Sequence[int] | None = None) -> None:
        """Re-estimate every sub-depth's BatchNorm statistics (exact averages over ``batches``, images in
        [0, 1]); the full depth's statistics and all weights are left as they are. ``bn="recalibrated"``."""
        if self.bn != "recalibrated":
            raise ConfigError(
                f"Recalibration gives each sub-net its own BatchNorm statistics; this network has bn={self.bn!r}. "
                "Build it with bn=recalibrated."
            )
        images = list(batches)
        norms = [m for m in self._switches if isinstance(m, RecalibratedBatchNorm)]
        was_training, previous = self.training, self._depth
        self.train()
        try:
            for d in [self.check_depth(d) for d in (depths or self.depths)]:
                if d == self.full_depth:
                    continue
                self.set_depth(d)
                users = [n for n in norms if hasattr(n, f"seen_d{d}")]
                for norm in users:
                    norm.start_calibration()
                for x in images:
                    self(x)
                for norm in users:
                    norm.calibrating = False
        finally:
            self.set_depth(previous)
            self.train(was_training)


def check_budgets(budgets: Mapping[Any, Any], stages: int) -> dict[int, tuple[int, ...]]:
    """``{depth: [blocks per stage]}`` checked: integer names, ``stages`` counts ≥ 1 each, and one depth (the
    full net) at least as deep as every other in every stage."""
    out: dict[int, tuple[int, ...]] = {}
    for name, counts in budgets.items():
        if not str(name).isdigit() or not isinstance(counts, (list, tuple)) or len(counts) != stages:
            raise ConfigError(
                f"budgets entry {name!r}: {counts!r} must map an integer depth to {stages} block counts "
                f"(one per stage), e.g. {{8: {[1] * stages}}}."
            )
        if not all(isinstance(c, int) and c >= 1 for c in counts):
            raise ConfigError(f"budgets entry {name}: block counts must be integers ≥ 1, got {list(counts)}.")
        out[int(name)] = tuple(counts)
    if len(out) < 1:
        raise ConfigError("A depth-switchable network needs at least one depth.")
    full = deepest(out)
    short = [d for d, b in out.items() if any(n > f for n, f in zip(b, out[full], strict=True))]
    if short:
        raise ConfigError(
            f"Every sub-net must fit inside the full net {full} {list(out[full])}; depth {short[0]} "
            f"{list(out[short[0]])} has more blocks in some stage."
        )
    return out


def check_modes(keep: str, bn: str) -> None:
    if keep not in KEEP_MODES:
        raise ConfigError(f"Unknown keep={keep!r}; valid: {', '.join(KEEP_MODES)}.")
    if bn not in BN_MODES:
        raise ConfigError(f"Unknown bn={bn!r}; valid: {', '.join(BN_MODES)}.")
