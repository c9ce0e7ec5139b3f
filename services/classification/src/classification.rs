//! A customer's classification: the labels the rules decided from the facts at an
//! instant, under a policy version and the population's cut-offs, and the label changes
//! between two classifications.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::facts::{CustomerFacts, Features};
use crate::labels::{Dimension, Labels};
use crate::policy::{BP, Policy};
use crate::population::Population;
use crate::rules::{Context, classify};
use crate::store::LabelChange;

/// One customer's classification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Classification {
    /// The customer.
    pub customer: Uuid,
    /// The policy version.
    pub policy_version: i64,
    /// The instant.
    pub as_of: DateTime<Utc>,
    /// Region of the address.
    pub region: String,
    /// The labels and why.
    pub labels: Labels,
    /// The inputs.
    pub features: Features,
    /// Revenue in the window over the company's, basis points.
    pub share_of_sales_bp: i64,
}

/// The policy, its version, the population and the instant of a classification run.
pub struct Run<'a> {
    /// The policy.
    pub policy: &'a Policy,
    /// Its version.
    pub policy_version: i64,
    /// The population's cut-offs.
    pub population: &'a Population,
    /// The instant.
    pub as_of: DateTime<Utc>,
}

impl Run<'_> {
    /// The classification of `facts` (None for archived and merged customers).
    /// `first_purchases` holds when the customers it referred first bought.
    pub fn classify(
        &self,
        facts: &CustomerFacts,
        first_purchases: &HashMap<Uuid, DateTime<Utc>>,
    ) -> Option<Classification> {
        if !facts.is_live() {
            return None;
        }
        let features = facts.features(self.as_of, self.policy, &|id| {
            first_purchases.get(&id).copied()
        });
        let labels = classify(
            &features,
            &Context {
                id: facts.id,
                kind: facts.kind,
                high_expectations: facts.high_expectations,
                key_account: facts.key_account,
                as_of: self.as_of,
                policy: self.policy,
                population: self.population,
            },
        );
        let total = self.population.revenue_in_window;
        let share_of_sales_bp = if total > 0 {
            (i128::from(features.revenue_in_window) * i128::from(BP) / i128::from(total)) as i64
        } else {
            0
        };
        Some(Classification {
            customer: facts.id,
            policy_version: self.policy_version,
            as_of: self.as_of,
            region: facts.region.clone(),
            labels,
            features,
            share_of_sales_bp,
        })
    }
}

/// The label changes from `old` to `new` (either absent: no classification), one per
/// single-label dimension that changed and one per trait gained or lost.
pub fn changes(
    customer: Uuid,
    old: Option<&Classification>,
    new: Option<&Classification>,
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
    let codes = |c: Option<&Classification>| -> Vec<(Dimension, &'static str)> {
        match c {
            Some(c) => c
                .labels
                .codes()
                .into_iter()
                .map(|(d, code)| (d, code.unwrap_or("")))
                .collect(),
            None => Dimension::ALL
                .iter()
                .filter(|d| **d != Dimension::Trait)
                .map(|d| (*d, ""))
                .collect(),
        }
    };
    let traits = |c: Option<&Classification>| -> BTreeSet<&'static str> {
        c.map(|c| c.labels.trait_codes().into_iter().collect())
            .unwrap_or_default()
    };
    let mut out: Vec<LabelChange> = codes(old)
        .into_iter()
        .zip(codes(new))
        .filter(|((_, a), (_, b))| a != b)
        .map(|((d, a), (_, b))| change(d, a, b))
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
