//! The one error type of every Clientela service, and its one exhaustive mapping to a
//! gRPC status with rich details (`BadRequest` field violations, `ErrorInfo` reason).

use clientela_domain::FieldViolation;
use sea_orm::{DbErr, RuntimeErr, SqlErr};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

pub use clientela_domain::error::ERROR_DOMAIN;

/// What went wrong, in terms a caller can act on.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The request is malformed: one or more fields are bad.
    #[error("invalid argument: {}", describe(.0))]
    InvalidArgument(Vec<FieldViolation>),
    /// The named resource does not exist.
    #[error("{resource} {name} not found")]
    NotFound {
        /// e.g. "customer".
        resource: &'static str,
        /// The name the caller gave.
        name: String,
    },
    /// The resource (or a unique key of it) exists already.
    #[error("{message}")]
    AlreadyExists {
        /// Machine-readable reason, e.g. `TAX_ID_TAKEN`.
        reason: &'static str,
        /// For people.
        message: String,
    },
    /// The request is valid but the system is not in a state that allows it.
    #[error("{message}")]
    FailedPrecondition {
        /// Machine-readable reason, e.g. `CUSTOMER_ARCHIVED`.
        reason: &'static str,
        /// For people.
        message: String,
    },
    /// A concurrency conflict (stale etag): read again and retry.
    #[error("{message}")]
    Aborted {
        /// Machine-readable reason, e.g. `ETAG_MISMATCH`.
        reason: &'static str,
        /// For people.
        message: String,
    },
    /// No valid credentials.
    #[error("{0}")]
    Unauthenticated(String),
    /// Valid credentials without the role this method needs.
    #[error("{0}")]
    PermissionDenied(String),
    /// A dependency (the database) is down or overloaded: retry later.
    #[error("{0}")]
    Unavailable(String),
    /// What the call waits for did not happen within its deadline (a feed consumer had
    /// not caught up with the sequence asked for).
    #[error("{0}")]
    DeadlineExceeded(String),
    /// A bug or an unexpected failure. The detail is logged, never returned.
    #[error("internal error: {0}")]
    Internal(String),
}

fn describe(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl Error {
    /// One bad field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![FieldViolation::new(field, description)])
    }

    /// Not found.
    pub fn not_found(resource: &'static str, name: impl Into<String>) -> Self {
        Self::NotFound {
            resource,
            name: name.into(),
        }
    }

    /// Failed precondition.
    pub fn precondition(reason: &'static str, message: impl Into<String>) -> Self {
        Self::FailedPrecondition {
            reason,
            message: message.into(),
        }
    }

    /// Already exists.
    pub fn already_exists(reason: &'static str, message: impl Into<String>) -> Self {
        Self::AlreadyExists {
            reason,
            message: message.into(),
        }
    }

    pub fn aborted(reason: &'static str, message: impl Into<String>) -> Self {
        Self::Aborted {
            reason,
            message: message.into(),
        }
    }

    /// The gRPC code this error maps to.
    pub fn code(&self) -> Code {
        match self {
            Self::InvalidArgument(_) => Code::InvalidArgument,
            Self::NotFound { .. } => Code::NotFound,
            Self::AlreadyExists { .. } => Code::AlreadyExists,
            Self::FailedPrecondition { .. } => Code::FailedPrecondition,
            Self::Aborted { .. } => Code::Aborted,
            Self::Unauthenticated(_) => Code::Unauthenticated,
            Self::PermissionDenied(_) => Code::PermissionDenied,
            Self::Unavailable(_) => Code::Unavailable,
            Self::DeadlineExceeded(_) => Code::DeadlineExceeded,
            Self::Internal(_) => Code::Internal,
        }
    }

    /// The `ErrorInfo.reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidArgument(_) => "INVALID_ARGUMENT",
            Self::NotFound { .. } => "NOT_FOUND",
            Self::AlreadyExists { reason, .. }
            | Self::FailedPrecondition { reason, .. }
            | Self::Aborted { reason, .. } => reason,
            Self::Unauthenticated(_) => "UNAUTHENTICATED",
            Self::PermissionDenied(_) => "PERMISSION_DENIED",
            Self::Unavailable(_) => "UNAVAILABLE",
            Self::DeadlineExceeded(_) => "NOT_YET_APPLIED",
            Self::Internal(_) => "INTERNAL",
        }
    }

    /// The field violations of an INVALID_ARGUMENT, empty otherwise.
    pub fn field_violations(&self) -> &[FieldViolation] {
        match self {
            Self::InvalidArgument(v) => v,
            _ => &[],
        }
    }

    /// The message a caller may see: never an internal detail.
    pub fn public_message(&self) -> String {
        match self {
            Self::Internal(_) => "internal error; see the server log".to_owned(),
            Self::Unavailable(_) => "service temporarily unavailable; retry later".to_owned(),
            other => other.to_string(),
        }
    }
}

impl From<FieldViolation> for Error {
    fn from(v: FieldViolation) -> Self {
        Self::InvalidArgument(vec![v])
    }
}

impl From<Vec<FieldViolation>> for Error {
    fn from(v: Vec<FieldViolation>) -> Self {
        Self::InvalidArgument(v)
    }
}

/// The canonical name of a status code ("INVALID_ARGUMENT"), as the gRPC spec and
/// other languages' clients spell it; tonic's `Debug` prints "InvalidArgument".
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Violations one answer lists; the rest are counted in a last one.
pub const MAX_VIOLATIONS: usize = 20;
/// Characters of a field path or description, and (times four) of a message. The
/// message and details travel in headers, which clients cap at a few KB: past that a
/// caller would see RESOURCE_EXHAUSTED instead of its mistake.
const MAX_TEXT: usize = 256;

fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

impl From<Error> for Status {
    fn from(mut error: Error) -> Self {
        match &error {
            Error::Internal(detail) => tracing::error!(%detail, "internal error"),
            Error::Unavailable(detail) => tracing::warn!(%detail, "unavailable"),
            _ => {}
        }
        if let Error::InvalidArgument(violations) = &mut error {
            let more = violations.len().saturating_sub(MAX_VIOLATIONS);
            violations.truncate(MAX_VIOLATIONS);
            for v in violations.iter_mut() {
                v.field = cut(&v.field, MAX_TEXT);
                v.description = cut(&v.description, MAX_TEXT);
            }
            if more > 0 {
                violations.push(FieldViolation::new("", format!("and {more} more")));
            }
        }
        let mut details = ErrorDetails::new();
        details.set_error_info(
            error.reason(),
            ERROR_DOMAIN,
            std::collections::HashMap::new(),
        );
        for v in error.field_violations() {
            details.add_bad_request_violation(v.field.clone(), v.description.clone());
        }
        let message = cut(&error.public_message(), 4 * MAX_TEXT);
        Status::with_error_details(error.code(), message, details)
    }
}

/// ABORTED when the caller sent an etag (`given`) and the `what` it names has another
/// one now (AIP-154): it read a version someone has since changed.
pub fn check_etag(current: &str, given: Option<&str>, what: &str) -> Result<(), Error> {
    match given {
        Some(etag) if etag != current => Err(Error::aborted(
            "ETAG_MISMATCH",
            format!(
                "the {what} changed since it was read (etag {etag}, now {current}); read it again"
            ),
        )),
        _ => Ok(()),
    }
}

/// Database errors: unique violations are ALREADY_EXISTS, foreign keys are
/// FAILED_PRECONDITION, pool exhaustion and lost connections are UNAVAILABLE; anything
/// else is INTERNAL. The SQL text stays in the log.
impl From<DbErr> for Error {
    fn from(err: DbErr) -> Self {
        match err.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(detail)) => {
                tracing::debug!(%detail, "unique violation");
                return Error::already_exists(
                    "ALREADY_EXISTS",
                    "a record with the same unique key exists",
                );
            }
            Some(SqlErr::ForeignKeyConstraintViolation(detail)) => {
                tracing::debug!(%detail, "foreign key violation");
                return Error::precondition(
                    "REFERENCED_RECORD_MISSING",
                    "a referenced record does not exist",
                );
            }
            _ => {}
        }
        match &err {
            DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => Error::Unavailable(err.to_string()),
            DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e))
                if is_transient(e) =>
            {
                Error::Unavailable(err.to_string())
            }
            _ => Error::Internal(err.to_string()),
        }
    }
}

fn is_transient(e: &sea_orm::sqlx::Error) -> bool {
    use sea_orm::sqlx::Error as E;
    match e {
        E::PoolTimedOut | E::PoolClosed | E::Io(_) | E::WorkerCrashed => true,
        // PostgreSQL serialization failure / deadlock, SQLite busy: a retry may succeed.
        E::Database(db) => matches!(db.code().as_deref(), Some("40001" | "40P01" | "5" | "6")),
        _ => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_carries_field_violations_and_reason() {
        let status: Status = Error::InvalidArgument(vec![
            FieldViolation::new("customer.display_name", "must not be empty"),
            FieldViolation::new("customer.emails[0]", "not an email address"),
        ])
        .into();
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let bad = details.bad_request().unwrap();
        assert_eq!(bad.field_violations.len(), 2);
        assert_eq!(bad.field_violations[0].field, "customer.display_name");
        assert_eq!(details.error_info().unwrap().reason, "INVALID_ARGUMENT");
        assert!(status.message().contains("customer.emails[0]"));
    }

    #[test]
    fn answers_stay_small_whatever_the_input() {
        let huge = "x".repeat(1_000_000);
        let many: Vec<FieldViolation> = (0..5_000)
            .map(|i| FieldViolation::new(format!("emails[{i}]{huge}"), huge.clone()))
            .collect();
        let status: Status = Error::InvalidArgument(many).into();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status.message().len() <= 4 * MAX_TEXT * 3 + 3,
            "{}",
            status.message().len()
        );
        let details = status.get_error_details();
        let violations = &details.bad_request().unwrap().field_violations;
        assert_eq!(violations.len(), MAX_VIOLATIONS + 1);
        assert_eq!(violations[MAX_VIOLATIONS].description, "and 4980 more");
        assert!(violations[0].field.starts_with("emails[0]x"));
        assert!(
            violations
                .iter()
                .all(|v| v.description.chars().count() <= MAX_TEXT + 1)
        );

        let status: Status = Error::not_found("customer", huge).into();
        assert!(status.message().chars().count() <= 4 * MAX_TEXT + 1);
    }

    #[test]
    fn internal_details_are_not_returned() {
        let status: Status = Error::Internal("SELECT * FROM secrets failed".into()).into();
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("SELECT"));
    }

    #[test]
    fn every_error_has_a_reason() {
        use clientela_domain::FieldViolation;
        // One of each variant: a new variant fails to compile in `code` and `reason`,
        // and its status must carry the same reason here.
        let cases = [
            (
                Error::InvalidArgument(vec![FieldViolation::new("name", "bad")]),
                Code::InvalidArgument,
                "INVALID_ARGUMENT",
            ),
            (
                Error::NotFound {
                    resource: "customer",
                    name: "customers/x".into(),
                },
                Code::NotFound,
                "NOT_FOUND",
            ),
            (
                Error::already_exists("TAX_ID_TAKEN", "taken"),
                Code::AlreadyExists,
                "TAX_ID_TAKEN",
            ),
            (
                Error::DeadlineExceeded("not yet".into()),
                Code::DeadlineExceeded,
                "NOT_YET_APPLIED",
            ),
            (
                Error::precondition("CUSTOMER_ARCHIVED", "archived"),
                Code::FailedPrecondition,
                "CUSTOMER_ARCHIVED",
            ),
            (
                Error::aborted("ETAG_MISMATCH", "stale"),
                Code::Aborted,
                "ETAG_MISMATCH",
            ),
            (
                Error::Unauthenticated("no token".into()),
                Code::Unauthenticated,
                "UNAUTHENTICATED",
            ),
            (
                Error::PermissionDenied("no".into()),
                Code::PermissionDenied,
                "PERMISSION_DENIED",
            ),
            (
                Error::Unavailable("down".into()),
                Code::Unavailable,
                "UNAVAILABLE",
            ),
            (Error::Internal("bug".into()), Code::Internal, "INTERNAL"),
        ];
        for (error, code, reason) in cases {
            assert_eq!(error.reason(), reason);
            let status: Status = error.into();
            assert_eq!(status.code(), code);
            let info = status.get_error_details().error_info().cloned();
            let info = info.unwrap_or_else(|| panic!("{code:?} has no ErrorInfo"));
            assert_eq!(info.reason, reason);
            assert_eq!(info.domain, ERROR_DOMAIN);
        }
    }
}
