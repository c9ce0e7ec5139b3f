//! The registry's event feed as the engine reads it: `WatchEvents`, each event turned
//! into the change it makes to the engine's facts.

use clientela_proto::clientela::registry::v1 as registry;
use clientela_proto::clientela::registry::v1::customer_registry_service_client::CustomerRegistryServiceClient;
use clientela_runtime::feed::consumer::{Deliveries, Delivery, FeedChannel, Upstream};
use futures::StreamExt;
use futures::future::BoxFuture;

use super::convert::change_from;
use crate::projection::Change;

/// `CustomerRegistryService.WatchEvents`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RegistryEvents;

impl Upstream for RegistryEvents {
    type Event = Change;

    fn open(
        &self,
        channel: FeedChannel,
        after: i64,
        batch: u32,
    ) -> BoxFuture<'static, Result<Deliveries<Change>, tonic::Status>> {
        Box::pin(async move {
            let request = registry::WatchEventsRequest {
                after_sequence: after,
                max_batch_size: i32::try_from(batch).unwrap_or(i32::MAX),
            };
            let stream = CustomerRegistryServiceClient::new(channel)
                .watch_events(request)
                .await?
                .into_inner();
            Ok(stream.map(|batch| batch.map(delivery)).boxed())
        })
    }
}

/// A batch of events as changes; an event the engine cannot read is logged and passed
/// over (one bad event must not stop the feed).
fn delivery(batch: registry::WatchEventsResponse) -> Delivery<Change> {
    Delivery {
        last: batch.events.last().map_or(0, |e| e.sequence),
        received: batch.events.len(),
        events: batch
            .events
            .iter()
            .filter_map(|e| {
                change_from(e)
                    .inspect_err(|err| tracing::error!(error = %err, "skipping a registry event"))
                    .ok()
            })
            .collect(),
    }
}
