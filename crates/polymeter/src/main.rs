//! `polymeter`: see [`polymeter::cli`].

fn main() -> anyhow::Result<()> {
    polymeter::cli::main()
}
