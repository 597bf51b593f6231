fn main() -> std::process::ExitCode {
    sysconfig::plugins::main(sysconfig::plugins::zones::Zones)
}
