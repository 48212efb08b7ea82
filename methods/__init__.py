"""Built-in methods, one module per family. Importing this package registers them."""

from harness.registries import METHODS
from methods.adhoc import AdHoc
from methods.oppu import OPPU
from methods.pplug import PPlug, PPlugMean, PPlugNoInst, PPlugRAG
from methods.rag import BM25RAG, ContrieverRAG, RandomRAG, RecencyRAG

METHODS.register("adhoc", AdHoc, aliases=("ad-hoc",))
METHODS.register("oppu", OPPU)
METHODS.register("bm25", BM25RAG)
METHODS.register("recency", RecencyRAG)
METHODS.register("contriever", ContrieverRAG, aliases=("dense",))
METHODS.register("random", RandomRAG)

METHODS.register("pplug", PPlug)
METHODS.register("pplug-mean", PPlugMean)
METHODS.register("pplug-noinst", PPlugNoInst)
METHODS.register("pplug+rag", PPlugRAG, aliases=("pplug+bm25",))
