//! The `image-builder` command: parse, call the library, print, exit.

mod cli;

fn main() -> std::process::ExitCode {
    cli::run()
}
