"""Feature taps: forward hooks on modules named by their ``named_modules()`` path.

Any ``nn.Module`` works unchanged — nothing rewrites ``forward``. Register taps once, before any
``torch.compile``; after each forward, :meth:`Taps.collect` returns the tapped outputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from kdlab.core.errors import ConfigError, suggest


def module_paths(model: nn.Module) -> list[str]:
    """Every tappable module path of ``model`` (the root module, "", excluded)."""
    return [name for name, _ in model.named_modules() if name]


def resolve_modules(model: nn.Module, names: Sequence[str], *, owner: str = "model") -> dict[str, nn.Module]:
    """Map each name to its module; an unknown name is a ConfigError listing the nearest valid paths."""
    modules = dict(model.named_modules())
    found = {}
    for name in names:
        if name not in modules or not name:
            valid = module_paths(model)
            shallow = [n for n in valid if n.count(".") <= 1][:40]
            more = f" (and {len(valid) - len(shallow)} deeper paths)" if len(valid) > len(shallow) else ""
            raise ConfigError(
                f"Layer {name!r} is not a module of the {owner} ({type(model).__name__}).{suggest(name, valid)} "
                f"Layers are named by their named_modules() path; valid ones include: "
                f"{', '.join(shallow) or '(none: the model has no sub-modules)'}{more}."
            )
        found[name] = modules[name]
    return found


class Taps:
    """Forward hooks that keep the latest output of each named module.

    >>> taps = Taps(model, ["layer1", "layer3"])
    >>> logits = model(x); features = taps.collect()   # {"layer1": ..., "layer3": ...}
    """

    def __init__(self, model: nn.Module, names: Sequence[str], *, owner: str = "model") -> None:
        self.names = tuple(dict.fromkeys(names))
        self._outputs: dict[str, torch.Tensor] = {}
        self._handles = [
            module.register_forward_hook(self._keep(name))
            for name, module in resolve_modules(model, self.names, owner=owner).items()
        ]

    def _keep(self, name: str):
        def hook(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
            self._outputs[name] = output

        return hook

    def collect(self) -> dict[str, torch.Tensor]:
        """The outputs of the last forward pass, and forget them (no reference outlives the step)."""
        out, self._outputs = self._outputs, {}
        return out

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> Taps:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()
