//! Reading your own writes across services. A write to a service that owns a feed returns
//! the sequence of its event (`event_sequence`); a read of a service that follows that
//! feed may name it (`min_event_sequence`), and then waits, within the call's deadline,
//! until the follower has applied everything up to it, and says which sequence it
//! reflects. The follower decides what "applied" means (the classification engine: the
//! events' customers classified) and how to read it; the waiting is here, once.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::Error;

/// How long a read waits for its sequence when the call has no deadline.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(10);

/// The longest a read waits, whatever deadline the caller gives.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// How often the applied sequence is read again while waiting.
const POLL: Duration = Duration::from_millis(20);

/// Headroom kept before the caller's deadline, so the DEADLINE_EXCEEDED answer reaches
/// it before its own timer fires.
const MARGIN: Duration = Duration::from_millis(20);

/// The time left of a call, from its `grpc-timeout` header (gRPC over HTTP/2: up to
/// eight digits and a unit, H M S m u n), less a margin; [`DEFAULT_WAIT`] without one,
/// at most [`MAX_WAIT`].
pub fn wait_budget(metadata: &tonic::metadata::MetadataMap) -> Duration {
    let parsed = metadata
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_timeout);
    parsed
        .map_or(DEFAULT_WAIT, |d| d.saturating_sub(MARGIN))
        .min(MAX_WAIT)
}

fn parse_timeout(text: &str) -> Option<Duration> {
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Reads `applied` until it reaches `min` (at once when `min` ≤ 0) and returns what it
/// read; DEADLINE_EXCEEDED, saying how far it got, when `budget` runs out first.
pub async fn wait_for<F, Fut>(min: i64, budget: Duration, mut applied: F) -> Result<i64, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<i64, Error>>,
{
    let until = Instant::now() + budget;
    loop {
        let now = applied().await?;
        if now >= min {
            return Ok(now);
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::DeadlineExceeded(format!(
                "event {min} is not applied yet (applied up to {now}); retry, or allow a \
                 longer deadline"
            )));
        }
        tokio::time::sleep(left.min(POLL)).await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicI64, Ordering};

    #[test]
    fn the_grpc_timeout_header_sets_the_budget() {
        assert_eq!(parse_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_timeout("3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse_timeout("1H"), Some(Duration::from_secs(3600)));
        for bad in ["", "m", "123456789m", "5x", "-5m"] {
            assert_eq!(parse_timeout(bad), None, "{bad}");
        }
        let mut metadata = tonic::metadata::MetadataMap::new();
        assert_eq!(wait_budget(&metadata), DEFAULT_WAIT);
        metadata.insert("grpc-timeout", "500m".parse().unwrap());
        assert_eq!(wait_budget(&metadata), Duration::from_millis(480));
        metadata.insert("grpc-timeout", "2H".parse().unwrap());
        assert_eq!(wait_budget(&metadata), MAX_WAIT);
    }

    #[tokio::test]
    async fn a_read_waits_for_its_sequence_or_says_how_far_it_got() {
        let applied = Arc::new(AtomicI64::new(3));
        let read = || {
            let applied = applied.clone();
            async move { Ok(applied.load(Ordering::SeqCst)) }
        };
        assert_eq!(wait_for(0, Duration::ZERO, read).await.unwrap(), 3);
        let late = wait_for(5, Duration::from_millis(50), read)
            .await
            .unwrap_err();
        assert_eq!(late.code(), tonic::Code::DeadlineExceeded);
        assert!(late.to_string().contains("applied up to 3"), "{late}");
        let bump = applied.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            bump.store(6, Ordering::SeqCst);
        });
        assert_eq!(wait_for(5, Duration::from_secs(5), read).await.unwrap(), 6);
    }
}
