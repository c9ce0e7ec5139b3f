//! The gRPC handlers of `clientela.territory.v1.TerritoryService`: proto in, validated
//! records to the rules, proto out, errors mapped once.

use clientela_domain::Violations;
use clientela_domain::text::quote;
use clientela_proto::clientela::classification::v1 as cpb;
use clientela_proto::clientela::territory::v1 as pb;
use clientela_proto::clientela::territory::v1::territory_service_server::TerritoryService;
use clientela_runtime::auth::{Access, Caller, Role as TokenRole};
use clientela_runtime::feed::consumer::FeedChannel;
use clientela_runtime::feed::{self, Feed, consistency, consumer};
use clientela_runtime::idempotency::{self, RequestKey};
use clientela_runtime::time::{timestamp, to_time};
use clientela_runtime::{Error, names, pagination};
use futures::StreamExt;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use clientela_domain::FieldViolation;
use clientela_domain::contact::Email;

use crate::assign::{Assignment, Cause, EndCause, Role};
use crate::cartera::{Logged, Urgency};
use crate::coverage::{HistoryCursor, ViolationKind};
use crate::explain::{self, Lang};
use crate::following::REGISTRY_FEED;
use crate::handover::Handover;
use crate::locate::{Criteria, Place};
use crate::manual::ManualAssignment;
use crate::model::{
    CriteriaInput, ModelState, Seller, SellerFields, SellerStatus, Territory, TerritoryFields,
    TerritoryModel, model_name, seller_name, validate_capacity, validate_code, validate_codes,
    validate_display_name, validate_priority, validate_specialties, validate_token_name,
};
use crate::prospects::ProspectFilter;
use crate::sellers::{SellerCursor, SellerFilter, SellerPatch};
use crate::store;
use crate::territories::{Location, Territories, TerritoryPatch};
use crate::worklist::WorkCursor;

type GrpcResult<T> = Result<Response<T>, Status>;

/// Characters of a `request_id`.
const REQUEST_ID_MAX: usize = 128;
/// Territories listed per page by default, and at most.
const TERRITORY_PAGE: (u64, u64) = (500, 5_000);
/// Writable seller fields (update_mask paths).
const SELLER_FIELDS: [&str; 8] = [
    "display_name",
    "email",
    "token_name",
    "specialties",
    "territory_codes",
    "kam",
    "capacity",
    "status",
];
/// Writable territory fields (update_mask paths).
const TERRITORY_FIELDS: [&str; 4] = ["display_name", "parent_code", "criteria", "priority"];

/// Who may call what: reads for every role; territory design and the sales team for
/// admins and services.
pub fn method_access(method: &str) -> Option<Access> {
    Some(match method {
        "GetTerritoryModel"
        | "ListTerritoryModels"
        | "GetTerritory"
        | "ListTerritories"
        | "LocateAddress"
        | "GetSeller"
        | "ListSellers"
        | "GetCoverage"
        | "ListAssignmentHistory"
        | "ListCartera"
        | "ExplainAssignment"
        | "ListCoverageViolations"
        | "PreviewRealignment"
        | "ListProspects"
        | "ListCarteraActions"
        | "WatchAssignmentChanges" => Access::Read,
        // A sales token claims a prospect of its own territories for itself.
        "ClaimProspect" => Access::Write,
        "CreateTerritoryModel"
        | "ArchiveTerritoryModel"
        | "ActivateTerritoryModel"
        | "ApplyRealignment"
        | "TransferCartera"
        | "OffboardSeller"
        | "AssignCustomer"
        | "UnpinAssignment"
        | "CreateTerritory"
        | "UpdateTerritory"
        | "DeleteTerritory"
        | "CreateSeller"
        | "UpdateSeller" => Access::Admin,
        _ => return None,
    })
}

/// The gRPC face of the territory service.
#[derive(Debug, Clone)]
pub struct TerritoryApi {
    territories: Territories,
    stopping: CancellationToken,
    poll_interval: Duration,
    /// The classification engine, whose actions the worklist shows.
    classification: Option<ClassificationClient>,
}

type ClassificationClient =
    cpb::classification_service_client::ClassificationServiceClient<FeedChannel>;

type BoxStream<T> = std::pin::Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send>>;

impl TerritoryApi {
    /// Handlers over `territories`; feed streams end when `stopping` is cancelled and
    /// look for other replicas' commits every `poll_interval`.
    pub fn new(
        territories: Territories,
        stopping: CancellationToken,
        poll_interval: Duration,
    ) -> Self {
        Self {
            territories,
            stopping,
            poll_interval,
            classification: None,
        }
    }

    /// The same, reading the worklist's actions from the classification engine over
    /// `channel`.
    pub fn with_classification(mut self, channel: FeedChannel) -> Self {
        self.classification = Some(ClassificationClient::new(channel));
        self
    }

    /// Customer `id`'s classification (None: not classified yet).
    async fn classification_of(&self, id: Uuid) -> Result<Option<cpb::Classification>, Error> {
        let Some(client) = &self.classification else {
            return Err(Error::Unavailable(
                "this server reads no classification engine".into(),
            ));
        };
        let request = cpb::GetClassificationRequest {
            customer: format!("customers/{id}"),
            min_event_sequence: 0,
        };
        match client.clone().get_classification(request).await {
            Ok(response) => Ok(response.into_inner().classification),
            Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
            Err(status) => Err(Error::Unavailable(format!(
                "the classification engine: {}",
                status.message()
            ))),
        }
    }

    /// What the caller may see: None, everything; a sales token, the seller it names
    /// (TERRITORY.md: a sales token is one seller, and sees its own cartera).
    async fn scope<T>(&self, request: &Request<T>) -> Result<Option<Uuid>, Error> {
        match request.extensions().get::<Caller>() {
            Some(caller) if caller.role == TokenRole::Sales => self
                .territories
                .seller_for_token(&caller.name)
                .await?
                .map(Some)
                .ok_or_else(|| {
                    Error::PermissionDenied(format!(
                        "token {} names no seller: set it as a seller's token_name",
                        caller.name
                    ))
                }),
            _ => Ok(None),
        }
    }

    /// PERMISSION_DENIED for a sales token: `what` is not its own cartera, prospects or
    /// customers (TERRITORY.md, "Access").
    async fn refuse_sales<T>(&self, request: &Request<T>, what: &str) -> Result<(), Error> {
        match self.scope(request).await? {
            Some(_) => Err(Error::PermissionDenied(format!(
                "a sales token reads its own cartera, its territories' prospects and its \
                 customers, not {what}"
            ))),
            None => Ok(()),
        }
    }

    /// That a sales caller's seller `me` may see customer `id`.
    async fn check_sees(&self, me: Option<Uuid>, id: Uuid) -> Result<(), Error> {
        match me {
            Some(me) if !self.territories.sees_customer(me, id).await? => {
                Err(Error::PermissionDenied(format!(
                    "customers/{id} is not in the cartera of sellers/{me}"
                )))
            }
            _ => Ok(()),
        }
    }
}

/// That a sales caller's seller `me` is `seller`.
fn check_own(me: Option<Uuid>, seller: Uuid) -> Result<(), Error> {
    match me {
        Some(me) if me != seller => Err(Error::PermissionDenied(format!(
            "a sales token reads only its own cartera (sellers/{me})"
        ))),
        _ => Ok(()),
    }
}

fn model_state_to(state: ModelState) -> pb::TerritoryModelState {
    match state {
        ModelState::Planning => pb::TerritoryModelState::Planning,
        ModelState::Active => pb::TerritoryModelState::Active,
        ModelState::Archived => pb::TerritoryModelState::Archived,
    }
}

fn model_to(m: &TerritoryModel) -> pb::TerritoryModel {
    pb::TerritoryModel {
        name: m.name(),
        display_name: m.display_name.clone(),
        state: model_state_to(m.state) as i32,
        copied_from: m
            .copied_from
            .map(crate::model::model_name)
            .unwrap_or_default(),
        territory_count: i32::try_from(m.territory_count).unwrap_or(i32::MAX),
        create_time: Some(timestamp(m.created_at)),
        update_time: Some(timestamp(m.updated_at)),
        etag: m.etag(),
    }
}

fn criteria_to(c: &Criteria) -> pb::AddressCriteria {
    pb::AddressCriteria {
        country_codes: c.country_codes.clone(),
        regions: c.regions.clone(),
        localities: c.localities.clone(),
        postal_code_prefixes: c.postal_code_prefixes.clone(),
    }
}

fn territory_to(t: &Territory) -> pb::Territory {
    pb::Territory {
        name: t.name(),
        code: t.code.clone(),
        display_name: t.fields.display_name.clone(),
        parent_code: t.fields.parent_code.clone().unwrap_or_default(),
        criteria: Some(criteria_to(&t.fields.criteria)),
        priority: t.fields.priority,
        create_time: Some(timestamp(t.created_at)),
        update_time: Some(timestamp(t.updated_at)),
        etag: t.etag(),
    }
}

fn criteria_of(c: Option<&pb::AddressCriteria>, field: &str, v: &mut Violations) -> Criteria {
    let empty = pb::AddressCriteria::default();
    let c = c.unwrap_or(&empty);
    CriteriaInput {
        country_codes: &c.country_codes,
        regions: &c.regions,
        localities: &c.localities,
        postal_code_prefixes: &c.postal_code_prefixes,
    }
    .validate(field, v)
}

fn parent_code_of(code: &str, field: &str, v: &mut Violations) -> Option<String> {
    if code.is_empty() {
        None
    } else {
        v.check(validate_code(field, code))
    }
}

fn request_id_of(id: &str) -> Result<Option<String>, Error> {
    if id.is_empty() {
        return Ok(None);
    }
    if id.chars().count() > REQUEST_ID_MAX {
        return Err(Error::invalid(
            "request_id",
            format!("at most {REQUEST_ID_MAX} characters"),
        ));
    }
    Ok(Some(id.to_owned()))
}

/// The key of a command sent with a `request_id` (None without one, or for a dry run,
/// which does nothing to remember).
fn command_key<T: prost::Message>(
    request: &Request<T>,
    method: &str,
    request_id: &str,
    dry_run: bool,
) -> Result<Option<RequestKey>, Error> {
    Ok(request_id_of(request_id)?
        .filter(|_| !dry_run)
        .map(|id| RequestKey::of_command(id, method, &actor(request), request.get_ref())))
}

fn etag_of(etag: &str) -> Option<&str> {
    (!etag.is_empty()).then_some(etag)
}

/// "territoryModels/{model}/territories/{code}".
fn parse_territory_name(name: &str, field: &str) -> Result<(Uuid, String), Error> {
    let bad = || {
        Error::invalid(
            field,
            format!(
                "{} is not a name of the form territoryModels/{{uuid}}/territories/{{code}}",
                quote(name)
            ),
        )
    };
    if name.is_empty() {
        return Err(Error::invalid(
            field,
            "required, e.g. territoryModels/…/territories/CL-RM",
        ));
    }
    let (model, code) = name.split_once("/territories/").ok_or_else(bad)?;
    let model = names::parse_top(model, "territoryModels", field).map_err(|_| bad())?;
    let code = validate_code(field, code).map_err(|_| bad())?;
    Ok((model, code))
}

fn model_id(name: &str, field: &str) -> Result<Uuid, Error> {
    names::parse_top(name, "territoryModels", field)
}

fn seller_status_to(status: SellerStatus) -> pb::SellerStatus {
    match status {
        SellerStatus::Active => pb::SellerStatus::Active,
        SellerStatus::OnLeave => pb::SellerStatus::OnLeave,
        SellerStatus::Departed => pb::SellerStatus::Departed,
    }
}

/// A status a caller may set: ACTIVE (also when not set) or ON_LEAVE.
fn seller_status_of(status: i32, field: &str) -> Result<SellerStatus, FieldViolation> {
    match pb::SellerStatus::try_from(status) {
        Ok(pb::SellerStatus::Unspecified | pb::SellerStatus::Active) => Ok(SellerStatus::Active),
        Ok(pb::SellerStatus::OnLeave) => Ok(SellerStatus::OnLeave),
        Ok(pb::SellerStatus::Departed) => Err(FieldViolation::new(
            field,
            "a seller departs by offboarding, which hands their customers on, not by setting \
             the status",
        )),
        Err(_) => Err(FieldViolation::new(
            field,
            format!("unknown status {status}"),
        )),
    }
}

fn seller_to(s: &Seller) -> pb::Seller {
    let f = &s.fields;
    pb::Seller {
        name: s.name(),
        display_name: f.display_name.clone(),
        email: f.email.clone().unwrap_or_default(),
        token_name: f.token_name.clone().unwrap_or_default(),
        specialties: f.specialties.clone(),
        territory_codes: f.territory_codes.clone(),
        kam: f.kam,
        capacity: f.capacity,
        status: seller_status_to(f.status) as i32,
        house: s.house,
        create_time: Some(timestamp(s.created_at)),
        update_time: Some(timestamp(s.updated_at)),
        etag: s.etag(),
    }
}

fn email_of(email: &str, field: &str) -> Result<Option<String>, FieldViolation> {
    if email.is_empty() {
        return Ok(None);
    }
    Email::parse(email)
        .map(|e| Some(e.as_ref().to_owned()))
        .map_err(|e| e.under(field))
}

fn token_of(name: &str, field: &str) -> Result<Option<String>, FieldViolation> {
    if name.is_empty() {
        Ok(None)
    } else {
        validate_token_name(field, name).map(Some)
    }
}

fn seller_id(name: &str, field: &str) -> Result<Uuid, Error> {
    names::parse_top(name, "sellers", field)
}

fn role_to(role: Role) -> pb::AssignmentRole {
    match role {
        Role::Primary => pb::AssignmentRole::Primary,
        Role::Specialist => pb::AssignmentRole::Specialist,
        Role::Kam => pb::AssignmentRole::Kam,
        Role::Prospector => pb::AssignmentRole::Prospector,
    }
}

fn cause_to(cause: Cause) -> pb::AssignmentCause {
    match cause {
        Cause::Rule => pb::AssignmentCause::Rule,
        Cause::Manual => pb::AssignmentCause::Manual,
        Cause::Handover => pb::AssignmentCause::Handover,
        Cause::Overflow => pb::AssignmentCause::Overflow,
        Cause::Merge => pb::AssignmentCause::Merge,
        Cause::TierChange => pb::AssignmentCause::TierChange,
    }
}

fn end_cause_to(cause: Option<EndCause>) -> pb::AssignmentEndCause {
    match cause {
        None => pb::AssignmentEndCause::Unspecified,
        Some(EndCause::AddressChange) => pb::AssignmentEndCause::AddressChange,
        Some(EndCause::Realignment) => pb::AssignmentEndCause::Realignment,
        Some(EndCause::Merge) => pb::AssignmentEndCause::Merge,
        Some(EndCause::Archived) => pb::AssignmentEndCause::Archived,
        Some(EndCause::Manual) => pb::AssignmentEndCause::Manual,
        Some(EndCause::Handover) => pb::AssignmentEndCause::Handover,
        Some(EndCause::TierChange) => pb::AssignmentEndCause::TierChange,
        Some(EndCause::Continued) => pb::AssignmentEndCause::Continued,
    }
}

fn assignment_to(a: &Assignment) -> pb::Assignment {
    pb::Assignment {
        explanation: Some(explanation_to(a)),
        ..basic_assignment_to(a)
    }
}

/// Without its explanation: a list's BASIC view.
fn basic_assignment_to(a: &Assignment) -> pb::Assignment {
    pb::Assignment {
        name: a.name(),
        customer: format!("customers/{}", a.customer),
        seller: seller_name(a.seller),
        role: role_to(a.role) as i32,
        product_line: a.product_line.clone(),
        valid_from: Some(timestamp(a.valid_from)),
        valid_to: a.valid_to.map(timestamp),
        cause: cause_to(a.cause) as i32,
        territory_model: a.model.map(|(id, _)| model_name(id)).unwrap_or_default(),
        model_version: a.model.map_or(0, |(_, v)| v),
        territory_code: a.territory.clone().unwrap_or_default(),
        actor: a.actor.clone().unwrap_or_default(),
        reason: a.reason.clone().unwrap_or_default(),
        pinned: a.pinned,
        pin_expire_time: a.pin_expires_at.map(timestamp),
        weight: a.weight,
        end_cause: end_cause_to(a.end_cause) as i32,
        explanation: None,
    }
}

fn explanation_to(a: &Assignment) -> pb::AssignmentExplanation {
    pb::AssignmentExplanation {
        rule: a.explanation.rule.code().to_owned(),
        rule_en: explain::rule_text(a, Lang::En),
        rule_es: explain::rule_text(a, Lang::Es),
        territory_code: a.explanation.territory.clone().unwrap_or_default(),
        considered: a
            .explanation
            .considered
            .iter()
            .map(|c| pb::ConsideredSeller {
                seller: seller_name(c.seller),
                load: c.load,
                capacity: c.capacity,
            })
            .collect(),
        tie_break_en: explain::tie_break_text(a, Lang::En),
        tie_break_es: explain::tie_break_text(a, Lang::Es),
        considered_count: i32::try_from(a.explanation.considered_total()).unwrap_or(i32::MAX),
    }
}

fn role_from(v: i32, field: &str) -> Result<Role, Error> {
    Role::ALL
        .iter()
        .copied()
        .find(|r| role_to(*r) as i32 == v && v != 0)
        .ok_or_else(|| Error::invalid(field, "required: an ASSIGNMENT_ROLE_* value"))
}

/// The name a manual change is recorded under: the caller's token, or who it is when
/// auth is off.
fn actor<T>(request: &Request<T>) -> String {
    request
        .extensions()
        .get::<Caller>()
        .map_or_else(|| "anonymous (auth off)".to_owned(), |c| c.name.clone())
}

fn change_to(c: &Logged) -> pb::AssignmentChange {
    pb::AssignmentChange {
        sequence: c.sequence,
        assignment: format!("assignments/{}", c.assignment),
        kind: if c.opened {
            pb::AssignmentChangeKind::Opened
        } else {
            pb::AssignmentChangeKind::Closed
        } as i32,
        customer: format!("customers/{}", c.customer),
        seller: seller_name(c.seller),
        role: role_to(c.role) as i32,
        product_line: c.product_line.clone(),
        time: Some(timestamp(c.at)),
        cause: Cause::parse(c.cause)
            .filter(|_| c.opened)
            .map_or(0, |v| cause_to(v) as i32),
        end_cause: EndCause::parse(c.cause)
            .filter(|_| !c.opened)
            .map_or(0, |v| end_cause_to(Some(v)) as i32),
    }
}

fn violation_kind_to(kind: ViolationKind) -> pb::CoverageViolationKind {
    match kind {
        ViolationKind::HouseCartera => pb::CoverageViolationKind::HouseCartera,
        ViolationKind::Overflow => pb::CoverageViolationKind::Overflow,
        ViolationKind::OverCapacity => pb::CoverageViolationKind::OverCapacity,
        ViolationKind::UnassignedAddress => pb::CoverageViolationKind::UnassignedAddress,
        ViolationKind::KamWanted => pb::CoverageViolationKind::KamWanted,
    }
}

fn urgency_to(u: Urgency) -> pb::CarteraUrgency {
    match u {
        Urgency::Attention => pb::CarteraUrgency::Attention,
        Urgency::KeyAccount => pb::CarteraUrgency::KeyAccount,
        Urgency::Reactivate => pb::CarteraUrgency::Reactivate,
        Urgency::Rest => pb::CarteraUrgency::Routine,
    }
}

/// The actions classification `c` recommends, each with its label and why, in `lang`.
fn actions_of(c: &cpb::Classification, lang: Lang) -> Vec<pb::CarteraAction> {
    use cpb::Dimension as D;
    let single = |d: D| -> Option<&cpb::LabelResult> {
        match d {
            D::LifecycleStage => c.lifecycle_stage.as_ref(),
            D::Activity => c.activity.as_ref(),
            D::Satisfaction => c.satisfaction.as_ref(),
            D::Volume => c.volume.as_ref(),
            D::Influence => c.influence.as_ref(),
            D::AccountTier => c.account_tier.as_ref(),
            D::RfmSegment => c.rfm.as_ref().and_then(|r| r.segment.as_ref()),
            D::Trait | D::Unspecified => None,
        }
    };
    c.recommended_actions
        .iter()
        .map(|a| {
            let dimension = D::try_from(a.dimension).unwrap_or(D::Unspecified);
            let result = match dimension {
                D::Trait => c
                    .traits
                    .iter()
                    .find(|t| t.label.as_ref().is_some_and(|l| l.code == a.label)),
                d => single(d),
            };
            let (explanation, action) = match lang {
                Lang::En => (result.map(|r| r.explanation_en.clone()), a.text_en.clone()),
                Lang::Es => (result.map(|r| r.explanation_es.clone()), a.text_es.clone()),
            };
            pb::CarteraAction {
                dimension: dimension
                    .as_str_name()
                    .trim_start_matches("DIMENSION_")
                    .to_lowercase(),
                label: result.and_then(|r| r.label.clone()).or_else(|| {
                    Some(clientela_proto::clientela::common::v1::LocalizedLabel {
                        code: a.label.clone(),
                        ..Default::default()
                    })
                }),
                explanation: explanation.unwrap_or_default(),
                action,
            }
        })
        .collect()
}

fn handed_to(handed: &[(Assignment, Assignment)]) -> Vec<pb::HandedAssignment> {
    handed
        .iter()
        .map(|(old, new)| pb::HandedAssignment {
            previous: Some(assignment_to(old)),
            assignment: Some(assignment_to(new)),
        })
        .collect()
}

/// A handover from `seller` to the successor named in `field` ("" for the rules), for
/// `reason`: the whole cartera, no dry run (the handler sets the rest); None when a
/// field is bad (in `v`).
fn handover_of(
    v: &mut Violations,
    seller: &str,
    (successor, field): (&str, &'static str),
    reason: &str,
    actor: String,
) -> Option<Handover> {
    let named = |e: Error| e.field_violations().to_vec();
    let from = v.check_all(seller_id(seller, "seller").map_err(named));
    let to = match successor {
        "" => Some(None),
        s => v.check_all(seller_id(s, field).map_err(named)).map(Some),
    };
    let reason = v.check(clientela_domain::text::validate_name(
        "reason", reason, REASON_MAX,
    ));
    Some(Handover {
        from: from?,
        to: to?,
        successor_field: field,
        customers: Vec::new(),
        roles: Vec::new(),
        house: false,
        depart: false,
        dry_run: false,
        actor,
        reason: reason?,
    })
}

/// Customers a transfer may name (a whole cartera: none).
const HANDOVER_CUSTOMERS_MAX: usize = 1_000;

fn customer_id(name: &str, field: &str) -> Result<Uuid, Error> {
    names::parse_customer(name, field).map(|c| c.as_uuid())
}

/// Assignments listed per page by default, and at most.
const HISTORY_PAGE: (u64, u64) = (100, 1_000);

/// Characters of a manual assignment's reason.
const REASON_MAX: usize = 500;

#[tonic::async_trait]
impl TerritoryService for TerritoryApi {
    async fn assign_customer(
        &self,
        request: Request<pb::AssignCustomerRequest>,
    ) -> GrpcResult<pb::AssignCustomerResponse> {
        let actor = actor(&request);
        let pb::AssignCustomerRequest {
            customer,
            seller,
            role,
            product_line,
            reason,
            pin,
            pin_expire_time,
            request_id,
        } = request.get_ref();
        let key = command_key(&request, "AssignCustomer", request_id, false)?;
        let mut v = Violations::default();
        let named = |e: Error| e.field_violations().to_vec();
        let customer = v.check_all(customer_id(customer, "customer").map_err(named));
        let seller = v.check_all(seller_id(seller, "seller").map_err(named));
        let role = v.check_all(role_from(*role, "role").map_err(named));
        let line = clientela_domain::text::fold(product_line);
        match role {
            Some(Role::Specialist) if line.is_empty() => {
                v.push("product_line", "required for a SPECIALIST");
            }
            Some(Role::Specialist) if product_line.chars().count() > 64 => {
                v.push("product_line", "at most 64 characters");
            }
            Some(_) if !product_line.is_empty() => {
                v.push("product_line", "only a SPECIALIST has a product line");
            }
            _ => {}
        }
        let reason = v.check(clientela_domain::text::validate_name(
            "reason", reason, REASON_MAX,
        ));
        let expires = match to_time(pin_expire_time.as_ref(), "pin_expire_time") {
            Ok(Some(_)) if !pin => {
                v.push("pin_expire_time", "only with pin");
                None
            }
            Ok(Some(t)) if t <= clientela_runtime::time::now() => {
                v.push("pin_expire_time", "must be in the future");
                None
            }
            Ok(t) => t,
            Err(e) => {
                v.push(e.field, e.description);
                None
            }
        };
        v.finish().map_err(Error::InvalidArgument)?;
        let (Some(customer), Some(seller), Some(role), Some(reason)) =
            (customer, seller, role, reason)
        else {
            return Err(Error::Internal("validated fields missing".into()).into());
        };
        let m = ManualAssignment {
            customer,
            seller,
            role,
            product_line: line,
            reason,
            pin: pin.then_some(expires),
            actor,
            claim: false,
        };
        let answer = idempotency::once(self.territories.db(), key.as_ref(), async |tx| {
            let done = self.territories.assign(tx, m).await?;
            Ok(pb::AssignCustomerResponse {
                assignment: Some(assignment_to(&done.assignment)),
                replaced: done.replaced.as_ref().map(assignment_to),
                over_capacity: done.over_capacity,
            })
        })
        .await?;
        Ok(Response::new(answer))
    }

    async fn list_cartera_actions(
        &self,
        request: Request<pb::ListCarteraActionsRequest>,
    ) -> GrpcResult<pb::ListCarteraActionsResponse> {
        let me = self.scope(&request).await?;
        let pb::ListCarteraActionsRequest {
            seller,
            language_code,
            page_size,
            page_token,
        } = request.get_ref();
        let seller = match (me, seller.as_str()) {
            (Some(me), "") => me,
            (None, "") => {
                return Err(
                    Error::invalid("seller", "required (a sales token reads its own)").into(),
                );
            }
            (_, name) => seller_id(name, "seller")?,
        };
        if me.is_some_and(|me| me != seller) {
            return Err(Error::PermissionDenied(
                "a sales token reads its own worklist, not another seller's".into(),
            )
            .into());
        }
        let lang = match language_code.as_str() {
            "" | "en" => Lang::En,
            "es" => Lang::Es,
            _ => return Err(Error::invalid("language_code", "\"es\" or \"en\"").into()),
        };
        let limit = match *page_size {
            0 => 20,
            n => pagination::page_size(n, "page_size")?.min(100),
        };
        let query = pagination::fingerprint(&("worklist", seller, lang == Lang::Es));
        let after: Option<WorkCursor> = pagination::decode(page_token, query, "page_token")?;
        let items = self.territories.worklist(seller, after, limit).await?;
        let next_page_token = match items.last() {
            Some(last) if items.len() as u64 == limit => {
                pagination::encode(query, &(last.urgency.rank(), last.customer.id))
            }
            _ => String::new(),
        };
        let ids: Vec<Uuid> = items.iter().map(|i| i.customer.id).collect();
        let classified: Vec<Result<Option<cpb::Classification>, Error>> =
            futures::stream::iter(ids.into_iter().map(|id| self.classification_of(id)))
                .buffered(8)
                .collect()
                .await;
        let mut out = Vec::with_capacity(items.len());
        for (item, classification) in items.iter().zip(classified) {
            out.push(pb::CarteraWorkItem {
                customer: format!("customers/{}", item.customer.id),
                urgency: urgency_to(item.urgency) as i32,
                urgency_reason: explain::urgency_text(&item.customer, item.urgency, lang),
                held: item.held.iter().map(assignment_to).collect(),
                actions: classification?
                    .map(|c| actions_of(&c, lang))
                    .unwrap_or_default(),
            });
        }
        Ok(Response::new(pb::ListCarteraActionsResponse {
            items: out,
            next_page_token,
        }))
    }

    async fn list_prospects(
        &self,
        request: Request<pb::ListProspectsRequest>,
    ) -> GrpcResult<pb::ListProspectsResponse> {
        let me = self.scope(&request).await?;
        let pb::ListProspectsRequest {
            territory,
            unclaimed_only,
            page_size,
            page_token,
        } = request.get_ref();
        if territory.is_empty() {
            return Err(Error::invalid(
                "territory",
                "required: a territory code of the active model",
            )
            .into());
        }
        let limit = pagination::page_size(*page_size, "page_size")?;
        let filter = ProspectFilter {
            territory: territory.clone(),
            unclaimed: *unclaimed_only,
        };
        let query = pagination::fingerprint(&filter);
        let after: Option<Uuid> = pagination::decode(page_token, query, "page_token")?;
        let page = self
            .territories
            .prospects(&filter, me, after, limit)
            .await?;
        let next_page_token = match page.last() {
            Some((c, _)) if page.len() as u64 == limit => pagination::encode(query, &c.id),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListProspectsResponse {
            prospects: page
                .iter()
                .map(|(c, prospector)| pb::Prospect {
                    customer: format!("customers/{}", c.id),
                    territory_code: c.territory.clone().unwrap_or_default(),
                    prospector: prospector.as_ref().map(assignment_to),
                    update_time: Some(timestamp(c.profile_at)),
                })
                .collect(),
            next_page_token,
        }))
    }

    async fn claim_prospect(
        &self,
        request: Request<pb::ClaimProspectRequest>,
    ) -> GrpcResult<pb::ClaimProspectResponse> {
        let me = self.scope(&request).await?;
        let actor = actor(&request);
        let pb::ClaimProspectRequest {
            customer,
            seller,
            reason,
            request_id,
        } = request.get_ref();
        let key = command_key(&request, "ClaimProspect", request_id, false)?;
        let mut v = Violations::default();
        let named = |e: Error| e.field_violations().to_vec();
        let customer = v.check_all(customer_id(customer, "customer").map_err(named));
        let seller = match (me, seller.as_str()) {
            (Some(me), "") => Some(me),
            (None, "") => {
                v.push("seller", "required (a sales token claims for itself)");
                None
            }
            (_, name) => v.check_all(seller_id(name, "seller").map_err(named)),
        };
        let reason = match reason.as_str() {
            "" => Some("claimed as a prospect".to_owned()),
            r => v.check(clientela_domain::text::validate_name(
                "reason", r, REASON_MAX,
            )),
        };
        v.finish().map_err(Error::InvalidArgument)?;
        let (Some(customer), Some(seller), Some(reason)) = (customer, seller, reason) else {
            return Err(Error::Internal("validated fields missing".into()).into());
        };
        if me.is_some_and(|me| me != seller) {
            return Err(Error::PermissionDenied(
                "a sales token claims prospects for itself only".into(),
            )
            .into());
        }
        let m = ManualAssignment {
            customer,
            seller,
            role: Role::Prospector,
            product_line: String::new(),
            reason,
            pin: None,
            actor,
            claim: true,
        };
        let answer = idempotency::once(self.territories.db(), key.as_ref(), async |tx| {
            let done = self.territories.assign(tx, m).await?;
            Ok(pb::ClaimProspectResponse {
                assignment: Some(assignment_to(&done.assignment)),
            })
        })
        .await?;
        Ok(Response::new(answer))
    }

    async fn transfer_cartera(
        &self,
        request: Request<pb::TransferCarteraRequest>,
    ) -> GrpcResult<pb::TransferCarteraResponse> {
        let actor = actor(&request);
        let r = request.get_ref();
        let key = command_key(&request, "TransferCartera", &r.request_id, r.dry_run)?;
        let pb::TransferCarteraRequest {
            seller,
            to_seller,
            customers,
            roles,
            reason,
            allow_house,
            dry_run,
            request_id: _,
        } = request.into_inner();
        let mut v = Violations::default();
        let named = |e: Error| e.field_violations().to_vec();
        let h = handover_of(&mut v, &seller, (&to_seller, "to_seller"), &reason, actor);
        if customers.len() > HANDOVER_CUSTOMERS_MAX {
            v.push(
                "customers",
                format!("at most {HANDOVER_CUSTOMERS_MAX}: leave it empty for the whole cartera"),
            );
        }
        let mut ids = Vec::new();
        for (i, c) in customers.iter().enumerate().take(HANDOVER_CUSTOMERS_MAX) {
            if let Some(id) = v.check_all(customer_id(c, &format!("customers[{i}]")).map_err(named))
            {
                if ids.contains(&id) {
                    v.push(format!("customers[{i}]"), "listed twice");
                }
                ids.push(id);
            }
        }
        let mut wanted = Vec::new();
        for (i, r) in roles.iter().enumerate().take(Role::ALL.len() + 1) {
            if let Some(role) = v.check_all(role_from(*r, &format!("roles[{i}]")).map_err(named)) {
                wanted.push(role);
            }
        }
        v.finish().map_err(Error::InvalidArgument)?;
        let h = h.ok_or_else(|| Error::Internal("validated fields missing".into()))?;
        let h = Handover {
            customers: ids,
            roles: wanted,
            house: allow_house,
            dry_run,
            ..h
        };
        let answer = idempotency::once(self.territories.db(), key.as_ref(), async |tx| {
            let done = self.territories.hand_over(tx, h).await?;
            Ok(pb::TransferCarteraResponse {
                handed: handed_to(&done.handed),
                handed_count: i64::try_from(done.handed_count).unwrap_or(i64::MAX),
                kept: done.left.iter().map(assignment_to).collect(),
                kept_count: i64::try_from(done.left_count).unwrap_or(i64::MAX),
                effective_time: Some(timestamp(done.at)),
                dry_run,
            })
        })
        .await?;
        Ok(Response::new(answer))
    }

    async fn offboard_seller(
        &self,
        request: Request<pb::OffboardSellerRequest>,
    ) -> GrpcResult<pb::OffboardSellerResponse> {
        let actor = actor(&request);
        let r = request.get_ref();
        let key = command_key(&request, "OffboardSeller", &r.request_id, r.dry_run)?;
        let pb::OffboardSellerRequest {
            seller,
            successor,
            reason,
            allow_house,
            dry_run,
            request_id: _,
        } = request.into_inner();
        let mut v = Violations::default();
        let h = handover_of(&mut v, &seller, (&successor, "successor"), &reason, actor);
        v.finish().map_err(Error::InvalidArgument)?;
        let h = h.ok_or_else(|| Error::Internal("validated fields missing".into()))?;
        let h = Handover {
            house: allow_house,
            depart: true,
            dry_run,
            ..h
        };
        let answer = idempotency::once(self.territories.db(), key.as_ref(), async |tx| {
            let done = self.territories.hand_over(tx, h).await?;
            Ok(pb::OffboardSellerResponse {
                seller: Some(seller_to(&done.seller)),
                handed: handed_to(&done.handed),
                handed_count: i64::try_from(done.handed_count).unwrap_or(i64::MAX),
                ended: done.left.iter().map(assignment_to).collect(),
                ended_count: i64::try_from(done.left_count).unwrap_or(i64::MAX),
                effective_time: Some(timestamp(done.at)),
                dry_run,
            })
        })
        .await?;
        Ok(Response::new(answer))
    }

    async fn list_cartera(
        &self,
        request: Request<pb::ListCarteraRequest>,
    ) -> GrpcResult<pb::ListCarteraResponse> {
        let me = self.scope(&request).await?;
        let pb::ListCarteraRequest {
            seller,
            as_of,
            role,
            territory_code,
            page_size,
            page_token,
            view,
        } = request.get_ref();
        let seller = seller_id(seller, "seller")?;
        let full = match pb::AssignmentView::try_from(*view) {
            Ok(pb::AssignmentView::Unspecified | pb::AssignmentView::Basic) => false,
            Ok(pb::AssignmentView::Full) => true,
            Err(_) => {
                return Err(Error::invalid(
                    "view",
                    format!("{view} is not an ASSIGNMENT_VIEW_* value"),
                )
                .into());
            }
        };
        let as_of = to_time(as_of.as_ref(), "as_of").map_err(Error::from)?;
        let role = match *role {
            0 => None,
            v => Some(role_from(v, "role")?),
        };
        let territory_code = match territory_code.as_str() {
            "" => None,
            code => Some(validate_code("territory_code", code).map_err(Error::from)?),
        };
        let limit = match *page_size {
            0 => HISTORY_PAGE.0,
            n => pagination::page_size(n, "page_size")?.min(HISTORY_PAGE.1),
        };
        check_own(me, seller)?;
        let filter = store::cartera::CarteraFilter {
            seller,
            as_of: as_of.unwrap_or_else(clientela_runtime::time::now),
            role,
            territory_code,
        };
        // A page token carries the instant, so later pages answer for the same one.
        let query = pagination::fingerprint(&(
            "cartera",
            seller,
            role.map(Role::as_str),
            &filter.territory_code,
            as_of,
        ));
        let after: Option<(Uuid, i64, chrono::DateTime<chrono::Utc>)> =
            pagination::decode(page_token, query, "page_token")?;
        let filter = match after {
            Some((_, _, at)) => store::cartera::CarteraFilter {
                as_of: at,
                ..filter
            },
            None => filter,
        };
        let page = self
            .territories
            .cartera(
                &filter,
                after.map(|(c, s, _)| (c, s)),
                limit,
                if full {
                    store::cartera::Read::Whole
                } else {
                    store::cartera::Read::Basic
                },
            )
            .await?;
        let next_page_token = match page.last() {
            Some(last) if page.len() as u64 == limit => {
                pagination::encode(query, &(last.customer, last.sequence, filter.as_of))
            }
            _ => String::new(),
        };
        Ok(Response::new(pb::ListCarteraResponse {
            assignments: page
                .iter()
                .map(if full {
                    assignment_to
                } else {
                    basic_assignment_to
                })
                .collect(),
            next_page_token,
        }))
    }

    async fn explain_assignment(
        &self,
        request: Request<pb::ExplainAssignmentRequest>,
    ) -> GrpcResult<pb::ExplainAssignmentResponse> {
        let me = self.scope(&request).await?;
        let id = names::parse_top(&request.get_ref().name, "assignments", "name")?;
        let (a, seller, considered) = self.territories.explain(id).await?;
        self.check_sees(me, a.customer).await?;
        Ok(Response::new(pb::ExplainAssignmentResponse {
            assignment: Some(assignment_to(&a)),
            seller_display_name: seller,
            considered_display_names: considered,
        }))
    }

    async fn list_coverage_violations(
        &self,
        request: Request<pb::ListCoverageViolationsRequest>,
    ) -> GrpcResult<pb::ListCoverageViolationsResponse> {
        self.refuse_sales(&request, "the company's violations")
            .await?;
        let pb::ListCoverageViolationsRequest {
            kind,
            page_size,
            page_token,
        } = request.get_ref();
        let kinds: Vec<ViolationKind> = match *kind {
            0 => ViolationKind::ALL.to_vec(),
            v => vec![
                ViolationKind::ALL
                    .into_iter()
                    .find(|k| violation_kind_to(*k) as i32 == v)
                    .ok_or_else(|| Error::invalid("kind", "a COVERAGE_VIOLATION_KIND_* value"))?,
            ],
        };
        let limit = match *page_size {
            0 => HISTORY_PAGE.0,
            n => pagination::page_size(n, "page_size")?.min(HISTORY_PAGE.1),
        };
        let query = pagination::fingerprint(&("violations", &kinds));
        let after: Option<(ViolationKind, Uuid)> =
            pagination::decode(page_token, query, "page_token")?;
        let found = self.territories.violations(&kinds, after, limit).await?;
        let next_page_token = match found.last() {
            Some(last) if found.len() as u64 == limit => {
                pagination::encode(query, &(last.kind, last.key))
            }
            _ => String::new(),
        };
        Ok(Response::new(pb::ListCoverageViolationsResponse {
            violations: found
                .iter()
                .map(|v| pb::CoverageViolation {
                    kind: violation_kind_to(v.kind) as i32,
                    customer: v
                        .customer
                        .map(|c| format!("customers/{c}"))
                        .unwrap_or_default(),
                    seller: v.seller.map(seller_name).unwrap_or_default(),
                    assignment: v.assignment.as_ref().map(assignment_to),
                    detail: v.detail.clone(),
                })
                .collect(),
            next_page_token,
        }))
    }

    type WatchAssignmentChangesStream = BoxStream<pb::WatchAssignmentChangesResponse>;
    type ApplyRealignmentStream = BoxStream<pb::ApplyRealignmentResponse>;

    async fn preview_realignment(
        &self,
        request: Request<pb::PreviewRealignmentRequest>,
    ) -> GrpcResult<pb::PreviewRealignmentResponse> {
        self.refuse_sales(&request, "a realignment of everyone's")
            .await?;
        let pb::PreviewRealignmentRequest {
            territory_model,
            max_moves,
        } = request.get_ref();
        let id = model_id(territory_model, "territory_model")?;
        let keep = match *max_moves {
            0 => 100,
            n => pagination::page_size(n, "max_moves")?,
        };
        let r = self
            .territories
            .preview_realignment(id, usize::try_from(keep).unwrap_or(100))
            .await?;
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        Ok(Response::new(pb::PreviewRealignmentResponse {
            territory_model: Some(model_to(&r.model)),
            preview_token: r.token.clone(),
            customers: count(r.customers),
            customers_placed: count(r.placed),
            assignments_moved: count(r.moved),
            overflowed: count(r.overflowed),
            to_house: count(r.to_house),
            pins_held: count(r.pins_held),
            moves: r
                .moves
                .iter()
                .map(|m| pb::RealignmentMove {
                    customer: format!("customers/{}", m.customer),
                    role: role_to(m.role) as i32,
                    product_line: m.product_line.clone(),
                    from_seller: m.from.map(seller_name).unwrap_or_default(),
                    to_seller: seller_name(m.to),
                    cause: cause_to(m.cause) as i32,
                    territory_code: m.territory.clone().unwrap_or_default(),
                })
                .collect(),
            pins: r.pins.iter().map(assignment_to).collect(),
            sellers: r
                .shifts
                .iter()
                .map(|s| pb::SellerShift {
                    seller: seller_name(s.seller),
                    load_before: s.load_before,
                    load_after: s.load_after,
                    capacity: s.capacity,
                    gained: count(s.gained),
                    lost: count(s.lost),
                })
                .collect(),
            preview_time: Some(timestamp(r.at)),
        }))
    }

    async fn apply_realignment(
        &self,
        request: Request<pb::ApplyRealignmentRequest>,
    ) -> GrpcResult<Self::ApplyRealignmentStream> {
        let token = request.into_inner().preview_token;
        crate::realign::check_preview_token(&token)?;
        let (out, rx) = tokio::sync::mpsc::channel(16);
        let territories = self.territories.clone();
        // Its own task: a caller who hangs up does not stop (or lose) the realignment.
        tokio::spawn(async move {
            let (progress, mut reports) = tokio::sync::mpsc::channel(16);
            let forward = {
                let out = out.clone();
                tokio::spawn(async move {
                    while let Some(p) = reports.recv().await {
                        let p: crate::realign::Progress = p;
                        let _ = out
                            .send(Ok(pb::ApplyRealignmentResponse {
                                customers_done: i64::try_from(p.done).unwrap_or(i64::MAX),
                                customers_total: i64::try_from(p.total).unwrap_or(i64::MAX),
                                assignments_moved: i64::try_from(p.moved).unwrap_or(i64::MAX),
                                ..Default::default()
                            }))
                            .await;
                    }
                })
            };
            let result = territories.apply_realignment(&token, Some(&progress)).await;
            drop(progress);
            let _ = forward.await;
            let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
            let last = result
                .map(|r| pb::ApplyRealignmentResponse {
                    customers_done: count(r.customers),
                    customers_total: count(r.customers),
                    assignments_moved: count(r.moved),
                    done: true,
                    territory_model: Some(model_to(&r.model)),
                    archived_model: r.archived.map(model_name).unwrap_or_default(),
                    customers_placed: count(r.placed),
                    overflowed: count(r.overflowed),
                    to_house: count(r.to_house),
                    pins_held: count(r.pins_held),
                })
                .map_err(Status::from);
            let _ = out.send(last).await;
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn watch_assignment_changes(
        &self,
        request: Request<pb::WatchAssignmentChangesRequest>,
    ) -> GrpcResult<Self::WatchAssignmentChangesStream> {
        self.refuse_sales(&request, "every cartera's changes")
            .await?;
        let pb::WatchAssignmentChangesRequest {
            after_sequence,
            max_batch_size,
        } = *request.get_ref();
        let batch = feed::check_request(after_sequence, max_batch_size)?;
        let changes = self.territories.changes().clone();
        let fetch = move |after, limit| {
            let changes = changes.clone();
            async move { changes.read_after(after, limit).await }
        };
        let feed = Feed {
            fetch,
            woken: self.territories.changes().subscribe(),
            stopping: self.stopping.clone(),
            poll: self.poll_interval,
        };
        let stream =
            feed::watch(feed, after_sequence, batch, |c: &Logged| c.sequence).map(|batch| {
                batch.map(|changes| pb::WatchAssignmentChangesResponse {
                    changes: changes.iter().map(change_to).collect(),
                })
            });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn unpin_assignment(
        &self,
        request: Request<pb::UnpinAssignmentRequest>,
    ) -> GrpcResult<pb::UnpinAssignmentResponse> {
        let actor = actor(&request);
        let id = names::parse_top(&request.get_ref().name, "assignments", "name")?;
        let key = command_key(
            &request,
            "UnpinAssignment",
            &request.get_ref().request_id,
            false,
        )?;
        let answer = idempotency::once(self.territories.db(), key.as_ref(), async |tx| {
            let assignment = self.territories.unpin(tx, id, &actor).await?;
            Ok(pb::UnpinAssignmentResponse {
                assignment: Some(assignment_to(&assignment)),
            })
        })
        .await?;
        Ok(Response::new(answer))
    }

    async fn activate_territory_model(
        &self,
        request: Request<pb::ActivateTerritoryModelRequest>,
    ) -> GrpcResult<pb::ActivateTerritoryModelResponse> {
        let pb::ActivateTerritoryModelRequest { name, etag } = request.get_ref();
        let id = model_id(name, "name")?;
        let done = self.territories.activate_model(id, etag_of(etag)).await?;
        Ok(Response::new(pb::ActivateTerritoryModelResponse {
            territory_model: Some(model_to(&done.model)),
            archived_model: done.archived.map(model_name).unwrap_or_default(),
            customers_placed: i64::try_from(done.placed).unwrap_or(i64::MAX),
            assignments_moved: i64::try_from(done.moved).unwrap_or(i64::MAX),
        }))
    }

    async fn get_coverage(
        &self,
        request: Request<pb::GetCoverageRequest>,
    ) -> GrpcResult<pb::GetCoverageResponse> {
        let budget = consistency::wait_budget(request.metadata());
        let me = self.scope(&request).await?;
        let pb::GetCoverageRequest {
            customer,
            as_of,
            min_event_sequence,
        } = request.get_ref();
        let id = customer_id(customer, "customer")?;
        let as_of = to_time(as_of.as_ref(), "as_of").map_err(Error::from)?;
        if *min_event_sequence < 0 {
            return Err(Error::invalid("min_event_sequence", "must not be negative").into());
        }
        let event_sequence = consistency::wait_for(*min_event_sequence, budget, || {
            consumer::position(self.territories.db(), REGISTRY_FEED)
        })
        .await?;
        self.check_sees(me, id).await?;
        let c = self.territories.coverage(id, as_of).await?;
        Ok(Response::new(pb::GetCoverageResponse {
            customer: format!("customers/{}", c.customer.id),
            as_of: Some(timestamp(c.as_of)),
            territory_path: c.territory_path,
            unassigned_reason: c.unassigned_reason.unwrap_or_default(),
            primary: c.primary.as_ref().map(assignment_to),
            specialists: c.specialists.iter().map(assignment_to).collect(),
            kam: c.kam.as_ref().map(assignment_to),
            prospector: c.prospector.as_ref().map(assignment_to),
            event_sequence,
            account_tier: c.customer.tier.clone().unwrap_or_default(),
            kam_grace_end_time: c.customer.kam_until.map(timestamp),
        }))
    }

    async fn list_assignment_history(
        &self,
        request: Request<pb::ListAssignmentHistoryRequest>,
    ) -> GrpcResult<pb::ListAssignmentHistoryResponse> {
        let me = self.scope(&request).await?;
        let pb::ListAssignmentHistoryRequest {
            customer,
            seller,
            page_size,
            page_token,
        } = request.get_ref();
        let limit = match *page_size {
            0 => HISTORY_PAGE.0,
            n => pagination::page_size(n, "page_size")?.min(HISTORY_PAGE.1),
        };
        let (assignments, next_page_token) = match (customer.is_empty(), seller.is_empty()) {
            (false, true) => {
                let id = customer_id(customer, "customer")?;
                self.check_sees(me, id).await?;
                let query = pagination::fingerprint(&("customer history", id));
                let after: Option<HistoryCursor> =
                    pagination::decode(page_token, query, "page_token")?;
                let page = self.territories.customer_history(id, after, limit).await?;
                let next = match page.last() {
                    Some(last) if page.len() as u64 == limit => {
                        pagination::encode(query, &(last.valid_from, last.sequence))
                    }
                    _ => String::new(),
                };
                (page, next)
            }
            (true, false) => {
                let id = seller_id(seller, "seller")?;
                check_own(me, id)?;
                let query = pagination::fingerprint(&("seller history", id));
                let after: Option<i64> = pagination::decode(page_token, query, "page_token")?;
                let page = self
                    .territories
                    .seller_history(id, after.unwrap_or(0), limit)
                    .await?;
                let next = match page.last() {
                    Some(last) if page.len() as u64 == limit => {
                        pagination::encode(query, &last.sequence)
                    }
                    _ => String::new(),
                };
                (page, next)
            }
            (true, true) => {
                return Err(
                    Error::invalid("customer", "one of customer and seller is required").into(),
                );
            }
            (false, false) => {
                return Err(Error::invalid("seller", "give customer or seller, not both").into());
            }
        };
        Ok(Response::new(pb::ListAssignmentHistoryResponse {
            assignments: assignments.iter().map(assignment_to).collect(),
            next_page_token,
        }))
    }

    async fn create_territory_model(
        &self,
        request: Request<pb::CreateTerritoryModelRequest>,
    ) -> GrpcResult<pb::CreateTerritoryModelResponse> {
        let req = request.into_inner();
        // Every field, so one added to the proto does not compile until it is read.
        let pb::CreateTerritoryModelRequest {
            territory_model,
            copy_from,
            request_id,
        } = req;
        let mut v = Violations::default();
        let display_name = match &territory_model {
            Some(m) => v.check(validate_display_name(
                "territory_model.display_name",
                &m.display_name,
            )),
            None => {
                v.push("territory_model", "required");
                None
            }
        };
        let copy_from = if copy_from.is_empty() {
            None
        } else {
            match model_id(&copy_from, "copy_from") {
                Ok(id) => Some(id),
                Err(e) => {
                    for f in e.field_violations() {
                        v.push(f.field.clone(), f.description.clone());
                    }
                    None
                }
            }
        };
        let request_id = request_id_of(&request_id)?;
        let display_name = v.done(display_name).map_err(Error::from)?;
        let key = request_id
            .map(|id| RequestKey::new(id, &(&display_name, copy_from)))
            .transpose()?;
        let (model, created) = self
            .territories
            .create_model(display_name, copy_from, key)
            .await?;
        Ok(Response::new(pb::CreateTerritoryModelResponse {
            territory_model: Some(model_to(&model)),
            created,
        }))
    }

    async fn get_territory_model(
        &self,
        request: Request<pb::GetTerritoryModelRequest>,
    ) -> GrpcResult<pb::GetTerritoryModelResponse> {
        self.refuse_sales(&request, "territory models").await?;
        let pb::GetTerritoryModelRequest { name } = request.get_ref();
        let model = self.territories.model(model_id(name, "name")?).await?;
        Ok(Response::new(pb::GetTerritoryModelResponse {
            territory_model: Some(model_to(&model)),
        }))
    }

    async fn list_territory_models(
        &self,
        request: Request<pb::ListTerritoryModelsRequest>,
    ) -> GrpcResult<pb::ListTerritoryModelsResponse> {
        self.refuse_sales(&request, "territory models").await?;
        let pb::ListTerritoryModelsRequest {
            page_size,
            page_token,
            state,
        } = request.into_inner();
        let limit = pagination::page_size(page_size, "page_size")?;
        let state = match pb::TerritoryModelState::try_from(state) {
            Ok(pb::TerritoryModelState::Unspecified) => None,
            Ok(pb::TerritoryModelState::Planning) => Some(ModelState::Planning),
            Ok(pb::TerritoryModelState::Active) => Some(ModelState::Active),
            Ok(pb::TerritoryModelState::Archived) => Some(ModelState::Archived),
            Err(_) => return Err(Error::invalid("state", format!("unknown state {state}")).into()),
        };
        let query = pagination::fingerprint(&("models", state.map(ModelState::as_str)));
        let after: Option<Uuid> = pagination::decode(&page_token, query, "page_token")?;
        let models = self.territories.models(state, after, limit).await?;
        let next_page_token = match models.last() {
            Some(last) if models.len() as u64 == limit => pagination::encode(query, &last.id),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListTerritoryModelsResponse {
            territory_models: models.iter().map(model_to).collect(),
            next_page_token,
        }))
    }

    async fn archive_territory_model(
        &self,
        request: Request<pb::ArchiveTerritoryModelRequest>,
    ) -> GrpcResult<pb::ArchiveTerritoryModelResponse> {
        let pb::ArchiveTerritoryModelRequest { name, etag } = request.get_ref();
        let id = model_id(name, "name")?;
        let model = self.territories.archive_model(id, etag_of(etag)).await?;
        Ok(Response::new(pb::ArchiveTerritoryModelResponse {
            territory_model: Some(model_to(&model)),
        }))
    }

    async fn create_territory(
        &self,
        request: Request<pb::CreateTerritoryRequest>,
    ) -> GrpcResult<pb::CreateTerritoryResponse> {
        let pb::CreateTerritoryRequest { parent, territory } = request.into_inner();
        let model = model_id(&parent, "parent")?;
        let Some(t) = territory else {
            return Err(Error::invalid("territory", "required").into());
        };
        // Every field, so one added to the proto does not compile until it is read.
        let pb::Territory {
            name: _, // output only
            code,
            display_name,
            parent_code,
            criteria,
            priority,
            create_time: _, // output only
            update_time: _, // output only
            etag: _,        // output only
        } = t;
        let mut v = Violations::default();
        let code = v.check(validate_code("territory.code", &code));
        let display_name = v.check(validate_display_name(
            "territory.display_name",
            &display_name,
        ));
        let parent_code = parent_code_of(&parent_code, "territory.parent_code", &mut v);
        let criteria = criteria_of(criteria.as_ref(), "territory.criteria", &mut v);
        let priority = v.check(validate_priority("territory.priority", priority));
        let (code, display_name, priority) = v
            .done(
                code.zip(display_name)
                    .zip(priority)
                    .map(|((c, d), p)| (c, d, p)),
            )
            .map_err(Error::from)?;
        let territory = self
            .territories
            .create_territory(
                model,
                code,
                TerritoryFields {
                    display_name,
                    parent_code,
                    criteria,
                    priority,
                },
            )
            .await?;
        Ok(Response::new(pb::CreateTerritoryResponse {
            territory: Some(territory_to(&territory)),
        }))
    }

    async fn get_territory(
        &self,
        request: Request<pb::GetTerritoryRequest>,
    ) -> GrpcResult<pb::GetTerritoryResponse> {
        self.refuse_sales(&request, "territories").await?;
        let pb::GetTerritoryRequest { name } = request.get_ref();
        let (model, code) = parse_territory_name(name, "name")?;
        let territory = self.territories.territory(model, &code).await?;
        Ok(Response::new(pb::GetTerritoryResponse {
            territory: Some(territory_to(&territory)),
        }))
    }

    async fn list_territories(
        &self,
        request: Request<pb::ListTerritoriesRequest>,
    ) -> GrpcResult<pb::ListTerritoriesResponse> {
        self.refuse_sales(&request, "territories").await?;
        let pb::ListTerritoriesRequest {
            parent,
            page_size,
            page_token,
        } = request.into_inner();
        let model = model_id(&parent, "parent")?;
        let limit = match u64::try_from(page_size) {
            Err(_) => return Err(Error::invalid("page_size", "must not be negative").into()),
            Ok(0) => TERRITORY_PAGE.0,
            Ok(n) => n.min(TERRITORY_PAGE.1),
        };
        let query = pagination::fingerprint(&("territories", model));
        // The position in the model's tree order, and the model version it was read at.
        let from: Option<(u64, i64)> = pagination::decode(&page_token, query, "page_token")?;
        let (territories, version) = self.territories.territories(model).await?;
        let offset = match from {
            None => 0,
            Some((offset, at)) if at == version => offset,
            Some(_) => {
                return Err(Error::aborted(
                    "MODEL_CHANGED",
                    "the territory model changed since the first page: list it again",
                )
                .into());
            }
        };
        let page: Vec<pb::Territory> = territories
            .iter()
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .map(territory_to)
            .collect();
        let end = offset + page.len() as u64;
        let next_page_token = if end < territories.len() as u64 {
            pagination::encode(query, &(end, version))
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListTerritoriesResponse {
            territories: page,
            next_page_token,
        }))
    }

    async fn update_territory(
        &self,
        request: Request<pb::UpdateTerritoryRequest>,
    ) -> GrpcResult<pb::UpdateTerritoryResponse> {
        let pb::UpdateTerritoryRequest {
            territory,
            update_mask,
        } = request.into_inner();
        let Some(t) = territory else {
            return Err(Error::invalid("territory", "required").into());
        };
        let (model, code) = parse_territory_name(&t.name, "territory.name")?;
        let paths: Vec<String> = match update_mask {
            Some(mask) if !mask.paths.is_empty() => mask.paths,
            _ => {
                let set = [
                    !t.display_name.is_empty(),
                    !t.parent_code.is_empty(),
                    t.criteria.is_some(),
                    t.priority != 0,
                ];
                TERRITORY_FIELDS
                    .iter()
                    .zip(set)
                    .filter(|(_, set)| *set)
                    .map(|(f, _)| (*f).to_owned())
                    .collect()
            }
        };
        let mut v = Violations::default();
        let mut patch = TerritoryPatch::default();
        for (i, path) in paths.iter().enumerate() {
            match path.as_str() {
                "display_name" => {
                    patch.display_name = v.check(validate_display_name(
                        "territory.display_name",
                        &t.display_name,
                    ));
                }
                "parent_code" => {
                    patch.parent_code = Some(parent_code_of(
                        &t.parent_code,
                        "territory.parent_code",
                        &mut v,
                    ));
                }
                "criteria" => {
                    patch.criteria = Some(criteria_of(
                        t.criteria.as_ref(),
                        "territory.criteria",
                        &mut v,
                    ));
                }
                "priority" => {
                    patch.priority = v.check(validate_priority("territory.priority", t.priority));
                }
                _ => v.push(
                    format!("update_mask.paths[{i}]"),
                    format!(
                        "{} is not a writable field; writable: {}",
                        quote(path),
                        TERRITORY_FIELDS.join(", ")
                    ),
                ),
            }
        }
        if paths.is_empty() {
            v.push("update_mask", "nothing to update");
        }
        v.finish().map_err(Error::from)?;
        let territory = self
            .territories
            .update_territory(model, &code, patch, etag_of(&t.etag))
            .await?;
        Ok(Response::new(pb::UpdateTerritoryResponse {
            territory: Some(territory_to(&territory)),
        }))
    }

    async fn delete_territory(
        &self,
        request: Request<pb::DeleteTerritoryRequest>,
    ) -> GrpcResult<pb::DeleteTerritoryResponse> {
        let pb::DeleteTerritoryRequest { name, etag } = request.get_ref();
        let (model, code) = parse_territory_name(name, "name")?;
        self.territories
            .delete_territory(model, &code, etag_of(etag))
            .await?;
        Ok(Response::new(pb::DeleteTerritoryResponse {}))
    }

    async fn locate_address(
        &self,
        request: Request<pb::LocateAddressRequest>,
    ) -> GrpcResult<pb::LocateAddressResponse> {
        self.refuse_sales(&request, "where addresses belong")
            .await?;
        let pb::LocateAddressRequest {
            territory_model,
            country_code,
            region,
            locality,
            postal_code,
        } = request.get_ref();
        let model = model_id(territory_model, "territory_model")?;
        // The registry's own address rules, so what locates here is what it stores.
        let address = clientela_domain::contact::Address::new(
            country_code,
            region,
            locality,
            postal_code,
            "",
        )
        .map_err(Error::from)?;
        let place = Place::new(
            address.country_code.as_str(),
            &address.region,
            &address.locality,
            &address.postal_code,
        );
        let response = match self.territories.locate(model, &place).await? {
            Location::In(path) => pb::LocateAddressResponse {
                path: path.iter().map(territory_to).collect(),
                unassigned_reason: String::new(),
            },
            Location::Unassigned(reason) => pb::LocateAddressResponse {
                path: Vec::new(),
                unassigned_reason: reason,
            },
        };
        Ok(Response::new(response))
    }

    async fn create_seller(
        &self,
        request: Request<pb::CreateSellerRequest>,
    ) -> GrpcResult<pb::CreateSellerResponse> {
        let pb::CreateSellerRequest { seller, request_id } = request.into_inner();
        let Some(seller) = seller else {
            return Err(Error::invalid("seller", "required").into());
        };
        // Every field, so one added to the proto does not compile until it is read.
        let pb::Seller {
            name: _, // output only
            display_name,
            email,
            token_name,
            specialties,
            territory_codes,
            kam,
            capacity,
            status,
            house: _,       // output only
            create_time: _, // output only
            update_time: _, // output only
            etag: _,        // output only
        } = seller;
        let mut v = Violations::default();
        let display_name = v.check(validate_display_name("seller.display_name", &display_name));
        let email = v.check(email_of(&email, "seller.email"));
        let token_name = v.check(token_of(&token_name, "seller.token_name"));
        let specialties = validate_specialties("seller.specialties", &specialties, &mut v);
        let territory_codes = validate_codes("seller.territory_codes", &territory_codes, &mut v);
        let capacity = v.check(validate_capacity("seller.capacity", capacity));
        let status = v.check(seller_status_of(status, "seller.status"));
        let request_id = request_id_of(&request_id)?;
        let fields = v
            .done((|| {
                Some(SellerFields {
                    display_name: display_name?,
                    email: email?,
                    token_name: token_name?,
                    specialties,
                    territory_codes,
                    kam,
                    capacity: capacity?,
                    status: status?,
                })
            })())
            .map_err(Error::from)?;
        let key = request_id
            .map(|id| RequestKey::new(id, &fields))
            .transpose()?;
        let (seller, created) = self.territories.create_seller(fields, key).await?;
        Ok(Response::new(pb::CreateSellerResponse {
            seller: Some(seller_to(&seller)),
            created,
        }))
    }

    async fn get_seller(
        &self,
        request: Request<pb::GetSellerRequest>,
    ) -> GrpcResult<pb::GetSellerResponse> {
        let pb::GetSellerRequest { name } = request.get_ref();
        let id = seller_id(name, "name")?;
        if self.scope(&request).await?.is_some_and(|me| me != id) {
            return Err(Error::PermissionDenied(
                "a sales token reads its own seller, not the others".into(),
            )
            .into());
        }
        let seller = self.territories.seller(id).await?;
        Ok(Response::new(pb::GetSellerResponse {
            seller: Some(seller_to(&seller)),
        }))
    }

    async fn list_sellers(
        &self,
        request: Request<pb::ListSellersRequest>,
    ) -> GrpcResult<pb::ListSellersResponse> {
        self.refuse_sales(&request, "the sellers").await?;
        let pb::ListSellersRequest {
            page_size,
            page_token,
            statuses,
            territory_code,
            specialty,
        } = request.into_inner();
        let limit = pagination::page_size(page_size, "page_size")?;
        let mut v = Violations::default();
        if statuses.len() > 3 {
            v.push(
                "statuses",
                format!("at most 3 entries (got {})", statuses.len()),
            );
        }
        let mut filter = SellerFilter::default();
        for (i, status) in statuses.iter().take(3).enumerate() {
            let status = match pb::SellerStatus::try_from(*status) {
                Ok(pb::SellerStatus::Active) => Some(SellerStatus::Active),
                Ok(pb::SellerStatus::OnLeave) => Some(SellerStatus::OnLeave),
                Ok(pb::SellerStatus::Departed) => Some(SellerStatus::Departed),
                _ => {
                    v.push(format!("statuses[{i}]"), format!("not a status: {status}"));
                    None
                }
            };
            if let Some(status) = status
                && !filter.statuses.contains(&status)
            {
                filter.statuses.push(status);
            }
        }
        if !territory_code.is_empty() {
            filter.territory_code = v.check(validate_code("territory_code", &territory_code));
        }
        if !specialty.is_empty() {
            filter.specialty = v.check(clientela_domain::text::validate_name(
                "specialty",
                &specialty,
                64,
            ));
        }
        v.finish().map_err(Error::from)?;
        let query = pagination::fingerprint(&("sellers", &filter));
        let after: Option<SellerCursor> = pagination::decode(&page_token, query, "page_token")?;
        let sellers = self
            .territories
            .sellers(
                &filter,
                after.as_ref(),
                usize::try_from(limit).unwrap_or(usize::MAX),
            )
            .await?;
        let next_page_token = match sellers.last() {
            Some(last) if sellers.len() as u64 == limit => {
                pagination::encode(query, &SellerCursor::of(last))
            }
            _ => String::new(),
        };
        Ok(Response::new(pb::ListSellersResponse {
            sellers: sellers.iter().map(seller_to).collect(),
            next_page_token,
        }))
    }

    async fn update_seller(
        &self,
        request: Request<pb::UpdateSellerRequest>,
    ) -> GrpcResult<pb::UpdateSellerResponse> {
        let pb::UpdateSellerRequest {
            seller,
            update_mask,
        } = request.into_inner();
        let Some(s) = seller else {
            return Err(Error::invalid("seller", "required").into());
        };
        let id = seller_id(&s.name, "seller.name")?;
        let paths: Vec<String> = match update_mask {
            Some(mask) if !mask.paths.is_empty() => mask.paths,
            _ => {
                let set = [
                    !s.display_name.is_empty(),
                    !s.email.is_empty(),
                    !s.token_name.is_empty(),
                    !s.specialties.is_empty(),
                    !s.territory_codes.is_empty(),
                    s.kam,
                    s.capacity != 0,
                    s.status != 0,
                ];
                SELLER_FIELDS
                    .iter()
                    .zip(set)
                    .filter(|(_, set)| *set)
                    .map(|(f, _)| (*f).to_owned())
                    .collect()
            }
        };
        let mut v = Violations::default();
        let mut patch = SellerPatch::default();
        for (i, path) in paths.iter().enumerate() {
            match path.as_str() {
                "display_name" => {
                    patch.display_name = v.check(validate_display_name(
                        "seller.display_name",
                        &s.display_name,
                    ));
                }
                "email" => patch.email = v.check(email_of(&s.email, "seller.email")),
                "token_name" => {
                    patch.token_name = v.check(token_of(&s.token_name, "seller.token_name"));
                }
                "specialties" => {
                    patch.specialties = Some(validate_specialties(
                        "seller.specialties",
                        &s.specialties,
                        &mut v,
                    ));
                }
                "territory_codes" => {
                    patch.territory_codes = Some(validate_codes(
                        "seller.territory_codes",
                        &s.territory_codes,
                        &mut v,
                    ));
                }
                "kam" => patch.kam = Some(s.kam),
                "capacity" => {
                    patch.capacity = v.check(validate_capacity("seller.capacity", s.capacity));
                }
                "status" => patch.status = v.check(seller_status_of(s.status, "seller.status")),
                _ => v.push(
                    format!("update_mask.paths[{i}]"),
                    format!(
                        "{} is not a writable field; writable: {}",
                        quote(path),
                        SELLER_FIELDS.join(", ")
                    ),
                ),
            }
        }
        if paths.is_empty() {
            v.push("update_mask", "nothing to update");
        }
        v.finish().map_err(Error::from)?;
        let seller = self
            .territories
            .update_seller(id, patch, etag_of(&s.etag))
            .await?;
        Ok(Response::new(pb::UpdateSellerResponse {
            seller: Some(seller_to(&seller)),
        }))
    }
}
