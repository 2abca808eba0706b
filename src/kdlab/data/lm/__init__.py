"""Language-model data: documents, prompt/completion pairs and chat conversations from files, ``datasets`` or
Python objects; the standard library's source as a shipped corpus with its own byte-level BPE; sequences of token
ids cached on disk; batches for the engine (with gradient-accumulation windows).

Nothing here imports ``transformers``, ``tokenizers`` or ``datasets`` (the ``kdlab[text]`` extra) until it is used.
"""

from kdlab.data.lm.bpe import byte_level_bpe
from kdlab.data.lm.corpora import LMSplits, lm_files, stdlib, stdlib_files
from kdlab.data.lm.encode import LMTokens, encode_lm, eos_id
from kdlab.data.lm.loader import LMExtras, LMLoader
from kdlab.data.lm.readers import Columns, LMData, read_lm

__all__ = [
    "Columns",
    "LMData",
    "LMExtras",
    "LMLoader",
    "LMSplits",
    "LMTokens",
    "byte_level_bpe",
    "encode_lm",
    "eos_id",
    "lm_files",
    "read_lm",
    "stdlib",
    "stdlib_files",
]
