//! Shared by every bench: the criterion configuration.

/// Registers the embedded font first, so criterion's own charts render on a machine
/// without system fonts (../shared/DEPENDENCIES.md, plotters).
pub fn criterion_config() -> criterion::Criterion {
    ipcbench::report::fonts::register();
    criterion::Criterion::default()
}
