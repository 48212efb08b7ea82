"""Built-in methods, one module per family. Importing this package registers them."""

from harness.registries import METHODS
from methods.adhoc import AdHoc
from methods.answer_prior import Majority, UserMajority
from methods.oppu import OPPU, TaskLoRA
from methods.pplug import PPlug, PPlugMean, PPlugNoInst, PPlugRAG
from methods.prompt_tuning import PromptTuning
from methods.rag import BM25RAG, ContrieverRAG, RandomRAG, RecencyRAG
from methods.ropg import (  # also registers the ropg-kd / ropg-rl retrievers
    ROPGKD,
    ROPGRL,
)
from methods.rspg import RSPGPost, RSPGPre

METHODS.register("adhoc", AdHoc, aliases=("ad-hoc",))
METHODS.register("majority", Majority)
METHODS.register("user-majority", UserMajority)
METHODS.register("oppu", OPPU)
METHODS.register("task-lora", TaskLoRA)
METHODS.register("bm25", BM25RAG)
METHODS.register("recency", RecencyRAG)
METHODS.register("contriever", ContrieverRAG, aliases=("dense",))
METHODS.register("random", RandomRAG)

METHODS.register("pplug", PPlug)
METHODS.register("pplug-mean", PPlugMean)
METHODS.register("pplug-noinst", PPlugNoInst)
METHODS.register("pplug+rag", PPlugRAG, aliases=("pplug+bm25",))
METHODS.register("prompt-tuning", PromptTuning)

METHODS.register("ropg-kd", ROPGKD)
METHODS.register("ropg-rl", ROPGRL)
METHODS.register("rspg-pre", RSPGPre)
METHODS.register("rspg-post", RSPGPost)
