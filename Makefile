# The README's two commands: `make demo` and `make test`. Both install what they need.
.PHONY: demo test setup lint build bench loadtest

setup:
	@bash scripts/setup.sh

build: setup
	cargo build --release

# Mock provider + gateway on conf/demo.toml; prints a working key and a curl line.
demo: build
	./target/release/tollgate demo -c conf/demo.toml

lint: setup
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

# The whole test suite (CI runs exactly this through .ci/run).
test: lint
	bash scripts/setup-sdk.sh
	TOLLGATE_REQUIRE_SDK=1 cargo test

bench: setup
	cargo bench

loadtest: build
	bash loadtest/run.sh
