//! The gRPC handlers of `clientela.classification.v1.ClassificationService`.

pub mod convert;

use std::pin::Pin;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clientela_domain::text::quote;
use clientela_proto::clientela::classification::v1 as pb;
use clientela_proto::clientela::classification::v1::classification_service_server::ClassificationService;
use clientela_runtime::auth::Access;
use clientela_runtime::feed::{self, Feed};
use clientela_runtime::time::{now, timestamp, to_time};
use clientela_runtime::{Error, names, pagination};
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use self::convert::*;
use crate::classification::{LabelChange, TransitionQuery};
use crate::engine::{Engine, Progress};
use crate::filter::Filter;
use crate::labels::Dimension;

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
    tasks: TaskTracker,
}

impl ClassificationApi {
    /// Handlers over `engine`; streams end when `stopping` is cancelled, and the work a
    /// call leaves running (a Reclassify) goes to `tasks`, which the server waits for.
    pub fn new(
        engine: Engine,
        stopping: CancellationToken,
        poll_interval: Duration,
        tasks: TaskTracker,
    ) -> Self {
        Self {
            engine,
            stopping,
            poll_interval,
            tasks,
        }
    }

    /// Waits until the engine has classified every registry event up to `min` (a
    /// registry write's event_sequence; 0: no wait) within `budget`, and returns the
    /// sequence the answer will reflect. Read before the data it vouches for.
    async fn applied(&self, min: i64, budget: Duration) -> Result<i64, Error> {
        if min < 0 {
            return Err(Error::invalid("min_event_sequence", "must not be negative"));
        }
        if let Some(known) = self.engine.classified_through_cached(min) {
            return Ok(known);
        }
        feed::consistency::wait_for(min, budget, || self.engine.classified_through()).await
    }

    /// `as_of` of a request, translated; the engine's policy checks it.
    async fn as_of(
        &self,
        ts: Option<&prost_types::Timestamp>,
        field: &str,
    ) -> Result<DateTime<Utc>, Error> {
        let at = to_time(ts, field).map_err(|v| Error::InvalidArgument(vec![v]))?;
        self.engine.as_of(at, field).await
    }
}

#[tonic::async_trait]
impl ClassificationService for ClassificationApi {
    async fn get_classification(
        &self,
        request: Request<pb::GetClassificationRequest>,
    ) -> GrpcResult<pb::GetClassificationResponse> {
        let budget = feed::consistency::wait_budget(request.metadata());
        let req = request.into_inner();
        // Every field, so one added to the proto does not compile until it is read.
        let pb::GetClassificationRequest {
            customer: _,
            min_event_sequence: _,
        } = &req;
        let id = names::parse_customer(&req.customer, "customer")?;
        let event_sequence = self.applied(req.min_event_sequence, budget).await?;
        let c = self.engine.classification(id.as_uuid()).await?;
        let policy = self.engine.policy(c.policy_version).await?;
        Ok(Response::new(pb::GetClassificationResponse {
            classification: Some(classification_to(&c, &policy.policy)),
            event_sequence,
        }))
    }

    async fn list_classifications(
        &self,
        request: Request<pb::ListClassificationsRequest>,
    ) -> GrpcResult<pb::ListClassificationsResponse> {
        let budget = feed::consistency::wait_budget(request.metadata());
        let req = request.into_inner();
        // Every field, so one added to the proto does not compile until it is read.
        let pb::ListClassificationsRequest {
            filter: _,
            page_size: _,
            page_token: _,
            min_event_sequence: _,
        } = &req;
        let filter = Filter::parse(&req.filter, "filter")?;
        let limit = pagination::page_size(req.page_size, "page_size")?;
        let query = pagination::fingerprint(&filter);
        let after: Option<Uuid> = pagination::decode(&req.page_token, query, "page_token")?;
        let event_sequence = self.applied(req.min_event_sequence, budget).await?;
        let listed = self.engine.list(&filter, after, limit).await?;
        let next_page_token = listed
            .resume_after
            .map_or_else(String::new, |last| pagination::encode(query, &last));
        let page = listed.classifications;
        let mut classifications = Vec::with_capacity(page.len());
        for c in &page {
            let policy = self.engine.policy(c.policy_version).await?;
            classifications.push(classification_to(c, &policy.policy));
        }
        Ok(Response::new(pb::ListClassificationsResponse {
            classifications,
            next_page_token,
            event_sequence,
        }))
    }

    async fn get_segment_distribution(
        &self,
        request: Request<pb::GetSegmentDistributionRequest>,
    ) -> GrpcResult<pb::GetSegmentDistributionResponse> {
        let budget = feed::consistency::wait_budget(request.metadata());
        let req = request.into_inner();
        // Every field, so one added to the proto does not compile until it is read.
        let pb::GetSegmentDistributionRequest {
            dimension: _,
            by_region: _,
            min_event_sequence: _,
        } = &req;
        let dimension = dimension_from(req.dimension, "dimension")?;
        let event_sequence = self.applied(req.min_event_sequence, budget).await?;
        let currency = self
            .engine
            .current_policy()
            .await?
            .policy
            .currency_code
            .clone();
        let mut buckets = self.engine.distribution(dimension, req.by_region).await?;
        // Labels in taxonomy order (customers without one last), then regions.
        let order: Vec<&str> = dimension.labels().iter().map(|(c, _, _)| *c).collect();
        let rank = |code: &str| order.iter().position(|c| *c == code).unwrap_or(order.len());
        buckets.sort_by(|a, b| (rank(&a.label), &a.region).cmp(&(rank(&b.label), &b.region)));
        let total_customers = if dimension == Dimension::Trait {
            self.engine
                .distribution(Dimension::LifecycleStage, false)
                .await?
                .iter()
                .map(|b| b.customers)
                .sum()
        } else {
            buckets.iter().map(|b| b.customers).sum()
        };
        Ok(Response::new(pb::GetSegmentDistributionResponse {
            counts: buckets
                .iter()
                .map(|b| pb::SegmentCount {
                    label: Some(localized(dimension, &b.label)),
                    region: b.region.clone(),
                    customers: b.customers,
                    revenue_in_window: Some(money(&currency, b.revenue_in_window)),
                })
                .collect(),
            total_customers,
            event_sequence,
        }))
    }

    async fn list_label_transitions(
        &self,
        request: Request<pb::ListLabelTransitionsRequest>,
    ) -> GrpcResult<pb::ListLabelTransitionsResponse> {
        let budget = feed::consistency::wait_budget(request.metadata());
        let req = request.into_inner();
        // Every field, so one added to the proto does not compile until it is read.
        let pb::ListLabelTransitionsRequest {
            dimension: _,
            from_label: _,
            to_label: _,
            start_time: _,
            end_time: _,
            page_size: _,
            page_token: _,
            min_event_sequence: _,
        } = &req;
        let dimension = dimension_from(req.dimension, "dimension")?;
        let label = |code: &str, field: &str| -> Result<Option<String>, Error> {
            match code {
                "" => Ok(None),
                c if dimension.has_label(c) => Ok(Some(c.to_owned())),
                c => Err(Error::invalid(
                    field,
                    format!("{} is not a label of {}", quote(c), dimension.name()),
                )),
            }
        };
        let time = |ts: Option<&prost_types::Timestamp>, field: &str| {
            to_time(ts, field).map_err(|v| Error::InvalidArgument(vec![v]))
        };
        // Absent: from the beginning of the history.
        let beginning = DateTime::from_timestamp(clientela_runtime::time::MIN_SECONDS, 0);
        let start = time(req.start_time.as_ref(), "start_time")?
            .or(beginning)
            .ok_or_else(|| Error::Internal("year 1 is not an instant".into()))?;
        let end = time(req.end_time.as_ref(), "end_time")?.unwrap_or_else(now);
        if end <= start {
            return Err(Error::invalid("end_time", "must be after start_time").into());
        }
        let query = TransitionQuery {
            dimension,
            from: label(&req.from_label, "from_label")?,
            to: label(&req.to_label, "to_label")?,
            start,
            end,
        };
        let limit = pagination::page_size(req.page_size, "page_size")?;
        let fingerprint = pagination::fingerprint(&query);
        let after: i64 =
            pagination::decode(&req.page_token, fingerprint, "page_token")?.unwrap_or(0);
        let event_sequence = self.applied(req.min_event_sequence, budget).await?;
        let page = self.engine.transitions(&query, after, limit).await?;
        let next_page_token = match page.last() {
            Some(last) if page.len() as u64 == limit => {
                pagination::encode(fingerprint, &last.sequence)
            }
            _ => String::new(),
        };
        Ok(Response::new(pb::ListLabelTransitionsResponse {
            changes: page.iter().map(change_to).collect(),
            next_page_token,
            event_sequence,
        }))
    }

    type ReclassifyStream = BoxStream<pb::ReclassifyResponse>;

    async fn reclassify(
        &self,
        request: Request<pb::ReclassifyRequest>,
    ) -> GrpcResult<Self::ReclassifyStream> {
        let req = request.into_inner();
        // Every field, so one added to the proto does not compile until it is read.
        let pb::ReclassifyRequest {
            as_of: _,
            filter: _,
        } = &req;
        let filter = Filter::parse(&req.filter, "filter")?;
        let as_of = self.as_of(req.as_of.as_ref(), "as_of").await?;
        // Without one it means now: never refused, and the engine takes the stored
        // population's instant if a refresh stored a later one meanwhile.
        let requested = req.as_of.is_some().then_some(as_of);
        if let Some(at) = requested {
            self.engine.check_reclassify_at(at).await?;
        }
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
        self.tasks.spawn(async move {
            let progress = |p: Progress| {
                let _ = tx.try_send(Ok(message(p, false)));
            };
            let only = (filter != Filter::default()).then_some(&filter);
            let outcome = engine.reclassify(requested, only, progress).await;
            let last = outcome.map(|p| message(p, true)).map_err(Status::from);
            let _ = tx.send(last).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn preview_policy(
        &self,
        request: Request<pb::PreviewPolicyRequest>,
    ) -> GrpcResult<pb::PreviewPolicyResponse> {
        let req = request.into_inner();
        // Every field, so one added to the proto does not compile until it is read.
        let pb::PreviewPolicyRequest {
            policy: _,
            as_of: _,
            sample_size: _,
        } = &req;
        let candidate = policy_from(req.policy.as_ref(), "policy")?;
        let as_of = self.as_of(req.as_of.as_ref(), "as_of").await?;
        let sample = match req.sample_size {
            0 => 10,
            n if (1..=100).contains(&n) => n as usize,
            _ => return Err(Error::invalid("sample_size", "must be 0 to 100").into()),
        };
        let preview = self.engine.preview(&candidate, as_of, sample).await?;
        Ok(Response::new(pb::PreviewPolicyResponse {
            impacts: preview
                .impacts
                .iter()
                .map(|(d, impact)| pb::DimensionImpact {
                    dimension: dimension_to(*d) as i32,
                    changed: impact.changed,
                    transitions: impact
                        .transitions
                        .iter()
                        .map(|((from, to), n)| pb::TransitionCount {
                            from_label: from.clone(),
                            to_label: to.clone(),
                            customers: *n,
                        })
                        .collect(),
                    sample: impact
                        .sample
                        .iter()
                        .map(|id| format!("customers/{id}"))
                        .collect(),
                })
                .collect(),
            total_customers: preview.total,
        }))
    }

    async fn get_policy(
        &self,
        request: Request<pb::GetPolicyRequest>,
    ) -> GrpcResult<pb::GetPolicyResponse> {
        let req = request.into_inner();
        // Every field, so one added to the proto does not compile until it is read.
        let pb::GetPolicyRequest { version: _ } = &req;
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
        // Every field, so one added to the proto does not compile until it is read.
        let pb::SetPolicyRequest {
            policy: _,
            expected_version: _,
        } = &req;
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
        self.tasks.spawn(async move {
            if let Err(e) = engine.reclassify(None, None, |_| {}).await {
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
        // Every field, so one added to the proto does not compile until it is read.
        let pb::WatchLabelChangesRequest {
            after_sequence: _,
            max_batch_size: _,
        } = &req;
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
