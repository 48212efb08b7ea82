# The two commands of the README. Both install what they need first.
.PHONY: demo test test-all setup bench results-small results-real

setup:
	bash scripts/setup.sh

# The main job: a real `bench run` on the embedded synthetic LaMP-2 data with SmolLM2-135M.
demo: setup
	.venv/bin/bench run --method adhoc --task lamp2 --llm smollm2-135m --limit 60

# Unit tests and the marked integration tests on the real offline models.
test: setup
	.venv/bin/python -m pytest -q

bench: setup
	.venv/bin/python -m benchmarks

# The committed small-scale results: the classification sweep, the convergence study and LaMP-7
# (finished cells are reused), then the tables, figures and training curves. CPU-only,
# about two hours from scratch on 2 cores.
SMALL := results/synthetic-small
GEN := results/synthetic-generation-small
results-small: setup
	for s in classification convergence generation; do .venv/bin/bench sweep sweeps/$$s-small.toml; done
	for f in md csv latex; do .venv/bin/bench table --runs $(SMALL)/runs --table 1 --format $$f --out $(SMALL); done
	.venv/bin/bench table --runs $(SMALL)/runs --table cost --out $(SMALL)
	for t in 1 cost; do .venv/bin/bench table --runs $(GEN)/runs --table $$t --out $(GEN); done
	.venv/bin/bench curves --runs $(SMALL)/runs --runs results/convergence/runs --runs $(GEN)/runs --out results/convergence

# The real-data grid (needs ../shared/realdata or $$PERSONA_BENCH_REALDATA); run folders
# hold the datasets' text and stay in runs/real, only the tables go to results/real.
results-real: setup
	.venv/bin/bench sweep sweeps/real-classification-small.toml
	for t in 1 cost; do .venv/bin/bench table --runs runs/real --table $$t --out results/real; done
