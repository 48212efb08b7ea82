"""Built-in methods, one module per family. Importing this package registers them."""

from harness.registries import METHODS
from methods.adhoc import AdHoc

METHODS.register("adhoc", AdHoc, aliases=("ad-hoc",))
