"""Image classification: its sources, teachers, runs, figures and tables; :mod:`kdlab.tasks.image.task` registers it."""
