# The README's two commands: `make demo` and `make test`. Both install what they need.
.PHONY: demo test setup lint build bench loadtest fuzz

setup:
	@bash scripts/setup.sh

build: setup
	cargo build --release

# Mock provider + gateway on conf/demo.toml; prints a working key and a curl line.
# The debug build (about 4 CPU-minutes from scratch, shared with `make test`): the
# release build's whole-program optimisation takes ~10 minutes on two cores and buys
# nothing for a demo. `make build` makes the production binary.
demo: setup
	cargo build --bin tollgate
	./target/debug/tollgate demo -c conf/demo.toml

lint: setup
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	bash scripts/vendor.sh --check

# The whole test suite (CI runs exactly this through .ci/run).
test: lint
	bash scripts/setup-sdk.sh
	TOLLGATE_REQUIRE_SDK=1 cargo test

bench: setup
	cargo bench

loadtest: build
	bash loadtest/run.sh

# libFuzzer runs of the fuzz targets (needs a nightly toolchain and `cargo install
# cargo-fuzz`), FUZZ_TIME seconds each; corpora in fuzz/corpus/, crashes in
# fuzz/artifacts/ (copy them to fuzz/regressions/<target>/ when fixed). The same
# properties run on stable, bounded, in `make test` (tests/e2e/fuzz_props.rs).
FUZZ_TIME ?= 60
fuzz:
	cp -n Cargo.lock fuzz/Cargo.lock || true
	for t in usage_scanner request_body policy credentials; do \
		cargo +nightly fuzz run $$t -- -max_total_time=$(FUZZ_TIME) || exit 1; \
	done
