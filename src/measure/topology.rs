//! The CPU topology from sysfs, and the class of every pair of CPUs (`same-cpu`,
//! `smt-sibling`, `same-llc`, `cross-llc`, `cross-numa`, or `cross-cpu` where sysfs
//! says nothing finer). A two-process figure depends on the pair it ran on: a cache-line
//! hand-off between SMT siblings costs a fraction of one across sockets.
//!
//! Read from a root directory so tests can feed fake trees. A file that is missing,
//! unreadable or not a CPU list is not an error: that level is left unknown and
//! [`Topology::notes`] says which file and why.

use crate::process::entry::chain;
use crate::results::{PairClass, Topology};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Where the kernel describes CPUs and NUMA nodes.
pub const CPU_ROOT: &str = "/sys/devices/system/cpu";
/// Where sysfs lists NUMA nodes and their CPUs.
pub const NODE_ROOT: &str = "/sys/devices/system/node";

/// The highest CPU number a list may name: far above any machine, low enough that a
/// garbage range ("0-4294967295") is refused instead of allocated.
const MAX_CPU: usize = 1 << 16;

/// Why a text is not a kernel CPU list.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CpuListError {
    /// A part that is not a number.
    #[error("{0:?} is not a CPU number")]
    NotANumber(String),
    /// A number far above any machine's CPUs (65536): garbage, refused rather than allocated.
    #[error("CPU {0} is beyond {MAX_CPU}")]
    Beyond(usize),
    /// A range `hi-lo`.
    #[error("range {0}-{1} runs backwards")]
    Backwards(usize, usize),
}

/// Why one level of the topology is unknown: what sysfs lacked or said wrongly. Kept in
/// the results as text, [`Topology::notes`], with its cause (`path: cause`).
#[derive(Debug, thiserror::Error)]
pub enum SysfsError {
    /// A file could not be read.
    #[error("{}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file that should hold a CPU list does not.
    #[error("{}: not a CPU list", path.display())]
    NotCpuList {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: CpuListError,
    },
    /// A cache's `level` file that is not a number.
    #[error("{}: not a cache level", path.display())]
    NotLevel {
        /// The file.
        path: PathBuf,
    },
    /// A CPU's `cache` directory that describes no data or unified cache.
    #[error("{}: no cache described", path.display())]
    NoCache {
        /// The directory.
        path: PathBuf,
    },
    /// A CPU whose group, as sysfs lists it, does not contain the CPU itself.
    #[error("cpu{cpu}'s group {group:?} does not contain it")]
    NotInItsGroup {
        /// The CPU.
        cpu: usize,
        /// The group listed for it.
        group: Vec<usize>,
    },
}

/// Parses a kernel CPU list ("0-3,8,10-11"; empty means no CPU). Sorted, deduplicated.
pub fn parse_cpulist(text: &str) -> Result<Vec<usize>, CpuListError> {
    let mut cpus = BTreeSet::new();
    let number = |s: &str| -> Result<usize, CpuListError> {
        let n: usize = s
            .trim()
            .parse()
            .map_err(|_| CpuListError::NotANumber(s.to_string()))?;
        if n > MAX_CPU {
            return Err(CpuListError::Beyond(n));
        }
        Ok(n)
    };
    for part in text.trim().split(',').filter(|p| !p.trim().is_empty()) {
        match part.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi) = (number(lo)?, number(hi)?);
                if lo > hi {
                    return Err(CpuListError::Backwards(lo, hi));
                }
                cpus.extend(lo..=hi);
            }
            None => {
                cpus.insert(number(part)?);
            }
        }
    }
    Ok(cpus.into_iter().collect())
}

/// Reads and parses a CPU list file; the error names the file.
fn read_cpulist(path: &Path) -> Result<Vec<usize>, SysfsError> {
    let text = std::fs::read_to_string(path).map_err(|source| SysfsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_cpulist(&text).map_err(|source| SysfsError::NotCpuList {
        path: path.to_path_buf(),
        source,
    })
}

/// The numbers N of the entries `PREFIXN` in `dir`, sorted.
fn numbered(dir: &Path, prefix: &str) -> Vec<usize> {
    let mut found: Vec<usize> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_prefix(prefix)?.parse().ok())
        .collect();
    found.sort_unstable();
    found
}

/// The distinct groups `group_of` gives for `cpus`: Err with the first reason a CPU's
/// group is unknown, or is one that does not contain the CPU itself.
fn groups(
    cpus: &[usize],
    mut group_of: impl FnMut(usize) -> Result<Vec<usize>, SysfsError>,
) -> Result<Vec<Vec<usize>>, SysfsError> {
    let mut all = BTreeSet::new();
    for &cpu in cpus {
        let group = group_of(cpu)?;
        if !group.contains(&cpu) {
            return Err(SysfsError::NotInItsGroup { cpu, group });
        }
        all.insert(group);
    }
    Ok(all.into_iter().collect())
}

/// The shared-CPU list of `cpu`'s last-level cache: the highest `level` among its data
/// or unified caches, and the level.
fn llc_of(cpu_root: &Path, cpu: usize) -> Result<(u32, Vec<usize>), SysfsError> {
    let cache = cpu_root.join(format!("cpu{cpu}/cache"));
    let mut best: Option<(u32, std::path::PathBuf)> = None;
    for index in numbered(&cache, "index") {
        let dir = cache.join(format!("index{index}"));
        if std::fs::read_to_string(dir.join("type")).is_ok_and(|t| t.trim() == "Instruction") {
            continue;
        }
        let level_file = dir.join("level");
        let level: u32 = std::fs::read_to_string(&level_file)
            .map_err(|source| SysfsError::Read {
                path: level_file.clone(),
                source,
            })?
            .trim()
            .parse()
            .map_err(|_| SysfsError::NotLevel { path: level_file })?;
        if best.as_ref().is_none_or(|(l, _)| level > *l) {
            best = Some((level, dir));
        }
    }
    let (level, dir) = best.ok_or(SysfsError::NoCache { path: cache })?;
    Ok((level, read_cpulist(&dir.join("shared_cpu_list"))?))
}

/// Reads the topology under `cpu_root` (as /sys/devices/system/cpu) and `node_root` (as
/// /sys/devices/system/node), for a process allowed on `allowed`.
pub fn read(cpu_root: &Path, node_root: &Path, allowed: &[usize]) -> Topology {
    let mut notes = Vec::new();
    let online = match read_cpulist(&cpu_root.join("online")) {
        Ok(cpus) if !cpus.is_empty() => cpus,
        other => {
            let listed = numbered(cpu_root, "cpu");
            notes.push(format!(
                "online CPUs unknown ({}); taken as the cpuN directories {listed:?}",
                other
                    .err()
                    .map_or_else(|| "empty list".into(), |e| chain(&e))
            ));
            listed
        }
    };
    let mut unknown = |what: &str, why: String| {
        notes.push(format!("{what} unknown: {why}"));
        Vec::new()
    };
    let smt_groups = groups(&online, |cpu| {
        // core_cpus_list is the newer name of the same list.
        let dir = cpu_root.join(format!("cpu{cpu}/topology"));
        let siblings = dir.join("thread_siblings_list");
        if siblings.exists() {
            read_cpulist(&siblings)
        } else {
            read_cpulist(&dir.join("core_cpus_list"))
        }
    })
    .unwrap_or_else(|why| unknown("SMT siblings", chain(&why)));
    let mut llc_level = None;
    let llc_groups = groups(&online, |cpu| {
        let (level, shared) = llc_of(cpu_root, cpu)?;
        llc_level = llc_level.max(Some(level));
        Ok(shared)
    })
    .unwrap_or_else(|why| unknown("last-level cache sharing", chain(&why)));
    let llc_level = llc_level.filter(|_| !llc_groups.is_empty());
    let nodes = numbered(node_root, "node");
    let numa_nodes = if nodes.is_empty() {
        unknown(
            "NUMA nodes",
            format!("no node directories in {}", node_root.display()),
        )
    } else {
        nodes
            .iter()
            .map(|n| read_cpulist(&node_root.join(format!("node{n}/cpulist"))))
            .filter(|cpus| cpus.as_ref().map_or(true, |c| !c.is_empty()))
            .collect::<Result<Vec<_>, _>>()
            .unwrap_or_else(|why| unknown("NUMA nodes", chain(&why)))
    };
    Topology {
        source: cpu_root.display().to_string(),
        online,
        allowed: allowed.to_vec(),
        smt_groups,
        llc_level,
        llc_groups,
        numa_nodes,
        notes,
    }
}

/// This machine's topology, for this process.
pub fn current() -> Topology {
    read(
        Path::new(CPU_ROOT),
        Path::new(NODE_ROOT),
        &super::workloads::allowed_cpus(),
    )
}

/// CPUs as "0,1,4".
pub fn cpus_text(cpus: &[usize]) -> String {
    cpus.iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Groups of CPUs as "0,1 | 2,3", or `unknown` when there are none (sysfs did not tell).
pub fn groups_text(groups: &[Vec<usize>], unknown: &str) -> String {
    if groups.is_empty() {
        return unknown.to_string();
    }
    groups
        .iter()
        .map(|g| cpus_text(g))
        .collect::<Vec<_>>()
        .join(" | ")
}

/// The SMT level in words: its cores, "none (one thread per core)", or "unknown".
pub fn smt_text(t: &Topology) -> String {
    if t.smt_groups.is_empty() {
        "unknown".into()
    } else if t.has_smt() {
        format!("cores {}", groups_text(&t.smt_groups, ""))
    } else {
        "none (one thread per core)".into()
    }
}

/// The index of the group holding `cpu`.
fn group_of(groups: &[Vec<usize>], cpu: usize) -> Option<usize> {
    groups.iter().position(|g| g.contains(&cpu))
}

/// Whether `a` and `b` are in one group (None when either is in none).
fn together(groups: &[Vec<usize>], a: usize, b: usize) -> Option<bool> {
    Some(group_of(groups, a)? == group_of(groups, b)?)
}

impl Topology {
    /// Whether some core has more than one hardware thread.
    pub fn has_smt(&self) -> bool {
        self.smt_groups.iter().any(|g| g.len() > 1)
    }

    /// The class of the pair (`a`, `b`). A level is only told apart where the machine has
    /// a choice at it: SMT where a core has siblings, the last-level cache where there
    /// are several or where SMT siblings exist to contrast with, NUMA where there are
    /// several nodes. Otherwise two different CPUs are `cross-cpu`.
    pub fn class(&self, a: usize, b: usize) -> PairClass {
        if a == b {
            return PairClass::SameCpu;
        }
        if self.numa_nodes.len() > 1 && together(&self.numa_nodes, a, b) == Some(false) {
            return PairClass::CrossNuma;
        }
        let smt = self.has_smt();
        if smt && together(&self.smt_groups, a, b) == Some(true) {
            return PairClass::SmtSibling;
        }
        if self.llc_groups.len() > 1 || smt {
            match together(&self.llc_groups, a, b) {
                Some(true) => return PairClass::SameLlc,
                Some(false) => return PairClass::CrossLlc,
                None => {}
            }
        }
        PairClass::CrossCpu
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse_and_garbage_is_named() {
        assert_eq!(
            parse_cpulist("0-3,8,10-11\n"),
            Ok(vec![0, 1, 2, 3, 8, 10, 11])
        );
        assert_eq!(parse_cpulist("1,0,1"), Ok(vec![0, 1]));
        assert_eq!(parse_cpulist("\n"), Ok(vec![]));
        for (garbage, says) in [
            ("zero", "not a CPU number"),
            ("3-1", "backwards"),
            ("0-4294967295", "beyond"),
            ("1-", "not a CPU number"),
        ] {
            let err = parse_cpulist(garbage).unwrap_err().to_string();
            assert!(err.contains(says), "{garbage}: {err}");
        }
    }
}
