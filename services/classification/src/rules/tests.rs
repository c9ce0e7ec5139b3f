//! One test per rule edge, and per category of each seed document (named in the test).

use chrono::TimeZone;

use super::*;
use crate::population::Rank;
use std::collections::BTreeSet;

fn as_of() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap()
}

fn ago(days: i64) -> DateTime<Utc> {
    as_of() - Duration::days(days)
}

fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

/// A buyer with `n` purchases every `every` days, the last `last` days ago.
fn buyer(n: i64, every: i64, last: i64) -> Features {
    let gaps = vec![every * DAY_SECS; (n - 1).max(0) as usize];
    Features {
        purchases_total: n,
        purchases_in_window: (0..n).filter(|i| last + i * every <= 365).count() as i64,
        revenue_in_window: 1_000,
        revenue_total: 1_000,
        first_purchase_at: Some(ago(last + (n - 1) * every)),
        last_purchase_at: Some(ago(last)),
        mean_gap_secs: if n > 1 { every * DAY_SECS } else { 0 },
        gap_secs: gaps,
        ..Features::default()
    }
}

fn with<'a>(policy: &'a Policy, population: &'a Population) -> Context<'a> {
    Context {
        id: id(7),
        kind: CustomerKind::Person,
        high_expectations: false,
        key_account: false,
        as_of: as_of(),
        policy,
        population: Some(population),
        company_revenue: population.revenue_in_window,
        left_out: &[],
        explain: true,
    }
}

/// A population whose top buyer holds all of `revenue`.
fn ranked(revenue: i64) -> Population {
    Population {
        customers: 1,
        buyers: 1,
        revenue_in_window: revenue,
        abc_high: Some(Rank {
            value: revenue,
            id: id(0),
        }),
        ..Population::default()
    }
}

fn labels(f: &Features) -> Labels {
    classify(f, &with(&Policy::default(), &Population::default()))
}

fn traits_of(f: &Features) -> Vec<&'static str> {
    labels(f).trait_codes()
}

// ---- seed 003: relationship stages (prospecto, comprador, esporádico, frecuente, incondicional) ----

#[test]
fn seed_003_cliente_potencial_has_no_purchase() {
    let l = labels(&Features::default());
    assert_eq!(l.lifecycle_stage.label, Some(LifecycleStage::Prospect));
    assert_eq!(l.account_tier.label, Some(AccountTier::Prospect));
    assert_eq!(l.trait_codes(), vec!["PROSPECT"]);
    assert_eq!(l.activity.label, None);
    assert_eq!(l.volume.label, None);
}

#[test]
fn seed_003_comprador_bought_once() {
    assert_eq!(
        labels(&buyer(1, 0, 10)).lifecycle_stage.label,
        Some(LifecycleStage::Buyer)
    );
}

#[test]
fn seed_003_frequent_bar_is_exactly_four_purchases_in_the_window() {
    let four = labels(&buyer(4, 30, 10));
    assert_eq!(four.lifecycle_stage.label, Some(LifecycleStage::Frequent));
    assert_eq!(
        four.lifecycle_stage.explanation_en,
        "FREQUENT: 4 purchases in 365 days >= 4"
    );
    assert_eq!(four.lifecycle_stage.rule, "lifecycle.frequent");
    let three = labels(&buyer(3, 30, 10));
    assert_eq!(three.lifecycle_stage.label, Some(LifecycleStage::Sporadic));
}

#[test]
fn seed_003_incondicional_is_frequent_and_promotes_or_refers() {
    let mut f = buyer(6, 30, 10);
    f.latest_nps = Some((9, ago(5)));
    assert_eq!(
        labels(&f).lifecycle_stage.label,
        Some(LifecycleStage::Unconditional)
    );
    f.latest_nps = Some((8, ago(5)));
    assert_eq!(
        labels(&f).lifecycle_stage.label,
        Some(LifecycleStage::Frequent)
    );
    f.referrals_converted = 1;
    let l = labels(&f);
    assert_eq!(l.lifecycle_stage.label, Some(LifecycleStage::Unconditional));
    assert!(
        l.lifecycle_stage
            .explanation_en
            .contains("1 converted referrals >= 1")
    );
    // Referrals alone do not make a sporadic customer unconditional.
    let mut sporadic = buyer(2, 30, 10);
    sporadic.referrals_converted = 5;
    assert_eq!(
        labels(&sporadic).lifecycle_stage.label,
        Some(LifecycleStage::Sporadic)
    );
}

// ---- seeds 000 and 002: activity ----

#[test]
fn seed_002_active_means_a_purchase_within_180_days() {
    assert_eq!(
        labels(&buyer(2, 200, 180)).activity.label,
        Some(Activity::ActiveHabitual)
    );
    assert_eq!(
        labels(&buyer(2, 200, 181)).activity.label,
        Some(Activity::InactiveLapsed)
    );
}

#[test]
fn seed_002_more_than_three_purchases_at_cadence_keep_a_slow_buyer_active() {
    // Yearly buyer: 5 purchases a year apart, the last 400 days ago (< 1.5 × 365).
    let yearly = buyer(5, 365, 400);
    let a = labels(&yearly).activity;
    assert_eq!(
        a.label,
        Some(Activity::ActiveHabitual),
        "{}",
        a.explanation_en
    );
    // Three purchases are not more than three: not enough for the cadence rule.
    assert_eq!(
        labels(&buyer(3, 365, 400)).activity.label,
        Some(Activity::InactiveLapsed)
    );
    // Past 1.5 × the mean gap the cadence is broken.
    assert_eq!(
        labels(&buyer(5, 365, 548)).activity.label,
        Some(Activity::InactiveLapsed)
    );
}

#[test]
fn seed_000_compra_una_unica_vez_inactivo_and_compra_frecuente_activo() {
    assert_eq!(
        labels(&buyer(1, 0, 300)).activity.label,
        Some(Activity::InactiveOneTime)
    );
    assert_eq!(
        labels(&buyer(5, 20, 3)).activity.label,
        Some(Activity::ActiveFrequent)
    );
}

#[test]
fn a_first_purchase_within_new_customer_days_is_active_new_not_habitual() {
    let new = labels(&buyer(1, 0, 90)).activity;
    assert_eq!(
        new.label,
        Some(Activity::ActiveNew),
        "{}",
        new.explanation_en
    );
    assert!(
        new.explanation_en
            .contains("one purchase, 90.00 days ago <= 90"),
        "{}",
        new.explanation_en
    );
    // Past it (and before active_window_days, 180): a one-time buyer, not active.
    assert_eq!(
        labels(&buyer(1, 0, 91)).activity.label,
        Some(Activity::InactiveOneTime)
    );
}

// ---- seeds 000 and 001: satisfaction ----

#[test]
fn seed_000_nps_six_is_dissatisfied_and_seven_satisfied() {
    let mut f = buyer(1, 0, 10);
    f.latest_nps = Some((6, ago(1)));
    assert_eq!(
        labels(&f).satisfaction.label,
        Some(Satisfaction::Dissatisfied)
    );
    f.latest_nps = Some((7, ago(1)));
    assert_eq!(labels(&f).satisfaction.label, Some(Satisfaction::Satisfied));
    f.latest_nps = Some((9, ago(1)));
    assert_eq!(
        labels(&f).satisfaction.label,
        Some(Satisfaction::VerySatisfied)
    );
}

#[test]
fn seed_000_csat_uses_its_own_scale_and_the_latest_answer_counts() {
    let mut f = buyer(1, 0, 10);
    f.latest_csat = Some((4, ago(1)));
    f.latest_nps = Some((10, ago(30)));
    assert_eq!(labels(&f).satisfaction.label, Some(Satisfaction::Satisfied));
    f.latest_csat = Some((3, ago(1)));
    assert_eq!(
        labels(&f).satisfaction.label,
        Some(Satisfaction::Dissatisfied)
    );
}

#[test]
fn seed_001_an_open_complaint_overrides_an_old_nps_nine() {
    let mut f = buyer(2, 10, 10);
    f.latest_nps = Some((9, ago(100)));
    f.open_complaints = 1;
    let l = labels(&f);
    assert_eq!(l.satisfaction.label, Some(Satisfaction::Dissatisfied));
    assert_eq!(l.satisfaction.rule, "satisfaction.open_complaint");
    assert!(l.trait_codes().contains(&"DISSATISFIED"));
}

// ---- seed 000: volume (ABC) ----

#[test]
fn seed_000_volume_bands_follow_the_population_cut_offs() {
    let population = Population {
        revenue_in_window: 10_000,
        abc_high: Some(Rank {
            value: 1_000,
            id: id(5),
        }),
        abc_medium: Some(Rank {
            value: 500,
            id: id(5),
        }),
        ..Population::default()
    };
    let policy = Policy::default();
    let cx = with(&policy, &population);
    let mut f = buyer(1, 0, 10);
    f.revenue_in_window = 1_000;
    // Same revenue as the last HIGH customer but a larger id: after it.
    assert_eq!(volume(&f, &cx).label, Some(Volume::Medium));
    f.revenue_in_window = 1_001;
    assert_eq!(volume(&f, &cx).label, Some(Volume::High));
    f.revenue_in_window = 499;
    assert_eq!(volume(&f, &cx).label, Some(Volume::Low));
}

#[test]
fn fixed_volume_amounts_when_the_policy_says_so() {
    let policy = Policy {
        volume_mode: VolumeMode::Fixed,
        fixed_high_min_minor: 1_000,
        fixed_medium_min_minor: 100,
        ..Policy::default()
    };
    let population = Population::default();
    let cx = with(&policy, &population);
    let mut f = buyer(1, 0, 10);
    for (revenue, label) in [
        (1_000, Volume::High),
        (999, Volume::Medium),
        (99, Volume::Low),
    ] {
        f.revenue_in_window = revenue;
        assert_eq!(volume(&f, &cx).label, Some(label), "{revenue}");
    }
}

// ---- seeds 000 and 001: influence ----

#[test]
fn seed_001_grandes_influyentes_from_ten_thousand_reach() {
    let mut f = buyer(1, 0, 10);
    f.audience_reach = 10_000;
    assert_eq!(labels(&f).influence.label, Some(Influence::MajorInfluencer));
    assert!(labels(&f).trait_codes().contains(&"INFLUENTIAL"));
    f.audience_reach = 9_999;
    // Being a person is not influence: FAMILY needs the HOUSEHOLD role.
    assert_eq!(labels(&f).influence.label, Some(Influence::None));
    f.decision_role = Some(DecisionRole::Household);
    assert_eq!(labels(&f).influence.label, Some(Influence::Family));
    f.decision_role = Some(DecisionRole::DecisionMaker);
    assert_eq!(labels(&f).influence.label, Some(Influence::Organizational));
    f.public_figure = true;
    assert_eq!(labels(&f).influence.label, Some(Influence::MajorInfluencer));
}

#[test]
fn an_organization_without_influence_attributes_has_none() {
    let policy = Policy::default();
    let population = Population::default();
    let cx = Context {
        kind: CustomerKind::Organization,
        ..with(&policy, &population)
    };
    assert_eq!(influence(&buyer(1, 0, 1), &cx).label, Some(Influence::None));
}

// ---- seed 004: account tiers ----

#[test]
fn seed_004_cliente_jefe_holds_ten_percent_of_sales_exactly() {
    let policy = Policy::default();
    let population = Population {
        revenue_in_window: 100_000,
        ..Population::default()
    };
    let cx = with(&policy, &population);
    let mut f = buyer(3, 30, 10);
    f.revenue_in_window = 10_000;
    let tier = account_tier(&f, &cx, Some(Volume::High));
    assert_eq!(tier.label, Some(AccountTier::Boss));
    assert_eq!(
        tier.explanation_en,
        "BOSS: share of sales 10.00 % >= 10.00 %"
    );
    f.revenue_in_window = 9_999;
    assert_ne!(
        account_tier(&f, &cx, Some(Volume::High)).label,
        Some(AccountTier::Boss),
        "9.99 % is not double digit"
    );
}

#[test]
fn seed_004_cliente_clave_is_a_top_buyer_or_flagged() {
    let policy = Policy::default();
    let population = Population {
        revenue_in_window: 1_000_000,
        key: Some(Rank {
            value: 50_000,
            id: id(3),
        }),
        ..Population::default()
    };
    let mut f = buyer(3, 30, 10);
    f.revenue_in_window = 50_000;
    let cx = with(&policy, &population);
    assert_ne!(
        account_tier(&f, &cx, None).label,
        Some(AccountTier::Key),
        "id 7 > 3"
    );
    f.revenue_in_window = 50_001;
    assert_eq!(account_tier(&f, &cx, None).label, Some(AccountTier::Key));
    f.revenue_in_window = 10;
    let flagged = Context {
        key_account: true,
        ..with(&policy, &population)
    };
    assert_eq!(
        account_tier(&f, &flagged, None).label,
        Some(AccountTier::Key)
    );
}

#[test]
fn seed_004_cliente_estrategico_grows_twenty_percent() {
    let policy = Policy::default();
    let population = ranked(1_000_000);
    let cx = with(&policy, &population);
    let mut f = buyer(3, 30, 10);
    f.revenue_prev_window = 10_000;
    f.revenue_in_window = 12_000;
    assert_eq!(
        account_tier(&f, &cx, None).label,
        Some(AccountTier::Strategic)
    );
    f.revenue_in_window = 11_999;
    assert_eq!(
        account_tier(&f, &cx, Some(Volume::Low)).label,
        Some(AccountTier::Transactional)
    );
}

#[test]
fn medium_and_high_buyers_below_the_top_are_regular_never_transactional() {
    let policy = Policy::default();
    let population = ranked(1_000_000);
    let cx = with(&policy, &population);
    let mut f = buyer(3, 30, 10);
    f.revenue_in_window = 50_000;
    f.cost_to_serve_minor = Some(1_000_000);
    for volume in [Volume::Medium, Volume::High] {
        let tier = account_tier(&f, &cx, Some(volume));
        assert_eq!(tier.label, Some(AccountTier::Regular), "{volume:?}");
        // The explanation names what it compared.
        assert!(
            tier.explanation_en
                .contains("share of sales 5.00 % < 10.00 %"),
            "{}",
            tier.explanation_en
        );
        assert!(
            tier.explanation_en.contains("growth no revenue before"),
            "{}",
            tier.explanation_en
        );
    }
    let low = account_tier(&f, &cx, Some(Volume::Low));
    assert_eq!(low.label, Some(AccountTier::Small));
    f.cost_to_serve_minor = None;
    let unknown = account_tier(&f, &cx, Some(Volume::Low));
    assert_eq!(unknown.label, Some(AccountTier::Transactional));
    assert!(
        unknown.explanation_en.contains("cost to serve unknown"),
        "{}",
        unknown.explanation_en
    );
    assert_eq!(account_tier(&f, &cx, None).label, None, "no band: no tier");
}

#[test]
fn seed_004_cliente_pequeno_costs_more_than_its_margin() {
    let policy = Policy::default();
    let population = ranked(1_000_000);
    let cx = with(&policy, &population);
    let mut f = buyer(2, 30, 10);
    f.revenue_in_window = 1_000;
    f.cost_to_serve_minor = Some(301);
    assert_eq!(
        account_tier(&f, &cx, Some(Volume::Low)).label,
        Some(AccountTier::Small)
    );
    f.cost_to_serve_minor = Some(300);
    assert_eq!(
        account_tier(&f, &cx, Some(Volume::Low)).label,
        Some(AccountTier::Transactional),
        "seed 004: cliente transaccional, low cost to serve"
    );
}

// ---- seed 001: behaviour traits ----

#[test]
fn seed_001_leal_needs_a_year_of_frequent_buying() {
    // 6 purchases, 60 days apart, the last 10 days ago: first 310 days ago.
    assert!(!traits_of(&buyer(6, 60, 10)).contains(&"LOYAL"));
    // 7 purchases 60 days apart, the last 5 days ago: tenure 365 days; but only 7 in the
    // window. Frequent and a year: loyal.
    let f = buyer(7, 60, 5);
    assert!(traits_of(&f).contains(&"LOYAL"), "{:?}", labels(&f).traits);
}

#[test]
fn seed_001_ocasional_buys_without_a_pattern() {
    let mut f = buyer(3, 30, 10);
    f.gap_secs = vec![DAY_SECS, 100 * DAY_SECS];
    f.cv_interpurchase_bp = 10_000;
    assert!(traits_of(&f).contains(&"OCCASIONAL"));
    f.cv_interpurchase_bp = 9_999;
    assert!(!traits_of(&f).contains(&"OCCASIONAL"));
}

#[test]
fn seed_001_exigente_complains_twice_in_the_window() {
    let mut f = buyer(2, 30, 10);
    f.complaints_in_window = 2;
    assert!(traits_of(&f).contains(&"DEMANDING"));
    f.complaints_in_window = 1;
    assert!(!traits_of(&f).contains(&"DEMANDING"));
}

#[test]
fn seed_001_precio_sensible_half_discounted_with_three_purchases() {
    let mut f = buyer(3, 30, 10);
    f.discounted_share_bp = 5_000;
    f.discounted_purchases = 2;
    assert!(traits_of(&f).contains(&"PRICE_SENSITIVE"));
    f.discounted_share_bp = 4_999;
    assert!(!traits_of(&f).contains(&"PRICE_SENSITIVE"));
    let mut two = buyer(2, 30, 10);
    two.discounted_share_bp = 10_000;
    assert!(
        !traits_of(&two).contains(&"PRICE_SENSITIVE"),
        "needs 3 purchases"
    );
}

#[test]
fn seed_001_influyente_by_three_converted_referrals() {
    let mut f = buyer(1, 0, 10);
    f.referrals_converted = 3;
    assert!(traits_of(&f).contains(&"INFLUENTIAL"));
    f.referrals_converted = 2;
    assert!(!traits_of(&f).contains(&"INFLUENTIAL"));
}

// ---- RFM ----

#[test]
fn every_rfm_score_pair_has_a_segment_and_every_segment_is_reachable() {
    use clientela_domain::Labeled;
    let mut seen = std::collections::BTreeSet::new();
    for r in 1..=5 {
        for f in 1..=5 {
            seen.insert(rfm_segment(r, f).code());
        }
    }
    assert_eq!(seen.len(), RfmSegment::ALL.len(), "{seen:?}");
    assert_eq!(rfm_segment(5, 5), RfmSegment::Champions);
    assert_eq!(rfm_segment(1, 1), RfmSegment::Lost);
    assert_eq!(rfm_segment(1, 5), RfmSegment::CannotLoseThem);
}

// ---- explanations are optional, labels are not ----

#[test]
fn without_explanations_the_rules_decide_the_same_labels_by_the_same_rules() {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    let policy = Policy::default();
    let mut rng = StdRng::seed_from_u64(4);
    let mut tally = crate::population::Tally::default();
    let customers: Vec<(Uuid, Features, bool, bool, CustomerKind)> = (0..2_000u128)
        .map(|n| {
            let mut f = buyer(
                rng.random_range(0..12),
                rng.random_range(1..200),
                rng.random_range(0..400),
            );
            f.revenue_in_window = rng.random_range(0..100_000);
            f.revenue_prev_window = rng.random_range(0..100_000);
            f.revenue_total = f.revenue_in_window + f.revenue_prev_window;
            f.cv_interpurchase_bp = rng.random_range(0..20_000);
            f.discounted_purchases = rng.random_range(0..=f.purchases_total);
            f.discounted_share_bp = rng.random_range(0..=10_000);
            f.complaints_in_window = rng.random_range(0..4);
            f.open_complaints = rng.random_range(0..2);
            f.latest_nps = rng
                .random_bool(0.5)
                .then(|| (rng.random_range(0..=10), ago(3)));
            f.latest_csat = rng
                .random_bool(0.3)
                .then(|| (rng.random_range(1..=5), ago(5)));
            f.referrals_converted = rng.random_range(0..4);
            f.audience_reach = rng.random_range(0..200_000);
            f.public_figure = rng.random_bool(0.05);
            f.cost_to_serve_minor = rng.random_bool(0.5).then(|| rng.random_range(0..5_000));
            tally.add(id(n), &f);
            let kind = if rng.random_bool(0.5) {
                CustomerKind::Person
            } else {
                CustomerKind::Organization
            };
            (id(n), f, rng.random_bool(0.1), rng.random_bool(0.1), kind)
        })
        .collect();
    let population = tally.finish(&policy);
    let mut seen = BTreeSet::new();
    for (customer, f, key_account, high_expectations, kind) in &customers {
        let explained = Context {
            id: *customer,
            kind: *kind,
            key_account: *key_account,
            high_expectations: *high_expectations,
            ..with(&policy, &population)
        };
        let quiet = Context {
            explain: false,
            ..explained
        };
        let (a, b) = (classify(f, &explained), classify(f, &quiet));
        let rules = |l: &Labels| {
            let mut rules = vec![
                l.lifecycle_stage.rule.clone(),
                l.activity.rule.clone(),
                l.satisfaction.rule.clone(),
                l.volume.rule.clone(),
                l.influence.rule.clone(),
                l.account_tier.rule.clone(),
                l.rfm.segment.rule.clone(),
            ];
            rules.extend(l.traits.iter().map(|t| t.rule.clone()));
            rules
        };
        assert_eq!(a.codes(), b.codes(), "{f:?}");
        assert_eq!(a.trait_codes(), b.trait_codes(), "{f:?}");
        assert_eq!(rules(&a), rules(&b), "{f:?}");
        assert!(!a.activity.explanation_en.is_empty());
        assert!(b.activity.explanation_en.is_empty() && b.activity.observations.is_empty());
        seen.extend(rules(&a));
    }
    // The sample reaches most rules, so the comparison covers them.
    assert!(seen.len() >= 30, "{seen:?}");
}

// ---- TAXONOMY: population-relative labels before the first population ----

#[test]
fn before_the_first_population_the_labels_that_need_it_are_unspecified_and_say_why() {
    let policy = Policy::default();
    let population = Population::default();
    let cx = Context {
        population: None,
        company_revenue: 50_000,
        ..with(&policy, &population)
    };
    let mut f = buyer(3, 10, 10);
    f.revenue_in_window = 40_000;
    let labels = classify(&f, &cx);
    for (rule, explanation) in [
        (&labels.volume.rule, &labels.volume.explanation_en),
        (
            &labels.account_tier.rule,
            &labels.account_tier.explanation_en,
        ),
        (&labels.rfm.segment.rule, &labels.rfm.segment.explanation_en),
    ] {
        assert!(rule.ends_with(".no_population"), "{rule}");
        assert!(
            explanation.starts_with("UNSPECIFIED: no population computed yet"),
            "{explanation}"
        );
    }
    assert_eq!(labels.volume.label, None);
    assert_eq!(
        labels.account_tier.label, None,
        "not BOSS on 80 % of sales either"
    );
    assert_eq!((labels.rfm.recency, labels.rfm.segment.label), (0, None));
    assert!(
        labels
            .account_tier
            .explanation_es
            .contains("aún no hay población")
    );
    // What does not depend on the population is decided as ever.
    assert!(labels.lifecycle_stage.label.is_some());
    assert!(labels.activity.label.is_some());
    let fixed = Policy {
        volume_mode: VolumeMode::Fixed,
        ..Policy::default()
    };
    let cx = Context {
        policy: &fixed,
        ..cx
    };
    assert!(
        volume(&f, &cx).label.is_some(),
        "FIXED volume needs no population"
    );
    // A prospect is a prospect with or without one.
    assert_eq!(
        account_tier(&Features::default(), &cx, None).label,
        Some(AccountTier::Prospect)
    );
}

/// A fresh install's first population is computed over prospects alone; until the
/// first revenue refreshes it, a buyer is not ranked against it (it read LOW, "the buyers
/// ranked above it make 95.00 % of revenue", holding all of it).
#[test]
fn a_population_computed_before_anyone_bought_ranks_no_buyer() {
    let policy = Policy::default();
    let mut tally = crate::population::Tally::default();
    tally.add(id(1), &Features::default());
    let population = tally.finish(&policy);
    assert!(!population.ranks_revenue());
    let cx = Context {
        company_revenue: 40_000,
        ..with(&policy, &population)
    };
    let mut f = buyer(1, 0, 10);
    f.revenue_in_window = 2_000;
    let labels = classify(&f, &cx);
    for (decision_rule, rule, explanation) in [
        (
            &labels.volume.rule,
            "volume.unranked",
            &labels.volume.explanation_en,
        ),
        (
            &labels.account_tier.rule,
            "tier.unranked",
            &labels.account_tier.explanation_en,
        ),
        (
            &labels.rfm.segment.rule,
            "rfm.unranked",
            &labels.rfm.segment.explanation_en,
        ),
    ] {
        assert_eq!(decision_rule, rule);
        assert!(
            explanation.starts_with(
                "UNSPECIFIED: the population in use was computed before any buyer had revenue"
            ),
            "{explanation}"
        );
    }
    assert_eq!(labels.volume.label, None, "not LOW");
    assert_eq!(labels.account_tier.label, None);
    assert_eq!((labels.rfm.recency, labels.rfm.segment.label), (0, None));
    assert!(
        labels
            .volume
            .explanation_es
            .contains("no puede ordenar a este")
    );
    // What the current company revenue decides alone is decided: a tenth of it is BOSS...
    f.revenue_in_window = 4_000;
    assert_eq!(
        classify(&f, &cx).account_tier.label,
        Some(AccountTier::Boss)
    );
    // ...and a key account flagged in the registry is KEY.
    f.revenue_in_window = 1_000;
    let flagged = Context {
        key_account: true,
        ..cx
    };
    assert_eq!(
        classify(&f, &flagged).account_tier.label,
        Some(AccountTier::Key)
    );
    // A buyer with no revenue in the window ranks last against any population.
    f.revenue_in_window = 0;
    assert_eq!(volume(&f, &cx).label, Some(Volume::Low));
}

/// A population stored before it kept the ABC curve bands as ever, and its explanation
/// says it cannot give the running share instead of making one up.
#[test]
fn without_the_abc_curve_the_volume_explanation_gives_no_running_share() {
    let policy = Policy::default();
    let population = Population {
        customers: 3,
        buyers: 3,
        revenue_in_window: 100,
        abc_high: Some(Rank {
            value: 60,
            id: id(1),
        }),
        abc_medium: Some(Rank {
            value: 30,
            id: id(2),
        }),
        ..Population::default()
    };
    let cx = with(&policy, &population);
    let mut f = buyer(1, 0, 10);
    f.revenue_in_window = 10;
    let decision = volume(&f, &cx);
    assert_eq!(decision.label, Some(Volume::Low));
    assert!(
        decision
            .explanation_en
            .contains("ranked against the population in use, stored before it kept running shares"),
        "{}",
        decision.explanation_en
    );
    assert!(!decision.explanation_en.contains("95.00 % of revenue"));
}

#[test]
fn the_volume_explanation_gives_the_running_share_and_the_purchases_left_out() {
    // Revenues 50, 30, 10, 5, 5 of 100 (docs/CLASSIFICATION.md's example).
    let policy = Policy::default();
    let features: Vec<(Uuid, Features)> = [(1, 50), (2, 30), (3, 10), (4, 5), (5, 5)]
        .into_iter()
        .map(|(n, revenue)| {
            let mut f = buyer(1, 0, 10);
            f.revenue_in_window = revenue;
            (id(n), f)
        })
        .collect();
    let population = Population::compute(features.iter().map(|(id, f)| (*id, f)), &policy);
    let explain = |n: u128, left_out: &[crate::classification::LeftOut]| {
        let cx = Context {
            id: id(n),
            left_out,
            ..with(&policy, &population)
        };
        volume(&features[n as usize - 1].1, &cx)
    };
    let medium = explain(3, &[]);
    assert_eq!(medium.label, Some(Volume::Medium));
    assert_eq!(
        medium.explanation_en,
        "MEDIUM: revenue 10 CLP in 365 days (10.00 % of company revenue 100); the buyers \
         ranked above it make 80.00 % of revenue: from 80.00 % to below 95.00 %"
    );
    let low = explain(5, &[]);
    assert!(
        low.explanation_en
            .ends_with("the buyers ranked above it make 95.00 % of revenue: 95.00 % or more"),
        "{}",
        low.explanation_en
    );
    // Placed between two checkpoints, narrowed to its band.
    let cx = Context {
        id: id(9),
        ..with(&policy, &population)
    };
    let mut newcomer = buyer(1, 0, 10);
    newcomer.revenue_in_window = 40;
    let high = volume(&newcomer, &cx);
    assert_eq!(high.label, Some(Volume::High));
    assert!(
        high.explanation_en
            .contains("the buyers ranked above it make 50.00 % of revenue: below 80.00 %"),
        "{}",
        high.explanation_en
    );
    assert!(
        high.explanation_es
            .contains("los compradores por encima suman")
    );
    let usd = [crate::classification::LeftOut {
        currency_code: "USD".into(),
        purchases: 2,
        amount_minor: 3_500,
    }];
    let with_usd = explain(3, &usd);
    assert!(
        with_usd
            .explanation_en
            .ends_with("; left out of revenue (not in CLP): 2 in USD (3500 USD)"),
        "{}",
        with_usd.explanation_en
    );
    assert!(with_usd.explanation_es.ends_with("2 en USD (3500 USD)"));
    assert!(
        with_usd
            .observations
            .iter()
            .any(|o| o.feature == "purchases_in_other_currencies" && o.observed == "2")
    );
}
