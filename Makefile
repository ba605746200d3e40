# The two commands of the README. Both set up what they need first (scripts/bootstrap.sh) and
# start at once when everything is already in place.
.PHONY: run test bench bootstrap check

# Both binaries: the window (`loupe`) starts the engine (`loupe-engine`) for every run.
run:
	@scripts/bootstrap.sh gui
	cargo build --release --bins
	target/release/loupe sample_data

# What CI runs (.ci/run): the formatting and lint checks, then every test.
test:
	@scripts/bootstrap.sh test
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo test --no-fail-fast

# Benchmarks: benches/RESULTS.md says what each measures, how to run it, and the recorded numbers.
bench:
	@scripts/bootstrap.sh build
	cargo bench --bench scan
	cargo bench --bench ui_frames
	benches/confident_compare.sh
	benches/label_issues.sh
	benches/kfold.sh

bootstrap:
	@scripts/bootstrap.sh gui
