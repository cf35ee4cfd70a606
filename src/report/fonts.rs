//! A font embedded in the binary, registered with plotters, so charts render on a
//! machine with no fontconfig, no freetype and no installed fonts (see
//! docs/dependencies.md: plotters' default features fail there with NoSuchFont).

use std::sync::Once;

/// DejaVu Sans (Bitstream Vera licence; assets/LICENSE_DEJAVU).
static DEJAVU_SANS: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

/// Registers the embedded font for every family and style plotters (or criterion) asks
/// for. Idempotent.
pub fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        use plotters::style::FontStyle;
        for family in ["sans-serif", "serif", "monospace", "Helvetica", "Arial"] {
            for style in [
                FontStyle::Normal,
                FontStyle::Bold,
                FontStyle::Italic,
                FontStyle::Oblique,
            ] {
                // Registration only fails on a font that does not parse; ours is fixed.
                let _ = plotters::style::register_font(family, style, DEJAVU_SANS);
            }
        }
    });
}
