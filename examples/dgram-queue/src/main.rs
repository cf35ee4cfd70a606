//! A full `ipcbench` whose queue family includes the `dgram` flavor and whose catalogue
//! includes the `dgram-chunks` scenario, both registered by the library.

use ipcbench_dgram_queue as _;

fn main() {
    std::process::exit(ipcbench::cli::main_with_args(std::env::args_os()));
}
