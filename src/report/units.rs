//! Numbers in the units a person reads: `6.27 GiB/s`, `1.24 µs`, `1.98 M`, `4.2 %`.
//!
//! The JSON keeps the exact values; the report shows these and keeps the exact value in
//! the cell's title, so nothing is lost by rounding for the eye.

/// What a figure measures, which decides how it is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unit {
    /// A time in nanoseconds: ns, µs, ms, s.
    Nanos,
    /// A size in bytes: B, KiB, MiB, GiB (binary, as message sizes are).
    Bytes,
    /// A bandwidth in bytes per second: B/s … GiB/s.
    BytesPerSec,
    /// A rate or a large count: k, M, G (decimal, as rates are quoted).
    Rate,
    /// A relative figure (0.042 = 4.2 %), e.g. a spread.
    Fraction,
    /// A ratio to a baseline: `1.23×`.
    Times,
}

/// Three significant figures, no exponent, trailing zeros kept off: 1.23, 12.3, 123, 1230.
pub(crate) fn significant(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let magnitude = v.abs().log10().floor() as i32;
    let decimals = (2 - magnitude).max(0) as usize;
    let text = format!("{v:.decimals$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        &text
    };
    if text == "-0" {
        "0".into()
    } else {
        text.to_string()
    }
}

/// `v` scaled by the largest step it reaches, with that step's suffix.
fn scaled(v: f64, steps: &[(f64, &str)]) -> String {
    let i = steps
        .iter()
        .rposition(|(factor, _)| v.abs() >= *factor)
        .unwrap_or(0);
    let (factor, suffix) = steps[i];
    let shown = significant(v / factor);
    // Rounding can carry into a decimal next step (999.7 ns shows as "1000 ns"): take
    // that step instead ("1 µs"). A binary step (1000 B → 0.977 KiB) would read worse.
    match steps.get(i + 1) {
        Some(&(next, next_suffix))
            if shown.trim_start_matches('-') == "1000" && next == factor * 1000.0 =>
        {
            join(&significant(v / next), next_suffix)
        }
        _ => join(&shown, suffix),
    }
}

fn join(number: &str, suffix: &str) -> String {
    if suffix.is_empty() {
        number.to_string()
    } else {
        format!("{number} {suffix}")
    }
}

const TIME: &[(f64, &str)] = &[(1.0, "ns"), (1e3, "µs"), (1e6, "ms"), (1e9, "s")];
const BYTES: &[(f64, &str)] = &[
    (1.0, "B"),
    (1024.0, "KiB"),
    (1_048_576.0, "MiB"),
    (1_073_741_824.0, "GiB"),
    (1_099_511_627_776.0, "TiB"),
];
const BANDWIDTH: &[(f64, &str)] = &[
    (1.0, "B/s"),
    (1024.0, "KiB/s"),
    (1_048_576.0, "MiB/s"),
    (1_073_741_824.0, "GiB/s"),
    (1_099_511_627_776.0, "TiB/s"),
];
const RATE: &[(f64, &str)] = &[(1.0, ""), (1e3, "k"), (1e6, "M"), (1e9, "G"), (1e12, "T")];

/// `v` in `unit`, as a person reads it; "—" for a value that is not a number.
pub(crate) fn human(v: f64, unit: Unit) -> String {
    if !v.is_finite() {
        return "—".into();
    }
    match unit {
        Unit::Nanos => scaled(v, TIME),
        // Whole byte counts below 1 KiB stay exact ("64 B", not "64.0 B").
        Unit::Bytes => scaled(v, BYTES),
        Unit::BytesPerSec => scaled(v, BANDWIDTH),
        Unit::Rate => scaled(v, RATE),
        Unit::Fraction => format!("{} %", significant(v * 100.0)),
        Unit::Times => format!("{}×", significant(v)),
    }
}

/// The unit of a calibration figure as the results name it ("ns", "bytes/s").
pub(crate) fn of_calibration(unit: &str) -> Option<Unit> {
    match unit {
        "ns" => Some(Unit::Nanos),
        "bytes/s" => Some(Unit::BytesPerSec),
        _ => None,
    }
}

/// Reads a shown figure back into the value it stands for, the inverse of `human` up to
/// rounding: what the report's tests use to check that the eye sees the JSON's number.
pub fn parse_human(text: &str) -> Option<f64> {
    let text = text.trim();
    let (number, suffix) = match text.find(' ') {
        Some(at) => (&text[..at], text[at + 1..].trim()),
        None => match text.strip_suffix('×') {
            Some(number) => (number, ""),
            None => (text, ""),
        },
    };
    let value: f64 = number.parse().ok()?;
    if suffix == "%" {
        return Some(value / 100.0);
    }
    if suffix.is_empty() {
        return Some(value);
    }
    [TIME, BYTES, BANDWIDTH, RATE]
        .iter()
        .flat_map(|steps| steps.iter())
        .find(|(_, s)| *s == suffix)
        .map(|(factor, _)| value * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_read_as_a_person_reads_them() {
        assert_eq!(human(6_736_824_731.979, Unit::BytesPerSec), "6.27 GiB/s");
        assert_eq!(human(43_084_104.244, Unit::BytesPerSec), "41.1 MiB/s");
        assert_eq!(human(412.3, Unit::Nanos), "412 ns");
        assert_eq!(human(1_234.5, Unit::Nanos), "1.23 µs");
        assert_eq!(human(78_000.0, Unit::Nanos), "78 µs");
        assert_eq!(human(2.5e9, Unit::Nanos), "2.5 s");
        assert_eq!(human(64.0, Unit::Bytes), "64 B");
        assert_eq!(human(4096.0, Unit::Bytes), "4 KiB");
        assert_eq!(human(1_048_576.0, Unit::Bytes), "1 MiB");
        assert_eq!(human(1_980_000.0, Unit::Rate), "1.98 M");
        assert_eq!(human(549_123.0, Unit::Rate), "549 k");
        assert_eq!(human(12.0, Unit::Rate), "12");
        assert_eq!(human(0.042, Unit::Fraction), "4.2 %");
        assert_eq!(human(1.234, Unit::Times), "1.23×");
        assert_eq!(human(0.001_94, Unit::Times), "0.00194×");
        assert_eq!(human(f64::NAN, Unit::Nanos), "—");
        assert_eq!(human(0.0, Unit::Rate), "0");
    }

    #[test]
    fn rounding_up_carries_into_the_next_unit() {
        assert_eq!(human(999_700.0, Unit::Nanos), "1 ms");
        // Binary steps do not carry: 1000 B is not shown as 0.977 KiB.
        assert_eq!(human(1000.0, Unit::Bytes), "1000 B");
        assert_eq!(human(999.6, Unit::Rate), "1 k");
    }

    #[test]
    fn a_shown_figure_reads_back_to_its_value_within_three_figures() {
        for (v, unit) in [
            (6_736_824_731.979, Unit::BytesPerSec),
            (412.3, Unit::Nanos),
            (1_234_567.0, Unit::Nanos),
            (549_123.0, Unit::Rate),
            (0.0421, Unit::Fraction),
            (3.3333, Unit::Times),
            (65_536.0, Unit::Bytes),
        ] {
            let back = parse_human(&human(v, unit)).unwrap();
            assert!((back - v).abs() <= v.abs() * 5e-3, "{v} → {back}");
        }
        assert_eq!(parse_human("no number"), None);
        assert_eq!(parse_human("12 parsecs"), None);
    }
}
