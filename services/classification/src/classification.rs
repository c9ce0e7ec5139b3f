//! A customer's classification: the labels the rules decided from the facts at an
//! instant, under a policy version and the population's cut-offs, and the label changes
//! between two classifications.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use clientela_domain::taxonomy::CustomerKind;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::facts::{CustomerFacts, Features};
use crate::labels::{Dimension, Labels};
use crate::policy::Policy;
use crate::population::PopulationSnapshot;
use crate::revenue::share_bp;
use crate::rules::{Context, classify};

/// One customer's classification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Classification {
    pub customer: Uuid,
    /// The policy version.
    pub policy_version: i64,
    pub as_of: DateTime<Utc>,
    /// Region of the address.
    pub region: String,
    /// The labels and why.
    pub labels: Labels,
    pub features: Features,
    /// Revenue in the window over the company's, basis points.
    pub share_of_sales_bp: i64,
    /// The company's revenue in the window it was measured against (policy currency).
    #[serde(default)]
    pub company_revenue: i64,
    /// The population its population-relative labels rest on (None: none was computed
    /// yet, and those labels are unspecified).
    #[serde(default)]
    pub population: Option<PopulationRef>,
}

/// Which population a classification rests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PopulationRef {
    /// Its number, from 1.
    pub id: i64,
    /// The instant it was computed at.
    pub as_of: DateTime<Utc>,
    /// The policy version it was computed under.
    pub policy_version: i64,
}

/// Everything the rules read of one customer at an instant besides the policy and the
/// population. A classification is stored as these and its label codes: the rules are a
/// pure function of them, so the explanations are rendered again when it is read, and a
/// stored result is a tenth of its rendered size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inputs {
    /// Person or organization.
    pub kind: CustomerKind,
    /// The registry flags high expectations.
    pub high_expectations: bool,
    /// The registry flags a key account.
    pub key_account: bool,
    /// The features at the instant.
    pub features: Features,
    /// Purchases in the window in other currencies than the policy's, left out of
    /// revenue (the explanations name them).
    pub left_out: Vec<LeftOut>,
}

/// Purchases in the window in one currency other than the policy's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeftOut {
    pub currency_code: String,
    /// How many.
    pub purchases: i64,
    /// Their net amount, minor units of that currency.
    pub amount_minor: i64,
}

/// [`Inputs`] as format 1 stored them, before `left_out`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputsV1 {
    pub kind: CustomerKind,
    pub high_expectations: bool,
    pub key_account: bool,
    pub features: Features,
}

impl From<InputsV1> for Inputs {
    fn from(v1: InputsV1) -> Self {
        Self {
            kind: v1.kind,
            high_expectations: v1.high_expectations,
            key_account: v1.key_account,
            features: v1.features,
            left_out: Vec::new(),
        }
    }
}

/// The policy, its version, the population and the instant of a classification run.
pub struct Run<'a> {
    pub policy: &'a Policy,
    /// Its version.
    pub policy_version: i64,
    /// The population's cut-offs (None: none computed yet).
    pub population: Option<&'a PopulationSnapshot>,
    /// The stored population's id (0: none stored, or not stored).
    pub population_id: i64,
    /// The company's revenue in the window at `as_of`, the denominator of the shares.
    pub company_revenue: i64,
    pub as_of: DateTime<Utc>,
}

impl Run<'_> {
    /// The label codes of `facts` and the inputs they were decided on (None for archived
    /// and merged customers), without explanations: what is stored, compared and
    /// counted. `first_purchases` holds when the customers it referred first bought.
    pub fn classify(
        &self,
        facts: &CustomerFacts,
        first_purchases: &HashMap<Uuid, DateTime<Utc>>,
    ) -> Option<(Codes, Inputs)> {
        if !facts.is_live() {
            return None;
        }
        let inputs = Inputs {
            kind: facts.kind,
            high_expectations: facts.high_expectations,
            key_account: facts.key_account,
            features: facts.features(self.as_of, self.policy, &|id| {
                first_purchases.get(&id).copied()
            }),
            left_out: facts.left_out(self.as_of, self.policy),
        };
        let labels = classify(&inputs.features, &self.context(facts.id, &inputs, false));
        Some((Codes::of(&labels), inputs))
    }

    fn context<'b>(&'b self, customer: Uuid, inputs: &'b Inputs, explain: bool) -> Context<'b> {
        Context {
            id: customer,
            kind: inputs.kind,
            high_expectations: inputs.high_expectations,
            key_account: inputs.key_account,
            as_of: self.as_of,
            policy: self.policy,
            population: self.population.map(|p| &p.population),
            company_revenue: self.company_revenue,
            left_out: &inputs.left_out,
            explain,
        }
    }

    /// The classification of `customer` from its inputs, with the explanations.
    pub fn render(&self, customer: Uuid, region: &str, inputs: &Inputs) -> Classification {
        let features = &inputs.features;
        let labels = classify(features, &self.context(customer, inputs, true));
        Classification {
            customer,
            policy_version: self.policy_version,
            as_of: self.as_of,
            region: region.to_owned(),
            labels,
            features: features.clone(),
            share_of_sales_bp: share_bp(features.revenue_in_window, self.company_revenue),
            company_revenue: self.company_revenue,
            population: self.population.map(|p| PopulationRef {
                id: self.population_id,
                as_of: p.as_of,
                policy_version: p.policy_version,
            }),
        }
    }
}

/// The label codes of a classification: what is stored in columns, filtered on, and
/// compared to record label changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codes {
    /// One per dimension of [`Codes::DIMENSIONS`], in that order ("": none).
    pub labels: [Cow<'static, str>; 7],
    /// The trait codes.
    pub traits: BTreeSet<Cow<'static, str>>,
}

/// Every label code of each dimension (in [`Dimension::ALL`] order), to read codes from
/// the database without allocating.
static KNOWN_CODES: LazyLock<Vec<HashSet<&'static str>>> = LazyLock::new(|| {
    Dimension::ALL
        .iter()
        .map(|d| d.labels().into_iter().map(|(code, _, _)| code).collect())
        .collect()
});

/// `code` of `dimension`, borrowed when it is a known code (always, but for a code an
/// older or newer taxonomy wrote).
fn known(dimension: Dimension, code: &str) -> Cow<'static, str> {
    let i = Dimension::ALL.iter().position(|d| *d == dimension);
    match i.and_then(|i| KNOWN_CODES[i].get(code)) {
        Some(code) => Cow::Borrowed(code),
        None => Cow::Owned(code.to_owned()),
    }
}

impl Codes {
    /// The single-label dimensions, in the order of [`Labels::codes`].
    pub const DIMENSIONS: [Dimension; 7] = [
        Dimension::LifecycleStage,
        Dimension::Activity,
        Dimension::Satisfaction,
        Dimension::Volume,
        Dimension::Influence,
        Dimension::AccountTier,
        Dimension::RfmSegment,
    ];

    /// The codes of `labels`.
    pub fn of(labels: &Labels) -> Self {
        let codes = labels.codes();
        Self {
            labels: std::array::from_fn(|i| Cow::Borrowed(codes[i].1.unwrap_or(""))),
            traits: labels
                .trait_codes()
                .into_iter()
                .map(Cow::Borrowed)
                .collect(),
        }
    }

    /// Codes as stored: one per dimension, and the traits.
    pub fn read<'a>(labels: [&str; 7], traits: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            labels: std::array::from_fn(|i| known(Self::DIMENSIONS[i], labels[i])),
            traits: traits
                .into_iter()
                .map(|t| known(Dimension::Trait, t))
                .collect(),
        }
    }

    /// Whether the customer has `code` in `dimension`.
    pub fn has(&self, dimension: Dimension, code: &str) -> bool {
        match Self::DIMENSIONS.iter().position(|d| *d == dimension) {
            Some(i) => self.labels[i] == code,
            None => self.traits.contains(code),
        }
    }
}

/// The label changes from `old` to `new` (either absent: no classification), one per
/// single-label dimension that changed and one per trait gained or lost.
pub fn changes(
    customer: Uuid,
    old: Option<&Codes>,
    new: Option<&Codes>,
    as_of: DateTime<Utc>,
    policy_version: i64,
) -> Vec<LabelChange> {
    let change = |dimension, old: &str, new: &str| LabelChange {
        sequence: 0,
        customer,
        dimension,
        old_label: old.to_owned(),
        new_label: new.to_owned(),
        changed_at: as_of,
        policy_version,
    };
    fn label(c: Option<&Codes>, i: usize) -> &str {
        c.map_or("", |c| &c.labels[i])
    }
    let none = BTreeSet::new();
    let traits = |c: Option<&Codes>| c.map_or(&none, |c| &c.traits).clone();
    let mut out: Vec<LabelChange> = Codes::DIMENSIONS
        .iter()
        .enumerate()
        .filter(|(i, _)| label(old, *i) != label(new, *i))
        .map(|(i, d)| change(*d, label(old, i), label(new, i)))
        .collect();
    let (before, after) = (traits(old), traits(new));
    out.extend(
        after
            .difference(&before)
            .map(|t| change(Dimension::Trait, "", t)),
    );
    out.extend(
        before
            .difference(&after)
            .map(|t| change(Dimension::Trait, t, "")),
    );
    out
}

/// A recorded label change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelChange {
    /// Position in the change feed, from 1.
    pub sequence: i64,
    pub customer: Uuid,
    pub dimension: Dimension,
    /// Before ("" none; for traits, "" when gained).
    pub old_label: String,
    /// After ("" none; for traits, "" when lost).
    pub new_label: String,
    /// The as_of of the classification that changed it.
    pub changed_at: DateTime<Utc>,
    /// The policy version.
    pub policy_version: i64,
}

/// Which label changes a ListLabelTransitions reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitionQuery {
    pub dimension: Dimension,
    /// Only from this label.
    pub from: Option<String>,
    /// Only to this label.
    pub to: Option<String>,
    /// Changes at or after.
    pub start: DateTime<Utc>,
    /// Changes before.
    pub end: DateTime<Utc>,
}
