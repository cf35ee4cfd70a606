//! Whether the machine told the truth while it was measured: load, steal time and the
//! CPU frequency governor, read before and after a run. A figure measured on a busy or
//! stolen-from machine is still kept, but the output says so first, with the figures, so
//! nobody quotes it as the machine's speed.

use crate::results::MachineState;

/// Load average (1 min) per online CPU above which the machine counts as busy before a
/// run: something else was already using a good part of it.
const BUSY_LOAD_PER_CPU: f64 = 0.5;
/// Share of CPU time stolen by the hypervisor during the run above which figures are
/// suspect.
const STOLEN_SHARE: f64 = 0.05;

/// CPU time counters from /proc/stat's aggregate line: (steal, total), in ticks.
pub fn cpu_ticks(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice], guest time is
    // already counted in user and nice.
    let total: u64 = fields.iter().take(8).sum();
    Some((*fields.get(7).unwrap_or(&0), total))
}

/// The 1-minute load average from /proc/loadavg.
pub fn load1(loadavg: &str) -> Option<f64> {
    loadavg.split_whitespace().next()?.parse().ok()
}

/// What is read before a run.
#[derive(Clone, Debug)]
pub struct Before {
    load1: Option<f64>,
    ticks: Option<(u64, u64)>,
}

impl Before {
    /// Reads load and CPU times now, to compare with the state after measuring.
    pub fn read() -> Before {
        Before {
            load1: std::fs::read_to_string("/proc/loadavg")
                .ok()
                .and_then(|t| load1(&t)),
            ticks: std::fs::read_to_string("/proc/stat")
                .ok()
                .and_then(|t| cpu_ticks(&t)),
        }
    }

    /// Reads the state after the run and judges both.
    pub fn finish(self) -> MachineState {
        let after_ticks = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|t| cpu_ticks(&t));
        let load1_after = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|t| load1(&t));
        let governor =
            std::fs::read_to_string("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
                .ok()
                .map(|g| g.trim().to_string());
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        judge(
            self.load1,
            load1_after,
            self.ticks.zip(after_ticks),
            governor,
            cpus,
        )
    }
}

/// The state and its warnings, from what was read (pure, for tests).
pub fn judge(
    load1_before: Option<f64>,
    load1_after: Option<f64>,
    ticks: Option<((u64, u64), (u64, u64))>,
    governor: Option<String>,
    cpus: usize,
) -> MachineState {
    let steal_share = ticks.and_then(|((steal0, total0), (steal1, total1))| {
        let total = total1.checked_sub(total0)?;
        (total > 0).then(|| steal1.saturating_sub(steal0) as f64 / total as f64)
    });
    let mut warnings = Vec::new();
    if let Some(load) = load1_before.filter(|l| *l > BUSY_LOAD_PER_CPU * cpus as f64) {
        warnings.push(format!(
            "the machine was busy before measuring: load average {load:.2} on {cpus} CPUs"
        ));
    }
    if let Some(share) = steal_share.filter(|s| *s > STOLEN_SHARE) {
        warnings.push(format!(
            "the hypervisor stole {:.1}% of CPU time while measuring",
            share * 100.0
        ));
    }
    if let Some(g) = governor.as_deref().filter(|g| *g == "powersave") {
        warnings.push(format!(
            "CPU frequency governor is {g}: clock speed may change under the measurement"
        ));
    }
    MachineState {
        load1_before,
        load1_after,
        steal_share,
        governor,
        warnings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steal_and_load_are_read_from_proc_text() {
        let stat = "cpu  100 0 50 800 10 0 5 35 0 0\ncpu0 50 0 25 400 5 0 2 18 0 0\n";
        assert_eq!(cpu_ticks(stat), Some((35, 1000)));
        assert_eq!(load1("1.52 0.80 0.40 2/300 12345\n"), Some(1.52));
        assert_eq!(cpu_ticks("garbage"), None);
    }

    #[test]
    fn a_busy_or_stolen_machine_is_named_a_quiet_one_is_not() {
        let quiet = judge(Some(0.1), Some(1.9), Some(((0, 1000), (10, 2000))), None, 2);
        assert!(quiet.warnings.is_empty(), "{:?}", quiet.warnings);
        assert_eq!(quiet.steal_share, Some(0.01));
        let busy = judge(
            Some(3.0),
            Some(3.0),
            Some(((0, 1000), (200, 2000))),
            Some("powersave".into()),
            2,
        );
        assert_eq!(busy.warnings.len(), 3, "{:?}", busy.warnings);
        assert!(busy.warnings[0].contains("load average 3.00 on 2 CPUs"));
        assert!(busy.warnings[1].contains("stole 20.0%"));
    }
}
