# Sourced by the test scripts (tests/fuzz/run, tests/deb/run): the cargo
# subcommands they need, installed on demand at a pinned version.

# ensure_cargo_tool SUBCOMMAND CRATE VERSION: unless `cargo SUBCOMMAND
# --version` reports VERSION, installs CRATE VERSION with `cargo install
# --locked` (no root needed: it goes to ~/.cargo/bin) and says how long
# that took.
ensure_cargo_tool() {
    local sub=$1 crate=$2 version=$3 start
    if cargo "$sub" --version 2>/dev/null | grep -qF " $version"; then
        return 0
    fi
    echo "installing $crate $version (cargo install)" >&2
    start=$SECONDS
    cargo install "$crate" --version "$version" --locked --quiet
    echo "$crate $version installed in $((SECONDS - start)) s" >&2
}
