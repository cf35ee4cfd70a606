//! The CPU topology read from fake sysfs trees (an SMT machine, two last-level caches,
//! two NUMA nodes, a bare 2-vCPU VM, garbage files), the class of each pair of CPUs,
//! the core-to-core pair sampling, and the JSON of the new fields (old files still load).

use ipcbench::measure::matrix::choose_pairs;
use ipcbench::measure::topology::read;
use ipcbench::report::model::{Achieved, CorePair, CoreToCore, PairClass, Results, Topology};
use std::path::Path;
use PairClass::*;

/// A fake /sys/devices/system/{cpu,node} under a temp dir.
struct Tree {
    dir: tempfile::TempDir,
}

impl Tree {
    fn new() -> Tree {
        Tree {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn cpu_root(&self) -> std::path::PathBuf {
        self.dir.path().join("cpu")
    }
    fn node_root(&self) -> std::path::PathBuf {
        self.dir.path().join("node")
    }
    fn write(&self, path: &str, text: &str) -> &Tree {
        let path = self.dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        self
    }
    /// `cpus` CPUs online; `core(cpu)`, `llc(cpu)` and `node(cpu)` give each one's
    /// sibling list, L3 shared list and NUMA node (None: that part is not written).
    fn machine(
        cpus: usize,
        core: impl Fn(usize) -> Option<String>,
        llc: impl Fn(usize) -> Option<String>,
        nodes: &[&str],
    ) -> Tree {
        let tree = Tree::new();
        tree.write("cpu/online", &format!("0-{}\n", cpus - 1));
        for cpu in 0..cpus {
            if let Some(siblings) = core(cpu) {
                tree.write(
                    &format!("cpu/cpu{cpu}/topology/thread_siblings_list"),
                    &siblings,
                );
            }
            tree.write(&format!("cpu/cpu{cpu}/cache/index0/level"), "1\n")
                .write(&format!("cpu/cpu{cpu}/cache/index0/type"), "Data\n")
                .write(
                    &format!("cpu/cpu{cpu}/cache/index0/shared_cpu_list"),
                    &format!("{cpu}\n"),
                )
                .write(&format!("cpu/cpu{cpu}/cache/index1/level"), "1\n")
                .write(&format!("cpu/cpu{cpu}/cache/index1/type"), "Instruction\n")
                .write(
                    &format!("cpu/cpu{cpu}/cache/index1/shared_cpu_list"),
                    &format!("{cpu}\n"),
                );
            if let Some(shared) = llc(cpu) {
                tree.write(&format!("cpu/cpu{cpu}/cache/index3/level"), "3\n")
                    .write(&format!("cpu/cpu{cpu}/cache/index3/type"), "Unified\n")
                    .write(
                        &format!("cpu/cpu{cpu}/cache/index3/shared_cpu_list"),
                        &shared,
                    );
            }
        }
        for (n, list) in nodes.iter().enumerate() {
            tree.write(&format!("node/node{n}/cpulist"), list);
        }
        tree
    }
    fn read(&self, allowed: &[usize]) -> Topology {
        read(&self.cpu_root(), &self.node_root(), allowed)
    }
}

fn all(n: usize) -> Vec<usize> {
    (0..n).collect()
}

/// 4 cores × 2 threads, siblings n and n+4 (as Intel numbers them), one L3, one node.
#[test]
fn smt_machine_names_siblings_and_the_shared_cache() {
    let tree = Tree::machine(
        8,
        |c| Some(format!("{},{}\n", c % 4, c % 4 + 4)),
        |_| Some("0-7\n".into()),
        &["0-7\n"],
    );
    let t = tree.read(&all(8));
    assert!(t.notes.is_empty(), "{:?}", t.notes);
    assert_eq!(
        t.smt_groups,
        vec![vec![0, 4], vec![1, 5], vec![2, 6], vec![3, 7]]
    );
    assert_eq!(t.llc_level, Some(3));
    assert_eq!(t.llc_groups, vec![all(8)]);
    assert_eq!(t.class(0, 4), SmtSibling);
    assert_eq!(t.class(5, 1), SmtSibling);
    assert_eq!(t.class(0, 1), SameLlc);
    assert_eq!(t.class(3, 3), SameCpu);
}

/// 8 cores, no SMT, two L3s of four cores (as one CCX each on a Zen part).
#[test]
fn two_last_level_caches_split_the_pairs() {
    let tree = Tree::machine(
        8,
        |c| Some(format!("{c}\n")),
        |c| Some(if c < 4 { "0-3\n" } else { "4-7\n" }.into()),
        &["0-7\n"],
    );
    let t = tree.read(&all(8));
    assert_eq!(t.llc_groups, vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7]]);
    assert!(!t.has_smt());
    assert_eq!(t.class(0, 3), SameLlc);
    assert_eq!(t.class(2, 6), CrossLlc);
}

/// Two sockets, each its own NUMA node and L3, with SMT: every class appears.
#[test]
fn two_numa_nodes_outrank_the_cache_levels() {
    let tree = Tree::machine(
        8,
        |c| Some(format!("{}-{}\n", c / 2 * 2, c / 2 * 2 + 1)),
        |c| Some(if c < 4 { "0-3\n" } else { "4-7\n" }.into()),
        &["0-3\n", "4-7\n", "\n"], // node2: memory only, no CPUs
    );
    let t = tree.read(&all(8));
    assert_eq!(t.numa_nodes, vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7]]);
    assert_eq!(t.class(0, 1), SmtSibling);
    assert_eq!(t.class(0, 2), SameLlc);
    assert_eq!(t.class(1, 5), CrossNuma);
    assert_eq!(t.class(4, 4), SameCpu);
}

/// This box: 2 vCPUs, each its own core, one shared L3, one node. Nothing finer than
/// "another CPU" is told apart, so the old placement name stays.
#[test]
fn a_bare_two_vcpu_vm_has_only_same_cpu_and_cross_cpu() {
    let tree = Tree::machine(
        2,
        |c| Some(format!("{c}\n")),
        |_| Some("0-1\n".into()),
        &["0-1\n"],
    );
    let t = tree.read(&[0, 1]);
    assert_eq!(t.class(0, 1), CrossCpu);
    assert_eq!(t.class(1, 1), SameCpu);
    assert_eq!(CrossCpu.label(), "cross-cpu");
    assert_eq!(SameCpu.label(), "same-cpu");
}

/// Nothing but the CPU directories: every level is unknown and said to be, and every
/// pair of different CPUs is cross-cpu.
#[test]
fn missing_files_degrade_to_what_is_known_and_say_so() {
    let tree = Tree::new();
    tree.write("cpu/cpu0/uevent", "")
        .write("cpu/cpu1/uevent", "");
    let t = tree.read(&[0, 1]);
    assert_eq!(t.online, vec![0, 1]);
    assert!(t.smt_groups.is_empty() && t.llc_groups.is_empty() && t.numa_nodes.is_empty());
    assert_eq!(t.llc_level, None);
    let notes = t.notes.join("\n");
    for said in [
        "online CPUs unknown",
        "SMT siblings unknown",
        "last-level cache sharing unknown",
        "NUMA nodes unknown",
    ] {
        assert!(notes.contains(said), "{said} missing from: {notes}");
    }
    assert_eq!(t.class(0, 1), CrossCpu);
}

/// A garbage CPU list is skipped with the file and the reason, never a panic; the other
/// levels are still read.
#[test]
fn a_garbage_cpulist_is_skipped_with_its_reason() {
    let tree = Tree::machine(
        4,
        |c| {
            Some(if c == 2 {
                "2-zz\n".into()
            } else {
                format!("{}-{}\n", c / 2 * 2, c / 2 * 2 + 1)
            })
        },
        |_| Some("0-3\n".into()),
        &["0-1\n", "2-99999999\n"],
    );
    let t = tree.read(&all(4));
    assert!(t.smt_groups.is_empty());
    assert!(t.numa_nodes.is_empty());
    assert_eq!(t.llc_groups, vec![all(4)]);
    let notes = t.notes.join("\n");
    assert!(
        notes.contains("cpu2/topology/thread_siblings_list: not a CPU list"),
        "{notes}"
    );
    assert!(notes.contains("node1/cpulist: not a CPU list"), "{notes}");
    // With SMT unknown and one L3, two CPUs are only "another CPU".
    assert_eq!(t.class(0, 1), CrossCpu);
}

/// A sibling list that leaves the CPU itself out is not believed.
#[test]
fn a_group_without_its_own_cpu_is_refused() {
    let tree = Tree::machine(2, |_| Some("0\n".into()), |_| Some("0-1\n".into()), &[]);
    let t = tree.read(&[0, 1]);
    assert!(t.smt_groups.is_empty());
    assert!(
        t.notes.iter().any(|n| n.contains("does not contain it")),
        "{:?}",
        t.notes
    );
}

/// Up to 64 cells every pair is measured; beyond, every class is still represented.
#[test]
fn pairs_are_all_measured_on_small_machines_and_sampled_on_large_ones() {
    let small = Tree::machine(
        2,
        |c| Some(format!("{c}\n")),
        |_| Some("0-1\n".into()),
        &["0-1\n"],
    );
    let (pairs, rule) = choose_pairs(&[0, 1], &small.read(&[0, 1]), 64);
    assert_eq!(pairs, vec![(0, 0), (0, 1), (1, 1)]);
    assert_eq!(rule, "all 3 pairs of 2 CPUs");

    let big = Tree::machine(
        32,
        |c| Some(format!("{}-{}\n", c / 2 * 2, c / 2 * 2 + 1)),
        |c| Some(if c < 16 { "0-15\n" } else { "16-31\n" }.into()),
        &["0-15\n", "16-31\n"],
    );
    let t = big.read(&all(32));
    let (pairs, rule) = choose_pairs(&all(32), &t, 64);
    assert_eq!(pairs.len(), 64, "{rule}");
    assert!(rule.starts_with("64 of the 528 pairs of 32 CPUs"), "{rule}");
    let mut classes: Vec<PairClass> = pairs.iter().map(|&(a, b)| t.class(a, b)).collect();
    classes.sort();
    classes.dedup();
    assert_eq!(classes, vec![SameCpu, SmtSibling, SameLlc, CrossNuma]);
    assert!(pairs.iter().all(|(a, b)| a <= b));
}

fn sample_results() -> Results {
    let mut r = Results::new("quick");
    r.topology = Some(Topology {
        source: "/sys/devices/system/cpu".into(),
        online: vec![0, 1],
        allowed: vec![0, 1],
        smt_groups: vec![vec![0], vec![1]],
        llc_level: Some(3),
        llc_groups: vec![vec![0, 1]],
        numa_nodes: vec![vec![0, 1]],
        notes: vec![],
    });
    r.core_to_core = Some(CoreToCore {
        cpus: vec![0, 1],
        rule: "all 3 pairs of 2 CPUs".into(),
        pairs: vec![
            CorePair {
                initiator: 0,
                responder: 1,
                class: CrossCpu,
                shm_pingpong_ns: Some(180.0),
                pipe_roundtrip_ns: Some(11_200.0),
                samples: (20_000, 3_000),
                note: None,
            },
            CorePair {
                initiator: 0,
                responder: 0,
                class: SameCpu,
                shm_pingpong_ns: None,
                pipe_roundtrip_ns: Some(6_100.0),
                samples: (0, 5_000),
                note: None,
            },
        ],
    });
    r.latency.push(ipcbench::report::model::Latency {
        workload: "queue/shm/roundtrip/64B/cross-cpu".into(),
        family: "queue".into(),
        flavor: "shm".into(),
        placement: ipcbench::report::model::Placement::CrossCpu,
        message_bytes: 64,
        percentiles: Default::default(),
        spread: 0.1,
        calibration: None,
        ratio: None,
        ratio_note: None,
        cdf: vec![],
        achieved: Some(Achieved {
            initiator_cpus: vec![0],
            responder_cpus: vec![1],
            class: Some(CrossCpu),
        }),
    });
    r.calibration.push(ipcbench::report::model::Calibration {
        name: "shm-pingpong".into(),
        placement: ipcbench::report::model::Placement::CrossCpu,
        value: 180.0,
        unit: "ns".into(),
        spread: 0.1,
        achieved: Some(Achieved {
            initiator_cpus: vec![0],
            responder_cpus: vec![1],
            class: Some(CrossCpu),
        }),
    });
    r
}

#[test]
fn topology_matrix_and_achieved_placement_round_trip_through_json() {
    let r = sample_results();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.json");
    r.save(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    for field in [
        "\"topology\"",
        "\"core_to_core\"",
        "\"achieved\"",
        "\"cross-cpu\"",
        "\"llc_groups\"",
    ] {
        assert!(text.contains(field), "{field} not in the JSON");
    }
    assert_eq!(Results::load(&path).unwrap(), r);
}

/// Files written before these fields existed still load, without them.
#[test]
fn old_results_files_still_load() {
    let old = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/results.json");
    let r = Results::load(&old).unwrap();
    assert!(r.topology.is_none() && r.core_to_core.is_none());
    assert!(!r.latency.is_empty());
    assert!(r.latency.iter().all(|l| l.achieved.is_none()));
    assert!(r.calibration.iter().all(|c| c.achieved.is_none()));
}

fn report_of(r: &Results) -> String {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    r.save(&json).unwrap();
    let out_dir = dir.path().join("out");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ipcbench"))
        .args([
            "report",
            json.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(out_dir.join("index.html")).unwrap()
}

/// The page shows the topology table, the pairs used with their class, and the
/// core-to-core heatmaps with the matrix's numbers in their cells and in the table.
#[test]
fn the_report_shows_the_topology_and_the_core_to_core_heatmap() {
    let html = report_of(&sample_results());
    for part in [
        "id=\"table-topology\"",
        "none (one thread per core)",
        "L3: 0,1",
        "id=\"table-pairs-used\"",
        "id=\"chart-core-to-core-shm\"",
        "id=\"chart-core-to-core-pipe\"",
        "id=\"table-core-to-core\"",
        "all 3 pairs of 2 CPUs",
    ] {
        assert!(html.contains(part), "{part} missing from the page");
    }
    let shm = &html[html.find("id=\"chart-core-to-core-shm\"").unwrap()..];
    let shm = &shm[..shm.find("</figure>").unwrap()];
    // SVG texts are lines of their own. Both orders of the pair show its figure (and
    // the legend, all cells being alike, the value once); the diagonal a dash.
    let texts = |svg: &str, text: &str| svg.lines().filter(|l| l.trim() == text).count();
    assert_eq!(
        texts(shm, "180 ns"),
        3,
        "the 0-1 pair's two cells and the legend"
    );
    assert_eq!(texts(shm, "—"), 2, "the diagonal is not measured");
    assert!(
        texts(shm, "cpu0") >= 2 && texts(shm, "cpu1") >= 2,
        "both axes"
    );
    let pipe = &html[html.find("id=\"chart-core-to-core-pipe\"").unwrap()..];
    assert_eq!(texts(pipe, "11.2 µs"), 2);
    assert_eq!(texts(pipe, "6.1 µs"), 1);
    let row = &html[html.find("<tr data-key=\"cpu0-cpu1\"").unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(
        row.contains(">cross-cpu<")
            && row.contains("data-value=\"180\"")
            && row.contains(">180 ns<")
            && row.contains("data-value=\"11200\"")
            && row.contains(">11.2 µs<"),
        "{row}"
    );
    let used = &html[html.find("<tr data-key=\"0/1\"").unwrap()..];
    assert!(used[..used.find("</tr>").unwrap()].contains(">cross-cpu<"));
}

/// A page from a file written before topology was recorded says so instead.
#[test]
fn an_old_file_gets_a_page_that_says_the_topology_is_absent() {
    let old = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/results.json");
    let html = report_of(&Results::load(&old).unwrap());
    assert!(html.contains("No topology in these results"));
    assert!(html.contains("No core-to-core matrix in these results"));
}

/// `bench` records the topology and, per figure, the placement achieved; a filtered run
/// leaves the matrix out (as `--no-matrix` does).
#[test]
fn bench_records_the_topology_and_each_figures_achieved_placement() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("b.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ipcbench"))
        .args([
            "bench",
            "--quick",
            "--no-matrix",
            "--filter",
            "calibration/pipe-roundtrip/same-cpu",
        ])
        .args(["--json", json.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = Results::load(&json).unwrap();
    let topology = r.topology.as_ref().expect("topology recorded");
    assert!(!topology.allowed.is_empty());
    assert!(r.core_to_core.is_none());
    let first = topology.allowed[0];
    let latency = &r.latency[0];
    assert_eq!(
        latency.achieved,
        Some(Achieved {
            initiator_cpus: vec![first],
            responder_cpus: vec![first],
            class: Some(SameCpu),
        })
    );
    assert_eq!(r.calibration[0].achieved, latency.achieved);
    assert!(String::from_utf8_lossy(&out.stdout).contains("topology: CPUs allowed"));
}
