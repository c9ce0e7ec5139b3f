//! The gRPC handlers of `clientela.registry.v1.CustomerRegistryService`: proto in,
//! validated records to the rules, proto out, errors mapped once.

mod bulk;
pub mod convert;
mod history;
mod wire;

use std::pin::Pin;
use std::time::Duration;

use clientela_domain::ids::{ComplaintId, CustomerId, PurchaseId};
use clientela_proto::clientela::common::v1 as common;
use clientela_proto::clientela::registry::v1 as pb;
use clientela_proto::clientela::registry::v1::customer_registry_service_server::CustomerRegistryService;
use clientela_runtime::auth::Access;
use clientela_runtime::feed::{self, Feed};
use clientela_runtime::{Error, GroupCommit, pagination};
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use self::bulk::*;
use self::convert::*;
use self::history::*;
pub use self::wire::wire_encoder;
use self::wire::*;
use crate::model::WireEncoder;
use crate::model::input::NewPurchase;
use crate::model::query::{Cursor, CustomerFilter, HistoryCursor, OrderBy, cursor_of};
use crate::model::{Customer, CustomerFields, FieldValue, Purchase};
use crate::names;
use crate::registry::Registry;
use clientela_domain::Violations;

type GrpcResult<T> = Result<Response<T>, Status>;
type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Who may call what: reads for every role, ordinary writes for sales and services,
/// merges, restores and bulk imports for admins and services.
pub fn method_access(method: &str) -> Option<Access> {
    Some(match method {
        "GetCustomer" | "ListCustomers" | "FindDuplicates" | "ListPurchases" | "ListReturns"
        | "ListSurveys" | "ListComplaints" | "ListReferrals" | "ExportCustomers"
        | "WatchEvents" => Access::Read,
        "CreateCustomer" | "UpdateCustomer" | "ArchiveCustomer" | "RecordPurchase"
        | "RecordReturn" | "RecordSurvey" | "OpenComplaint" | "ResolveComplaint"
        | "RecordReferral" => Access::Write,
        "RestoreCustomer" | "MergeCustomers" | "ImportCustomers" | "ImportPurchases" => {
            Access::Admin
        }
        _ => return None,
    })
}

/// The gRPC face of the registry.
#[derive(Clone, Debug)]
pub struct RegistryApi {
    registry: Registry,
    creates: GroupCommit<(CustomerFields, Option<String>), (Customer, bool)>,
    purchases: GroupCommit<(CustomerId, NewPurchase), (Purchase, bool)>,
    stopping: CancellationToken,
    poll_interval: Duration,
}

/// Most unary writes committed together (see [`GroupCommit`]).
const GROUP_COMMIT_MAX: usize = 256;

impl RegistryApi {
    /// Handlers over `registry`; streams end when `stopping` is cancelled. Feed watchers
    /// poll every `poll_interval` besides being woken by local commits (another replica's
    /// commits are only seen by polling).
    ///
    /// CreateCustomer and RecordPurchase are group-committed: calls that arrive while a
    /// transaction is running share the next one, through the same batch code as the
    /// imports. SQLite has one writer, so one batch at a time; PostgreSQL runs a few.
    pub fn new(registry: Registry, stopping: CancellationToken, poll_interval: Duration) -> Self {
        let parallel = if registry.db().single_writer() { 1 } else { 4 };
        let r = registry.clone();
        let creates = GroupCommit::start(GROUP_COMMIT_MAX, parallel, move |rows| {
            let r = r.clone();
            async move { r.create_customers(rows).await }
        });
        let r = registry.clone();
        let purchases = GroupCommit::start(GROUP_COMMIT_MAX, parallel, move |rows| {
            let r = r.clone();
            async move { r.record_purchases(rows).await }
        });
        Self {
            registry,
            creates,
            purchases,
            stopping,
            poll_interval,
        }
    }

    async fn create_customer_inner(
        &self,
        req: pb::CreateCustomerRequest,
    ) -> Result<pb::CreateCustomerResponse, Error> {
        let (fields, request_id) = create_request(req)?;
        let (customer, created) = self.creates.call((fields, request_id)).await?;
        Ok(pb::CreateCustomerResponse {
            customer: Some(customer_to(&customer)),
            created,
            event_sequence: self.registry.visible_at(created).await?,
        })
    }

    async fn record_purchase_inner(
        &self,
        req: pb::RecordPurchaseRequest,
    ) -> Result<pb::RecordPurchaseResponse, Error> {
        let (customer, new) = purchase_request(req)?;
        let (purchase, created) = self.purchases.call((customer, new)).await?;
        Ok(pb::RecordPurchaseResponse {
            purchase: Some(purchase_to(&purchase)),
            created,
            event_sequence: self.registry.visible_at(created).await?,
        })
    }

    fn list_customers_query(
        &self,
        req: &pb::ListCustomersRequest,
    ) -> Result<(CustomerFilter, OrderBy, bool), Error> {
        let mut v = Violations::default();
        let statuses = v
            .check(status_filter(&req.statuses, "statuses"))
            .unwrap_or_default();
        let kind = v.check(kind_filter(req.kind, "kind")).flatten();
        let order = match req
            .order_by
            .split_whitespace()
            .collect::<Vec<_>>()
            .as_slice()
        {
            [] => Some((OrderBy::CreateTime, false)),
            [field] | [field, "asc"] => order_field(field).map(|f| (f, false)),
            [field, "desc"] => order_field(field).map(|f| (f, true)),
            _ => None,
        };
        if order.is_none() {
            v.push(
                "order_by",
                "one of create_time, update_time, display_name, optionally followed by desc",
            );
        }
        let region = v.check(search("region", &req.region)).flatten();
        let tag = v.check(search("tag", &req.tag)).flatten();
        let query = v.check(search("query", &req.query)).flatten();
        v.finish().map_err(Error::from)?;
        let (order, descending) = order.unwrap_or((OrderBy::CreateTime, false));
        let filter = CustomerFilter {
            statuses,
            kind,
            region,
            tag,
            query,
        };
        Ok((filter, order, descending))
    }
}

/// A CreateCustomer request, validated.
fn create_request(
    req: pb::CreateCustomerRequest,
) -> Result<(crate::model::CustomerFields, Option<String>), Error> {
    let pb::CreateCustomerRequest {
        customer,
        request_id,
    } = req;
    let fields = customer_fields(customer.as_ref(), "customer")?;
    let request_id = ident("request_id", &request_id, false)?;
    Ok((fields, request_id))
}

/// A RecordPurchase request, validated: every bad field named at once.
fn purchase_request(
    req: pb::RecordPurchaseRequest,
) -> Result<(clientela_domain::ids::CustomerId, NewPurchase), Error> {
    let pb::RecordPurchaseRequest { parent, purchase } = req;
    let mut v = Violations::default();
    let customer = v.check(names::parse_customer(&parent, "parent").map_err(first_violation));
    let new =
        v.check_all(new_purchase(purchase.as_ref()).map_err(|e| e.field_violations().to_vec()));
    Ok(v.done(customer.zip(new))?)
}

fn order_field(name: &str) -> Option<OrderBy> {
    match name {
        "create_time" => Some(OrderBy::CreateTime),
        "update_time" => Some(OrderBy::UpdateTime),
        "display_name" => Some(OrderBy::DisplayName),
        _ => None,
    }
}

fn first_violation(e: Error) -> clientela_domain::FieldViolation {
    e.field_violations()
        .first()
        .cloned()
        .unwrap_or_else(|| clientela_domain::FieldViolation::new("", e.to_string()))
}

fn etag(s: &str) -> Option<&str> {
    Some(s.trim()).filter(|s| !s.is_empty())
}

#[tonic::async_trait]
impl CustomerRegistryService for RegistryApi {
    async fn create_customer(
        &self,
        request: Request<pb::CreateCustomerRequest>,
    ) -> GrpcResult<pb::CreateCustomerResponse> {
        Ok(Response::new(
            self.create_customer_inner(request.into_inner()).await?,
        ))
    }

    async fn get_customer(
        &self,
        request: Request<pb::GetCustomerRequest>,
    ) -> GrpcResult<pb::GetCustomerResponse> {
        let pb::GetCustomerRequest { name } = request.get_ref();
        let id = names::parse_customer(name, "name")?;
        let customer = self.registry.get_customer_shared(id).await?;
        Ok(Response::new(pb::GetCustomerResponse {
            customer: Some(customer_to(&customer)),
        }))
    }

    async fn list_customers(
        &self,
        request: Request<pb::ListCustomersRequest>,
    ) -> GrpcResult<pb::ListCustomersResponse> {
        let req = request.into_inner();
        // Every field, so one added to the proto does not compile until it is read.
        let pb::ListCustomersRequest {
            page_size: _,
            page_token: _,
            statuses: _,
            kind: _,
            region: _,
            tag: _,
            query: _,
            order_by: _,
        } = &req;
        let (filter, order, descending) = self.list_customers_query(&req)?;
        let limit = pagination::page_size(req.page_size, "page_size")?;
        let query = pagination::fingerprint(&(&filter, order, descending));
        let after: Option<Cursor> = pagination::decode(&req.page_token, query, "page_token")?;
        let customers = self
            .registry
            .list_customers(&filter, order, descending, after.as_ref(), limit)
            .await?;
        let next_page_token = if customers.len() as u64 == limit {
            customers
                .last()
                .map(|c| pagination::encode(query, &cursor_of(c, order)))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListCustomersResponse {
            customers: customers.iter().map(customer_to).collect(),
            next_page_token,
        }))
    }

    async fn update_customer(
        &self,
        request: Request<pb::UpdateCustomerRequest>,
    ) -> GrpcResult<pb::UpdateCustomerResponse> {
        let req = request.into_inner();
        // Every field, so one added to the proto does not compile until it is read.
        let pb::UpdateCustomerRequest {
            customer: _,
            update_mask: _,
        } = &req;
        let Some(c) = req.customer.as_ref() else {
            return Err(Error::invalid("customer", "required").into());
        };
        let id = names::parse_customer(&c.name, "customer.name")?;
        let paths: Vec<String> = match &req.update_mask {
            Some(mask) if !mask.paths.is_empty() => mask.paths.clone(),
            _ => CUSTOMER_FIELDS
                .iter()
                .filter(|f| is_populated(c, f))
                .map(|f| (*f).to_owned())
                .collect(),
        };
        let mut v = Violations::default();
        let mut patch: Vec<FieldValue> = Vec::new();
        for (i, path) in paths.iter().enumerate() {
            if !CUSTOMER_FIELDS.contains(&path.as_str()) {
                v.push(
                    format!("update_mask.paths[{i}]"),
                    format!(
                        "{path:?} is not a writable field; writable: {}",
                        CUSTOMER_FIELDS.join(", ")
                    ),
                );
                continue;
            }
            if let Some(value) = parse_field(c, path, "customer", &mut v) {
                patch.push(value);
            }
        }
        if paths.is_empty() {
            v.push("update_mask", "nothing to update");
        }
        v.finish().map_err(Error::from)?;
        let customer = self
            .registry
            .update_customer(id, patch, etag(&c.etag))
            .await?;
        Ok(Response::new(pb::UpdateCustomerResponse {
            customer: Some(customer_to(&customer)),
            event_sequence: self.registry.visible_at(true).await?,
        }))
    }

    async fn archive_customer(
        &self,
        request: Request<pb::ArchiveCustomerRequest>,
    ) -> GrpcResult<pb::ArchiveCustomerResponse> {
        let req = request.into_inner();
        // Every field, so one added to the proto does not compile until it is read.
        let pb::ArchiveCustomerRequest { name: _, etag: _ } = &req;
        let id = names::parse_customer(&req.name, "name")?;
        let customer = self.registry.archive_customer(id, etag(&req.etag)).await?;
        Ok(Response::new(pb::ArchiveCustomerResponse {
            customer: Some(customer_to(&customer)),
            event_sequence: self.registry.visible_at(true).await?,
        }))
    }

    async fn restore_customer(
        &self,
        request: Request<pb::RestoreCustomerRequest>,
    ) -> GrpcResult<pb::RestoreCustomerResponse> {
        let req = request.into_inner();
        // Every field, so one added to the proto does not compile until it is read.
        let pb::RestoreCustomerRequest { name: _, etag: _ } = &req;
        let id = names::parse_customer(&req.name, "name")?;
        let customer = self.registry.restore_customer(id, etag(&req.etag)).await?;
        Ok(Response::new(pb::RestoreCustomerResponse {
            customer: Some(customer_to(&customer)),
            event_sequence: self.registry.visible_at(true).await?,
        }))
    }

    async fn find_duplicates(
        &self,
        request: Request<pb::FindDuplicatesRequest>,
    ) -> GrpcResult<pb::FindDuplicatesResponse> {
        let pb::FindDuplicatesRequest { name } = request.get_ref();
        let id = names::parse_customer(name, "name")?;
        let found = self.registry.find_duplicates(id).await?;
        Ok(Response::new(pb::FindDuplicatesResponse {
            candidates: found
                .iter()
                .map(|(c, matched)| pb::DuplicateCandidate {
                    customer: Some(customer_to(c)),
                    matched_on: matched.iter().map(|m| (*m).to_owned()).collect(),
                })
                .collect(),
        }))
    }

    async fn merge_customers(
        &self,
        request: Request<pb::MergeCustomersRequest>,
    ) -> GrpcResult<pb::MergeCustomersResponse> {
        let req = request.into_inner();
        // Every field, so one added to the proto does not compile until it is read.
        let pb::MergeCustomersRequest {
            survivor: _,
            merged: _,
            dry_run: _,
        } = &req;
        let mut v = Violations::default();
        let survivor =
            v.check(names::parse_customer(&req.survivor, "survivor").map_err(first_violation));
        let merged = v.check(names::parse_customer(&req.merged, "merged").map_err(first_violation));
        v.finish().map_err(Error::from)?;
        let (Some(survivor), Some(merged)) = (survivor, merged) else {
            return Err(Error::invalid("survivor", "required").into());
        };
        let out = self
            .registry
            .merge_customers(survivor, merged, req.dry_run)
            .await?;
        Ok(Response::new(pb::MergeCustomersResponse {
            survivor: Some(customer_to(&out.survivor)),
            merged: Some(customer_to(&out.merged)),
            moved_purchases: out.moved.purchases.len() as i64,
            moved_returns: out.moved.returns as i64,
            moved_surveys: out.moved.surveys as i64,
            moved_complaints: out.moved.complaints as i64,
            moved_referrals: out.moved.referrals as i64,
            dry_run: req.dry_run,
            event_sequence: self.registry.visible_at(!req.dry_run).await?,
        }))
    }

    async fn record_purchase(
        &self,
        request: Request<pb::RecordPurchaseRequest>,
    ) -> GrpcResult<pb::RecordPurchaseResponse> {
        Ok(Response::new(
            self.record_purchase_inner(request.into_inner()).await?,
        ))
    }

    async fn list_purchases(
        &self,
        request: Request<pb::ListPurchasesRequest>,
    ) -> GrpcResult<pb::ListPurchasesResponse> {
        let req = request.into_inner();
        // Every field, so one added to the proto does not compile until it is read.
        let pb::ListPurchasesRequest {
            parent: _,
            page_size: _,
            page_token: _,
        } = &req;
        let page = HistoryPage::new(&req.parent, req.page_size, &req.page_token, "purchases")?;
        let read = async |owner, after: Option<HistoryCursor>, limit| {
            self.registry
                .list_purchases(owner, after.as_ref(), limit)
                .await
        };
        let (purchases, next_page_token) = page.read(read, purchase_to).await?;
        Ok(Response::new(pb::ListPurchasesResponse {
            purchases,
            next_page_token,
        }))
    }

    async fn record_return(
        &self,
        request: Request<pb::RecordReturnRequest>,
    ) -> GrpcResult<pb::RecordReturnResponse> {
        let req = request.into_inner();
        // Every field, so one added to the proto does not compile until it is read.
        let pb::RecordReturnRequest {
            purchase: _,
            r#return: _,
        } = &req;
        let (customer, purchase) = names::parse_child(&req.purchase, "purchases", "purchase")?;
        let new = new_return(req.r#return.as_ref())?;
        let (ret, purchase, created) = self
            .registry
            .record_return(customer, PurchaseId::from_uuid(purchase), new)
            .await?;
        Ok(Response::new(pb::RecordReturnResponse {
            r#return: Some(return_to(&ret)),
            purchase: Some(purchase_to(&purchase)),
            created,
            event_sequence: self.registry.visible_at(created).await?,
        }))
    }

    async fn list_returns(
        &self,
        request: Request<pb::ListReturnsRequest>,
    ) -> GrpcResult<pb::ListReturnsResponse> {
        let req = request.into_inner();
        // Every field, so one added to the proto does not compile until it is read.
        let pb::ListReturnsRequest {
            parent: _,
            page_size: _,
            page_token: _,
        } = &req;
        let page = HistoryPage::new(&req.parent, req.page_size, &req.page_token, "returns")?;
        let read = async |owner, after: Option<HistoryCursor>, limit| {
            self.registry
                .list_returns(owner_customer(owner)?, after.as_ref(), limit)
                .await
        };
        let (returns, next_page_token) = page.read(read, return_to).await?;
        Ok(Response::new(pb::ListReturnsResponse {
            returns,
            next_page_token,
        }))
    }

    async fn record_survey(
        &self,
        request: Request<pb::RecordSurveyRequest>,
    ) -> GrpcResult<pb::RecordSurveyResponse> {
        let req = request.into_inner();
        // Every field, so one added to the proto does not compile until it is read.
        let pb::RecordSurveyRequest {
            parent: _,
            survey: _,
            request_id: _,
        } = &req;
        let customer = names::parse_customer(&req.parent, "parent")?;
        let new = new_survey(req.survey.as_ref())?;
        let request_id = ident("request_id", &req.request_id, false).map_err(Error::from)?;
        let (survey, created) = self
            .registry
            .record_survey(customer, new, request_id)
            .await?;
        Ok(Response::new(pb::RecordSurveyResponse {
            survey: Some(survey_to(&survey)),
            created,
            event_sequence: self.registry.visible_at(created).await?,
        }))
    }

    async fn list_surveys(
        &self,
        request: Request<pb::ListSurveysRequest>,
    ) -> GrpcResult<pb::ListSurveysResponse> {
        let req = request.into_inner();
        // Every field, so one added to the proto does not compile until it is read.
        let pb::ListSurveysRequest {
            parent: _,
            page_size: _,
            page_token: _,
        } = &req;
        let page = HistoryPage::new(&req.parent, req.page_size, &req.page_token, "surveys")?;
        let read = async |owner, after: Option<HistoryCursor>, limit| {
            self.registry
                .list_surveys(owner_customer(owner)?, after.as_ref(), limit)
                .await
        };
        let (surveys, next_page_token) = page.read(read, survey_to).await?;
        Ok(Response::new(pb::ListSurveysResponse {
            surveys,
            next_page_token,
        }))
    }

    async fn open_complaint(
        &self,
        request: Request<pb::OpenComplaintRequest>,
    ) -> GrpcResult<pb::OpenComplaintResponse> {
        let req = request.into_inner();
        // Every field, so one added to the proto does not compile until it is read.
        let pb::OpenComplaintRequest {
            parent: _,
            complaint: _,
            request_id: _,
        } = &req;
        let customer = names::parse_customer(&req.parent, "parent")?;
        let new = new_complaint(req.complaint.as_ref())?;
        let request_id = ident("request_id", &req.request_id, false).map_err(Error::from)?;
        let (complaint, created) = self
            .registry
            .open_complaint(customer, new, request_id)
            .await?;
        Ok(Response::new(pb::OpenComplaintResponse {
            complaint: Some(complaint_to(&complaint)),
            created,
            event_sequence: self.registry.visible_at(created).await?,
        }))
    }

    async fn resolve_complaint(
        &self,
        request: Request<pb::ResolveComplaintRequest>,
    ) -> GrpcResult<pb::ResolveComplaintResponse> {
        let req = request.into_inner();
        // Every field, so one added to the proto does not compile until it is read.
        let pb::ResolveComplaintRequest {
            name: _,
            resolution: _,
            etag: _,
        } = &req;
        let (customer, complaint) = names::parse_child(&req.name, "complaints", "name")?;
        let resolution = resolution(&req.resolution)?;
        let complaint = self
            .registry
            .resolve_complaint(
                customer,
                ComplaintId::from_uuid(complaint),
                resolution,
                etag(&req.etag),
            )
            .await?;
        Ok(Response::new(pb::ResolveComplaintResponse {
            complaint: Some(complaint_to(&complaint)),
            event_sequence: self.registry.visible_at(true).await?,
        }))
    }

    async fn list_complaints(
        &self,
        request: Request<pb::ListComplaintsRequest>,
    ) -> GrpcResult<pb::ListComplaintsResponse> {
        let req = request.into_inner();
        // Every field, so one added to the proto does not compile until it is read.
        let pb::ListComplaintsRequest {
            parent: _,
            page_size: _,
            page_token: _,
        } = &req;
        let page = HistoryPage::new(&req.parent, req.page_size, &req.page_token, "complaints")?;
        let read = async |owner, after: Option<HistoryCursor>, limit| {
            self.registry
                .list_complaints(owner_customer(owner)?, after.as_ref(), limit)
                .await
        };
        let (complaints, next_page_token) = page.read(read, complaint_to).await?;
        Ok(Response::new(pb::ListComplaintsResponse {
            complaints,
            next_page_token,
        }))
    }

    async fn record_referral(
        &self,
        request: Request<pb::RecordReferralRequest>,
    ) -> GrpcResult<pb::RecordReferralResponse> {
        let req = request.into_inner();
        // Every field, so one added to the proto does not compile until it is read.
        let pb::RecordReferralRequest {
            parent: _,
            referral: _,
        } = &req;
        let referrer = names::parse_customer(&req.parent, "parent")?;
        let Some(r) = req.referral.as_ref() else {
            return Err(Error::invalid("referral", "required").into());
        };
        // Every field, so one added to the proto does not compile until it is handled here.
        let pb::Referral {
            referred: _,
            occur_time: _,
            name: _,        // output only
            referrer: _,    // the request's parent
            create_time: _, // output only
        } = r;
        let mut v = Violations::default();
        let referred = v.check(
            names::parse_customer(&r.referred, "referral.referred").map_err(first_violation),
        );
        let at = v.check(required_time(r.occur_time.as_ref(), "referral.occur_time"));
        v.finish().map_err(Error::from)?;
        let (Some(referred), Some(at)) = (referred, at) else {
            return Err(Error::invalid("referral", "incomplete").into());
        };
        let (referral, created) = self
            .registry
            .record_referral(referrer, referred, at)
            .await?;
        Ok(Response::new(pb::RecordReferralResponse {
            referral: Some(referral_to(&referral)),
            created,
            event_sequence: self.registry.visible_at(created).await?,
        }))
    }

    async fn list_referrals(
        &self,
        request: Request<pb::ListReferralsRequest>,
    ) -> GrpcResult<pb::ListReferralsResponse> {
        let req = request.into_inner();
        // Every field, so one added to the proto does not compile until it is read.
        let pb::ListReferralsRequest {
            parent: _,
            page_size: _,
            page_token: _,
        } = &req;
        let page = HistoryPage::new(&req.parent, req.page_size, &req.page_token, "referrals")?;
        let read = async |owner, after: Option<HistoryCursor>, limit| {
            self.registry
                .list_referrals(owner_customer(owner)?, after.as_ref(), limit)
                .await
        };
        let (referrals, next_page_token) = page.read(read, referral_to).await?;
        Ok(Response::new(pb::ListReferralsResponse {
            referrals,
            next_page_token,
        }))
    }

    type ImportCustomersStream = BoxStream<pb::ImportCustomersResponse>;

    async fn import_customers(
        &self,
        request: Request<Streaming<pb::ImportCustomersRequest>>,
    ) -> GrpcResult<Self::ImportCustomersStream> {
        let api = self.clone();
        let stream = import(
            request.into_inner(),
            self.stopping.clone(),
            (self.registry.clone(), &["customers", "customer_keys"]),
            move |rows: Vec<pb::CreateCustomerRequest>| {
                let registry = api.registry.clone();
                async move {
                    let parsed = rows.into_iter().map(create_request).collect();
                    in_batch(parsed, |valid| async move {
                        registry.create_customers(valid).await
                    })
                    .await
                    .into_iter()
                    .map(|r| r.map(|(c, created)| (names::customer(c.id), created)))
                    .collect()
                }
            },
        );
        Ok(Response::new(stream))
    }

    type ImportPurchasesStream = BoxStream<pb::ImportPurchasesResponse>;

    async fn import_purchases(
        &self,
        request: Request<Streaming<pb::ImportPurchasesRequest>>,
    ) -> GrpcResult<Self::ImportPurchasesStream> {
        let api = self.clone();
        let stream = import(
            request.into_inner(),
            self.stopping.clone(),
            (self.registry.clone(), &["purchases", "customers"]),
            move |rows: Vec<pb::RecordPurchaseRequest>| {
                let registry = api.registry.clone();
                async move {
                    let parsed = rows.into_iter().map(purchase_request).collect();
                    in_batch(parsed, |valid| async move {
                        registry.record_purchases(valid).await
                    })
                    .await
                    .into_iter()
                    .map(|r| {
                        r.map(|(p, created)| {
                            (names::child(p.customer_id, "purchases", p.id), created)
                        })
                    })
                    .collect()
                }
            },
        );
        Ok(Response::new(stream))
    }

    type ExportCustomersStream = BoxStream<pb::ExportCustomersResponse>;

    async fn export_customers(
        &self,
        request: Request<pb::ExportCustomersRequest>,
    ) -> GrpcResult<Self::ExportCustomersStream> {
        let req = request.into_inner();
        // Every field, so one added to the proto does not compile until it is read.
        let pb::ExportCustomersRequest {
            statuses: _,
            kind: _,
            region: _,
            tag: _,
        } = &req;
        let list = pb::ListCustomersRequest {
            statuses: req.statuses,
            kind: req.kind,
            region: req.region,
            tag: req.tag,
            ..Default::default()
        };
        let (filter, order, descending) = self.list_customers_query(&list)?;
        let registry = self.registry.clone();
        let stopping = self.stopping.clone();
        let (tx, rx) = mpsc::channel(2);
        tokio::spawn(async move {
            let mut after: Option<Cursor> = None;
            loop {
                let page = tokio::select! {
                    () = stopping.cancelled() => break,
                    page = registry.list_customers(&filter, order, descending, after.as_ref(), 500) => page,
                };
                match page {
                    Ok(customers) if customers.is_empty() => break,
                    Ok(customers) => {
                        after = customers.last().map(|c| cursor_of(c, order));
                        let batch = pb::ExportCustomersResponse {
                            customers: customers.iter().map(customer_to).collect(),
                        };
                        if tx.send(Ok(batch)).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(Status::from(e))).await;
                        break;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type WatchEventsStream = BoxStream<pb::WatchEventsResponse>;

    async fn watch_events(
        &self,
        request: Request<pb::WatchEventsRequest>,
    ) -> GrpcResult<Self::WatchEventsStream> {
        let req = request.into_inner();
        // Every field, so one added to the proto does not compile until it is read.
        let pb::WatchEventsRequest {
            after_sequence: _,
            max_batch_size: _,
        } = &req;
        let batch = feed::check_request(req.after_sequence, req.max_batch_size)?;
        let registry = self.registry.clone();
        let encode = wire_encoder();
        let fetch = move |after, limit| {
            let registry = registry.clone();
            let encode = encode.clone();
            async move { decode_events(&registry.events_wire_after(after, limit, &encode).await?) }
        };
        let feed = Feed {
            fetch,
            woken: self.registry.subscribe(),
            stopping: self.stopping.clone(),
            poll: self.poll_interval,
        };
        let stream = feed::watch(feed, req.after_sequence, batch, |e: &pb::Event| e.sequence)
            .map(|batch| batch.map(|events| pb::WatchEventsResponse { events }));
        Ok(Response::new(Box::pin(stream)))
    }
}
