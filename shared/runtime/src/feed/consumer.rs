//! The consumer side of a feed: follows another service's `Watch…(after_sequence)` into
//! this service's projection. It connects (bearer token, W3C trace context), reconnects
//! with backoff, lets one replica apply at a time, gathers batches while replaying, and
//! moves the cursor in the same transaction as the projection's writes, so a restart or
//! a replay never applies an event twice. A service supplies only the [`Upstream`] (which
//! RPC, how its messages become events) and the [`Projection`] (apply them in this
//! transaction).

use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
use tokio_util::sync::CancellationToken;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tracing::Instrument as _;

use super::outbox::read_sequence;
use crate::server::read_pem;
use crate::settings::{ClientTlsSettings, non_empty};
use crate::telemetry::PropagateTrace;
use crate::{Db, Error, Secret, WriteTx};

/// The channel an [`Upstream`] opens its stream on: the token and the trace context are
/// added to every call.
pub type FeedChannel = InterceptedService<Channel, FeedInterceptor>;

/// Where a feed comes from: the producer's URL and the token to call it with, checked
/// when the service starts, so a typo fails there rather than as endless retries.
#[derive(Clone, Debug)]
pub struct Source {
    endpoint: Endpoint,
    interceptor: FeedInterceptor,
}

impl Source {
    /// `prefix` names the settings in errors (`classification.registry` for
    /// `classification.registry_url`, `…_token_file`, `…_tls`); the token comes from
    /// `token`, or else from the file `token_file` (a mounted Secret).
    pub fn new(
        prefix: &str,
        url: &str,
        token: Option<&Secret>,
        token_file: Option<&Path>,
        tls: &ClientTlsSettings,
    ) -> Result<Self, String> {
        let setting = format!("{prefix}_url");
        let bad = |why: &str| format!("{setting} {url:?}: {why}");
        let uri: http::Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(bad("must start with http:// or https://")),
        };
        let Some(host) = uri.host().filter(|h| !h.is_empty()) else {
            return Err(bad("has no host"));
        };
        let mut endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|e| bad(&e.to_string()))?
            .connect_timeout(Duration::from_secs(10))
            .tcp_nodelay(true);
        if https {
            endpoint = endpoint
                .tls_config(client_tls(&format!("{prefix}_tls"), host, tls)?)
                .map_err(|e| bad(&e.to_string()))?;
        } else if non_empty(&tls.ca_file).is_some() {
            return Err(bad("TLS is configured for it: use https://"));
        }
        let secret = match (token, token_file) {
            (Some(token), _) => Some(token.clone()),
            (None, Some(path)) => Some(Secret::new(
                std::fs::read_to_string(path)
                    .map_err(|e| format!("{prefix}_token_file {}: {e}", path.display()))?
                    .trim()
                    .to_owned(),
            )),
            (None, None) => None,
        };
        let token = secret
            .map(|t| MetadataValue::try_from(format!("Bearer {}", t.expose())))
            .transpose()
            .map_err(|_| format!("{prefix}_token: not a valid header value"))?;
        Ok(Self {
            endpoint,
            interceptor: FeedInterceptor { token },
        })
    }

    /// A source configured by `url` (empty: this process's own address, as the
    /// all-in-one `clientela serve` calls its own registry), with the token or token
    /// file and TLS of the same settings. `producer` is the gRPC service the feed comes
    /// from: with no URL it must already be served here, or a service started alone
    /// would call itself forever.
    pub fn of_settings(
        app: &crate::App,
        prefix: &str,
        producer: &str,
        url: &str,
        token: Option<&Secret>,
        token_file: Option<&Path>,
        tls: &ClientTlsSettings,
    ) -> Result<Self, crate::ServeError> {
        let url = if url.is_empty() {
            if !app.service_names().contains(&producer) {
                return Err(crate::ServeError::Config(format!(
                    "{prefix}_url is required: this process does not serve {producer}"
                )));
            }
            let addr = app.local_addr().ok_or_else(|| {
                crate::ServeError::Config(format!("{prefix}_url is required here"))
            })?;
            // Listening on every address: call this one over loopback.
            let ip = match addr.ip() {
                std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
                    std::net::Ipv4Addr::LOCALHOST.into()
                }
                std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
                    std::net::Ipv6Addr::LOCALHOST.into()
                }
                ip => ip,
            };
            if app.settings().server.tls.enabled() {
                // The certificate names a host, not an address: localhost, as a
                // certificate for a pod usually carries.
                format!("https://localhost:{}", addr.port())
            } else {
                format!("http://{}", std::net::SocketAddr::new(ip, addr.port()))
            }
        } else {
            url.to_owned()
        };
        let token_file = token_file.filter(|p| !p.as_os_str().is_empty());
        Self::new(prefix, &url, token, token_file, tls).map_err(crate::ServeError::Config)
    }

    /// A channel to the producer for calls besides the feed (with the same token and
    /// TLS), connecting on first use.
    pub fn lazy_channel(&self) -> FeedChannel {
        InterceptedService::new(self.endpoint.connect_lazy(), self.interceptor.clone())
    }

    /// The producer's address, for logs.
    pub fn uri(&self) -> &http::Uri {
        self.endpoint.uri()
    }

    async fn connect(&self) -> Result<FeedChannel, Error> {
        let channel = self
            .endpoint
            .connect()
            .await
            .map_err(|e| Error::Unavailable(format!("connecting to {}: {e}", self.uri())))?;
        Ok(InterceptedService::new(channel, self.interceptor.clone()))
    }
}

/// The TLS of a feed client: the server's CA (required), the name its certificate must
/// carry, and this client's identity for mutual TLS.
fn client_tls(
    setting: &str,
    host: &str,
    tls: &ClientTlsSettings,
) -> Result<ClientTlsConfig, String> {
    let Some(ca) = non_empty(&tls.ca_file) else {
        return Err(format!(
            "{setting}.ca_file: required for an https:// URL (the CA of the server's certificate)"
        ));
    };
    let domain = match tls.domain.trim() {
        "" => host.trim_start_matches('[').trim_end_matches(']'),
        domain => domain,
    };
    let mut config = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read_pem(
            &format!("{setting}.ca_file"),
            ca,
        )?))
        .domain_name(domain);
    match (non_empty(&tls.cert_file), non_empty(&tls.key_file)) {
        (Some(cert), Some(key)) => {
            config = config.identity(Identity::from_pem(
                read_pem(&format!("{setting}.cert_file"), cert)?,
                read_pem(&format!("{setting}.key_file"), key)?,
            ));
        }
        (None, None) => {}
        _ => {
            return Err(format!(
                "{setting}: a client certificate needs both cert_file and key_file"
            ));
        }
    }
    Ok(config)
}

/// Adds the bearer token and the W3C trace context to a feed client's calls.
#[derive(Clone, Debug)]
pub struct FeedInterceptor {
    token: Option<MetadataValue<Ascii>>,
}

impl tonic::service::Interceptor for FeedInterceptor {
    fn call(&mut self, req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let mut req = PropagateTrace.call(req)?;
        if let Some(token) = &self.token {
            req.metadata_mut().insert("authorization", token.clone());
        }
        Ok(req)
    }
}

/// One message of a feed: the events it carried that this service understood, the last
/// sequence number in it, and how many items it held (a batch shorter than asked for
/// means the producer has nothing more for now).
#[derive(Debug)]
pub struct Delivery<E> {
    /// The last sequence number of the message.
    pub last: i64,
    /// Items the message held, understood or not.
    pub received: usize,
    /// The events, in order.
    pub events: Vec<E>,
}

/// The stream an [`Upstream`] opens.
pub type Deliveries<E> = BoxStream<'static, Result<Delivery<E>, tonic::Status>>;

/// Another service's feed, as this service reads it: which RPC, and how its messages
/// become this service's events.
pub trait Upstream: Send + Sync + 'static {
    /// An event as the projection takes it.
    type Event: Send + 'static;

    /// Opens the feed after sequence `after`, `batch` items per message at most.
    fn open(
        &self,
        channel: FeedChannel,
        after: i64,
        batch: u32,
    ) -> BoxFuture<'static, Result<Deliveries<Self::Event>, tonic::Status>>;
}

/// Where a consumer keeps its place: a sequence table (see
/// [`super::create_sequence_table`]) and the name of the lock that lets one replica
/// apply at a time. The lock is tried, not waited for: give it a name only consumers
/// take. A projection whose tables other transactions write too takes its own lock, a
/// waiting one, in [`Projection::apply`].
#[derive(Clone, Copy, Debug)]
pub struct Cursor {
    /// The cursor's one-row table.
    pub table: &'static str,
    /// The transaction lock held while applying.
    pub lock: &'static str,
}

/// What the consumer tells a projection between transactions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settle {
    /// Connected, before the first message: work a previous run left undone.
    Connected,
    /// Applied part of a replay (full messages keep coming).
    Replaying,
    /// Applied everything the producer had (or the feed went quiet).
    CaughtUp,
}

/// This service's projection of a feed.
pub trait Projection: Send + Sync + 'static {
    /// The events it applies.
    type Event: Send + 'static;

    /// Applies `events`, in order, inside `tx`, and says how many of its records they
    /// touched; the consumer moves the cursor in the same transaction and commits.
    /// Nothing is written in `tx` before: until its own first write, a projection may
    /// read the last commit on other connections (SQLite's write gate is held).
    fn apply<'a>(
        &'a self,
        tx: &'a WriteTx,
        events: Vec<Self::Event>,
    ) -> BoxFuture<'a, Result<usize, Error>>;

    /// Work after a commit, outside the feed's transaction (the classification engine
    /// classifies the customers the events touched here). Nothing by default.
    fn settle(&self, _state: Settle) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async { Ok(()) })
    }
}

/// How much a consumer reads and applies at a time.
#[derive(Clone, Copy, Debug)]
pub struct Batching {
    /// Items per message asked of the producer.
    pub batch: u32,
    /// While replaying (full messages), events gathered before they are applied in one
    /// transaction; once caught up, every message is applied as it comes.
    pub commit_events: usize,
    /// How long gathered events wait for the next message before they are applied.
    pub flush_after: Duration,
}

impl Batching {
    /// From a service's settings: `batch` kept within 1-5,000 (the producer's limit),
    /// `commit_events` at least 1.
    pub fn of_settings(batch: i32, commit_events: usize) -> Self {
        Self {
            batch: batch.clamp(1, 5000).unsigned_abs(),
            commit_events: commit_events.max(1),
            ..Self::default()
        }
    }
}

impl Default for Batching {
    fn default() -> Self {
        Self {
            batch: 2000,
            commit_events: 50_000,
            flush_after: Duration::from_millis(200),
        }
    }
}

/// Follows one feed into one projection.
pub struct Consumer<U, P> {
    /// Where the feed comes from.
    pub source: Source,
    /// How it is read.
    pub upstream: U,
    /// Where it goes.
    pub projection: P,
    /// The projection's database.
    pub db: Db,
    /// Where the place is kept.
    pub cursor: Cursor,
    /// How much at a time.
    pub batching: Batching,
}

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

impl<U, P> Consumer<U, P>
where
    U: Upstream,
    P: Projection<Event = U::Event>,
{
    /// Runs until `stopping` is cancelled, reconnecting with backoff after errors.
    pub async fn run(self, stopping: CancellationToken) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let mut progressed = false;
            let outcome = tokio::select! {
                () = stopping.cancelled() => return,
                r = self.follow(&mut progressed) => r,
            };
            if progressed || outcome.is_ok() {
                // The feed moved on before this ended: the next try starts afresh.
                backoff = FIRST_BACKOFF;
            }
            if let Err(e) = outcome {
                tracing::warn!(
                    error = %e,
                    from = %self.source.uri(),
                    retry_in = ?backoff,
                    "following a feed"
                );
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            tokio::select! {
                () = stopping.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
        }
    }

    /// One connection's worth of following: returns when the stream ends or fails, with
    /// `progressed` set once something was applied.
    async fn follow(&self, progressed: &mut bool) -> Result<(), Error> {
        let batch = Ord::max(self.batching.batch, 1);
        // A trace per connection, which the producer's span of the stream joins; each
        // transaction applied is a trace of its own (a stream lives for hours).
        let connecting = tracing::info_span!("feed.connect", otel.kind = "client", from = %self.source.uri(), cursor = self.cursor.table);
        let (mut cursor, mut stream) = async {
            let channel = self.source.connect().await?;
            let cursor = read_sequence(self.db.conn(), self.cursor.table).await?;
            let stream = self
                .upstream
                .open(channel, cursor, batch)
                .await
                .map_err(feed_error)?;
            Ok::<_, Error>((cursor, stream))
        }
        .instrument(connecting)
        .await?;
        self.projection.settle(Settle::Connected).await?;
        // Gathered while replaying: several messages share one transaction.
        let mut buffered: Vec<U::Event> = Vec::new();
        let mut buffered_last = cursor;
        // Applied since the projection last heard it was caught up.
        let mut unsettled = false;
        loop {
            let next = if buffered_last == cursor && !unsettled {
                stream.next().await
            } else {
                match tokio::time::timeout(self.batching.flush_after, stream.next()).await {
                    Ok(next) => next,
                    // Quiet, so caught up: what is gathered goes in now.
                    Err(_) => {
                        if buffered_last > cursor {
                            cursor = self.flush(cursor, buffered_last, &mut buffered).await?;
                            *progressed = true;
                        }
                        self.projection.settle(Settle::CaughtUp).await?;
                        unsettled = false;
                        continue;
                    }
                }
            };
            let Some(delivery) = next else { break };
            let delivery = delivery.map_err(feed_error)?;
            if delivery.last <= buffered_last {
                continue;
            }
            buffered.extend(delivery.events);
            buffered_last = delivery.last;
            let caught_up = delivery.received < batch as usize;
            if !caught_up && buffered.len() < self.batching.commit_events {
                continue;
            }
            cursor = self.flush(cursor, buffered_last, &mut buffered).await?;
            *progressed = true;
            let state = if caught_up {
                Settle::CaughtUp
            } else {
                Settle::Replaying
            };
            self.projection.settle(state).await?;
            unsettled = !caught_up;
        }
        if buffered_last > cursor {
            self.flush(cursor, buffered_last, &mut buffered).await?;
            *progressed = true;
        }
        Ok(())
    }

    async fn flush(
        &self,
        cursor: i64,
        last: i64,
        buffered: &mut Vec<U::Event>,
    ) -> Result<i64, Error> {
        let events = std::mem::take(buffered);
        apply(
            &self.db,
            self.cursor,
            cursor,
            last,
            &self.projection,
            events,
        )
        .await?;
        Ok(last)
    }
}

/// Applies `events`, what a feed holds after `after` up to `last`, to `projection`,
/// moving the cursor from `after` to `last` in the same transaction. ABORTED when another replica holds the
/// lock (`FEED_BUSY`) or moved the cursor first (`FEED_CURSOR_MOVED`): nothing is written
/// then. Nothing to do when `last` is not after `after`. Returns what the projection
/// said it touched.
pub async fn apply<P: Projection>(
    db: &Db,
    cursor: Cursor,
    after: i64,
    last: i64,
    projection: &P,
    events: Vec<P::Event>,
) -> Result<usize, Error> {
    if last <= after {
        return Ok(0);
    }
    let tx = db.begin_write().await?;
    // The lock refuses another replica before it does the work; the conditional cursor
    // update would refuse it anyway, after the work.
    if !crate::db::try_transaction_lock(tx.conn(), cursor.lock).await? {
        tx.rollback().await?;
        return Err(Error::Aborted {
            reason: "FEED_BUSY",
            message: "another replica is applying this feed".into(),
        });
    }
    let applied = async {
        let touched = projection.apply(&tx, events).await?;
        advance(tx.conn(), cursor.table, after, last).await?;
        Ok(touched)
    }
    .await;
    match applied {
        Ok(touched) => {
            tx.commit().await?;
            Ok(touched)
        }
        Err(e) => {
            // Ended here rather than by the drop, whose rollback (and the release of
            // PostgreSQL's lock) would run later, on a task of the pool's.
            let _ = tx.rollback().await;
            Err(e)
        }
    }
}

/// The sequence a consumer's cursor holds: the last event its projection includes.
pub async fn position(db: &Db, cursor: Cursor) -> Result<i64, Error> {
    // Every Get with read-your-writes asks it: on a SQLite file read in place, without
    // sqlx's hand-off to its connection thread (see `Db::sqlite_read`).
    let sql = format!("SELECT last_sequence FROM {} WHERE id = 1", cursor.table);
    match db.sqlite_read(|c| c.prepare_cached(&sql)?.query_row([], |row| row.get(0))) {
        Some(read) => Ok(read?),
        None => read_sequence(db.conn(), cursor.table).await,
    }
}

/// Moves the cursor from `from` to `to`; ABORTED when another consumer moved it first
/// (its transaction is then the one that counts, and this one must roll back).
async fn advance(
    conn: &impl ConnectionTrait,
    table: &str,
    from: i64,
    to: i64,
) -> Result<(), Error> {
    let update = Query::update()
        .table(Alias::new(table))
        .value(Alias::new("last_sequence"), to)
        .and_where(Expr::col(Alias::new("id")).eq(1))
        .and_where(Expr::col(Alias::new("last_sequence")).eq(from))
        .to_owned();
    if conn.execute(&update).await?.rows_affected() == 1 {
        Ok(())
    } else {
        Err(Error::Aborted {
            reason: "FEED_CURSOR_MOVED",
            message: format!("another consumer moved the feed cursor past {from}"),
        })
    }
}

fn feed_error(status: tonic::Status) -> Error {
    Error::Unavailable(format!("feed: {status}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_url_or_token_file_fails_at_start_up() {
        let plain = ClientTlsSettings::default();
        let check = |url: &str| Source::new("x", url, None, None, &plain).map(|_| ());
        assert!(check("http://127.0.0.1:50051").is_ok());
        assert!(check("http://registry.clientela.svc:50051").is_ok());
        for bad in [
            "",
            "registry:50051",
            "ftp://host:1",
            "http://",
            "http//host:1",
            "http://ho st:1",
        ] {
            let error = check(bad).expect_err(bad);
            assert!(error.starts_with("x_"), "{bad:?}: {error}");
        }
        let missing = Source::new(
            "x",
            "http://127.0.0.1:1",
            None,
            Some(Path::new("/nonexistent/clientela-token")),
            &plain,
        )
        .expect_err("missing token file");
        assert!(
            missing.contains("/nonexistent/clientela-token"),
            "{missing}"
        );
        let bad_header = Source::new(
            "x",
            "http://127.0.0.1:1",
            Some(&Secret::new("line\nbreak")),
            None,
            &plain,
        )
        .expect_err("token with a newline");
        assert!(bad_header.contains("header"), "{bad_header}");
    }
}
