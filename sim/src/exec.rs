//! A deterministic scheduler for a handful of concurrent tasks inside one simulated
//! process: at every await point the next task to poll is chosen from the seeded RNG, and a
//! crash drops every task at a drawn poll (what a killed process does at its await points).
//!
//! Half the races draw uniformly at every await point. That interleaves finely but almost
//! never lets one task run a long stretch (a whole signing batch) while another is stopped
//! between two of its reads, which is where the costly races live. The other half follow
//! PCT (Burckhardt et al., "A randomized scheduler with probabilistic guarantees of finding
//! bugs", 2010): tasks get random distinct priorities, the highest ready one always runs,
//! and at one or two drawn polls the running task drops below all others. A race that needs
//! "A stops after its k-th await, B runs to its end, then A goes on" is then found with
//! probability about 1 / (tasks × horizon) per race, not 2^-(B's awaits).

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

pub type Task<'a> = (&'static str, Pin<Box<dyn Future<Output = ()> + 'a>>);

/// The polls within which PCT's priority change points are drawn. Races here take 5 to 30
/// polls (a nonce check about 11, a reconciler pass about 12): a change point past the end
/// of a race changes nothing.
const PCT_HORIZON: u32 = 24;

/// A task with its waker's flag.
type Running<'a> = (&'static str, Pin<Box<dyn Future<Output = ()> + 'a>>, Arc<Flag>);

/// A task's waker: marks it runnable and wakes the scheduler's own task.
struct Flag {
    woke: AtomicBool,
    root: Mutex<Option<Waker>>,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woke.store(true, Ordering::SeqCst);
        if let Some(w) = self.root.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            w.wake_by_ref();
        }
    }
}

/// How a race ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Every task finished, after this many polls.
    Done(u32),
    /// The process crashed at this poll: the tasks still running were dropped.
    Crashed(u32),
}

/// Runs `tasks` interleaved at their await points in an order drawn from `rng`; with
/// `crash_at`, stops (dropping the unfinished tasks) once that many polls have happened.
pub async fn race(rng: &mut ChaCha8Rng, tasks: Vec<Task<'_>>, crash_at: Option<u32>) -> Ended {
    let mut tasks: Vec<Running<'_>> =
        tasks.into_iter().map(|(name, fut)| (name, fut, Arc::new(Flag { woke: AtomicBool::new(true), root: Mutex::new(None) }))).collect();
    let mut polls = 0u32;
    // PCT: a priority per task (kept alongside, moved with swap_remove) and the polls at
    // which the running task is demoted; `None` draws uniformly.
    let mut pct: Option<(Vec<i64>, Vec<u32>)> = (tasks.len() > 1 && rng.random_bool(0.5)).then(|| {
        let mut prio: Vec<i64> = (0..tasks.len() as i64).collect();
        for i in (1..prio.len()).rev() {
            prio.swap(i, rng.random_range(0..=i));
        }
        let changes = (0..rng.random_range(1..=2)).map(|_| rng.random_range(1..=PCT_HORIZON)).collect();
        (prio, changes)
    });
    let mut lowest = -1i64;
    std::future::poll_fn(move |cx| {
        for t in &tasks {
            *t.2.root.lock().unwrap_or_else(|p| p.into_inner()) = Some(cx.waker().clone());
        }
        loop {
            if tasks.is_empty() {
                return Poll::Ready(Ended::Done(polls));
            }
            if crash_at.is_some_and(|c| polls >= c) {
                tasks.clear();
                return Poll::Ready(Ended::Crashed(polls));
            }
            let ready: Vec<usize> = (0..tasks.len()).filter(|&i| tasks[i].2.woke.load(Ordering::SeqCst)).collect();
            if ready.is_empty() {
                // Every task waits on a timer: tokio's paused clock moves to the next one.
                return Poll::Pending;
            }
            let i = match &pct {
                Some((prio, _)) => *ready.iter().max_by_key(|&&i| prio[i]).expect("one is ready"),
                None => ready[rng.random_range(0..ready.len())],
            };
            polls += 1;
            tasks[i].2.woke.store(false, Ordering::SeqCst);
            let waker = Waker::from(tasks[i].2.clone());
            let mut tcx = Context::from_waker(&waker);
            let done = tasks[i].1.as_mut().poll(&mut tcx).is_ready();
            if let Some((prio, changes)) = &mut pct
                && changes.contains(&polls)
            {
                prio[i] = lowest;
                lowest -= 1;
            }
            if done {
                drop(tasks.swap_remove(i));
                if let Some((prio, _)) = &mut pct {
                    prio.swap_remove(i);
                }
            }
        }
    })
    .await
}
