//! Conformance suites: named checks a mechanism's flavor must pass, over real processes,
//! written once per family and run on every flavor linked into the binary — the built-in
//! ones and those registered from outside (`register_queue_flavor!`). The integration
//! tests run them (one `#[test]` per check), and so does `ipcbench conform`, so a
//! third-party flavor gets the same verdicts the suite's own flavors get.

#![warn(missing_docs)]

mod error;
pub mod queue;

pub use error::ConformanceError;

use crate::process::hygiene;
use std::time::{Duration, Instant};

/// One named check of a family whose flavors are `F`.
#[derive(Clone, Copy, Debug)]
pub struct Check<F: 'static> {
    /// Stable name (`ipcbench conform` prints it; the tests are named after it).
    pub name: &'static str,
    /// What it checks, in one line.
    pub about: &'static str,
    /// The check itself: `Err` says what was wrong.
    pub run: fn(F) -> Result<(), ConformanceError>,
}

/// What one check gave on one flavor.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) result: Result<(), ConformanceError>,
    pub(crate) took: Duration,
}

impl<F: Copy + std::fmt::Debug> Check<F> {
    /// Runs the check on `flavor`, and fails it too when it left anything behind (a
    /// shared-memory name, a temp file, an fd, a process) — what a user's flavor most
    /// easily gets wrong.
    pub(crate) fn run_clean(&self, flavor: F) -> Outcome {
        let before = hygiene::Snapshot::take();
        let start = Instant::now();
        let mut result = (self.run)(flavor);
        let took = start.elapsed();
        let leaks = before.leaks_since();
        if result.is_ok() && !leaks.is_empty() {
            result = Err(ConformanceError::Leaked(
                leaks.iter().map(ToString::to_string).collect(),
            ));
        }
        Outcome { result, took }
    }
}

/// The check named `name` in `checks`.
pub fn find<F>(checks: &'static [Check<F>], name: &str) -> Option<&'static Check<F>> {
    checks.iter().find(|c| c.name == name)
}

/// `Err(ConformanceError::Broken(format!(...)))` unless `cond`: the checks' assert.
macro_rules! ensure {
    ($cond:expr, $($what:tt)+) => {
        if !$cond {
            return Err($crate::conformance::ConformanceError::Broken(format!($($what)+)));
        }
    };
}
pub(crate) use ensure;
