//! Schedule points: named places inside a mechanism's critical window (between checking a
//! count and taking it, between claiming a slot and publishing it, between reading a
//! frame's header and its payload) where a forced schedule may hand the turn to another
//! process.
//!
//! Compiled in only with the `schedule-points` cargo feature, which `cargo test` turns on
//! (the crate's self dev-dependency) and a plain `cargo build`/`cargo run` does not.
//! Without it [`point`] and [`wait_point`] are empty `#[inline(always)]` functions: the
//! mechanisms carry no trace of them.
//!
//! # Rules
//!
//! A point acts only in a process where a turnstile was [`install`]ed (a scenario's
//! worker, which opts into "deep" scheduling that way), and only while that worker runs
//! the action of one of its own forced steps ([`Turnstile::step`] and its kin). Anywhere
//! else — another process, between steps, in free mode, or after a point has failed — it
//! does nothing.
//!
//! Inside a step, a point ends the step there and starts the next one: it records its
//! label in the history (value 0), passes the turn as the schedule says, and returns when
//! the turn is this worker's again. So an operation with k points is k + 1 steps, every
//! piece of it runs while its worker holds the turn, and the empty schedule still runs
//! each worker on until it finishes or blocks. The step's own label is recorded when its
//! action returns, after the labels of the points it passed. A step may not be taken
//! inside another step's action ([`ScheduleError::Nested`]): the points are how an action
//! yields.
//!
//! A [`wait_point`] stands before a wait for another process (a contended lock, the rest
//! of a frame): inside a step it passes the turn as a *blocked* step and returns true once
//! the turn is back, and the caller re-checks its condition instead of sleeping in the
//! kernel, where it would hold the turn and wait for a process that cannot run. It
//! returns false (sleep as usual) outside a step, or when no other worker is left to run.
//!
//! A point that cannot get its turn back (the turnstile's turn timeout, a livelock) stops
//! acting for the rest of the step, and the step returns that error.

use super::Turnstile;
use std::rc::Rc;

/// Whether this build has schedule points (the `schedule-points` feature).
pub const ENABLED: bool = cfg!(feature = "schedule-points");

/// A window inside an operation: another process's step here can change the outcome.
#[inline(always)]
pub fn point(label: &'static str) {
    #[cfg(feature = "schedule-points")]
    imp::reach(label, false);
    #[cfg(not(feature = "schedule-points"))]
    let _ = label;
}

/// About to wait for another process: true when the turn was passed on (as a blocked
/// step) and is back, so the caller must re-check rather than sleep; false otherwise.
#[inline(always)]
pub fn wait_point(label: &'static str) -> bool {
    #[cfg(feature = "schedule-points")]
    return imp::reach(label, true);
    #[cfg(not(feature = "schedule-points"))]
    {
        let _ = label;
        false
    }
}

/// Makes `turnstile` the one this process's schedule points act on, for `worker` (the
/// worker's own index), and returns it for the worker's steps. Installed for the life of
/// the process (a scenario's worker) or until the next `install`. Without the feature it
/// only wraps the turnstile.
pub fn install(turnstile: Turnstile, worker: usize) -> Rc<Turnstile> {
    let turnstile = Rc::new(turnstile);
    #[cfg(feature = "schedule-points")]
    imp::set(Rc::clone(&turnstile), worker);
    #[cfg(not(feature = "schedule-points"))]
    let _ = worker;
    turnstile
}

#[cfg(feature = "schedule-points")]
mod imp {
    use super::Turnstile;
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::sync::atomic::{AtomicBool, Ordering};

    struct Installed {
        turnstile: Rc<Turnstile>,
        worker: usize,
        /// The process that installed it: a child forked later inherits this slot but is
        /// not the worker.
        pid: u32,
    }

    /// Set once anything is installed in this process: until then a point costs one load.
    static ANY: AtomicBool = AtomicBool::new(false);

    thread_local! {
        static CURRENT: RefCell<Option<Installed>> = const { RefCell::new(None) };
    }

    pub(crate) fn set(turnstile: Rc<Turnstile>, worker: usize) {
        CURRENT.with(|c| {
            *c.borrow_mut() = Some(Installed {
                turnstile,
                worker,
                pid: std::process::id(),
            })
        });
        ANY.store(true, Ordering::Relaxed);
    }

    pub(crate) fn reach(label: &'static str, blocked: bool) -> bool {
        if !ANY.load(Ordering::Relaxed) {
            return false;
        }
        let installed = CURRENT.with(|c| {
            c.borrow()
                .as_ref()
                .filter(|i| i.pid == std::process::id())
                .map(|i| (Rc::clone(&i.turnstile), i.worker))
        });
        match installed {
            Some((turnstile, worker)) => turnstile.reach_point(worker, label, blocked),
            None => false,
        }
    }
}

#[cfg(all(test, feature = "schedule-points"))]
mod tests {
    use super::*;
    use crate::schedule::{Mode, Schedule, ScheduleError};

    fn operations(t: &Turnstile) -> Vec<(usize, String)> {
        t.history()
            .into_iter()
            .map(|e| (e.worker, e.operation))
            .collect()
    }

    /// Each test runs on a thread of its own, so what one installs is not seen by another.
    #[test]
    fn a_point_inside_an_installed_workers_step_is_a_step_of_its_own() {
        let t = install(
            Turnstile::create(2, &Schedule::new(vec![0, 0]), Mode::Forced).unwrap(),
            0,
        );
        t.step(0, "put", || point("ring/put:claimed")).unwrap();
        assert_eq!(
            operations(&t),
            vec![(0, "ring/put:claimed".into()), (0, "put".into())]
        );
        assert_eq!(t.steps(), 2);
        // Between steps a point does nothing.
        point("ring/put:claimed");
        assert!(!wait_point("ring/put:full"));
        assert_eq!(t.steps(), 2);
    }

    #[test]
    fn without_an_installed_turnstile_a_point_does_nothing() {
        let t = Turnstile::create(2, &Schedule::default(), Mode::Forced).unwrap();
        t.step(0, "put", || point("ring/put:claimed")).unwrap();
        assert_eq!(operations(&t), vec![(0, "put".into())]);
        assert_eq!(t.steps(), 1);
    }

    #[test]
    fn in_free_mode_a_point_does_nothing() {
        let free = Mode::Free {
            jitter_us: 0,
            seed: 3,
        };
        let t = install(Turnstile::create(2, &Schedule::default(), free).unwrap(), 1);
        t.step(1, "get", || point("ring/get:claimed")).unwrap();
        assert_eq!(operations(&t), vec![(1, "get".into())]);
    }

    #[test]
    fn a_wait_point_passes_the_turn_only_when_another_worker_can_take_it() {
        let t = install(
            Turnstile::create(2, &Schedule::default(), Mode::Forced).unwrap(),
            0,
        );
        // Worker 1 is gone: nobody to pass the turn to, so the caller sleeps as usual.
        t.abandon(1);
        let passed = t.step(0, "lock", || wait_point("lock:busy")).unwrap();
        assert!(!passed);
        assert_eq!(operations(&t), vec![(0, "lock".into())]);
    }

    #[test]
    fn a_step_inside_a_step_is_refused() {
        let t = install(
            Turnstile::create(1, &Schedule::default(), Mode::Forced).unwrap(),
            0,
        );
        let inner = t.step(0, "outer", || t.step(0, "inner", || ())).unwrap();
        assert!(
            matches!(inner, Err(ScheduleError::Nested { ref label }) if label == "inner"),
            "{inner:?}"
        );
    }

    #[test]
    fn a_point_that_cannot_get_its_turn_back_fails_its_step() {
        let mut t = Turnstile::create(2, &Schedule::new(vec![0, 1]), Mode::Forced).unwrap();
        t.set_turn_timeout(std::time::Duration::from_millis(50));
        let t = install(t, 0);
        // Step 1 is worker 1's, and worker 1 never comes: the point times out.
        let err = t.step(0, "put", || point("ring/put:claimed")).unwrap_err();
        assert!(
            matches!(err, ScheduleError::Timeout { worker: 0, .. }),
            "{err}"
        );
    }
}
