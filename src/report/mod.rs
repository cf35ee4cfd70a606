//! Results model (serde JSON), charts (plotters), the HTML report, and the CI comparison.

pub mod charts;
pub mod compare;
pub mod fonts;
pub mod html;
pub mod junit;
pub mod model;
pub mod units;
