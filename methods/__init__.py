"""Built-in methods, one module per family. Importing this package registers them."""

from harness.registries import METHODS
from methods.adhoc import AdHoc
from methods.oppu import OPPU

METHODS.register("adhoc", AdHoc, aliases=("ad-hoc",))
METHODS.register("oppu", OPPU)
