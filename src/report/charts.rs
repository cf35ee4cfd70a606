//! Charts for the HTML report, drawn by plotters into SVG strings that the page inlines.
//!
//! Every chart has a title, both axes labelled with their unit, and a legend. The legend
//! is drawn in its own strip under the plot rather than by plotters inside it, so it can
//! never hide a bar or a line. Series differ by marker shape or fill pattern as well as
//! by colour, so a chart still reads in greyscale or for a colour-blind reader.

use plotters::coord::combinators::BindKeyPoints;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// One rendered chart, with the texts the page (and its browser test) checks are in it.
#[derive(Clone, Debug)]
pub(crate) struct Chart {
    /// Stable id for the page's anchor and the browser test.
    pub(crate) id: String,
    pub(crate) title: String,
    pub(crate) x_label: String,
    pub(crate) y_label: String,
    pub(crate) legend: Vec<String>,
    pub(crate) svg: String,
}

/// How an axis shows its values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Scale {
    Linear,
    Log,
}

/// An axis: its label (with the unit) and the scale.
#[derive(Clone, Debug)]
pub(crate) struct Axis {
    pub(crate) label: String,
    pub(crate) scale: Scale,
    pub(crate) ticks: Ticks,
}

/// How tick values (already in the axis unit) are written.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Ticks {
    /// "0.5", "10", "1000".
    Plain,
    /// Byte counts: "8 B", "64 KiB"; on a log axis, ticks at powers of two.
    Bytes,
    /// Large counts: "10k", "2.5M".
    Count,
}

impl Ticks {
    pub(crate) fn format(self, v: f64) -> String {
        match self {
            Ticks::Plain => plain_ticks(v),
            Ticks::Bytes => byte_ticks(v),
            Ticks::Count => count_ticks(v),
        }
    }
}

impl Axis {
    pub(crate) fn new(label: &str, scale: Scale, ticks: Ticks) -> Axis {
        Axis {
            label: label.to_string(),
            scale,
            ticks,
        }
    }
}

/// One line of a line chart: (x, y) points in the axis units.
#[derive(Clone, Debug)]
pub(crate) struct Line {
    pub(crate) label: String,
    pub(crate) points: Vec<(f64, f64)>,
    /// Drawn dashed (legend too): a second dimension, e.g. placement, besides colour.
    pub(crate) dashed: bool,
}

/// Okabe-Ito: distinguishable by most colour-blind readers (yellow left out: too pale on white).
const PALETTE: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(213, 94, 0),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
];

const WIDTH: u32 = 680;
const FONT: &str = "sans-serif";
const LEGEND_ROW: u32 = 22;

fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Tick texts: plain numbers without trailing zeros ("0.5", "10", "1000").
pub(crate) fn plain_ticks(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let digits = if v.abs() >= 10.0 {
        0
    } else if v.abs() >= 1.0 {
        1
    } else {
        (-(v.abs().log10().floor()) as usize + 1).min(9)
    };
    let text = format!("{v:.digits$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// Tick texts for byte counts: "8 B", "1 KiB", "64 KiB", "1 MiB".
pub(crate) fn byte_ticks(v: f64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = v;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{} {}", plain_ticks(value), UNITS[unit])
}

/// Tick texts for large counts: "900", "10k", "2.5M".
pub(crate) fn count_ticks(v: f64) -> String {
    let (value, suffix) = if v.abs() >= 1e9 {
        (v / 1e9, "G")
    } else if v.abs() >= 1e6 {
        (v / 1e6, "M")
    } else if v.abs() >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    format!("{}{suffix}", plain_ticks(value))
}

/// Key points for a log axis: every power of ten in range, with 2 and 5 between them
/// when the range spans few decades (otherwise an axis might show a single tick).
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let first = lo.log10().floor() as i32;
    let last = hi.log10().ceil() as i32;
    let steps: &[f64] = if last - first <= 2 {
        &[1.0, 2.0, 5.0]
    } else {
        &[1.0]
    };
    let mut ticks = Vec::new();
    for exp in first..=last {
        for step in steps {
            let v = step * 10f64.powi(exp);
            if v >= lo * 0.999 && v <= hi * 1.001 {
                ticks.push(v);
            }
        }
    }
    ticks
}

/// Key points for a byte axis: powers of two, thinned to about 8 ticks, always with both
/// ends (the smallest and largest sizes measured are the ones a reader looks for).
fn byte_log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let first = lo.log2().ceil() as i32;
    let last = hi.log2().floor() as i32;
    let stride = ((last - first) / 8 + 1).max(1);
    let mut exps: Vec<i32> = (first..=last).step_by(stride as usize).collect();
    if exps.last() != Some(&last) {
        if let Some(prev) = exps.last().copied() {
            if 2 * (last - prev) < stride {
                exps.pop();
            }
        }
        exps.push(last);
    }
    exps.into_iter().map(|e| 2f64.powi(e)).collect()
}

fn linear_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = (hi - lo).max(f64::MIN_POSITIVE);
    let raw = span / 6.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| span / s <= 7.0)
        .unwrap_or(magnitude * 10.0);
    let mut ticks = Vec::new();
    let mut v = (lo / step).ceil() * step;
    while v <= hi + step * 1e-9 {
        ticks.push(if v.abs() < step * 1e-9 { 0.0 } else { v });
        v += step;
    }
    ticks
}

/// The range an axis covers for these values, and its tick positions.
fn axis_range(axis: &Axis, values: impl Iterator<Item = f64>) -> (f64, f64, Vec<f64>) {
    let values: Vec<f64> = values
        .filter(|v| v.is_finite() && (axis.scale == Scale::Linear || *v > 0.0))
        .collect();
    let lo = values.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = values.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = if lo.is_finite() {
        (lo, hi)
    } else {
        (1.0, 10.0)
    };
    match axis.scale {
        Scale::Log => {
            let is_bytes = axis.ticks == Ticks::Bytes;
            let (lo, hi) = if is_bytes {
                (lo, hi.max(lo * 2.0))
            } else {
                // Whole decades, so the bars' base and the ticks read simply.
                (
                    10f64.powf(lo.log10().floor()),
                    10f64.powf((hi * 1.01).log10().ceil()),
                )
            };
            let ticks = if is_bytes {
                byte_log_ticks(lo, hi)
            } else {
                log_ticks(lo, hi)
            };
            (lo, hi, ticks)
        }
        Scale::Linear => {
            let lo = lo.min(0.0);
            let hi = if hi > lo { hi * 1.05 } else { lo + 1.0 };
            (lo, hi, linear_ticks(lo, hi))
        }
    }
}

/// A linear axis with the tick positions given (plotters' own f64 axis cannot take fixed
/// key points and still format labels). `lo` may exceed `hi`: the axis then runs backwards.
struct LinearAxis {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
}

impl Ranged for LinearAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let fraction = (value - self.lo) / (self.hi - self.lo);
        limit.0 + ((limit.1 - limit.0) as f64 * fraction).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

fn linear(lo: f64, hi: f64, ticks: Vec<f64>) -> LinearAxis {
    LinearAxis { lo, hi, ticks }
}

fn to_text<E: std::fmt::Debug>(e: E) -> String {
    format!("chart drawing failed: {e:?}")
}

/// Draws the legend swatch of series `i` at a pixel position.
type Swatch<'a, DB> = dyn Fn(usize, (i32, i32)) -> Vec<DynElement<'static, DB, (i32, i32)>> + 'a;

/// Draws the legend strip: a swatch drawn by `swatch` then the label, wrapped in rows.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    labels: &[String],
    swatch: &Swatch<'_, DB>,
) -> Result<(), String> {
    let style = TextStyle::from((FONT, 16).into_font())
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    let (width, _) = area.dim_in_pixel();
    let mut x = 70i32;
    let mut y = (LEGEND_ROW / 2) as i32;
    for (i, label) in labels.iter().enumerate() {
        let text_width = area
            .estimate_text_size(label, &style)
            .map(|(w, _)| w as i32)
            .unwrap_or(label.len() as i32 * 7);
        let item_width = 28 + text_width + 22;
        if x + item_width > width as i32 && x > 70 {
            x = 70;
            y += LEGEND_ROW as i32;
        }
        for element in swatch(i, (x, y)) {
            area.draw(&element).map_err(to_text)?;
        }
        area.draw(&Text::new(label.clone(), (x + 28, y), style.clone()))
            .map_err(to_text)?;
        x += item_width;
    }
    Ok(())
}

/// The common frame: title above, room for the tick labels and axis descriptions.
fn chart_builder<'a, 'b, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    y_label_width: u32,
) -> ChartBuilder<'a, 'b, DB> {
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(title, (FONT, 23).into_font())
        .margin(12)
        .margin_right(30)
        .x_label_area_size(44)
        .y_label_area_size(y_label_width);
    builder
}

/// Rows the legend strip needs for these labels (estimated without a backend).
fn legend_rows(labels: &[String]) -> u32 {
    let mut rows = 1;
    let mut x = 70usize;
    for label in labels {
        let item = 50 + label.chars().count() * 10;
        if x + item > WIDTH as usize && x > 70 {
            rows += 1;
            x = 70;
        }
        x += item;
    }
    rows
}

/// The fill of bar series `i`: solid, pale, or outlined, so series differ without colour.
fn bar_style(i: usize) -> (ShapeStyle, ShapeStyle) {
    let c = colour(i);
    match i % 3 {
        0 => (c.filled(), c.stroke_width(1)),
        1 => (c.mix(0.45).filled(), c.stroke_width(1)),
        _ => (WHITE.filled(), c.stroke_width(2)),
    }
}

/// Horizontal grouped bars: one group per category, one bar per series, on a value axis
/// that may be logarithmic. A missing value (None) draws no bar.
pub(crate) fn grouped_bars(
    id: &str,
    title: &str,
    value_axis: &Axis,
    category_label: &str,
    categories: &[String],
    series: &[(String, Vec<Option<f64>>)],
) -> Result<Chart, String> {
    super::fonts::register();
    let legend: Vec<String> = series.iter().map(|(name, _)| name.clone()).collect();
    let values = series.iter().flat_map(|(_, v)| v.iter().flatten().cloned());
    let (lo, hi, ticks) = axis_range(value_axis, values);
    let per_group = series.len().max(1) as f64;
    let group_height = per_group * 16.0 + 14.0;
    let plot_height = (categories.len().max(1) as f64 * group_height) as u32;
    let legend_height = legend_rows(&legend) * LEGEND_ROW + 8;
    let height = plot_height + 110 + legend_height;
    let label_width = categories
        .iter()
        .map(|c| c.chars().count())
        .max()
        .unwrap_or(4)
        .clamp(4, 40) as u32
        * 9
        + 24;

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(to_text)?;
        let (plot_area, legend_area) = root.split_vertically(height - legend_height);
        let n = categories.len().max(1) as f64;
        let centres: Vec<f64> = (0..categories.len()).map(|i| i as f64 + 0.5).collect();
        let cats = categories.to_vec();
        let y_format = move |v: &f64| {
            let i = v.floor() as usize;
            cats.get(i).cloned().unwrap_or_default()
        };
        let x_format = |v: &f64| value_axis.ticks.format(*v);
        let mut builder = chart_builder(&plot_area, title, label_width);
        // The categories run top to bottom, as in the tables beside the chart.
        let y_range = linear(n, 0.0, centres);
        let bar_height = 1.0 / (per_group + 1.0);
        let bar = |i: usize, slot: usize, value: f64, lo: f64| {
            let top = i as f64 + (slot as f64 + 0.5) * bar_height;
            ((lo, top), (value, top + bar_height * 0.9))
        };
        macro_rules! draw_bars {
            ($chart:ident) => {{
                $chart
                    .configure_mesh()
                    .disable_y_mesh()
                    .x_desc(value_axis.label.as_str())
                    .y_desc(category_label)
                    .x_label_formatter(&x_format)
                    .y_label_formatter(&y_format)
                    .label_style((FONT, 16))
                    .axis_desc_style((FONT, 17))
                    .draw()
                    .map_err(to_text)?;
                for (slot, (_, values)) in series.iter().enumerate() {
                    let (fill, stroke) = bar_style(slot);
                    for (i, value) in values.iter().enumerate() {
                        let Some(value) = value.filter(|v| v.is_finite() && *v >= lo) else {
                            continue;
                        };
                        let (a, b) = bar(i, slot, value, lo);
                        $chart
                            .draw_series(std::iter::once(Rectangle::new([a, b], fill)))
                            .map_err(to_text)?;
                        $chart
                            .draw_series(std::iter::once(Rectangle::new([a, b], stroke)))
                            .map_err(to_text)?;
                    }
                }
            }};
        }
        match value_axis.scale {
            Scale::Log => {
                let mut chart = builder
                    .build_cartesian_2d((lo..hi).log_scale().with_key_points(ticks), y_range)
                    .map_err(to_text)?;
                draw_bars!(chart);
            }
            Scale::Linear => {
                let mut chart = builder
                    .build_cartesian_2d(linear(lo, hi, ticks), y_range)
                    .map_err(to_text)?;
                draw_bars!(chart);
            }
        }
        draw_legend(&legend_area, &legend, &|i, (x, y)| {
            let (fill, stroke) = bar_style(i);
            vec![
                Rectangle::new([(x, y - 6), (x + 20, y + 6)], fill).into_dyn(),
                Rectangle::new([(x, y - 6), (x + 20, y + 6)], stroke).into_dyn(),
            ]
        })?;
        root.present().map_err(to_text)?;
    }
    Ok(Chart {
        id: id.to_string(),
        title: title.to_string(),
        x_label: value_axis.label.clone(),
        y_label: category_label.to_string(),
        legend,
        svg,
    })
}

/// A marker for line series `i`, so lines differ by shape as well as colour.
fn marker<DB: DrawingBackend>(
    i: usize,
    (x, y): (i32, i32),
    style: ShapeStyle,
) -> DynElement<'static, DB, (i32, i32)> {
    match i % 4 {
        0 => Circle::new((x, y), 4, style.filled()).into_dyn(),
        1 => TriangleMarker::new((x, y), 5, style.filled()).into_dyn(),
        2 => Rectangle::new([(x - 4, y - 4), (x + 4, y + 4)], style.filled()).into_dyn(),
        _ => Cross::new((x, y), 4, style.stroke_width(2)).into_dyn(),
    }
}

/// A line chart: one line per series with a marker at each point. `x_ticks` replaces the
/// x axis' key points by named positions (for categories such as "1x1", "2x2").
pub(crate) fn lines(
    id: &str,
    title: &str,
    x_axis: &Axis,
    y_axis: &Axis,
    series: &[Line],
    x_names: Option<&[(f64, String)]>,
    markers: bool,
) -> Result<Chart, String> {
    super::fonts::register();
    let legend: Vec<String> = series.iter().map(|l| l.label.clone()).collect();
    let (x_lo, x_hi, mut x_ticks) = axis_range(
        x_axis,
        series.iter().flat_map(|l| l.points.iter().map(|p| p.0)),
    );
    let (y_lo, y_hi, y_ticks) = axis_range(
        y_axis,
        series.iter().flat_map(|l| l.points.iter().map(|p| p.1)),
    );
    let (x_lo, x_hi) = match x_names {
        Some(names) => {
            x_ticks = names.iter().map(|(v, _)| *v).collect();
            let first = x_ticks.first().cloned().unwrap_or(0.0);
            let last = x_ticks.last().cloned().unwrap_or(1.0);
            (first - 0.3, last + 0.3)
        }
        None => (x_lo, x_hi),
    };
    let legend_height = legend_rows(&legend) * LEGEND_ROW + 8;
    let height = 400 + legend_height;
    let names: Vec<(f64, String)> = x_names.map(|n| n.to_vec()).unwrap_or_default();

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(to_text)?;
        let (plot_area, legend_area) = root.split_vertically(height - legend_height);
        let x_format = |v: &f64| match names.iter().find(|(p, _)| (p - v).abs() < 1e-9) {
            Some((_, name)) => name.clone(),
            None => x_axis.ticks.format(*v),
        };
        let y_format = |v: &f64| y_axis.ticks.format(*v);
        let mut builder = chart_builder(&plot_area, title, 70);
        macro_rules! draw_lines {
            ($chart:ident) => {{
                $chart
                    .configure_mesh()
                    .x_desc(x_axis.label.as_str())
                    .y_desc(y_axis.label.as_str())
                    .x_label_formatter(&x_format)
                    .y_label_formatter(&y_format)
                    .label_style((FONT, 16))
                    .axis_desc_style((FONT, 17))
                    .light_line_style(WHITE)
                    .draw()
                    .map_err(to_text)?;
                for (i, line) in series.iter().enumerate() {
                    let style = colour(i).stroke_width(2);
                    let points: Vec<(f64, f64)> = line
                        .points
                        .iter()
                        .cloned()
                        .filter(|(x, y)| {
                            x.is_finite()
                                && y.is_finite()
                                && (x_axis.scale == Scale::Linear || *x > 0.0)
                                && (y_axis.scale == Scale::Linear || *y > 0.0)
                        })
                        .collect();
                    if line.dashed {
                        $chart
                            .draw_series(DashedLineSeries::new(points.iter().cloned(), 8, 5, style))
                            .map_err(to_text)?;
                    } else {
                        $chart
                            .draw_series(LineSeries::new(points.iter().cloned(), style))
                            .map_err(to_text)?;
                    }
                    if markers {
                        $chart
                            .draw_series(points.iter().map(|p| {
                                EmptyElement::at(*p) + marker::<SVGBackend>(i, (0, 0), style)
                            }))
                            .map_err(to_text)?;
                    }
                }
            }};
        }
        match (x_axis.scale, y_axis.scale) {
            (Scale::Log, Scale::Log) => {
                let mut chart = builder
                    .build_cartesian_2d(
                        (x_lo..x_hi).log_scale().with_key_points(x_ticks),
                        (y_lo..y_hi).log_scale().with_key_points(y_ticks),
                    )
                    .map_err(to_text)?;
                draw_lines!(chart);
            }
            (Scale::Log, Scale::Linear) => {
                let mut chart = builder
                    .build_cartesian_2d(
                        (x_lo..x_hi).log_scale().with_key_points(x_ticks),
                        linear(y_lo, y_hi, y_ticks),
                    )
                    .map_err(to_text)?;
                draw_lines!(chart);
            }
            (Scale::Linear, Scale::Log) => {
                let mut chart = builder
                    .build_cartesian_2d(
                        linear(x_lo, x_hi, x_ticks),
                        (y_lo..y_hi).log_scale().with_key_points(y_ticks),
                    )
                    .map_err(to_text)?;
                draw_lines!(chart);
            }
            (Scale::Linear, Scale::Linear) => {
                let mut chart = builder
                    .build_cartesian_2d(linear(x_lo, x_hi, x_ticks), linear(y_lo, y_hi, y_ticks))
                    .map_err(to_text)?;
                draw_lines!(chart);
            }
        }
        draw_legend(&legend_area, &legend, &|i, (x, y)| {
            let style = colour(i).stroke_width(2);
            let mut parts = if series[i].dashed {
                vec![
                    PathElement::new(vec![(x, y), (x + 8, y)], style).into_dyn(),
                    PathElement::new(vec![(x + 13, y), (x + 21, y)], style).into_dyn(),
                ]
            } else {
                vec![PathElement::new(vec![(x, y), (x + 21, y)], style).into_dyn()]
            };
            if markers {
                parts.push(marker(i, (x + 10, y), style));
            }
            parts
        })?;
        root.present().map_err(to_text)?;
    }
    Ok(Chart {
        id: id.to_string(),
        title: title.to_string(),
        x_label: x_axis.label.clone(),
        y_label: y_axis.label.clone(),
        legend,
        svg,
    })
}

/// The shade of a heatmap cell at `t` in [0, 1]: pale for the fastest, dark for the
/// slowest (one hue, so it reads in greyscale too).
fn heat(t: f64) -> RGBColor {
    let t = t.clamp(0.0, 1.0);
    let mix = |a: u8, b: u8| (a as f64 + (b as f64 - a as f64) * t).round() as u8;
    RGBColor(mix(239, 8), mix(243, 48), mix(255, 107))
}

const UNMEASURED: RGBColor = RGBColor(215, 215, 215);

/// A heatmap over pairs of CPUs: `cpus` on both axes (initiator down the side, responder
/// across), each measured cell shaded by its value on a log scale and labelled with it
/// (`format`); a cell not measured stays grey with a dash. The cells grow with the
/// matrix so their numbers stay readable.
pub(crate) fn heatmap(
    id: &str,
    title: &str,
    value_label: &str,
    cpus: &[usize],
    cells: &[((usize, usize), f64)],
    format: impl Fn(f64) -> String,
) -> Result<Chart, String> {
    super::fonts::register();
    let n = cpus.len().max(1);
    let cell_px = (520 / n as u32).max(56);
    let values: Vec<f64> = cells
        .iter()
        .map(|(_, v)| *v)
        .filter(|v| v.is_finite() && *v > 0.0)
        .collect();
    let lo = values.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = values.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let shade = |v: f64| {
        if hi > lo {
            heat((v.ln() - lo.ln()) / (hi.ln() - lo.ln()))
        } else {
            heat(0.3)
        }
    };
    // Legend: the two ends of the scale (one swatch when every cell is the same).
    let mut scale: Vec<(RGBColor, String)> = Vec::new();
    if hi > lo {
        scale.push((heat(0.0), format!("fastest {}", format(lo))));
        scale.push((heat(1.0), format!("slowest {}", format(hi))));
    } else if !values.is_empty() {
        scale.push((heat(0.3), format(lo)));
    }
    scale.push((UNMEASURED, "not measured".into()));
    let legend: Vec<String> = scale.iter().map(|(_, l)| l.clone()).collect();
    let legend_height = legend_rows(&legend) * LEGEND_ROW + 8;
    let width = (cell_px * n as u32 + 150).max(WIDTH);
    let height = cell_px * n as u32 + 130 + legend_height;
    let font_px = (cell_px / 4).clamp(12, 20);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(to_text)?;
        let (plot_area, legend_area) = root.split_vertically(height - legend_height);
        // Keep the cells square: the plot is as wide as it is tall, the rest margin.
        let side = cell_px * n as u32;
        let (plot_area, _) = plot_area.split_horizontally(side + 110);
        let names: Vec<String> = cpus.iter().map(|c| format!("cpu{c}")).collect();
        let name_of = |v: &f64| names.get(v.floor() as usize).cloned().unwrap_or_default();
        let centres: Vec<f64> = (0..n).map(|i| i as f64 + 0.5).collect();
        let (x_label, y_label) = heatmap_axes(value_label);
        let mut chart = chart_builder(&plot_area, title, 80)
            .build_cartesian_2d(
                linear(0.0, n as f64, centres.clone()),
                linear(n as f64, 0.0, centres),
            )
            .map_err(to_text)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc(x_label.as_str())
            .y_desc(y_label.as_str())
            .x_label_formatter(&name_of)
            .y_label_formatter(&name_of)
            .label_style((FONT, 16))
            .axis_desc_style((FONT, 17))
            .draw()
            .map_err(to_text)?;
        let position = |cpu: usize| cpus.iter().position(|&c| c == cpu);
        for (row, _) in cpus.iter().enumerate() {
            for (col, _) in cpus.iter().enumerate() {
                let value = cells
                    .iter()
                    .find(|((a, b), _)| position(*a) == Some(row) && position(*b) == Some(col))
                    .map(|(_, v)| *v)
                    .filter(|v| v.is_finite() && *v > 0.0);
                let (x, y) = (col as f64, row as f64);
                let fill = value.map_or(UNMEASURED, shade);
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(x, y), (x + 1.0, y + 1.0)],
                        fill.filled(),
                    )))
                    .map_err(to_text)?;
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(x, y), (x + 1.0, y + 1.0)],
                        WHITE.stroke_width(2),
                    )))
                    .map_err(to_text)?;
                let dark = value
                    .is_some_and(|v| hi > lo && (v.ln() - lo.ln()) / (hi.ln() - lo.ln()) > 0.55);
                let style = TextStyle::from((FONT, font_px).into_font())
                    .color(if dark { &WHITE } else { &BLACK })
                    .pos(Pos::new(HPos::Center, VPos::Center));
                let text = value.map_or_else(|| "—".to_string(), &format);
                chart
                    .draw_series(std::iter::once(Text::new(text, (x + 0.5, y + 0.5), style)))
                    .map_err(to_text)?;
            }
        }
        draw_legend(&legend_area, &legend, &|i, (x, y)| {
            vec![
                Rectangle::new([(x, y - 7), (x + 20, y + 7)], scale[i].0.filled()).into_dyn(),
                Rectangle::new([(x, y - 7), (x + 20, y + 7)], BLACK.stroke_width(1)).into_dyn(),
            ]
        })?;
        root.present().map_err(to_text)?;
    }
    let (x_label, y_label) = heatmap_axes(value_label);
    Ok(Chart {
        id: id.to_string(),
        title: title.to_string(),
        x_label,
        y_label,
        legend,
        svg,
    })
}

/// The heatmap's axis labels, as drawn and as the page records them.
fn heatmap_axes(value_label: &str) -> (String, String) {
    (
        "responder CPU (cpu number)".to_string(),
        format!("initiator CPU ({value_label})"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_texts_read_simply() {
        assert_eq!(plain_ticks(10.0), "10");
        assert_eq!(plain_ticks(0.5), "0.5");
        assert_eq!(plain_ticks(0.02), "0.02");
        assert_eq!(plain_ticks(2.5), "2.5");
        assert_eq!(byte_ticks(8.0), "8 B");
        assert_eq!(byte_ticks(65536.0), "64 KiB");
        assert_eq!(byte_ticks(1048576.0), "1 MiB");
        assert_eq!(count_ticks(2_500_000.0), "2.5M");
        assert_eq!(count_ticks(10_000.0), "10k");
    }

    #[test]
    fn log_axes_get_several_ticks() {
        assert_eq!(
            log_ticks(1.0, 100.0),
            vec![1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]
        );
        assert_eq!(log_ticks(0.1, 1000.0), vec![0.1, 1.0, 10.0, 100.0, 1000.0]);
        let bytes = byte_log_ticks(8.0, 1048576.0);
        assert!(bytes.len() >= 5 && bytes.len() <= 9, "{bytes:?}");
        assert_eq!((bytes[0], bytes[bytes.len() - 1]), (8.0, 1048576.0));
    }

    #[test]
    fn a_chart_carries_its_title_axes_and_legend() {
        let axis = Axis::new("round-trip time (µs, log scale)", Scale::Log, Ticks::Plain);
        let chart = grouped_bars(
            "t",
            "Pipe latency",
            &axis,
            "flavor",
            &["duplex".into(), "simplex".into()],
            &[
                ("p50".into(), vec![Some(6.0), Some(11.0)]),
                ("p99".into(), vec![Some(9.0), None]),
            ],
        )
        .unwrap();
        for text in [
            "Pipe latency",
            "round-trip time",
            "flavor",
            "duplex",
            "p50",
            "p99",
        ] {
            assert!(chart.svg.contains(text), "{text} missing from the SVG");
        }
        let line = lines(
            "l",
            "CDF",
            &Axis::new("time (µs, log scale)", Scale::Log, Ticks::Plain),
            &Axis::new("fraction ≤ time", Scale::Linear, Ticks::Plain),
            &[Line {
                label: "pipe/duplex".into(),
                points: vec![(5.0, 0.1), (6.0, 0.5), (20.0, 1.0)],
                dashed: true,
            }],
            None,
            false,
        )
        .unwrap();
        assert!(line.svg.contains("pipe/duplex") && line.svg.contains("<polyline"));
    }

    #[test]
    fn a_heatmap_writes_each_value_in_its_cell_and_names_both_axes() {
        let chart = heatmap(
            "h",
            "Core-to-core",
            "median round trip",
            &[0, 1],
            &[((0, 1), 180.0), ((1, 0), 180.0), ((0, 0), 6_100.0)],
            |v| format!("{v:.0} ns"),
        )
        .unwrap();
        for text in [
            "Core-to-core",
            "responder CPU (cpu number)",
            "initiator CPU (median round trip)",
            "cpu0",
            "cpu1",
            "180 ns",
            "6100 ns",
            "—",
            "fastest 180 ns",
            "slowest 6100 ns",
        ] {
            assert!(chart.svg.contains(text), "{text} missing from the SVG");
        }
        assert_eq!(
            chart.svg.matches("180 ns").count(),
            3,
            "two cells and the legend"
        );
    }
}
