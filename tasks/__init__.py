"""LaMP task definitions, data loading and the synthetic generator.

Importing this package registers the built-in tasks in :data:`harness.registries.TASKS`,
and first LaMP's prompt styles in :data:`harness.registries.PROMPT_STYLES` (the task
specs name them and are checked against that registry when they are built).
"""

import tasks.prompts  # noqa: F401 - registers the prompt styles before any TaskSpec names one
from harness.registries import TASKS
from tasks.lamp import LAMP_TASKS
from tasks.realdata import REALDATA_TASKS

for _spec in LAMP_TASKS:
    TASKS.register(_spec.name, _spec, aliases=(_spec.lamp_name, _spec.lamp_name.replace("_", "-")))

# Real people's data: public per-user datasets converted to LaMP format (docs/realdata.md).
for _spec in REALDATA_TASKS:
    TASKS.register(_spec.name, _spec, aliases=(_spec.lamp_name,))
