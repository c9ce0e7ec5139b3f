//! What a classification is made of: the dimensions, a decided label with the rule and
//! the observed values behind it, and the whole result for one customer.

use std::borrow::Cow;

use clientela_domain::Labeled;
use clientela_domain::taxonomy::{
    AccountTier, Activity, Influence, LifecycleStage, RfmSegment, Satisfaction, Trait, Volume,
};
use serde::{Deserialize, Serialize};

/// A dimension customers are sorted along.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    /// Relationship with the company.
    LifecycleStage,
    /// Frequency and currency of purchase.
    Activity,
    Satisfaction,
    /// Purchase volume.
    Volume,
    Influence,
    /// Weight in the business.
    AccountTier,
    /// Behaviour traits (a set).
    Trait,
    /// The named RFM segment.
    RfmSegment,
}

impl Dimension {
    /// Every dimension, in display order.
    pub const ALL: [Dimension; 8] = [
        Self::LifecycleStage,
        Self::Activity,
        Self::Satisfaction,
        Self::Volume,
        Self::Influence,
        Self::AccountTier,
        Self::Trait,
        Self::RfmSegment,
    ];

    /// The name used in filters and files, e.g. "lifecycle_stage".
    pub fn name(self) -> &'static str {
        match self {
            Self::LifecycleStage => "lifecycle_stage",
            Self::Activity => "activity",
            Self::Satisfaction => "satisfaction",
            Self::Volume => "volume",
            Self::Influence => "influence",
            Self::AccountTier => "account_tier",
            Self::Trait => "trait",
            Self::RfmSegment => "rfm_segment",
        }
    }

    /// The dimension of a name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.name() == name)
    }

    /// The label codes of the dimension, in display order, with their names (es, en).
    pub fn labels(self) -> Vec<(&'static str, &'static str, &'static str)> {
        fn all<L: Labeled>() -> Vec<(&'static str, &'static str, &'static str)> {
            L::ALL
                .iter()
                .map(|l| (l.code(), l.label_es(), l.label_en()))
                .collect()
        }
        match self {
            Self::LifecycleStage => all::<LifecycleStage>(),
            Self::Activity => all::<Activity>(),
            Self::Satisfaction => all::<Satisfaction>(),
            Self::Volume => all::<Volume>(),
            Self::Influence => all::<Influence>(),
            Self::AccountTier => all::<AccountTier>(),
            Self::Trait => all::<Trait>(),
            Self::RfmSegment => all::<RfmSegment>(),
        }
    }

    /// Whether `code` is a label of the dimension.
    pub fn has_label(self, code: &str) -> bool {
        self.labels().iter().any(|(c, _, _)| *c == code)
    }

    /// The display names (es, en) of one of the dimension's labels.
    pub fn names_of(self, code: &str) -> Option<(&'static str, &'static str)> {
        self.labels()
            .into_iter()
            .find(|(c, _, _)| *c == code)
            .map(|(_, es, en)| (es, en))
    }
}

/// An observed input against the threshold it was compared with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    /// The input, e.g. "purchases_in_window".
    pub feature: String,
    /// Its value, as text.
    pub observed: String,
    /// The comparison, e.g. ">=".
    pub comparison: String,
    /// The threshold, as text.
    pub threshold: String,
}

impl Observation {
    pub fn new(
        feature: &str,
        observed: impl ToString,
        comparison: &str,
        threshold: impl ToString,
    ) -> Self {
        Self {
            feature: feature.to_owned(),
            observed: observed.to_string(),
            comparison: comparison.to_owned(),
            threshold: threshold.to_string(),
        }
    }
}

/// A decided label of one dimension (`None`: the inputs allow none), with why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision<L> {
    pub label: Option<L>,
    /// The rule that decided it, e.g. "lifecycle.frequent".
    pub rule: Cow<'static, str>,
    /// For people, in English ("" when the rules were not asked to explain).
    pub explanation_en: String,
    /// For people, in Spanish.
    pub explanation_es: String,
    /// The values the rule compared.
    pub observations: Vec<Observation>,
}

impl<L: Labeled> Decision<L> {
    /// A decision: the explanation starts with the label's code.
    pub fn new(
        label: Option<L>,
        rule: &'static str,
        en: impl Into<String>,
        es: impl Into<String>,
        observations: Vec<Observation>,
    ) -> Self {
        let code = label.map_or("UNSPECIFIED", |l| l.code());
        Self {
            label,
            rule: Cow::Borrowed(rule),
            explanation_en: format!("{code}: {}", en.into()),
            explanation_es: format!("{code}: {}", es.into()),
            observations,
        }
    }

    /// A decision without its explanation and observations.
    pub fn unexplained(label: Option<L>, rule: &'static str) -> Self {
        Self {
            label,
            rule: Cow::Borrowed(rule),
            explanation_en: String::new(),
            explanation_es: String::new(),
            observations: Vec::new(),
        }
    }

    /// The label's code, if any.
    pub fn code(&self) -> Option<&'static str> {
        self.label.map(|l| l.code())
    }
}

/// RFM quintile scores (1-5, 5 best; 0 without purchases) and the named segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rfm {
    pub recency: u8,
    pub frequency: u8,
    pub monetary: u8,
    /// The segment of (recency, frequency).
    pub segment: Decision<RfmSegment>,
}

/// Everything the rules decide for one customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Labels {
    /// Relationship with the company.
    pub lifecycle_stage: Decision<LifecycleStage>,
    /// Frequency and currency of purchase.
    pub activity: Decision<Activity>,
    pub satisfaction: Decision<Satisfaction>,
    /// Purchase volume.
    pub volume: Decision<Volume>,
    pub influence: Decision<Influence>,
    /// Weight in the business.
    pub account_tier: Decision<AccountTier>,
    /// Behaviour traits, in taxonomy order.
    pub traits: Vec<Decision<Trait>>,
    /// RFM scores and segment.
    pub rfm: Rfm,
}

impl Labels {
    /// The label code of each single-label dimension (None: unspecified).
    pub fn codes(&self) -> Vec<(Dimension, Option<&'static str>)> {
        vec![
            (Dimension::LifecycleStage, self.lifecycle_stage.code()),
            (Dimension::Activity, self.activity.code()),
            (Dimension::Satisfaction, self.satisfaction.code()),
            (Dimension::Volume, self.volume.code()),
            (Dimension::Influence, self.influence.code()),
            (Dimension::AccountTier, self.account_tier.code()),
            (Dimension::RfmSegment, self.rfm.segment.code()),
        ]
    }

    /// The trait codes, in taxonomy order.
    pub fn trait_codes(&self) -> Vec<&'static str> {
        self.traits.iter().filter_map(Decision::code).collect()
    }

    /// Whether the customer has `code` in `dimension`.
    pub fn has(&self, dimension: Dimension, code: &str) -> bool {
        match dimension {
            Dimension::Trait => self.trait_codes().contains(&code),
            _ => self
                .codes()
                .iter()
                .any(|(d, c)| *d == dimension && *c == Some(code)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dimensions_round_trip_by_name_and_know_their_labels() {
        for d in Dimension::ALL {
            assert_eq!(Dimension::from_name(d.name()), Some(d));
            assert!(!d.labels().is_empty());
        }
        assert_eq!(Dimension::from_name("tier"), None);
        assert!(Dimension::LifecycleStage.has_label("UNCONDITIONAL"));
        assert!(!Dimension::LifecycleStage.has_label("LOYAL"));
        assert!(Dimension::Trait.has_label("LOYAL"));
        assert_eq!(
            Dimension::AccountTier.names_of("BOSS"),
            Some(("Cliente jefe", "Boss account"))
        );
    }
}
