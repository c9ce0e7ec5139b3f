//! Proto ↔ engine records: the registry's feed events into changes, and
//! classifications and policies out and in (inputs validated, naming the field).

use clientela_domain::taxonomy::{CustomerKind, Labeled};
use clientela_proto::clientela::classification::v1 as pb;
use clientela_proto::clientela::common::v1 as common;
use clientela_proto::clientela::registry::v1 as registry;
use clientela_proto::maps;
use clientela_runtime::Error;
use clientela_runtime::feed::decode::{child, corrupt, customer as customer_id, time};
use clientela_runtime::time::timestamp;

use crate::classification::Classification;
use crate::classification::LabelChange;
use crate::facts::{ComplaintFact, Cost, PurchaseFact, ReferralFact, Standing, SurveyFact};
use crate::labels::{Decision, Dimension, Observation};
use crate::policy::{PlaybookEntry, Policy, VolumeMode};
use crate::projection::{Change, Profile};

// ---- the registry's feed ----

fn profile(c: &registry::Customer, sequence: i64) -> Result<Profile, Error> {
    use registry::CustomerStatus as S;
    // Every field, so one added to the registry's Customer does not compile until the
    // engine decides whether a rule reads it.
    let registry::Customer {
        name: _,
        kind: _,
        status: _,
        address: _,
        influence: _,
        update_time: _,
        // Not read by any rule (no label depends on a free-form attribute).
        attributes: _,
        display_name: _,
        legal_name: _,
        tax_id: _,
        emails: _,
        phones: _,
        channel_role: _,
        business_kind: _,
        tags: _,
        consent: _,
        merged_into: _,
        language_code: _,
        external_id: _,
        create_time: _,
        etag: _,
        cost_to_serve: _,
        key_account: _,
        high_expectations: _,
    } = c;
    let standing = match S::try_from(c.status) {
        Ok(S::Prospect) => Standing::Prospect,
        Ok(S::Customer) => Standing::Customer,
        Ok(S::Archived) => Standing::Archived,
        Ok(S::Merged) => Standing::Merged,
        _ => return Err(corrupt(sequence, "customer without a status")),
    };
    // The registry requires a kind; a number this build does not know reads as a person.
    let kind = maps::customer_kind_from(c.kind)
        .ok()
        .flatten()
        .unwrap_or(CustomerKind::Person);
    let influence = c.influence.unwrap_or_default();
    let decision_role = maps::decision_role_from(influence.decision_role)
        .ok()
        .flatten();
    Ok(Profile {
        id: customer_id(&c.name, sequence)?,
        standing,
        kind,
        region: c
            .address
            .as_ref()
            .map(|a| a.region.clone())
            .unwrap_or_default(),
        audience_reach: influence.audience_reach,
        public_figure: influence.public_figure,
        decision_role,
        high_expectations: c.high_expectations,
        key_account: c.key_account,
        cost_to_serve: c.cost_to_serve.as_ref().map(|m| Cost {
            currency_code: m.currency_code.clone(),
            amount_minor: m.amount_minor,
        }),
        updated_at: time(c.update_time.as_ref(), sequence)?,
    })
}

/// What a registry event changes; `Err` for an event the registry should never have
/// written (the consumer logs it and goes on: one bad event must not stop the feed).
pub fn change_from(event: &registry::Event) -> Result<Change, Error> {
    use registry::event::Payload;
    let seq = event.sequence;
    let payload = event
        .payload
        .as_ref()
        .ok_or_else(|| corrupt(seq, "no payload"))?;
    Ok(match payload {
        Payload::CustomerCreated(c) | Payload::CustomerUpdated(c) => {
            Change::Profile(profile(c, seq)?)
        }
        Payload::CustomersMerged(m) => Change::Merged {
            survivor: customer_id(&m.survivor, seq)?,
            merged: customer_id(&m.merged, seq)?,
        },
        Payload::PurchaseRecorded(p) => {
            let (customer, id) = child(&p.name, "purchases", seq)?;
            let total = p.total.clone().unwrap_or_default();
            Change::Purchase {
                customer,
                purchase: PurchaseFact {
                    id,
                    at: time(p.occur_time.as_ref(), seq)?,
                    currency_code: total.currency_code,
                    total_minor: total.amount_minor,
                    discounted: mostly_discounted(&p.lines),
                    returns: Vec::new(),
                },
            }
        }
        Payload::ReturnRecorded(r) => {
            let (customer, id) = child(&r.name, "returns", seq)?;
            let (_, purchase) = child(&r.purchase, "purchases", seq)?;
            Change::Return {
                customer,
                purchase,
                id,
                at: time(r.occur_time.as_ref(), seq)?,
                amount_minor: r.amount.as_ref().map_or(0, |m| m.amount_minor),
            }
        }
        Payload::SurveyRecorded(s) => {
            let (customer, id) = child(&s.name, "surveys", seq)?;
            let Ok(Some(kind)) = maps::survey_kind_from(s.kind) else {
                return Err(corrupt(seq, "survey without a kind"));
            };
            Change::Survey {
                customer,
                survey: SurveyFact {
                    id,
                    at: time(s.occur_time.as_ref(), seq)?,
                    kind,
                    score: s.score,
                },
            }
        }
        Payload::ComplaintOpened(c) | Payload::ComplaintResolved(c) => {
            let (customer, id) = child(&c.name, "complaints", seq)?;
            let resolved = c.state == registry::ComplaintState::Resolved as i32;
            Change::Complaint {
                customer,
                complaint: ComplaintFact {
                    id,
                    opened_at: time(c.open_time.as_ref(), seq)?,
                    resolved_at: if resolved {
                        Some(time(c.resolve_time.as_ref(), seq)?)
                    } else {
                        None
                    },
                },
            }
        }
        Payload::ReferralRecorded(r) => {
            let (referrer, id) = child(&r.name, "referrals", seq)?;
            Change::Referral {
                referrer,
                referral: ReferralFact {
                    id,
                    referred: customer_id(&r.referred, seq)?,
                    at: time(r.occur_time.as_ref(), seq)?,
                },
            }
        }
    })
}

// ---- classifications out ----

/// The proto dimension.
pub fn dimension_to(d: Dimension) -> pb::Dimension {
    match d {
        Dimension::LifecycleStage => pb::Dimension::LifecycleStage,
        Dimension::Activity => pb::Dimension::Activity,
        Dimension::Satisfaction => pb::Dimension::Satisfaction,
        Dimension::Volume => pb::Dimension::Volume,
        Dimension::Influence => pb::Dimension::Influence,
        Dimension::AccountTier => pb::Dimension::AccountTier,
        Dimension::Trait => pb::Dimension::Trait,
        Dimension::RfmSegment => pb::Dimension::RfmSegment,
    }
}

/// The dimension of a proto value; `field` names it when bad.
pub fn dimension_from(v: i32, field: &str) -> Result<Dimension, Error> {
    Dimension::ALL
        .into_iter()
        .find(|d| dimension_to(*d) as i32 == v && v != 0)
        .ok_or_else(|| Error::invalid(field, "required: a DIMENSION_* value"))
}

/// A label code with its names in both languages ("" → an empty label).
pub fn localized(dimension: Dimension, code: &str) -> common::LocalizedLabel {
    let (es, en) = dimension.names_of(code).unwrap_or(("", ""));
    common::LocalizedLabel {
        code: code.to_owned(),
        label_es: es.to_owned(),
        label_en: en.to_owned(),
    }
}

fn observation(o: &Observation) -> pb::Observation {
    pb::Observation {
        feature: o.feature.clone(),
        observed: o.observed.clone(),
        comparison: o.comparison.clone(),
        threshold: o.threshold.clone(),
    }
}

fn result<L: Labeled>(dimension: Dimension, d: &Decision<L>) -> pb::LabelResult {
    pb::LabelResult {
        label: Some(localized(dimension, d.code().unwrap_or(""))),
        rule: d.rule.to_string(),
        explanation_en: d.explanation_en.clone(),
        explanation_es: d.explanation_es.clone(),
        observations: d.observations.iter().map(observation).collect(),
    }
}

pub fn money(currency: &str, amount_minor: i64) -> common::Money {
    common::Money {
        currency_code: currency.to_owned(),
        amount_minor,
    }
}

/// A classification with the actions its labels call for under `policy`.
pub fn classification_to(c: &Classification, policy: &Policy) -> pb::Classification {
    let l = &c.labels;
    let f = &c.features;
    let mut actions = Vec::new();
    let mut labels: Vec<(Dimension, &str)> = l
        .codes()
        .into_iter()
        .filter_map(|(d, code)| code.map(|code| (d, code)))
        .collect();
    labels.extend(l.trait_codes().into_iter().map(|t| (Dimension::Trait, t)));
    for (dimension, code) in labels {
        actions.extend(policy.actions_for(dimension, code).map(|a| pb::Action {
            dimension: dimension_to(a.dimension) as i32,
            label: a.label.clone(),
            text_es: a.text_es.clone(),
            text_en: a.text_en.clone(),
        }));
    }
    let currency = &policy.currency_code;
    pb::Classification {
        customer: format!("customers/{}", c.customer),
        policy_version: c.policy_version,
        as_of: Some(timestamp(c.as_of)),
        lifecycle_stage: Some(result(Dimension::LifecycleStage, &l.lifecycle_stage)),
        activity: Some(result(Dimension::Activity, &l.activity)),
        satisfaction: Some(result(Dimension::Satisfaction, &l.satisfaction)),
        volume: Some(result(Dimension::Volume, &l.volume)),
        influence: Some(result(Dimension::Influence, &l.influence)),
        account_tier: Some(result(Dimension::AccountTier, &l.account_tier)),
        traits: l
            .traits
            .iter()
            .map(|t| result(Dimension::Trait, t))
            .collect(),
        rfm: Some(pb::Rfm {
            recency: i32::from(l.rfm.recency),
            frequency: i32::from(l.rfm.frequency),
            monetary: i32::from(l.rfm.monetary),
            segment: Some(result(Dimension::RfmSegment, &l.rfm.segment)),
        }),
        recommended_actions: actions,
        features: Some(pb::Features {
            purchases_total: f.purchases_total,
            purchases_in_window: f.purchases_in_window,
            revenue_in_window: Some(money(currency, f.revenue_in_window)),
            revenue_prev_window: Some(money(currency, f.revenue_prev_window)),
            first_purchase_time: f.first_purchase_at.map(timestamp),
            last_purchase_time: f.last_purchase_at.map(timestamp),
            mean_interpurchase_centidays: f.mean_gap_secs * 100 / 86_400,
            cv_interpurchase_bp: f.cv_interpurchase_bp,
            discounted_share_bp: f.discounted_share_bp,
            complaints_in_window: f.complaints_in_window,
            open_complaints: f.open_complaints,
            latest_nps: f.latest_nps.map_or(-1, |(score, _)| score),
            latest_csat: f.latest_csat.map_or(-1, |(score, _)| score),
            referrals_converted: f.referrals_converted,
            audience_reach: f.audience_reach,
            is_public_figure: f.public_figure,
            org_decision_role: f
                .decision_role
                .map(|r| r.code().to_owned())
                .unwrap_or_default(),
            share_of_sales_bp: c.share_of_sales_bp,
            revenue_growth_bp: f.revenue_growth_bp(),
            cost_to_serve_minor: f.cost_to_serve_minor,
            company_revenue_in_window: Some(money(currency, c.company_revenue)),
        }),
        region: c.region.clone(),
        population: c.population.map(|p| pb::Population {
            version: p.id,
            compute_time: Some(timestamp(p.as_of)),
            policy_version: p.policy_version,
        }),
    }
}

/// A label change.
pub fn change_to(c: &LabelChange) -> pb::LabelChange {
    pb::LabelChange {
        sequence: c.sequence,
        customer: format!("customers/{}", c.customer),
        dimension: dimension_to(c.dimension) as i32,
        old_label: Some(localized(c.dimension, &c.old_label)),
        new_label: Some(localized(c.dimension, &c.new_label)),
        change_time: Some(timestamp(c.changed_at)),
        policy_version: c.policy_version,
    }
}

// ---- policies ----

/// The fields a proto policy and a policy share, written once: `copy` copies them one
/// way or the other; `exhaustive` names every field of the proto, so one added to it
/// does not compile until it is placed here (or among the four handled by hand).
macro_rules! same_fields {
    (@list [copy $from:expr, $to:expr] $($field:ident),+) => {
        $( $to.$field = $from.$field.clone(); )+
    };
    (@list [exhaustive $p:expr] $($field:ident),+) => {
        let pb::Policy {
            $( $field: _, )+
            version: _,     // output only
            create_time: _, // output only
            volume_mode: _,
            playbook: _,
        } = $p;
    };
    ($($how:tt)+) => {
        same_fields!(@list [$($how)+] currency_code, window_days, active_window_days,
            active_cadence_min_purchases, cadence_gap_factor_bp, frequent_min_purchases,
            unconditional_min_nps, unconditional_min_referrals, nps_very_satisfied_min,
            nps_satisfied_min, csat_very_satisfied_min, csat_satisfied_min,
            abc_high_cumulative_bp, abc_medium_cumulative_bp, fixed_high_min_minor,
            fixed_medium_min_minor, major_influencer_min_reach, boss_min_share_bp,
            key_top_buyers_bp, strategic_min_growth_bp, margin_bp, loyal_min_tenure_days,
            occasional_min_cv_bp, demanding_min_complaints, influential_min_referrals,
            price_sensitive_min_share_bp, price_sensitive_min_purchases,
            as_of_future_tolerance_seconds, new_customer_days, description)
    };
}

/// A stored policy version.
pub fn policy_to(p: &crate::policy::PolicyVersion) -> pb::Policy {
    let mut out = pb::Policy {
        version: p.version,
        create_time: Some(timestamp(p.created_at)),
        volume_mode: match p.policy.volume_mode {
            VolumeMode::Abc => pb::VolumeMode::Abc,
            VolumeMode::Fixed => pb::VolumeMode::Fixed,
        } as i32,
        playbook: p
            .policy
            .playbook
            .iter()
            .map(|e| pb::PlaybookEntry {
                dimension: dimension_to(e.dimension) as i32,
                label: e.label.clone(),
                text_es: e.text_es.clone(),
                text_en: e.text_en.clone(),
            })
            .collect(),
        ..pb::Policy::default()
    };
    same_fields!(copy p.policy, out);
    out
}

/// A candidate policy, validated; every bad field is named under `field`.
pub fn policy_from(p: Option<&pb::Policy>, field: &str) -> Result<Policy, Error> {
    let p = p.ok_or_else(|| Error::invalid(field, "required"))?;
    same_fields!(exhaustive p);
    let mut out = Policy::default();
    same_fields!(copy p, out);
    let mut bad = Vec::new();
    out.volume_mode = match pb::VolumeMode::try_from(p.volume_mode) {
        Ok(pb::VolumeMode::Unspecified | pb::VolumeMode::Abc) => VolumeMode::Abc,
        Ok(pb::VolumeMode::Fixed) => VolumeMode::Fixed,
        Err(_) => {
            bad.push(clientela_domain::FieldViolation::new(
                format!("{field}.volume_mode"),
                "not a VolumeMode",
            ));
            VolumeMode::Abc
        }
    };
    out.playbook = Vec::with_capacity(p.playbook.len());
    for (i, e) in p.playbook.iter().enumerate() {
        match dimension_from(e.dimension, "dimension") {
            Ok(dimension) => out.playbook.push(PlaybookEntry {
                dimension,
                label: e.label.clone(),
                text_es: e.text_es.clone(),
                text_en: e.text_en.clone(),
            }),
            Err(_) => bad.push(clientela_domain::FieldViolation::new(
                format!("{field}.playbook[{i}].dimension"),
                "required: a DIMENSION_* value",
            )),
        }
    }
    bad.extend(out.violations(field));
    if bad.is_empty() {
        Ok(out)
    } else {
        Err(Error::InvalidArgument(bad))
    }
}

/// A purchase is discounted when its discounted lines make at least half its amount
/// (TAXONOMY: discounted_share); one cheap discounted line among dear ones is not.
fn mostly_discounted(lines: &[registry::PurchaseLine]) -> bool {
    let amount = |l: &registry::PurchaseLine| {
        let price = l.unit_price.as_ref().map_or(0, |m| m.amount_minor);
        i128::from(l.quantity) * i128::from(price)
    };
    let total: i128 = lines.iter().map(amount).sum();
    let discounted: i128 = lines.iter().filter(|l| l.discounted).map(amount).sum();
    discounted > 0 && discounted * 2 >= total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(quantity: i64, price: i64, discounted: bool) -> registry::PurchaseLine {
        registry::PurchaseLine {
            quantity,
            unit_price: Some(clientela_proto::clientela::common::v1::Money {
                currency_code: "CLP".into(),
                amount_minor: price,
            }),
            discounted,
            ..Default::default()
        }
    }

    #[test]
    fn a_purchase_is_discounted_when_its_discounted_lines_make_half_its_amount() {
        assert!(mostly_discounted(&[
            line(1, 500, true),
            line(1, 500, false)
        ]));
        assert!(!mostly_discounted(&[
            line(1, 499, true),
            line(1, 501, false)
        ]));
        // One cheap discounted line among dear ones (it was "any line").
        assert!(!mostly_discounted(&[
            line(1, 10, true),
            line(3, 1_000, false)
        ]));
        assert!(mostly_discounted(&[line(2, 1_000, true)]));
        assert!(!mostly_discounted(&[line(1, 0, true)]));
    }
}
