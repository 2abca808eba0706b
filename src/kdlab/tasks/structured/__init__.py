"""Sequence labelling and dependency parsing: taggers and parsers over one vocabulary, the frozen
structured teacher, label losses, decoding and structured metrics; :mod:`kdlab.tasks.structured.task` registers both
tasks."""
