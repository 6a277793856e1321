fn main() -> std::process::ExitCode {
    topgate::cli::main()
}
