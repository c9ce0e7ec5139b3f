//! Bearer-token authentication and per-method role checks, as a tower layer in front of
//! every gRPC service. Health and reflection stay open so probes and grpcurl work.

use std::collections::HashMap;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{BoxFuture, FutureExt};
use tower::{Layer, Service};

use crate::error::Error;
use crate::settings::AuthSettings;

/// What a caller is allowed to be.
// Parsed by hand from the settings' string rather than by serde, so that an unknown role
// is named together with the token it was given to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Admin,
    /// Reads and day-to-day writes.
    Sales,
    /// Another internal service: reads, writes and bulk operations.
    Service,
    /// Reads only.
    Readonly,
}

impl Role {
    const ALL: [Role; 4] = [Role::Admin, Role::Sales, Role::Service, Role::Readonly];

    /// The name in the settings: "admin", "sales", "service", "readonly".
    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Sales => "sales",
            Role::Service => "service",
            Role::Readonly => "readonly",
        }
    }

    /// The role of a settings name, in any case.
    pub fn parse(name: &str) -> Option<Role> {
        Self::ALL
            .into_iter()
            .find(|r| r.name().eq_ignore_ascii_case(name.trim()))
    }
}

/// What a method does, which decides the roles that may call it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Get, List, Watch, Export...: every role.
    Read,
    /// Ordinary writes: admin, sales, service.
    Write,
    /// Merges, restores, imports, policy changes: admin and service.
    Admin,
}

impl Access {
    /// Whether `role` may perform this access.
    pub fn allows(self, role: Role) -> bool {
        match self {
            Access::Read => true,
            Access::Write => matches!(role, Role::Admin | Role::Sales | Role::Service),
            Access::Admin => matches!(role, Role::Admin | Role::Service),
        }
    }
}

/// A service's table of method (the last path segment, e.g. `GetCustomer`) to access.
/// Every method of the service's proto must have a rule: [`App::add_service`] refuses a
/// table that misses one (see [`methods_without_rule`]). A call to a method no table
/// knows is refused to everyone but admin.
///
/// [`App::add_service`]: crate::App::add_service
pub type MethodTable = fn(&str) -> Option<Access>;

/// The gRPC services of Clientela's own packages (`clientela.`) in the descriptor set
/// that reflection serves, by full name, each with its methods.
pub fn described_services() -> Vec<(String, Vec<String>)> {
    use prost::Message as _;
    let Ok(set) = prost_types::FileDescriptorSet::decode(clientela_proto::FILE_DESCRIPTOR_SET)
    else {
        return Vec::new();
    };
    set.file
        .iter()
        .filter(|f| f.package().starts_with("clientela."))
        .flat_map(|f| {
            f.service.iter().map(move |s| {
                (
                    format!("{}.{}", f.package(), s.name()),
                    s.method.iter().map(|m| m.name().to_owned()).collect(),
                )
            })
        })
        .collect()
}

/// The methods of `service` (a full name) in the descriptor set for which `table` has
/// no rule; all of them when the descriptor set has no such service.
pub fn methods_without_rule(service: &str, table: MethodTable) -> Vec<String> {
    match described_services()
        .into_iter()
        .find(|(name, _)| name == service)
    {
        Some((_, methods)) => methods.into_iter().filter(|m| table(m).is_none()).collect(),
        None => vec![format!("{service} (not in the descriptor set)")],
    }
}

/// The auth layer's state, shared by every connection.
#[derive(Clone)]
pub struct Authenticator {
    tokens: Arc<HashMap<String, (String, Role)>>,
    tables: Arc<HashMap<String, MethodTable>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("tokens", &self.tokens.len())
            .field("services", &self.tables.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Paths that never need a token.
fn is_open(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/") || path.starts_with("/grpc.reflection.")
}

impl Authenticator {
    /// Reads the configured tokens (secrets from the environment or files).
    pub fn from_settings(settings: &AuthSettings) -> Result<Self, String> {
        let mut tokens = HashMap::new();
        for (name, token) in &settings.tokens {
            let secret = match (&token.secret, &token.secret_file) {
                (Some(s), None) => s.expose().trim().to_owned(),
                (None, Some(path)) => std::fs::read_to_string(path)
                    .map_err(|e| format!("auth token {name}: cannot read {}: {e}", path.display()))?
                    .trim()
                    .to_owned(),
                _ => {
                    return Err(format!(
                        "auth token {name}: set exactly one of secret and secret_file"
                    ));
                }
            };
            let role = Role::parse(&token.role).ok_or_else(|| {
                let roles: Vec<&str> = Role::ALL.iter().map(|r| r.name()).collect();
                format!(
                    "auth token {name}: unknown role {:?}; the roles are {}",
                    token.role,
                    roles.join(", ")
                )
            })?;
            if secret.len() < 16 {
                return Err(format!(
                    "auth token {name}: a token needs at least 16 characters"
                ));
            }
            tokens.insert(secret, (name.clone(), role));
        }
        Ok(Self {
            tokens: Arc::new(tokens),
            tables: Arc::new(HashMap::new()),
        })
    }

    /// True when no token is configured: every call is accepted.
    pub fn is_disabled(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Registers the method table of one gRPC service (`clientela.registry.v1.CustomerRegistryService`).
    pub fn with_service(mut self, service: &str, table: MethodTable) -> Self {
        Arc::make_mut(&mut self.tables).insert(service.to_owned(), table);
        self
    }

    /// Decides one call: `Ok(Some(caller))` names the token's owner and role, `Ok(None)`
    /// is an open path or auth turned off.
    pub fn check(&self, path: &str, authorization: Option<&str>) -> Result<Option<Caller>, Error> {
        if is_open(path) || self.is_disabled() {
            return Ok(None);
        }
        // The scheme's name is case-insensitive (RFC 7235 §2.1): "BEARER x" is a bearer token.
        let token = authorization
            .and_then(|h| h.trim_start().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or_else(|| {
                Error::Unauthenticated(
                    "missing bearer token (authorization: Bearer <token>)".into(),
                )
            })?;
        let (owner, role) = self
            .tokens
            .get(token)
            .ok_or_else(|| Error::Unauthenticated("unknown bearer token".into()))?;
        let (service, method) = split_path(path);
        let access = self.tables.get(service).and_then(|table| table(method));
        let allowed = match access {
            Some(access) => access.allows(*role),
            None => *role == Role::Admin,
        };
        if allowed {
            Ok(Some(Caller {
                name: owner.clone(),
                role: *role,
            }))
        } else {
            Err(Error::PermissionDenied(format!(
                "role {role:?} may not call {method}"
            )))
        }
    }
}

/// Who is calling: the name of the token (`auth.tokens.NAME`) and its role. In a
/// handler, `request.extensions().get::<Caller>()`; None when auth is off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

/// Splits "/pkg.Service/Method" into ("pkg.Service", "Method").
pub fn split_path(path: &str) -> (&str, &str) {
    let trimmed = path.trim_start_matches('/');
    trimmed.split_once('/').unwrap_or((trimmed, ""))
}

/// Tower layer that runs [`Authenticator::check`] before the service.
#[derive(Clone, Debug)]
pub struct AuthLayer(pub Authenticator);

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            auth: self.0.clone(),
        }
    }
}

/// See [`AuthLayer`].
#[derive(Clone, Debug)]
pub struct AuthService<S> {
    inner: S,
    auth: Authenticator,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for AuthService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let header = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        match self.auth.check(req.uri().path(), header) {
            Ok(owner) => {
                let mut req = req;
                if let Some(owner) = owner {
                    tracing::Span::current().record("caller", owner.name.as_str());
                    // Handlers that scope what a caller sees (a sales token is one seller)
                    // read it from the request's extensions.
                    req.extensions_mut().insert(owner);
                }
                // Take the service that was polled ready, leave a fresh clone behind.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                inner.call(req).boxed()
            }
            Err(error) => {
                let status = tonic::Status::from(error);
                let response = status.into_http::<ResBody>();
                futures::future::ready(Ok(response)).boxed()
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::settings::{Secret, TokenSettings};

    fn table(method: &str) -> Option<Access> {
        match method {
            "GetCustomer" => Some(Access::Read),
            "CreateCustomer" => Some(Access::Write),
            "MergeCustomers" => Some(Access::Admin),
            _ => None,
        }
    }

    fn auth() -> Authenticator {
        let mut settings = AuthSettings::default();
        for (name, role) in [
            ("ops", Role::Admin),
            ("ana", Role::Sales),
            ("bi", Role::Readonly),
        ] {
            settings.tokens.insert(
                name.into(),
                TokenSettings {
                    role: role.name().to_owned(),
                    secret: Some(Secret::new(format!("{name}-token-0123456789"))),
                    secret_file: None,
                },
            );
        }
        Authenticator::from_settings(&settings)
            .unwrap()
            .with_service("x.v1.S", table)
    }

    #[test]
    fn roles_are_checked_per_method() {
        let a = auth();
        let bearer = |n: &str| format!("Bearer {n}-token-0123456789");
        assert_eq!(
            a.check("/x.v1.S/GetCustomer", Some(&bearer("bi")))
                .unwrap()
                .map(|c| (c.name, c.role)),
            Some(("bi".to_owned(), Role::Readonly))
        );
        assert!(matches!(
            a.check("/x.v1.S/CreateCustomer", Some(&bearer("bi"))),
            Err(Error::PermissionDenied(_))
        ));
        assert!(
            a.check("/x.v1.S/CreateCustomer", Some(&bearer("ana")))
                .is_ok()
        );
        assert!(matches!(
            a.check("/x.v1.S/MergeCustomers", Some(&bearer("ana"))),
            Err(Error::PermissionDenied(_))
        ));
        assert!(
            a.check("/x.v1.S/MergeCustomers", Some(&bearer("ops")))
                .is_ok()
        );
        for scheme in ["bearer", "BEARER", "bEaReR"] {
            let header = format!("{scheme} ana-token-0123456789");
            assert!(
                a.check("/x.v1.S/CreateCustomer", Some(&header)).is_ok(),
                "{scheme}"
            );
        }
        assert!(matches!(
            a.check("/x.v1.S/GetCustomer", Some("Basic ana-token-0123456789")),
            Err(Error::Unauthenticated(_))
        ));
        // A method nobody classified: admin only.
        assert!(a.check("/x.v1.S/Unlisted", Some(&bearer("ana"))).is_err());
        assert!(a.check("/x.v1.S/Unlisted", Some(&bearer("ops"))).is_ok());
    }

    #[test]
    fn missing_or_unknown_tokens_are_unauthenticated_but_health_is_open() {
        let a = auth();
        assert!(matches!(
            a.check("/x.v1.S/GetCustomer", None),
            Err(Error::Unauthenticated(_))
        ));
        assert!(matches!(
            a.check("/x.v1.S/GetCustomer", Some("Bearer nope")),
            Err(Error::Unauthenticated(_))
        ));
        assert!(a.check("/grpc.health.v1.Health/Check", None).is_ok());
        assert!(
            a.check(
                "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                None
            )
            .is_ok()
        );
    }

    #[test]
    fn short_tokens_are_refused_at_start() {
        let mut settings = AuthSettings::default();
        settings.tokens.insert(
            "weak".into(),
            TokenSettings {
                role: "admin".into(),
                secret: Some(Secret::new("1234")),
                secret_file: None,
            },
        );
        assert!(Authenticator::from_settings(&settings).is_err());
    }

    #[test]
    fn an_unknown_role_is_named_with_its_token() {
        let mut settings = AuthSettings::default();
        settings.tokens.insert(
            "etl".into(),
            TokenSettings {
                role: "superuser".into(),
                secret: Some(Secret::new("etl-token-0123456789")),
                secret_file: None,
            },
        );
        let error = Authenticator::from_settings(&settings).unwrap_err();
        assert!(
            error.contains("etl") && error.contains("\"superuser\""),
            "{error}"
        );
        assert!(error.contains("admin, sales, service, readonly"), "{error}");
        assert_eq!(Role::parse(" ReadOnly "), Some(Role::Readonly));
    }
}
