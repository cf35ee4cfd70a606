//! The pieces every section builds from: numbers as the tables show them, escaping,
//! tables whose cells name the JSON field they show, and charts as figures. Kept apart
//! from the sections so that a number or a cell reads the same in every table.

use crate::report::charts::Chart;
use crate::report::units::{human, Unit};
use std::fmt::Write as _;

/// A number as the tables show it: the JSON's value, rounded to at most three decimals.
pub(crate) fn num(v: f64) -> String {
    if !v.is_finite() {
        return "—".into();
    }
    // Below 1, four significant digits, so a small ratio does not show as 0.
    let decimals = if v.abs() >= 1.0 || v == 0.0 {
        3
    } else {
        (3 - v.abs().log10().floor() as i32).clamp(3, 12) as usize
    };
    let text = format!("{v:.decimals$}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".into()
    } else {
        text.to_string()
    }
}

/// Escapes text for HTML content and attribute values.
pub(crate) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// "2026-11-27 04:33:00 UTC" from seconds since the epoch (no date crate needed for this).
pub(crate) fn utc_text(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// A table: header cells (with units) and rows keyed for the tests; each cell names the
/// JSON field it shows.
pub(super) struct Table {
    id: String,
    head: Vec<&'static str>,
    pub(super) rows: Vec<(String, Vec<Cell>)>,
    /// Keys of rows to mark as failed.
    pub(super) bad: Vec<String>,
}

pub(super) struct Cell {
    field: &'static str,
    html: String,
    class: &'static str,
    /// The exact figure behind a rounded one: kept in `data-value` and the title (hover).
    exact: Option<f64>,
}

pub(super) fn cell(field: &'static str, text: &str) -> Cell {
    Cell {
        field,
        html: esc(text),
        class: "",
        exact: None,
    }
}

pub(super) fn num_cell(field: &'static str, v: f64) -> Cell {
    Cell {
        field,
        html: num(v),
        class: "n",
        exact: Some(v),
    }
}

/// A figure in the unit a person reads (`6.27 GiB/s`), the exact value on hover.
pub(super) fn unit_cell(field: &'static str, v: f64, unit: Unit) -> Cell {
    Cell {
        field,
        html: esc(&human(v, unit)),
        class: "n",
        exact: Some(v),
    }
}

/// A figure's ratio, with the calibration it is a ratio to.
pub(super) fn ratio_cell(ratio: Option<f64>, calibration: Option<&str>) -> Cell {
    match (ratio, calibration) {
        (Some(ratio), Some(name)) => Cell {
            field: "ratio",
            html: format!(
                "{} <small>of {}</small>",
                esc(&human(ratio, Unit::Times)),
                esc(name)
            ),
            class: "n",
            exact: Some(ratio),
        },
        (Some(ratio), None) => unit_cell("ratio", ratio, Unit::Times),
        (None, _) => cell("ratio", "—"),
    }
}

impl Table {
    pub(super) fn new(id: &str, head: Vec<&'static str>) -> Table {
        Table {
            id: id.to_string(),
            head,
            rows: Vec::new(),
            bad: Vec::new(),
        }
    }

    pub(super) fn html(&self) -> String {
        let mut out = format!("<table id=\"{}\"><thead><tr>", esc(&self.id));
        for h in &self.head {
            let _ = write!(out, "<th>{}</th>", esc(h));
        }
        out.push_str("</tr></thead><tbody>");
        for (key, cells) in &self.rows {
            let class = if self.bad.contains(key) {
                " class=\"bad\""
            } else {
                ""
            };
            let _ = write!(out, "<tr data-key=\"{}\"{class}>", esc(key));
            for c in cells {
                let class = if c.class.is_empty() {
                    String::new()
                } else {
                    format!(" class=\"{}\"", c.class)
                };
                let exact = match c.exact {
                    Some(v) => format!(" data-value=\"{0}\" title=\"{0}\"", num(v)),
                    None => String::new(),
                };
                let _ = write!(
                    out,
                    "<td data-field=\"{}\"{class}{exact}>{}</td>",
                    c.field, c.html
                );
            }
            out.push_str("</tr>");
        }
        out.push_str("</tbody></table>");
        out
    }
}

fn figure(chart: &Chart) -> String {
    let legend = serde_json::to_string(&chart.legend).unwrap_or_default();
    format!(
        "<figure class=\"chart\" id=\"chart-{id}\" data-title=\"{title}\" data-x-label=\"{x}\" \
         data-y-label=\"{y}\" data-legend=\"{legend}\">{svg}<figcaption>{title}</figcaption></figure>",
        id = esc(&chart.id),
        title = esc(&chart.title),
        x = esc(&chart.x_label),
        y = esc(&chart.y_label),
        legend = esc(&legend),
        svg = chart.svg,
    )
}

pub(super) fn chart_html(chart: Result<Chart, String>) -> String {
    match chart {
        Ok(chart) => figure(&chart),
        Err(e) => format!("<p class=\"note\">Chart not drawn: {}</p>", esc(&e)),
    }
}

/// A chart with its table beside it (below it on a narrow screen).
pub(super) fn pair(chart: Result<Chart, String>, table: &Table) -> String {
    format!(
        "<div class=\"pair\">{}<div class=\"table\">{}</div></div>",
        chart_html(chart),
        table.html()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_the_json_value() {
        assert_eq!(num(11234.0), "11234");
        assert_eq!(num(0.9545454), "0.9545");
        assert_eq!(num(2_684_354_560.0), "2684354560");
        assert_eq!(num(-0.00001), "-0.00001");
        assert_eq!(num(0.000_512_34), "0.0005123");
        assert_eq!(num(-0.0), "0");
        assert_eq!(num(118.5), "118.5");
        assert_eq!(num(f64::NAN), "—");
    }

    #[test]
    fn dates_are_utc() {
        assert_eq!(utc_text(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_text(1_795_754_000), "2026-11-27 04:33:20 UTC");
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
