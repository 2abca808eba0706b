"""The tasks kdlab ships, each a module (or folder) that implements :mod:`kdlab.pipeline.task` and registers itself;
importing this package registers them all."""

from kdlab.tasks.image import task as image_task  # noqa: F401
from kdlab.tasks.lm import task as lm_task  # noqa: F401
from kdlab.tasks.structured import task as structured_task  # noqa: F401
from kdlab.tasks.text import task as text_task  # noqa: F401
