//! A deterministic scheduler for a handful of concurrent tasks inside one simulated
//! process: at every await point the next task to poll is drawn from the seeded RNG, and a
//! crash drops every task at a drawn poll (what a killed process does at its await points).

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

pub type Task<'a> = (&'static str, Pin<Box<dyn Future<Output = ()> + 'a>>);

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
            let i = ready[rng.random_range(0..ready.len())];
            polls += 1;
            tasks[i].2.woke.store(false, Ordering::SeqCst);
            let waker = Waker::from(tasks[i].2.clone());
            let mut tcx = Context::from_waker(&waker);
            if tasks[i].1.as_mut().poll(&mut tcx).is_ready() {
                drop(tasks.swap_remove(i));
            }
        }
    })
    .await
}
