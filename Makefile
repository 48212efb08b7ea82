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

# The committed small-scale results: the classification sweep and its second seeds, the
# convergence study, LaMP-7 and the free-generation scoring of the classification cells
# (finished cells are reused; free cells share their constrained twins' fits), then the
# tables, figures and training curves. CPU-only: several hours from scratch on 2 cores
# (each soft-prompt fit takes 17-35 minutes, each OPPU cell about an hour).
SMALL := results/synthetic-small
GEN := results/synthetic-generation-small
FREE := results/synthetic-small-free
results-small: setup
	for s in classification seeds convergence generation free; do .venv/bin/bench sweep sweeps/$$s-small.toml; done
	for f in md csv latex; do .venv/bin/bench table --runs $(SMALL)/runs --table 1 --format $$f --out $(SMALL); done
	for t in ablation cost; do .venv/bin/bench table --runs $(SMALL)/runs --table $$t --out $(SMALL); done
	for f in md csv latex; do .venv/bin/bench table --runs $(FREE)/runs --table 1 --format $$f --out $(FREE); done
	.venv/bin/bench table --runs $(FREE)/runs --table cost --out $(FREE)
	for t in 1 cost; do .venv/bin/bench table --runs $(GEN)/runs --table $$t --out $(GEN); done
	.venv/bin/bench curves --runs $(SMALL)/runs --runs results/convergence/runs --runs $(GEN)/runs --out results/convergence

# The real-data grid (needs ../shared/realdata or $$PERSONA_BENCH_REALDATA); run folders
# hold the datasets' text and stay in runs/real, only the tables go to results/real.
results-real: setup
	.venv/bin/bench sweep sweeps/real-classification-small.toml
	for t in 1 cost; do .venv/bin/bench table --runs runs/real --table $$t --out results/real; done
