"""Run configuration: YAML files plus ``key=value`` overrides, checked into dataclasses.

A configuration is read as a plain mapping, overrides are applied to it (``optim.lr=0.1``,
``student=resnet8``, ``seeds=0,1,2``), and :func:`resolve` checks every value and name, so a mistake
is reported before any work starts. ``data``, ``student``, ``teacher`` and ``method`` take a name plus
that entry's own options::

    data: {name: fashion_mnist, batch_size: 128, augment: {crop: 2, flip: true}, root: /data}
    student: {name: cnn, width: 8}
    teacher: pretrained:fashion_mnist_resnet20
    method: {name: kd, temperature: 4}
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kdlab.cache.settings import CACHE_DTYPES, CacheConfig
from kdlab.core.errors import ConfigError, suggest
from kdlab.core.typecheck import build_dataclass, coerce, field_hints
from kdlab.data.distillation import ExtraSource
from kdlab.data.policies import POLICIES, Augment
from kdlab.models.factory import ModelSpec
from kdlab.training.optim import OptimConfig
from kdlab.training.precision import PRECISIONS

PRESETS = Path(__file__).resolve().parents[1] / "presets"
TEACHER_DTYPES = ("float32", "bfloat16", "float16")


@dataclass
class DataConfig:
    """Which data, how it is split and batched. Unknown keys are options of the data set (root, download...)."""

    name: str = "fashion_mnist"
    val_fraction: float = 0.1
    split_seed: int = 0
    train_size: int | None = None
    test_size: int | None = None
    batch_size: int = 128
    eval_batch_size: int = 256
    augment: Augment = field(default_factory=Augment)
    labelled: int | None = None  # keep the labels of a stratified subset this large; the rest is unlabelled
    temperature: float | None = None  # distillation τ of the training images (None: the method's)
    extra: list[ExtraSource] = field(default_factory=list)  # unlabelled distillation data from other sets
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class MethodConfig:
    name: str = "kd"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Config:
    name: str | None = None
    runs_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    student: ModelSpec = field(default_factory=lambda: ModelSpec("cnn", {"width": 8}))
    teacher: list[Any] = field(default_factory=list)  # several = an ensemble: a,b,c or ensemble(a, b, c)
    control_teacher: list[Any] = field(default_factory=list)  # an independent teacher t′ (Stanton et al. §3.2)
    student_init: float | None = None  # λ: start at λ·teacher + (1 − λ)·fresh init (the teacher's architecture)
    method: MethodConfig = field(default_factory=MethodConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    epochs: int = 10
    eval_every: int = 1
    seeds: list[int] = field(default_factory=lambda: [0])
    device: str = "auto"
    independent: bool = False
    teacher_cache: bool = True
    cache: CacheConfig = field(default_factory=lambda: CacheConfig())
    precision: str = "auto"  # auto (bf16 autocast on CUDA, fp32 on CPU), fp32, bf16, fp16
    compile: bool = False  # torch.compile the student (its feature taps are registered first)
    fsdp: bool = False  # under torchrun: shard the student with FSDP (language models) instead of DDP replicas
    teacher_dtype: str | None = None  # load the teacher in this dtype (bfloat16, float16): half its memory
    methods: list[Any] = field(default_factory=list)  # kdlab compare: names or {name: ..., option: value}
    tag_map: dict[str, str] = field(default_factory=dict)  # sequence data: rename teacher tags → student tags
    log: list[str] = field(default_factory=list)  # experiment trackers that follow every run: tensorboard, mlflow
    mlflow_uri: str | None = None  # MLflow tracking store (default sqlite:///RUNS_ROOT/mlflow.db)


_NAMED = ("data", "student", "method")  # sections that take `name` plus entry-specific options
_ALIASES = {"seed": "seeds"}


def load_mapping(source: str | Path | None) -> dict[str, Any]:
    """Read a YAML file or a packaged preset name into a mapping ({} for None)."""
    if source is None:
        return {}
    path = Path(source)
    if not path.is_file():
        preset = PRESETS / f"{source}.yaml"
        if preset.is_file():
            path = preset
        else:
            presets = sorted(p.stem for p in PRESETS.glob("*.yaml"))
            raise ConfigError(
                f"Config {str(source)!r} is neither a file nor a preset.{suggest(str(source), presets)} "
                f"Presets: {', '.join(presets)}. Give a YAML file path or a preset name."
            )
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"Config {path} is not UTF-8 text (byte {exc.start} is {exc.object[exc.start : exc.start + 1]!r}); give "
            "a YAML file."
        ) from None
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"Cannot read config {path}: {exc}".replace("\n", " ")) from None
    if not isinstance(raw, dict):
        raise ConfigError(f"Config {path} must be a mapping of keys to values; it holds a {type(raw).__name__}.")
    return _normalise(raw)


def _normalise(raw: dict[str, Any]) -> dict[str, Any]:
    raw = {_ALIASES.get(k, k): v for k, v in copy.deepcopy(raw).items()}
    for key in _NAMED:
        if isinstance(raw.get(key), str):
            raw[key] = {"name": raw[key]}
    if isinstance(raw.get("methods"), str):
        raw["methods"] = [m.strip() for m in raw["methods"].split(",") if m.strip()]
    for key in ("teacher", "control_teacher"):
        if key in raw:
            raw[key] = _teacher_list(raw[key])
    return raw


def _teacher_list(value: Any) -> list[Any]:
    """``a``, ``a,b,c``, ``ensemble(a, b, c)``, a list, or None → the list of teacher specifications."""
    if value is None:
        return []
    if isinstance(value, str):
        match = re.fullmatch(r"\s*ensemble\((.*)\)\s*", value)
        value = match.group(1) if match else value
        return [t.strip() for t in value.split(",") if t.strip()]
    return value if isinstance(value, list) else [value]


_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def parse_value(text: str) -> Any:
    """Parse an override's value as YAML, reading ``1e-3`` as a number (YAML 1.1 would not)."""
    if _NUMBER.match(text.strip()):
        number = float(text)
        return int(text) if re.fullmatch(r"[+-]?\d+", text.strip()) else number
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key=value`` overrides (dotted keys reach into sections) to a normalised mapping."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"Override {item!r} is not of the form key=value (e.g. optim.lr=0.1, seeds=0,1,2).")
        parts = [_ALIASES.get(p, p) if i == 0 else p for i, p in enumerate(key.strip().split("."))]
        value = parse_value(text)
        if len(parts) == 1:
            raw.update(_normalise({parts[0]: value}))
            continue
        node = raw
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None or (depth == 0 and parts[0] in _NAMED and isinstance(child, str)):
                child = {"name": child} if isinstance(child, str) else {}
            if not isinstance(child, dict):
                raise ConfigError(f"Override {item!r}: {'.'.join(parts[: depth + 1])} is a value, not a section.")
            node[part] = child
            node = child
        node[parts[-1]] = value
    return raw


def resolve(raw: dict[str, Any]) -> Config:
    """Check a normalised mapping and build the :class:`Config` (names are checked by :mod:`kdlab.models.factory`)."""
    raw = _normalise(raw)
    hints = field_hints(Config)
    for key in raw:
        if key not in hints:
            raise ConfigError(f"Unknown config key {key!r}.{suggest(key, hints)} Valid keys: {', '.join(hints)}.")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "data":
            values[key] = _data(value)
        elif key in ("student", "method"):
            values[key] = _named(key, value)
        else:
            values[key] = coerce(value, hints[key], key)
    config = Config(**values)
    _check_ranges(config)
    return config


def _section(key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{key} must be a mapping (e.g. {key}: {{name: ...}}); got {value!r}.")
    return dict(value)


def build_augment(value: Any, where: str = "data.augment") -> Augment:
    """An :class:`Augment` from a policy name (``combined``), a mapping of settings, or a mapping with a
    ``policy`` plus settings that change it (``{policy: baseline, mixup: 0.5}``)."""
    if isinstance(value, Augment):
        augment = value
    else:
        if isinstance(value, str):
            value = {"policy": value}
        if value is not None and not isinstance(value, dict):
            raise ConfigError(f"{where} must be a policy name or a mapping of settings; got {value!r}.")
        settings = dict(value or {})
        policy = settings.pop("policy", None)
        if policy is not None:
            if policy not in POLICIES:
                raise ConfigError(
                    f"Unknown augmentation policy {where}={policy!r}.{suggest(str(policy), POLICIES)} "
                    f"Valid policies: {', '.join(POLICIES)}."
                )
            settings = {**POLICIES[policy], **settings}
        augment = build_dataclass(Augment, settings, where)
    try:
        augment.check()
    except ValueError as error:
        raise ConfigError(f"Bad augmentation: {error}.") from None
    return augment


def _data(value: Any) -> DataConfig:
    value = _section("data", value)
    if "augment" in value:
        value["augment"] = build_augment(value["augment"])
    if "extra" in value:
        value["extra"] = _extra_sources(value["extra"])
    known = {f.name for f in dataclasses.fields(DataConfig)} - {"options"}
    options = {k: v for k, v in value.items() if k not in known}
    options.update(value.get("options") or {})
    return build_dataclass(DataConfig, {**{k: v for k, v in value.items() if k in known}, "options": options}, "data")


def _extra_sources(value: Any) -> list[ExtraSource]:
    """``data.extra``: a list of data-set names or mappings ``{name, size, temperature, seed, **options}``."""
    if value is None:
        return []
    entries = value if isinstance(value, list) else [value]
    known = {f.name for f in dataclasses.fields(ExtraSource)} - {"options"}
    sources = []
    for i, entry in enumerate(entries):
        if isinstance(entry, ExtraSource):
            sources.append(entry)
            continue
        entry = {"name": entry} if isinstance(entry, str) else entry
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ConfigError(
                f"data.extra[{i}] must be a data-set name or a mapping with a name, e.g. "
                f"{{name: digits, size: 5000, temperature: 1.0}}; got {entry!r}."
            )
        options = {k: v for k, v in entry.items() if k not in known}
        settings = {k: v for k, v in entry.items() if k in known}
        sources.append(build_dataclass(ExtraSource, {**settings, "options": options}, f"data.extra[{i}]"))
    return sources


def _named(key: str, value: Any) -> ModelSpec | MethodConfig:
    value = _section(key, value)
    default = Config().student.name if key == "student" else MethodConfig().name
    name = value.pop("name", default)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{key} needs a name, e.g. {key}: {{name: ...}} or {key}=NAME; got {name!r}.")
    return ModelSpec(name, value) if key == "student" else MethodConfig(name, value)


def _check_ranges(c: Config) -> None:
    checks = [
        (c.epochs >= 1, f"epochs must be ≥ 1; got {c.epochs}."),
        (c.cache.views >= 0, f"cache.views (stored views per image; 0: none) must be ≥ 0; got {c.cache.views}."),
        (
            c.cache.top_k is None or c.cache.top_k >= 1,
            f"cache.top_k (logits kept per view; null: all) must be ≥ 1 or null; got {c.cache.top_k}.",
        ),
        (
            c.teacher_dtype in (None, *TEACHER_DTYPES),
            f"teacher_dtype={c.teacher_dtype!r} is not one of {', '.join(TEACHER_DTYPES)} (or null: as saved).",
        ),
        (
            c.cache.dtype in CACHE_DTYPES,
            f"cache.dtype={c.cache.dtype!r} is not one of {', '.join(CACHE_DTYPES)} (the dtype of the cached "
            "language-model log-probabilities).",
        ),
        (
            c.precision in PRECISIONS,
            f"precision={c.precision!r} is not one of {', '.join(PRECISIONS)} (auto: bf16 autocast on CUDA, fp32 on "
            "CPU; softmax and KL always run in float32).",
        ),
        (c.eval_every >= 1, f"eval_every must be ≥ 1; got {c.eval_every}."),
        (c.data.batch_size >= 1, f"data.batch_size must be ≥ 1; got {c.data.batch_size}."),
        (c.data.eval_batch_size >= 1, f"data.eval_batch_size must be ≥ 1; got {c.data.eval_batch_size}."),
        (
            all(s is None or s >= 1 for s in (c.data.train_size, c.data.test_size)),
            f"data.train_size and data.test_size must be ≥ 1 (or left out for the whole split); got "
            f"{c.data.train_size} and {c.data.test_size}.",
        ),
        (
            0.0 <= c.optim.momentum < 1.0,
            f"optim.momentum must lie in [0, 1); got {c.optim.momentum}.",
        ),
        (c.optim.weight_decay >= 0, f"optim.weight_decay must be ≥ 0; got {c.optim.weight_decay}."),
        (
            all(0.0 <= b < 1.0 for b in c.optim.betas),
            f"optim.betas (AdamW's moment decays) must lie in [0, 1); got {list(c.optim.betas)}.",
        ),
        (c.optim.warmup_epochs >= 0, f"optim.warmup_epochs must be ≥ 0; got {c.optim.warmup_epochs}."),
        (
            0.0 <= c.optim.min_lr <= c.optim.lr,
            f"optim.min_lr must lie in [0, optim.lr = {c.optim.lr}]; got {c.optim.min_lr}.",
        ),
        (c.optim.gamma > 0, f"optim.gamma (the step schedule's factor) must be > 0; got {c.optim.gamma}."),
        (
            all(m >= 1 for m in c.optim.milestones),
            f"optim.milestones are epochs ≥ 1; got {c.optim.milestones}.",
        ),
        (
            c.student_init is None or 0.0 <= c.student_init <= 1.0,
            f"student_init (λ, the teacher's share of the initial weights) must lie in [0, 1]; got {c.student_init}.",
        ),
        (
            c.data.labelled is None or c.data.labelled >= 0,
            "data.labelled (how many training examples keep their label; 0: the teacher's outputs alone) must be "
            f"≥ 0; got {c.data.labelled}.",
        ),
        (
            all(t is None or t > 0 for t in [c.data.temperature, *[e.temperature for e in c.data.extra]]),
            "every distillation temperature (data.temperature, data.extra[i].temperature) must be > 0.",
        ),
        (
            all(e.size is None or e.size >= 1 for e in c.data.extra),
            "data.extra[i].size must be ≥ 1 (or left out for the whole training split).",
        ),
        (
            0.0 <= c.data.val_fraction < 1.0,
            f"data.val_fraction must be in [0, 1); got {c.data.val_fraction}.",
        ),
        (c.optim.lr > 0, f"optim.lr must be > 0; got {c.optim.lr}."),
        (bool(c.seeds), "seeds must list at least one seed, e.g. seeds=0,1,2."),
        (
            c.optim.schedule != "step" or bool(c.optim.milestones),
            "optim.schedule=step needs optim.milestones (epochs at which the lr is multiplied by optim.gamma).",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def to_mapping(config: Config) -> dict[str, Any]:
    """The inverse of :func:`resolve`: a plain mapping that writes as readable YAML."""
    out = dataclasses.asdict(config)
    out["data"].update(out["data"].pop("options"))
    out["data"]["augment"] = dataclasses.asdict(config.data.augment)
    out["data"]["extra"] = [
        {**{k: v for k, v in vars(e).items() if k != "options"}, **e.options} for e in config.data.extra
    ]
    out["student"] = {"name": config.student.name, **config.student.options}
    out["method"] = {"name": config.method.name, **config.method.params}
    out["optim"]["betas"] = list(config.optim.betas)
    return out


def config_hash(config: Config) -> str:
    """A short hash of everything that changes the result (not the name, folder or device)."""
    mapping = to_mapping(config)
    for key in ("name", "runs_dir", "device", "log", "mlflow_uri"):
        mapping.pop(key, None)
    return hashlib.sha256(json.dumps(mapping, sort_keys=True, default=str).encode()).hexdigest()[:12]


def load(source: str | Path | None, overrides: list[str] | None = None) -> Config:
    """Read ``source`` (file, preset name or None), apply ``overrides`` and resolve."""
    return resolve(apply_overrides(load_mapping(source), list(overrides or [])))
