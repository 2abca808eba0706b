"""The bottom layer: errors, the registry, type checks of user values, the batch and model-output types, atomic
files, eval mode and the version — what every other layer builds on."""
