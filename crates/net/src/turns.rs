//! The line at one connection's limiter: one request at a time is at the head, waiting for a
//! place in flight and for room in the windows; the others wait for their turn. Turns are
//! given urgent requests first (those of protective actions: pause, finish, delete, a shop
//! that must stop selling now), then round-robin over the runs waiting, one request each, so a
//! 20-product campaign is not stuck behind a 20,000-product one on the same account. Within a
//! run, requests keep their order.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::oneshot;

use domain::Id;

/// Whose request is asking for a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Turn {
    /// The run (its tracker) the request belongs to.
    pub run: Id,
    /// A protective action's request: it goes ahead of every other waiting.
    pub urgent: bool,
}

impl Turn {
    /// A request outside any run (a check of credentials, a look-up): an ordinary turn of its
    /// own.
    pub const ALONE: Turn = Turn {
        run: 0,
        urgent: false,
    };
}

/// The runs waiting in one class, in the order their next turn comes, each with its waiters.
type Ring = VecDeque<(Id, VecDeque<oneshot::Sender<()>>)>;

#[derive(Default)]
struct Line {
    /// Whether someone is at the head.
    held: bool,
    /// Urgent runs, then ordinary ones.
    classes: [Ring; 2],
}

impl Line {
    /// Gives the head to the next waiter still waiting; answers whether there was one.
    fn pass_on(&mut self) -> bool {
        for ring in &mut self.classes {
            while let Some((run, mut waiters)) = ring.pop_front() {
                let mut given = false;
                while let Some(waiter) = waiters.pop_front() {
                    // A waiter that gave up (its request was dropped) is skipped.
                    if waiter.send(()).is_ok() {
                        given = true;
                        break;
                    }
                }
                if !waiters.is_empty() {
                    // Its next turn comes after every other run's.
                    ring.push_back((run, waiters));
                }
                if given {
                    return true;
                }
            }
        }
        false
    }
}

/// The line of one connection.
#[derive(Default)]
pub struct Turns {
    line: Mutex<Line>,
}

/// The head of the line, held until the request is admitted or gives up.
pub struct Head<'a> {
    turns: &'a Turns,
}

impl Drop for Head<'_> {
    fn drop(&mut self) {
        self.turns.release();
    }
}

/// A place in the line: if it is dropped after the head was given to it, it passes the head on.
struct Waiting<'a> {
    turns: &'a Turns,
    granted: Option<oneshot::Receiver<()>>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Some(mut rx) = self.granted.take() {
            // Under the line's lock, so that no turn is given while we look.
            let mut line = self.turns.lock();
            if rx.try_recv().is_ok() && !line.pass_on() {
                line.held = false;
            }
        }
    }
}

impl Turns {
    fn lock(&self) -> std::sync::MutexGuard<'_, Line> {
        // The line holds plain values; a panic elsewhere cannot leave it inconsistent.
        self.line.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn release(&self) {
        let mut line = self.lock();
        if !line.pass_on() {
            line.held = false;
        }
    }

    /// Waits for the head of the line.
    pub async fn head(&self, turn: Turn) -> Head<'_> {
        let rx = {
            let mut line = self.lock();
            if !line.held {
                line.held = true;
                return Head { turns: self };
            }
            let (tx, rx) = oneshot::channel();
            let ring = &mut line.classes[usize::from(!turn.urgent)];
            match ring.iter_mut().find(|(run, _)| *run == turn.run) {
                Some((_, waiters)) => waiters.push_back(tx),
                None => ring.push_back((turn.run, VecDeque::from([tx]))),
            }
            rx
        };
        let mut waiting = Waiting {
            turns: self,
            granted: Some(rx),
        };
        if let Some(rx) = waiting.granted.as_mut() {
            // The sender is only dropped unsent when the line is dropped, which it cannot be
            // while we borrow it: the answer is always the head.
            let _ = rx.await;
        }
        waiting.granted = None;
        Head { turns: self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn turn(run: Id, urgent: bool) -> Turn {
        Turn { run, urgent }
    }

    /// Queues `asks` behind a head held by the test, then lets the line go and answers the
    /// order in which the asks got the head.
    async fn order(asks: &[(Id, bool, &'static str)]) -> Vec<&'static str> {
        let turns = Arc::new(Turns::default());
        let first = turns.head(Turn::ALONE).await;
        let got = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for &(run, urgent, name) in asks {
            let (turns, got) = (Arc::clone(&turns), Arc::clone(&got));
            tasks.push(tokio::spawn(async move {
                let _head = turns.head(turn(run, urgent)).await;
                got.lock().unwrap().push(name);
            }));
            // Each is in the line before the next asks.
            tokio::task::yield_now().await;
        }
        drop(first);
        for t in tasks {
            t.await.unwrap();
        }
        let got = got.lock().unwrap().clone();
        got
    }

    #[tokio::test]
    async fn runs_take_turns_one_request_each_and_keep_their_own_order() {
        let got = order(&[
            (1, false, "a1"),
            (1, false, "a2"),
            (1, false, "a3"),
            (1, false, "a4"),
            (2, false, "b1"),
            (2, false, "b2"),
            (3, false, "c1"),
        ])
        .await;
        assert_eq!(got, ["a1", "b1", "c1", "a2", "b2", "a3", "a4"]);
    }

    #[tokio::test]
    async fn urgent_requests_go_ahead_of_every_ordinary_one() {
        let got = order(&[
            (1, false, "a1"),
            (1, false, "a2"),
            (2, true, "pause1"),
            (1, false, "a3"),
            (2, true, "pause2"),
        ])
        .await;
        assert_eq!(got, ["pause1", "pause2", "a1", "a2", "a3"]);
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_passes_its_turn_on() {
        let turns = Arc::new(Turns::default());
        let first = turns.head(Turn::ALONE).await;
        let gives_up = {
            let turns = Arc::clone(&turns);
            tokio::spawn(async move {
                let _ = turns.head(turn(1, false)).await;
                unreachable!("aborted before its turn");
            })
        };
        tokio::task::yield_now().await;
        let next = {
            let turns = Arc::clone(&turns);
            tokio::spawn(async move {
                drop(turns.head(turn(2, false)).await);
            })
        };
        tokio::task::yield_now().await;
        gives_up.abort();
        let _ = gives_up.await;
        drop(first);
        next.await.unwrap();
        // And the line is free again.
        drop(turns.head(Turn::ALONE).await);
    }
}
