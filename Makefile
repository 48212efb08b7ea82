# The two commands of the README. Both install what they need first.
.PHONY: demo test test-all setup bench

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
