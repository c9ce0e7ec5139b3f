//! The gRPC handlers of `clientela.classification.v1.ClassificationService`.

pub mod convert;

use std::pin::Pin;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clientela_proto::clientela::classification::v1 as pb;
use clientela_proto::clientela::classification::v1::classification_service_server::ClassificationService;
use clientela_runtime::auth::Access;
use clientela_runtime::feed::{self, Feed};
use clientela_runtime::time::{now, timestamp, to_time};
use clientela_runtime::{Error, names};
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use self::convert::*;
use crate::engine::{Engine, Progress};
use crate::store::LabelChange;

type GrpcResult<T> = Result<Response<T>, Status>;
type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Who may call what: reads for every role; policy changes and reclassification for
/// admins and services.
pub fn method_access(method: &str) -> Option<Access> {
    Some(match method {
        "GetClassification"
        | "ListClassifications"
        | "GetSegmentDistribution"
        | "ListLabelTransitions"
        | "PreviewPolicy"
        | "GetPolicy"
        | "WatchLabelChanges" => Access::Read,
        "SetPolicy" | "Reclassify" => Access::Admin,
        _ => return None,
    })
}

/// The gRPC face of the engine.
#[derive(Clone, Debug)]
pub struct ClassificationApi {
    engine: Engine,
    stopping: CancellationToken,
    poll_interval: Duration,
}

impl ClassificationApi {
    /// Handlers over `engine`; streams end when `stopping` is cancelled.
    pub fn new(engine: Engine, stopping: CancellationToken, poll_interval: Duration) -> Self {
        Self {
            engine,
            stopping,
            poll_interval,
        }
    }

    /// `as_of` of a request: absent means now; the future beyond the policy's tolerance
    /// is INVALID_ARGUMENT.
    async fn as_of(
        &self,
        ts: Option<&prost_types::Timestamp>,
        field: &str,
    ) -> Result<DateTime<Utc>, Error> {
        let now = now();
        let Some(at) = to_time(ts, field).map_err(|v| Error::InvalidArgument(vec![v]))? else {
            return Ok(now);
        };
        let tolerance = self
            .engine
            .current_policy()
            .await?
            .policy
            .as_of_future_tolerance_seconds;
        if at > now + chrono::Duration::seconds(i64::from(tolerance)) {
            return Err(Error::invalid(
                field,
                format!("{at} is in the future (tolerance {tolerance} s)"),
            ));
        }
        Ok(at)
    }
}

fn not_yet(method: &str) -> Status {
    Status::unimplemented(format!("{method} is not implemented yet"))
}

#[tonic::async_trait]
impl ClassificationService for ClassificationApi {
    async fn get_classification(
        &self,
        request: Request<pb::GetClassificationRequest>,
    ) -> GrpcResult<pb::GetClassificationResponse> {
        let req = request.into_inner();
        let id = names::parse_customer(&req.customer, "customer")?;
        let c = self.engine.classification(id.as_uuid()).await?;
        let policy = self.engine.policy(c.policy_version).await?;
        Ok(Response::new(pb::GetClassificationResponse {
            classification: Some(classification_to(&c, &policy.policy)),
        }))
    }

    async fn list_classifications(
        &self,
        _request: Request<pb::ListClassificationsRequest>,
    ) -> GrpcResult<pb::ListClassificationsResponse> {
        Err(not_yet("ListClassifications"))
    }

    async fn get_segment_distribution(
        &self,
        _request: Request<pb::GetSegmentDistributionRequest>,
    ) -> GrpcResult<pb::GetSegmentDistributionResponse> {
        Err(not_yet("GetSegmentDistribution"))
    }

    async fn list_label_transitions(
        &self,
        _request: Request<pb::ListLabelTransitionsRequest>,
    ) -> GrpcResult<pb::ListLabelTransitionsResponse> {
        Err(not_yet("ListLabelTransitions"))
    }

    type ReclassifyStream = BoxStream<pb::ReclassifyResponse>;

    async fn reclassify(
        &self,
        request: Request<pb::ReclassifyRequest>,
    ) -> GrpcResult<Self::ReclassifyStream> {
        let req = request.into_inner();
        if !req.filter.is_empty() {
            return Err(not_yet("Reclassify with a filter"));
        }
        let as_of = self.as_of(req.as_of.as_ref(), "as_of").await?;
        let version = self.engine.current_policy().await?.version;
        let engine = self.engine.clone();
        let (tx, rx) = mpsc::channel(16);
        let message = move |p: Progress, done: bool| pb::ReclassifyResponse {
            classified: p.classified,
            total: p.total,
            changes: p.changes,
            done,
            as_of: Some(timestamp(as_of)),
            policy_version: version,
        };
        // Runs to the end even if the caller leaves: what it wrote stays written.
        tokio::spawn(async move {
            let progress = |p: Progress| {
                let _ = tx.try_send(Ok(message(p, false)));
            };
            let outcome = engine.reclassify(as_of, None, progress).await;
            let last = outcome.map(|p| message(p, true)).map_err(Status::from);
            let _ = tx.send(last).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn preview_policy(
        &self,
        _request: Request<pb::PreviewPolicyRequest>,
    ) -> GrpcResult<pb::PreviewPolicyResponse> {
        Err(not_yet("PreviewPolicy"))
    }

    async fn get_policy(
        &self,
        request: Request<pb::GetPolicyRequest>,
    ) -> GrpcResult<pb::GetPolicyResponse> {
        let req = request.into_inner();
        let policy = match req.version {
            0 => self.engine.current_policy().await?,
            v if v < 0 => return Err(Error::invalid("version", "must not be negative").into()),
            v => self.engine.policy(v).await?,
        };
        Ok(Response::new(pb::GetPolicyResponse {
            policy: Some(policy_to(&policy)),
        }))
    }

    async fn set_policy(
        &self,
        request: Request<pb::SetPolicyRequest>,
    ) -> GrpcResult<pb::SetPolicyResponse> {
        let req = request.into_inner();
        let policy = policy_from(req.policy.as_ref(), "policy")?;
        if req.expected_version < 0 {
            return Err(Error::invalid("expected_version", "must not be negative").into());
        }
        let stored = self
            .engine
            .set_policy(
                &policy,
                (req.expected_version > 0).then_some(req.expected_version),
            )
            .await?;
        // Everyone is classified again under the new version, in the background.
        let engine = self.engine.clone();
        tokio::spawn(async move {
            if let Err(e) = engine.reclassify(now(), None, |_| {}).await {
                tracing::warn!(error = %e, "reclassifying after a policy change failed");
            }
        });
        Ok(Response::new(pb::SetPolicyResponse {
            policy: Some(policy_to(&stored)),
        }))
    }

    type WatchLabelChangesStream = BoxStream<pb::WatchLabelChangesResponse>;

    async fn watch_label_changes(
        &self,
        request: Request<pb::WatchLabelChangesRequest>,
    ) -> GrpcResult<Self::WatchLabelChangesStream> {
        let req = request.into_inner();
        let batch = feed::check_request(req.after_sequence, req.max_batch_size)?;
        let engine = self.engine.clone();
        let fetch = move |after, limit| {
            let engine = engine.clone();
            async move { engine.changes_after(after, limit).await }
        };
        let feed = Feed {
            fetch,
            woken: self.engine.subscribe(),
            stopping: self.stopping.clone(),
            poll: self.poll_interval,
        };
        let stream = feed::watch(feed, req.after_sequence, batch, |c: &LabelChange| {
            c.sequence
        })
        .map(|batch| {
            batch.map(|changes| pb::WatchLabelChangesResponse {
                changes: changes.iter().map(change_to).collect(),
            })
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
