fn main() {
    std::process::exit(ipcbench::cli::main_with_args(std::env::args_os()));
}
