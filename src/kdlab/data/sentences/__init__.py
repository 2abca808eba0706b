"""Sentence data: CoNLL-U and column readers, vocabularies and encoding, the (head offset, relation)
labels of parsing as tagging, batches of sentences, and the sentence data sets of the registry."""
