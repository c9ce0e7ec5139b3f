//! The registry's wire enums and the domain's, mapped once for every service that reads
//! them (the registry writes them; the classification engine, territory and loyalty read
//! them from the feed). Each map matches every variant on both sides, so a variant added
//! to a proto or to the domain does not compile until it is mapped here.

use clientela_domain::taxonomy as domain;

use crate::clientela::registry::v1 as wire;

macro_rules! enum_map {
    ($(#[$doc:meta])* $name:ident: $from:ident, $to:ident { $($variant:ident),+ $(,)? }) => {
        $(#[$doc])*
        /// The domain value of a wire number: `Ok(None)` for UNSPECIFIED, `Err` with the
        /// number when this build does not know it.
        pub fn $from(value: i32) -> Result<Option<domain::$name>, i32> {
            match wire::$name::try_from(value) {
                Ok(wire::$name::Unspecified) => Ok(None),
                $(Ok(wire::$name::$variant) => Ok(Some(domain::$name::$variant)),)+
                Err(_) => Err(value),
            }
        }

        $(#[$doc])*
        /// The wire value of a domain value; UNSPECIFIED for none.
        pub fn $to(value: Option<domain::$name>) -> wire::$name {
            match value {
                None => wire::$name::Unspecified,
                $(Some(domain::$name::$variant) => wire::$name::$variant,)+
            }
        }
    };
}

enum_map!(
    /// Person or organization.
    CustomerKind: customer_kind_from, customer_kind_to { Person, Organization }
);
enum_map!(
    /// Role in the distribution channel.
    ChannelRole: channel_role_from, channel_role_to { EndUser, Intermediary, FinalConsumer }
);
enum_map!(
    /// B2B or B2C.
    BusinessKind: business_kind_from, business_kind_to { B2b, B2c }
);
enum_map!(
    /// Role in an organization's purchase decisions.
    DecisionRole: decision_role_from, decision_role_to { None, Influencer, DecisionMaker, Buyer, Household }
);
enum_map!(
    /// Where a purchase was made.
    SalesChannel: sales_channel_from, sales_channel_to {
        Store, Online, Phone, SalesRep, Distributor, Other,
    }
);
enum_map!(
    /// NPS or CSAT.
    SurveyKind: survey_kind_from, survey_kind_to { Nps, Csat }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mapped_value_round_trips_and_unknown_numbers_are_refused() {
        for kind in [domain::SalesChannel::Store, domain::SalesChannel::Other] {
            assert_eq!(
                sales_channel_from(sales_channel_to(Some(kind)) as i32),
                Ok(Some(kind))
            );
        }
        assert_eq!(decision_role_from(0), Ok(None));
        assert_eq!(decision_role_to(None), wire::DecisionRole::Unspecified);
        assert_eq!(
            decision_role_from(wire::DecisionRole::Buyer as i32),
            Ok(Some(domain::DecisionRole::Buyer))
        );
        assert_eq!(customer_kind_from(99), Err(99));
        assert_eq!(survey_kind_from(-1), Err(-1));
    }
}
