//! Results model (serde JSON), charts (plotters) and the HTML report.

pub mod fonts;
