//! Typed identifiers: a customer id cannot be passed where a purchase id is expected.
//! UUID v7, so ids sort by creation time and index well.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

/// An id that is not a UUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid id")]
pub struct IdError;

macro_rules! id_type {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A new, time-ordered id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// Wraps a stored UUID.
            pub fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Uuid::parse_str(s).map(Self).map_err(|_| IdError)
            }
        }
    )*};
}

id_type!(
    CustomerId,
    PurchaseId,
    ReturnId,
    /// A survey answer.
    SurveyId,
    ComplaintId,
    ReferralId,
    /// A feed event.
    EventId,
);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_sort_by_creation() {
        let a = CustomerId::new();
        let b = CustomerId::new();
        assert!(a < b);
        assert_eq!(a.to_string().parse::<CustomerId>().unwrap(), a);
        assert_eq!("nope".parse::<PurchaseId>(), Err(IdError));
        assert_eq!(IdError.to_string(), "not a valid id");
    }

    #[test]
    fn ids_are_v7_hyphenated_and_serialize_as_plain_uuids() {
        let id = EventId::default();
        assert_eq!(id.as_uuid().get_version_num(), 7);
        let text = id.to_string();
        assert_eq!(text, id.as_uuid().hyphenated().to_string());
        assert_eq!(text.len(), 36);
        assert!(!text.chars().any(|c| c.is_ascii_uppercase()));
        let uuid = Uuid::parse_str("0190A1B2-C3D4-7E5F-8A6B-7C8D9E0F1A2B").unwrap();
        let survey = SurveyId::from_uuid(uuid);
        assert_eq!(survey.to_string(), "0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b");
        assert_eq!(
            serde_json::to_string(&survey).unwrap(),
            "\"0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b\""
        );
        let back: SurveyId =
            serde_json::from_str(&serde_json::to_string(&survey).unwrap()).unwrap();
        assert_eq!(back, survey);
    }
}
