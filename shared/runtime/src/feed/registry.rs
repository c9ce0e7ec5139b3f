//! The registry's event feed (`CustomerRegistryService.WatchEvents`) as an [`Upstream`]:
//! each service says only how an event becomes the change it cares about.

use clientela_proto::clientela::registry::v1 as registry;
use clientela_proto::clientela::registry::v1::customer_registry_service_client::CustomerRegistryServiceClient;
use futures::StreamExt;
use futures::future::BoxFuture;

use super::consumer::{Deliveries, Delivery, FeedChannel, Upstream};
use crate::Error;

/// What an event is to a service: its change, nothing (an event it does not follow), or
/// an error for an event the registry should never have written.
pub type Convert<E> = fn(&registry::Event) -> Result<Option<E>, Error>;

/// The registry's feed, each event read by `convert`.
pub struct RegistryEvents<E> {
    convert: Convert<E>,
}

impl<E> RegistryEvents<E> {
    pub fn new(convert: Convert<E>) -> Self {
        Self { convert }
    }
}

impl<E> std::fmt::Debug for RegistryEvents<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryEvents").finish_non_exhaustive()
    }
}

impl<E: Send + 'static> Upstream for RegistryEvents<E> {
    type Event = E;

    fn open(
        &self,
        channel: FeedChannel,
        after: i64,
        batch: u32,
    ) -> BoxFuture<'static, Result<Deliveries<E>, tonic::Status>> {
        let convert = self.convert;
        Box::pin(async move {
            let request = registry::WatchEventsRequest {
                after_sequence: after,
                max_batch_size: i32::try_from(batch).unwrap_or(i32::MAX),
            };
            let stream = CustomerRegistryServiceClient::new(channel)
                .watch_events(request)
                .await?
                .into_inner();
            Ok(stream
                .map(move |batch| batch.map(|b| delivery(&b, convert)))
                .boxed())
        })
    }
}

/// A batch of events as changes; an event that cannot be read is logged and passed over
/// (one bad event must not stop the feed).
fn delivery<E>(batch: &registry::WatchEventsResponse, convert: Convert<E>) -> Delivery<E> {
    Delivery {
        last: batch.events.last().map_or(0, |e| e.sequence),
        received: batch.events.len(),
        events: batch
            .events
            .iter()
            .filter_map(|e| {
                convert(e)
                    .inspect_err(|err| tracing::error!(error = %err, "skipping a registry event"))
                    .ok()
                    .flatten()
            })
            .collect(),
    }
}
