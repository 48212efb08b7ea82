"""Built-in methods, one module per family. Importing this package registers them."""

from harness.registries import METHODS
from methods.adhoc import AdHoc
from methods.oppu import OPPU
from methods.rag import BM25RAG, ContrieverRAG, RandomRAG, RecencyRAG

METHODS.register("adhoc", AdHoc, aliases=("ad-hoc",))
METHODS.register("oppu", OPPU)
METHODS.register("bm25", BM25RAG)
METHODS.register("recency", RecencyRAG)
METHODS.register("contriever", ContrieverRAG, aliases=("dense",))
METHODS.register("random", RandomRAG)
