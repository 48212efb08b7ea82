"""LaMP task definitions, data loading and the synthetic generator.

Importing this package registers the built-in tasks in :data:`harness.registries.TASKS`.
"""

from harness.registries import TASKS
from tasks.lamp import LAMP_TASKS
from tasks.realdata import REALDATA_TASKS

for _spec in LAMP_TASKS:
    TASKS.register(_spec.name, _spec, aliases=(_spec.lamp_name, _spec.lamp_name.replace("_", "-")))

# Real people's data: public per-user datasets converted to LaMP format (docs/realdata.md).
for _spec in REALDATA_TASKS:
    TASKS.register(_spec.name, _spec, aliases=(_spec.lamp_name,))
