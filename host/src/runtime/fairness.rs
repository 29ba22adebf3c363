//! Sharing the host between applications, so that one cannot make the
//! others unusable:
//!
//! - **Instance caps.** An application, and each of its components, may
//!   have only so many instances at once; past its cap a request gets a 503
//!   at once (it does not queue), and the instances of other applications
//!   are unaffected.
//! - **CPU turns.** Each epoch tick charges the applications whose guests
//!   are running (a sample of the CPU they use). A guest that runs past two
//!   ticks is a long runner, and so is every guest of an application that
//!   has used more than its share lately. Long runners take turns, a tick
//!   at a time, on fewer worker threads than the host has, so that short
//!   requests of other applications (and the HTTP and I/O tasks) always
//!   find a free worker. The turn goes to the application that has used the
//!   least CPU lately: one that has used its share yields to the others. A
//!   guest gives its turn back when it calls the host (it may wait there),
//!   and asks again at its next tick.
//! - **Quiet failures.** A guest's failures (traps, deadlines, refusals)
//!   are logged a few at a time, with counts, not one line each.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

/// An application's share of the runtime: its instance cap, and the CPU
/// its guests have used lately. One per loaded application; its components
/// share it.
#[derive(Clone)]
pub struct AppShare {
    pub(super) name: Arc<str>,
    instances: Arc<Semaphore>,
    cap: u32,
    pub(super) cpu: Arc<CpuUsage>,
}

impl AppShare {
    pub(super) fn new(name: &str, cap: u32, cpu: Arc<CpuUsage>) -> Self {
        Self {
            name: name.into(),
            instances: Arc::new(Semaphore::new(cap as usize)),
            cap,
            cpu,
        }
    }
}

/// A component's instance cap, and its application's.
pub(super) struct InstanceCaps {
    app: AppShare,
    component: Arc<Semaphore>,
    component_cap: u32,
}

/// The right to run one instance; given back when dropped.
pub(super) struct InstanceSlot {
    _app: OwnedSemaphorePermit,
    _component: OwnedSemaphorePermit,
}

/// Why a request gets no instance.
#[derive(Debug, thiserror::Error)]
pub(super) enum AtCap {
    #[error("application `{app}` has {cap} requests running, its limit; try again")]
    Application { app: Arc<str>, cap: u32 },
    #[error("component `{component}` has {cap} requests running, its limit; try again")]
    Component { component: String, cap: u32 },
}

impl InstanceCaps {
    pub(super) fn new(app: AppShare, component_cap: u32) -> Self {
        Self {
            app,
            component: Arc::new(Semaphore::new(component_cap as usize)),
            component_cap,
        }
    }

    pub(super) fn app(&self) -> &AppShare {
        &self.app
    }

    /// A slot for one more instance of `component`, if neither its cap nor
    /// its application's is reached. Never waits: a request past the cap is
    /// refused at once, rather than queued behind guests that may spin
    /// until their deadline.
    pub(super) fn try_take(&self, component: &str) -> Result<InstanceSlot, AtCap> {
        let component_slot =
            self.component
                .clone()
                .try_acquire_owned()
                .map_err(|_| AtCap::Component {
                    component: component.into(),
                    cap: self.component_cap,
                })?;
        let app_slot = self
            .app
            .instances
            .clone()
            .try_acquire_owned()
            .map_err(|_| AtCap::Application {
                app: self.app.name.clone(),
                cap: self.app.cap,
            })?;
        Ok(InstanceSlot {
            _app: app_slot,
            _component: component_slot,
        })
    }
}

/// How fast CPU usage is forgotten: usage from one half-life ago counts
/// half.
const USAGE_HALF_LIFE: Duration = Duration::from_secs(1);

/// Epoch ticks an application's guests have run lately, decaying
/// exponentially.
#[derive(Default)]
pub(super) struct CpuUsage {
    state: Mutex<Option<(f64, Instant)>>,
}

impl CpuUsage {
    /// Adds one tick of running.
    pub(super) fn charge(&self) {
        let mut state = self.state.lock().expect("cpu usage lock");
        let now = Instant::now();
        let usage = state.map_or(0.0, |(usage, at)| decay(usage, now - at));
        *state = Some((usage + 1.0, now));
    }

    /// The ticks run lately, as of now.
    fn current(&self) -> f64 {
        let state = self.state.lock().expect("cpu usage lock");
        state.map_or(0.0, |(usage, at)| decay(usage, at.elapsed()))
    }
}

fn decay(usage: f64, elapsed: Duration) -> f64 {
    usage * 0.5f64.powf(elapsed.as_secs_f64() / USAGE_HALF_LIFE.as_secs_f64())
}

/// The worker threads long runners may use at once: one fewer than the
/// cores (at least one), so that one is always free for short requests and
/// for the HTTP and I/O tasks.
pub(super) fn long_runner_slots() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get().saturating_sub(1))
        .max(1)
}

/// Turns for long-running guests: `slots` run at once; the others wait,
/// without holding a worker thread, for the turn given back at someone's
/// next tick. The waiter whose application has used the least CPU lately
/// goes first (the longest waiting among equals).
pub(super) struct CpuTurns {
    state: Mutex<TurnState>,
    /// Every application's usage, to tell which are over their share.
    apps: Mutex<Vec<Weak<CpuUsage>>>,
}

/// Ticks of use lately below which no application is over its share: a
/// little CPU is nobody's problem.
const USAGE_FLOOR: f64 = 10.0;

struct TurnState {
    free: usize,
    waiting: Vec<Waiter>,
    next: u64,
}

struct Waiter {
    order: u64,
    usage: Arc<CpuUsage>,
    grant: oneshot::Sender<Turn>,
}

/// One long runner's turn; given back (to the next waiter) when dropped.
pub(super) struct Turn {
    turns: Option<Arc<CpuTurns>>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        if let Some(turns) = self.turns.take() {
            turns.give_back();
        }
    }
}

impl CpuTurns {
    pub(super) fn new(slots: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(TurnState {
                free: slots.max(1),
                waiting: Vec::new(),
                next: 0,
            }),
            apps: Mutex::default(),
        })
    }

    /// A CPU account for a new application.
    pub(super) fn account(&self) -> Arc<CpuUsage> {
        let usage = Arc::new(CpuUsage::default());
        let mut apps = self.apps.lock().expect("cpu accounts lock");
        apps.retain(|app| app.strong_count() > 0);
        apps.push(Arc::downgrade(&usage));
        usage
    }

    /// Whether the application of `usage` has used more than its share
    /// lately: more than the mean of the applications that used any, when
    /// there are at least two of them.
    pub(super) fn over_share(&self, usage: &CpuUsage) -> bool {
        let mine = usage.current();
        if mine < USAGE_FLOOR {
            return false;
        }
        let apps = self.apps.lock().expect("cpu accounts lock");
        let (total, active) = apps
            .iter()
            .filter_map(Weak::upgrade)
            .map(|app| app.current())
            .filter(|&used| used >= 1.0)
            .fold((0.0, 0u32), |(total, n), used| (total + used, n + 1));
        active >= 2 && mine > total / f64::from(active)
    }

    /// Waits for a turn for a guest of the application whose usage is
    /// `usage`.
    pub(super) async fn take(self: &Arc<Self>, usage: Arc<CpuUsage>) -> Turn {
        let granted = {
            let mut state = self.state.lock().expect("cpu turns lock");
            if state.free > 0 {
                state.free -= 1;
                return Turn {
                    turns: Some(self.clone()),
                };
            }
            let (grant, granted) = oneshot::channel();
            let order = state.next;
            state.next += 1;
            state.waiting.push(Waiter {
                order,
                usage,
                grant,
            });
            granted
        };
        // Waiters stay in the state until granted, and the state lives as
        // long as `self`: the sender is never dropped unsent.
        granted.await.unwrap_or(Turn { turns: None })
    }

    /// Gives a turn to the best waiter still waiting, or frees it.
    fn give_back(self: &Arc<Self>) {
        let mut state = self.state.lock().expect("cpu turns lock");
        // Waiters are at most the instances that exist: a scan is cheap.
        while let Some(best) = state
            .waiting
            .iter()
            .enumerate()
            .map(|(i, w)| (w.usage.current(), w.order, i))
            .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))
            .map(|(_, _, i)| i)
        {
            let waiter = state.waiting.swap_remove(best);
            match waiter.grant.send(Turn {
                turns: Some(self.clone()),
            }) {
                Ok(()) => return,
                // That guest is gone (its request was cut off): the turn is
                // still ours to give, without a recursive give-back.
                Err(mut turn) => drop(turn.turns.take()),
            }
        }
        state.free += 1;
    }
}

/// How long a component's failure log window lasts.
const FAILURE_LOG_WINDOW: Duration = Duration::from_secs(10);
/// Failures logged one by one at the start of each window; after them only
/// the 8th, 16th, 32nd... are, with the count.
const FAILURES_LOGGED_IN_FULL: u64 = 5;

/// Counts a component's failures so that a burst logs a few lines with
/// counts, not one line per failure: the first few of each 10 s window,
/// then one at each power of two.
#[derive(Default)]
pub(super) struct FailureLog {
    state: Mutex<Option<(Instant, u64)>>,
}

impl FailureLog {
    /// Counts a failure; returns `Some(n)` if this one, the `n`th of the
    /// window, is to be logged.
    pub(super) fn note(&self) -> Option<u64> {
        let mut state = self.state.lock().expect("failure log lock");
        let now = Instant::now();
        let (start, count) = match *state {
            Some((start, count)) if now - start < FAILURE_LOG_WINDOW => (start, count + 1),
            _ => (now, 1),
        };
        *state = Some((start, count));
        (count <= FAILURES_LOGGED_IN_FULL || count.is_power_of_two()).then_some(count)
    }

    /// Logs a failure of `component` as a warning, if it is one of those
    /// [`note`](Self::note) picks; past the first few, with the count.
    /// Says whether it logged.
    pub(super) fn log(&self, component: &str, what: std::fmt::Arguments<'_>) -> bool {
        let picked = self.note();
        match picked {
            Some(n) if n <= FAILURES_LOGGED_IN_FULL => {
                tracing::warn!(component = %component, "{what}");
            }
            Some(n) => tracing::warn!(
                component = %component,
                failures = n,
                "{what} (failure {n} of this component within {}s; the ones since the \
                 last line were not logged)",
                FAILURE_LOG_WINDOW.as_secs()
            ),
            None => {}
        }
        picked.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_failures_logs_the_first_few_then_powers_of_two() {
        let log = FailureLog::default();
        let logged: Vec<u64> = (0..100).filter_map(|_| log.note()).collect();
        assert_eq!(logged, [1, 2, 3, 4, 5, 8, 16, 32, 64]);
    }

    #[test]
    fn past_its_cap_an_application_is_refused_and_its_slots_come_back() {
        let app = AppShare::new("busy", 2, Arc::default());
        let first = InstanceCaps::new(app.clone(), 10);
        let second = InstanceCaps::new(app, 1);
        let a = first.try_take("first").unwrap();
        let b = second.try_take("second").unwrap();
        assert!(matches!(
            first.try_take("first"),
            Err(AtCap::Application { cap: 2, .. })
        ));
        drop(a);
        assert!(matches!(
            second.try_take("second"),
            Err(AtCap::Component { cap: 1, .. })
        ));
        drop(b);
        let _ = second.try_take("second").unwrap();
    }

    #[tokio::test]
    async fn the_application_that_used_less_cpu_gets_the_next_turn() {
        let turns = CpuTurns::new(1);
        let heavy = Arc::new(CpuUsage::default());
        let light = Arc::new(CpuUsage::default());
        for _ in 0..10 {
            heavy.charge();
        }
        light.charge();
        let running = turns.take(heavy.clone()).await;
        // The heavy application asked first; the light one gets the turn.
        let mut heavy_waits = Box::pin(turns.take(heavy.clone()));
        let mut light_waits = Box::pin(turns.take(light.clone()));
        assert!(futures_poll(&mut heavy_waits).is_none());
        assert!(futures_poll(&mut light_waits).is_none());
        drop(running);
        assert!(futures_poll(&mut heavy_waits).is_none());
        let light_turn = futures_poll(&mut light_waits).expect("the light one's turn");
        drop(light_turn);
        assert!(futures_poll(&mut heavy_waits).is_some());
    }

    #[test]
    fn an_application_is_over_its_share_when_it_used_more_than_the_others() {
        let turns = CpuTurns::new(1);
        let heavy = turns.account();
        let light = turns.account();
        for _ in 0..100 {
            heavy.charge();
        }
        // Alone in using CPU, it has no one to yield to.
        assert!(!turns.over_share(&heavy));
        for _ in 0..20 {
            light.charge();
        }
        assert!(turns.over_share(&heavy));
        assert!(!turns.over_share(&light));
    }

    #[tokio::test]
    async fn a_turn_granted_to_a_guest_that_is_gone_goes_to_the_next() {
        let turns = CpuTurns::new(1);
        let usage = Arc::new(CpuUsage::default());
        let running = turns.take(usage.clone()).await;
        let mut gone = Box::pin(turns.take(usage.clone()));
        assert!(futures_poll(&mut gone).is_none());
        let mut next = Box::pin(turns.take(usage.clone()));
        assert!(futures_poll(&mut next).is_none());
        drop(gone);
        drop(running);
        assert!(futures_poll(&mut next).is_some());
    }

    /// Polls `future` once.
    fn futures_poll<F: Future + Unpin>(future: &mut F) -> Option<F::Output> {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        match std::pin::Pin::new(future).poll(&mut cx) {
            std::task::Poll::Ready(out) => Some(out),
            std::task::Poll::Pending => None,
        }
    }
}
