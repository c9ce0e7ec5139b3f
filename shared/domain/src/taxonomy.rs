//! The customer taxonomy of the seed documents: every label with its stable code and its
//! Spanish and English display names. Rules that assign labels live in the services.

use serde::{Deserialize, Serialize};

/// A label with a stable code and display names in both languages.
pub trait Labeled: Sized + Copy + 'static {
    /// Every value, in display order.
    const ALL: &'static [Self];
    /// Stable identifier, e.g. "FREQUENT".
    fn code(&self) -> &'static str;
    /// Spanish display name.
    fn label_es(&self) -> &'static str;
    /// English display name.
    fn label_en(&self) -> &'static str;
    /// The value of a code.
    fn from_code(code: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.code() == code)
    }
}

macro_rules! labeled {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $code:literal, $es:literal, $en:literal;)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vdoc])* #[doc = $en] #[serde(rename = $code)] $variant,)+
        }

        impl Labeled for $name {
            const ALL: &'static [Self] = &[$(Self::$variant),+];
            fn code(&self) -> &'static str {
                match self { $(Self::$variant => $code,)+ }
            }
            fn label_es(&self) -> &'static str {
                match self { $(Self::$variant => $es,)+ }
            }
            fn label_en(&self) -> &'static str {
                match self { $(Self::$variant => $en,)+ }
            }
        }
    };
}

labeled!(
    /// Person or organization.
    CustomerKind {
        Person => "PERSON", "Persona", "Person";
        Organization => "ORGANIZATION", "Organización", "Organization";
    }
);

labeled!(
    /// Standing in the registry.
    CustomerStatus {
        Prospect => "PROSPECT", "Prospecto", "Prospect";
        Customer => "CUSTOMER", "Cliente", "Customer";
        Archived => "ARCHIVED", "Archivado", "Archived";
    }
);

labeled!(
    /// Role in the distribution channel (seed 002).
    ChannelRole {
        EndUser => "END_USER", "Cliente finalidad-uso", "End user";
        Intermediary => "INTERMEDIARY", "Intermediario", "Intermediary";
        FinalConsumer => "FINAL_CONSUMER", "Consumidor final", "Final consumer";
    }
);

labeled!(
    /// B2B or B2C (seed 000: high volume is often B2B, mayoristas).
    BusinessKind {
        B2b => "B2B", "Empresa a empresa (B2B)", "Business to business";
        B2c => "B2C", "Empresa a consumidor (B2C)", "Business to consumer";
    }
);

labeled!(
    /// Role in an organization's purchase decisions (influence, seed 000).
    DecisionRole {
        None => "NONE", "Sin rol de decisión", "No decision role";
        Influencer => "INFLUENCER", "Influye en la decisión", "Influencer";
        DecisionMaker => "DECISION_MAKER", "Toma la decisión", "Decision maker";
        Buyer => "BUYER", "Comprador de la organización", "Purchasing agent";
        Household => "HOUSEHOLD", "Decide en su hogar", "Household decision maker";
    }
);

labeled!(
    /// Relationship with the company (seeds 003 and 002).
    LifecycleStage {
        Prospect => "PROSPECT", "Cliente potencial", "Prospect";
        Buyer => "BUYER", "Comprador", "Buyer";
        Sporadic => "SPORADIC", "Cliente esporádico", "Sporadic customer";
        Frequent => "FREQUENT", "Cliente frecuente", "Frequent customer";
        Unconditional => "UNCONDITIONAL", "Cliente incondicional", "Unconditional customer";
    }
);

labeled!(
    /// Frequency and currency of purchase (seeds 000 and 002).
    Activity {
        ActiveFrequent => "ACTIVE_FREQUENT", "Compra frecuente (activo)", "Frequent buyer (active)";
        ActiveHabitual => "ACTIVE_HABITUAL", "Compras habituales (activo)", "Habitual buyer (active)";
        ActiveNew => "ACTIVE_NEW", "Cliente nuevo", "New customer";
        InactiveOneTime => "INACTIVE_ONE_TIME", "Compra única vez (inactivo)", "One-time buyer (inactive)";
        InactiveLapsed => "INACTIVE_LAPSED", "Cliente que dejó de comprar (inactivo)", "Lapsed (inactive)";
    }
);

labeled!(
    /// Satisfaction (seeds 000 and 001).
    Satisfaction {
        VerySatisfied => "VERY_SATISFIED", "Muy satisfecho", "Very satisfied";
        Satisfied => "SATISFIED", "Satisfecho", "Satisfied";
        Dissatisfied => "DISSATISFIED", "Insatisfecho", "Dissatisfied";
    }
);

labeled!(
    /// Purchase volume (seed 000).
    Volume {
        High => "HIGH", "Alto volumen", "High volume";
        Medium => "MEDIUM", "Volumen medio", "Medium volume";
        Low => "LOW", "Bajo volumen", "Low volume";
    }
);

labeled!(
    /// Influence (seeds 000 and 001).
    Influence {
        MajorInfluencer => "MAJOR_INFLUENCER", "Gran influyente", "Major influencer";
        Organizational => "ORGANIZATIONAL", "Influencia organizativa", "Organizational influence";
        Family => "FAMILY", "Influencia familiar", "Family influence";
        None => "NONE", "Sin influencia", "No influence";
    }
);

labeled!(
    /// Weight in the business (seed 004).
    AccountTier {
        Boss => "BOSS", "Cliente jefe", "Boss account";
        Key => "KEY", "Cliente clave", "Key account";
        Strategic => "STRATEGIC", "Cliente estratégico", "Strategic account";
        Small => "SMALL", "Cliente pequeño", "Small account";
        Transactional => "TRANSACTIONAL", "Cliente transaccional", "Transactional account";
        Regular => "REGULAR", "Cliente regular", "Regular account";
        Prospect => "PROSPECT", "Cliente potencial", "Prospect";
    }
);

labeled!(
    /// Behaviour traits (seed 001); a customer has zero or more.
    Trait {
        Loyal => "LOYAL", "Leal", "Loyal";
        Occasional => "OCCASIONAL", "Ocasional", "Occasional";
        Demanding => "DEMANDING", "Exigente", "Demanding";
        Dissatisfied => "DISSATISFIED", "Insatisfecho", "Dissatisfied";
        Influential => "INFLUENTIAL", "Influyente", "Influential";
        PriceSensitive => "PRICE_SENSITIVE", "Precio-sensible", "Price-sensitive";
        Prospect => "PROSPECT", "Potencial", "Prospect";
    }
);

labeled!(
    /// The named RFM segments (recency × frequency scores), beyond the seed documents.
    RfmSegment {
        Champions => "CHAMPIONS", "Campeones", "Champions";
        Loyal => "LOYAL", "Leales", "Loyal";
        PotentialLoyalist => "POTENTIAL_LOYALIST", "Leales en potencia", "Potential loyalist";
        New => "NEW", "Nuevos", "New";
        Promising => "PROMISING", "Prometedores", "Promising";
        NeedAttention => "NEED_ATTENTION", "Requieren atención", "Need attention";
        AboutToSleep => "ABOUT_TO_SLEEP", "A punto de dormirse", "About to sleep";
        AtRisk => "AT_RISK", "En riesgo", "At risk";
        CannotLoseThem => "CANNOT_LOSE_THEM", "No podemos perderlos", "Cannot lose them";
        Hibernating => "HIBERNATING", "Hibernando", "Hibernating";
        Lost => "LOST", "Perdidos", "Lost";
    }
);

labeled!(
    /// Kind of satisfaction survey.
    SurveyKind {
        Nps => "NPS", "Net Promoter Score (0-10)", "Net Promoter Score (0-10)";
        Csat => "CSAT", "Satisfacción (1-5)", "Customer satisfaction (1-5)";
    }
);

labeled!(
    /// Where a purchase was made.
    SalesChannel {
        Store => "STORE", "Tienda", "Store";
        Online => "ONLINE", "En línea", "Online";
        Phone => "PHONE", "Teléfono", "Phone";
        SalesRep => "SALES_REP", "Vendedor", "Sales representative";
        Distributor => "DISTRIBUTOR", "Distribuidor", "Distributor";
        Other => "OTHER", "Otro", "Other";
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trips<T: Labeled + PartialEq + std::fmt::Debug>() {
        let mut codes = std::collections::HashSet::new();
        for v in T::ALL {
            assert_eq!(T::from_code(v.code()), Some(*v));
            assert!(codes.insert(v.code()), "duplicate code {}", v.code());
            assert!(!v.label_es().is_empty() && !v.label_en().is_empty());
        }
        assert_eq!(T::from_code("NOT_A_CODE"), None);
    }

    #[test]
    fn every_label_round_trips_with_unique_codes_and_both_names() {
        round_trips::<RfmSegment>();
        round_trips::<CustomerKind>();
        round_trips::<CustomerStatus>();
        round_trips::<ChannelRole>();
        round_trips::<BusinessKind>();
        round_trips::<DecisionRole>();
        round_trips::<LifecycleStage>();
        round_trips::<Activity>();
        round_trips::<Satisfaction>();
        round_trips::<Volume>();
        round_trips::<Influence>();
        round_trips::<AccountTier>();
        round_trips::<Trait>();
        round_trips::<SurveyKind>();
        round_trips::<SalesChannel>();
    }

    #[test]
    fn labels_follow_the_seeds() {
        // Seed 003: "Cliente Incondicional"; seed 004: "Clientes Jefes".
        assert_eq!(
            LifecycleStage::Unconditional.label_es(),
            "Cliente incondicional"
        );
        assert_eq!(AccountTier::Boss.label_es(), "Cliente jefe");
        assert_eq!(Trait::PriceSensitive.code(), "PRICE_SENSITIVE");
        assert_eq!(
            serde_json::to_string(&Activity::InactiveLapsed)
                .ok()
                .as_deref(),
            Some("\"INACTIVE_LAPSED\"")
        );
    }
}
