"""The one training loop and what it runs on: the engine, optimisers and schedules, precision, the meter,
torchrun data parallelism, feature taps, the frozen teacher, predictions over a split, progress and student
initialisation from the teacher."""
