//! The `volley` binary: [`volley_cli::run`] on this process's arguments.

fn main() -> std::process::ExitCode {
    volley_cli::run(std::env::args_os()).into()
}
