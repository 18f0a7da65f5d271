//! Read timeouts for long-lived connections without a timer per read: one
//! sleep per connection, re-armed only when it fires early.
//!
//! Why: a timeout around every read registers and removes a timer for every
//! request (Pingora's wheel: a lock, a map entry and a waiter on a `Notify`
//! shared by every timer in the same 10 ms slot, plus a boxed future; tokio's:
//! the driver lock twice). Under `ab` that was ~5% of the proxy's CPU per small
//! request, for a timeout that almost never fires. Here a read that completes
//! at once costs nothing, a read that waits costs one clock read and a waker
//! check, and the connection's sleep is touched when it fires (at most once
//! per limit on a busy connection) or when a wait needs an earlier deadline.

use std::future::Future;
use std::pin::{pin, Pin};
use std::task::Poll;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// The limit passed before the read completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedOut;

/// One connection's read deadline; reuse it for every read on the connection.
///
/// The sleep belongs to the runtime of the thread that first waited; the
/// lane's pool keys connections by thread, so they stay there.
#[derive(Default)]
pub struct ReadTimer {
    sleep: Option<Pin<Box<Sleep>>>,
}

impl ReadTimer {
    /// A timer with nothing armed yet.
    pub fn new() -> Self {
        ReadTimer::default()
    }

    /// Runs `read`, giving up with [`TimedOut`] when it has not completed
    /// `limit` after it began: at `began` when the caller has a clock reading
    /// from just before the read (a request's start: waiting then costs no
    /// clock read), otherwise when it first had to wait.
    pub async fn run<F: Future>(
        &mut self,
        began: Option<std::time::Instant>,
        limit: Duration,
        read: F,
    ) -> Result<F::Output, TimedOut> {
        let mut read = pin!(read);
        let mut deadline = None;
        std::future::poll_fn(|cx| {
            if let Poll::Ready(out) = read.as_mut().poll(cx) {
                return Poll::Ready(Ok(out));
            }
            let deadline =
                *deadline.get_or_insert_with(|| began.map_or_else(Instant::now, Instant::from_std) + limit);
            let sleep = match &mut self.sleep {
                Some(sleep) => {
                    // Armed later (a previous wait had a longer limit): move it
                    // in. Armed earlier: leave it, it is re-armed when it fires.
                    if sleep.deadline() > deadline {
                        sleep.as_mut().reset(deadline);
                    }
                    sleep
                }
                none => none.insert(Box::pin(tokio::time::sleep_until(deadline))),
            };
            loop {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                if sleep.deadline() >= deadline {
                    return Poll::Ready(Err(TimedOut));
                }
                // Fired for an earlier wait's deadline: re-arm for this one
                // (polling again registers the waker).
                sleep.as_mut().reset(deadline);
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const SEC: Duration = Duration::from_secs(1);

    #[tokio::test]
    async fn a_ready_read_arms_nothing() {
        let mut timer = ReadTimer::new();
        assert_eq!(timer.run(None, SEC, async { 7 }).await, Ok(7));
        assert!(timer.sleep.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_that_never_completes_times_out_at_its_limit() {
        let mut timer = ReadTimer::new();
        let start = Instant::now();
        assert_eq!(timer.run(None, 3 * SEC, std::future::pending::<()>()).await, Err(TimedOut));
        assert_eq!(start.elapsed(), 3 * SEC);
    }

    #[tokio::test(start_paused = true)]
    async fn each_wait_gets_its_full_limit_from_when_it_began() {
        let mut timer = ReadTimer::new();
        // A first wait arms the sleep for t=10 s and completes at t=4 s.
        let done = timer.run(None, 10 * SEC, tokio::time::sleep(4 * SEC)).await;
        assert_eq!(done, Ok(()));
        // The next wait starts at t=4 s: it must not end at the stale t=10 s.
        let start = Instant::now();
        assert_eq!(timer.run(None, 10 * SEC, std::future::pending::<()>()).await, Err(TimedOut));
        assert_eq!(start.elapsed(), 10 * SEC);
        // A read that completes after the stale deadline passed is not cut off.
        let done = timer.run(None, 10 * SEC, tokio::time::sleep(9 * SEC)).await;
        assert_eq!(done, Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_given_start_counts_the_time_before_the_wait() {
        let mut timer = ReadTimer::new();
        let began = Instant::now();
        tokio::time::advance(2 * SEC).await;
        let waited = Instant::now();
        let out = timer.run(Some(began.into_std()), 3 * SEC, std::future::pending::<()>()).await;
        assert_eq!(out, Err(TimedOut));
        assert_eq!(waited.elapsed(), SEC, "3 s from `began`, 2 s of which had passed");
    }

    #[tokio::test(start_paused = true)]
    async fn a_shorter_limit_than_the_armed_one_is_honoured() {
        let mut timer = ReadTimer::new();
        assert_eq!(timer.run(None, 60 * SEC, tokio::time::sleep(SEC)).await, Ok(()));
        let start = Instant::now();
        assert_eq!(timer.run(None, 2 * SEC, std::future::pending::<()>()).await, Err(TimedOut));
        assert_eq!(start.elapsed(), 2 * SEC);
    }

    #[tokio::test]
    async fn reads_a_real_socket_across_many_waits() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut writer = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (mut reader, _) = listener.accept().await.unwrap();
        let mut timer = ReadTimer::new();
        for i in 0..50u8 {
            let write = async {
                tokio::task::yield_now().await;
                writer.write_all(&[i]).await.unwrap();
            };
            let mut byte = [0u8; 1];
            let (read, ()) = tokio::join!(timer.run(None, SEC, reader.read_exact(&mut byte)), write);
            assert_eq!(read.unwrap().unwrap(), 1);
            assert_eq!(byte[0], i);
        }
        drop(writer);
        let mut rest = Vec::new();
        assert_eq!(timer.run(None, SEC, reader.read_to_end(&mut rest)).await.unwrap().unwrap(), 0);
    }
}
