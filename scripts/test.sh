#!/usr/bin/env bash
# The whole test suite: installs what the tests need, checks the house rules, then runs every
# test of the workspace. Tests start their own servers on loopback ports and stop them.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/tools.sh
source scripts/tools.sh

# The habits, checked before any test: formatting, stages that compile without the adapters
# (the layering the compiler can enforce), lints as errors, and the dependency policy in
# deny.toml. WITHDRAW_TEST_GATES=0 skips them for a quick local rerun of some tests.
if [ "${WITHDRAW_TEST_GATES:-1}" != 0 ]; then
  echo "test: cargo fmt --check" >&2
  cargo fmt --all --check
  echo "test: withdraw-core's stages build without its adapters" >&2
  cargo check -q -p withdraw-core --no-default-features --features stages
  echo "test: cargo clippy -D warnings" >&2
  cargo clippy -q --workspace --all-targets -- -D warnings

  # No prebuilt cargo-deny is reachable from these machines (GitHub releases are not;
  # PyPI's is two years old and cannot read today's SPDX ids), so it is built once from
  # crates.io into .tools/cargo: a debug build, which compiles in about half the time, and
  # checking licenses and bans takes a second either way.
  deny_version=0.20.2
  deny_bin="$root/.tools/cargo/bin/cargo-deny"
  if ! "$deny_bin" --version 2>/dev/null | grep -q " $deny_version\$"; then
    echo "test: building cargo-deny $deny_version from crates.io into .tools/cargo (once)" >&2
    cargo install --quiet --locked --debug --root "$root/.tools/cargo" "cargo-deny@$deny_version" >&2
  fi
  echo "test: cargo deny check licenses bans" >&2
  "$deny_bin" --log-level error check licenses bans
fi

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
