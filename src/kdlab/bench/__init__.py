"""``kdlab bench``: images/s (examples/s for text pairs), the per-phase split of a step and the epoch time of
kdlab's training loop on named teacher → student pairs, next to a classic reference KD loop measured in the same run
(see docs/benchmarks.md).
"""

from kdlab.bench.modes import IMAGE_MODES, MODE_LABELS, MODES
from kdlab.bench.pairs import PAIRS, Pair, default_pairs, get_pair, load_workload
from kdlab.bench.report import markdown, text
from kdlab.bench.run import Settings, bench_pair, run_bench, write_result
from kdlab.bench.text_pair import TEXT_MODES, TextPair

__all__ = [
    "IMAGE_MODES",
    "MODES",
    "MODE_LABELS",
    "PAIRS",
    "TEXT_MODES",
    "Pair",
    "Settings",
    "TextPair",
    "bench_pair",
    "default_pairs",
    "get_pair",
    "load_workload",
    "markdown",
    "run_bench",
    "text",
    "write_result",
]
