//! Results model (serde JSON), charts (plotters), the HTML report, and the CI comparison.

#![warn(missing_docs)]

pub(crate) mod charts;
pub mod compare;
pub mod fonts;
pub(crate) mod html;
pub(crate) mod junit;
// The results schema lives in `results` (every harness writes it); kept here at its old
// path.
pub use crate::results as model;
pub mod units;
