fn main() -> std::process::ExitCode {
    sysconfig::plugins::main_by_name()
}
