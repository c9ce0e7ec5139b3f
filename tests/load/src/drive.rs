//! A closed-loop driver: N tasks over M HTTP/2 connections, each sending its next
//! request when the previous one answers; a warm-up, then a measured window.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tonic::transport::Channel;

/// What one measured window saw.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Stats {
    /// Requests answered OK in the window.
    pub requests: u64,
    /// Requests that failed in the window.
    pub errors: u64,
    /// Items the OK requests carried (rows imported, events read; 1 per request otherwise).
    pub items: u64,
    /// Length of the window.
    pub seconds: f64,
    /// Latency percentiles of OK requests, microseconds.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Worst.
    pub max_us: u64,
    /// First error seen, if any.
    pub first_error: Option<String>,
}

impl Stats {
    /// Requests per second.
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.seconds.max(1e-9)
    }

    /// Items per second.
    pub fn items_per_second(&self) -> f64 {
        self.items as f64 / self.seconds.max(1e-9)
    }
}

/// Adds up what the tasks measured (a task that panicked counts nothing).
pub async fn join(
    tasks: Vec<tokio::task::JoinHandle<(Stats, Histogram<u64>)>>,
) -> (Stats, Histogram<u64>) {
    let mut total = Stats::default();
    let mut hist = histogram();
    for task in tasks {
        if let Ok((stats, h)) = task.await {
            total.requests += stats.requests;
            total.errors += stats.errors;
            total.items += stats.items;
            total.first_error = total.first_error.or(stats.first_error);
            let _ = hist.add(h);
        }
    }
    (total, hist)
}

/// Opens `count` separate HTTP/2 connections to `addr`.
pub async fn connect(addr: &str, count: usize) -> anyhow::Result<Vec<Channel>> {
    let mut channels = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        channels.push(
            Channel::from_shared(format!("http://{addr}"))?
                .tcp_nodelay(true)
                .connect()
                .await?,
        );
    }
    Ok(channels)
}

/// 1 µs to 60 s at 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant, valid bounds")
}

/// Microseconds since `since`, at least 1.
pub fn micros(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// Fills the percentiles of `stats` from `hist`.
pub fn percentiles(stats: &mut Stats, hist: &Histogram<u64>) {
    stats.p50_us = hist.value_at_quantile(0.50);
    stats.p90_us = hist.value_at_quantile(0.90);
    stats.p99_us = hist.value_at_quantile(0.99);
    stats.max_us = hist.max();
}

/// Runs `call(channel, task, n)` in `concurrency` loops for `warmup` + `duration`, and
/// measures the second part. `call` returns how many items a request carried.
pub async fn closed_loop<F, Fut>(
    channels: &[Channel],
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
    call: F,
) -> Stats
where
    F: Fn(Channel, usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<u64, tonic::Status>> + Send,
{
    let call = Arc::new(call);
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let mut tasks = Vec::with_capacity(concurrency);
    for task in 0..concurrency.max(1) {
        let channel = channels[task % channels.len()].clone();
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let mut hist = histogram();
            let mut stats = Stats::default();
            let mut n = 0;
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let result = call(channel.clone(), task, n).await;
                n += 1;
                if sent < measure_from {
                    continue;
                }
                match result {
                    Ok(items) => {
                        stats.requests += 1;
                        stats.items += items;
                        let _ = hist.record(micros(sent));
                    }
                    Err(status) => {
                        stats.errors += 1;
                        if stats.first_error.is_none() {
                            stats.first_error =
                                Some(format!("{:?}: {}", status.code(), status.message()));
                        }
                    }
                }
            }
            (stats, hist)
        }));
    }
    let (mut total, hist) = join(tasks).await;
    total.seconds = duration.as_secs_f64();
    percentiles(&mut total, &hist);
    total
}
