//! The `polymeter` command line, built as part of this package so that
//! `cargo test` always builds it before the integration tests run and hands
//! them its path (`CARGO_BIN_EXE_polymeter-under-test`): the crash and
//! process tests run services as real child processes.

fn main() -> anyhow::Result<()> {
    polymeter::cli::main()
}
