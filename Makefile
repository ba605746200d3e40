# The two commands of the README. Both set up what they need first (scripts/bootstrap.sh) and
# start at once when everything is already in place.
.PHONY: run test bench bootstrap check

run:
	@scripts/bootstrap.sh gui
	cargo run --release -- sample_data

test:
	@scripts/bootstrap.sh test
	cargo test --no-fail-fast

# Benchmarks: benches/RESULTS.md says what each measures, how to run it, and the recorded numbers.
bench:
	@scripts/bootstrap.sh build
	cargo bench --bench scan
	cargo bench --bench ui_frames
	benches/confident_compare.sh
	benches/label_issues.sh

bootstrap:
	@scripts/bootstrap.sh gui
