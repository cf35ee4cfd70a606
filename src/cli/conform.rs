//! `ipcbench conform [--flavor NAME]...`: runs the queue conformance suite
//! ([`crate::conformance::queue`]) on the named flavors — by default every flavor linked
//! into this binary, plug-in flavors included — and prints one row per check.

use super::{EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_OK};
use crate::conformance::queue::CHECKS;
use crate::ipc::queue::Flavor;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A queue flavor to check (repeatable; default: every flavor in this binary)
    #[arg(long = "flavor", value_name = "NAME")]
    pub flavors: Vec<String>,
}

pub fn main(args: Args) -> i32 {
    let flavors = match selected(&args.flavors) {
        Ok(flavors) => flavors,
        Err(e) => {
            eprintln!("ipcbench conform: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    let width = CHECKS.iter().map(|c| c.name.len()).max().unwrap_or(0);
    println!(
        "{:<10} {:<width$} {:<6} {:>8}  error",
        "flavor", "check", "result", "time"
    );
    let mut failed = 0;
    for flavor in flavors {
        for check in CHECKS {
            let outcome = check.run_clean(flavor);
            let (result, error) = match &outcome.result {
                Ok(()) => ("ok", String::new()),
                Err(e) => {
                    failed += 1;
                    ("FAILED", e.chain().replace('\n', " "))
                }
            };
            let took = format!("{:.2}s", outcome.took.as_secs_f64());
            println!(
                "{:<10} {:<width$} {result:<6} {took:>8}  {error}",
                flavor.name(),
                check.name
            );
        }
    }
    if failed > 0 {
        println!("{failed} check(s) FAILED");
        EXIT_FAILURE
    } else {
        println!("every check passed");
        EXIT_OK
    }
}

/// The flavors named (each once, in the order given), or every flavor; an unknown name
/// is an error listing the known ones.
fn selected(names: &[String]) -> Result<Vec<Flavor>, String> {
    if names.is_empty() {
        return Ok(Flavor::all());
    }
    let mut flavors: Vec<Flavor> = Vec::new();
    for name in names {
        let flavor: Flavor = name.parse()?;
        if !flavors.contains(&flavor) {
            flavors.push(flavor);
        }
    }
    Ok(flavors)
}
