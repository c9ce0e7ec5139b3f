//! The feeds other services follow, each as an [`Upstream`]: the registry's events
//! (`CustomerRegistryService.WatchEvents`) and the classification engine's label changes
//! (`ClassificationService.WatchLabelChanges`). A service says only how an item becomes
//! the change it cares about.

use clientela_proto::clientela::classification::v1 as classification;
use clientela_proto::clientela::classification::v1::classification_service_client::ClassificationServiceClient;
use clientela_proto::clientela::registry::v1 as registry;
use clientela_proto::clientela::registry::v1::customer_registry_service_client::CustomerRegistryServiceClient;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;

use super::consumer::{Deliveries, Delivery, FeedChannel, Upstream};
use crate::Error;

/// What a feed's item is to a service: its change, nothing (an item it does not follow),
/// or an error for an item the producer should never have written.
pub type Convert<T, E> = fn(&T) -> Result<Option<E>, Error>;

/// A feed's stream once opened: batches of items.
pub type Watching<T> =
    BoxFuture<'static, Result<BoxStream<'static, Result<Vec<T>, tonic::Status>>, tonic::Status>>;

/// A producer's feed RPC, as [`Items`] follows it.
pub trait FeedRpc: Send + Sync + Sized + 'static {
    /// Its position in the feed.
    fn sequence(&self) -> i64;

    /// Opens the stream after `after`, `batch` items a message at most.
    fn watch(channel: FeedChannel, after: i64, batch: i32) -> Watching<Self>;
}

impl FeedRpc for registry::Event {
    fn sequence(&self) -> i64 {
        self.sequence
    }

    fn watch(channel: FeedChannel, after: i64, batch: i32) -> Watching<Self> {
        Box::pin(async move {
            let request = registry::WatchEventsRequest {
                after_sequence: after,
                max_batch_size: batch,
            };
            let stream = CustomerRegistryServiceClient::new(channel)
                .watch_events(request)
                .await?
                .into_inner();
            Ok(stream.map(|b| b.map(|b| b.events)).boxed())
        })
    }
}

impl FeedRpc for classification::LabelChange {
    fn sequence(&self) -> i64 {
        self.sequence
    }

    fn watch(channel: FeedChannel, after: i64, batch: i32) -> Watching<Self> {
        Box::pin(async move {
            let request = classification::WatchLabelChangesRequest {
                after_sequence: after,
                max_batch_size: batch,
            };
            let stream = ClassificationServiceClient::new(channel)
                .watch_label_changes(request)
                .await?
                .into_inner();
            Ok(stream.map(|b| b.map(|b| b.changes)).boxed())
        })
    }
}

/// A feed of `T`, each item read by `convert`.
pub struct Items<T, E> {
    convert: Convert<T, E>,
}

impl<T, E> Items<T, E> {
    pub fn new(convert: Convert<T, E>) -> Self {
        Self { convert }
    }
}

/// The registry's feed (`WatchEvents`).
pub type RegistryEvents<E> = Items<registry::Event, E>;

/// The classification engine's label changes (`WatchLabelChanges`).
pub type LabelChanges<E> = Items<classification::LabelChange, E>;

impl<T, E> std::fmt::Debug for Items<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Items")
            .field("of", &std::any::type_name::<T>())
            .finish_non_exhaustive()
    }
}

impl<T: FeedRpc, E: Send + 'static> Upstream for Items<T, E> {
    type Event = E;

    fn open(
        &self,
        channel: FeedChannel,
        after: i64,
        batch: u32,
    ) -> BoxFuture<'static, Result<Deliveries<E>, tonic::Status>> {
        let convert = self.convert;
        let batch = i32::try_from(batch).unwrap_or(i32::MAX);
        Box::pin(async move {
            let stream = T::watch(channel, after, batch).await?;
            Ok(stream
                .map(move |items| items.map(|items| delivery(&items, convert)))
                .boxed())
        })
    }
}

/// A batch of items as changes; an item that cannot be read is logged and passed over
/// (one bad item must not stop the feed).
fn delivery<T: FeedRpc, E>(items: &[T], convert: Convert<T, E>) -> Delivery<E> {
    Delivery {
        last: items.last().map_or(0, T::sequence),
        received: items.len(),
        events: items
            .iter()
            .filter_map(|item| {
                convert(item)
                    .inspect_err(|err| tracing::error!(error = %err, "skipping a feed item"))
                    .ok()
                    .flatten()
            })
            .collect(),
    }
}
