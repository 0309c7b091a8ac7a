//! The `threatpilot` binary: parse the command line and run it.

fn main() -> std::process::ExitCode {
    threatpilot::cli::main()
}
