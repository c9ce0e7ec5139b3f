//! The rules of docs/CLASSIFICATION.md: one function per dimension, each deciding a label from a
//! customer's features, the population's cut-offs and the policy, and saying why.

use chrono::{DateTime, Duration, Utc};
use clientela_domain::Labeled;
use clientela_domain::taxonomy::{
    AccountTier, Activity, CustomerKind, DecisionRole, Influence, LifecycleStage, RfmSegment,
    Satisfaction, Trait, Volume,
};
use uuid::Uuid;

use crate::classification::LeftOut;
use crate::facts::Features;
use crate::labels::{Decision, Labels, Observation, Rfm};
use crate::policy::{BP, Policy, VolumeMode};
use crate::population::{Population, Rank, quintile_score};
use crate::revenue::share_bp;

const DAY_SECS: i64 = 86_400;

/// A share in basis points as a percentage with two decimals ("12.34 %").
fn pct(bp: i64) -> String {
    format!("{}.{:02} %", bp / 100, (bp % 100).abs())
}

/// Days, with two decimals, from seconds.
fn days(secs: i64) -> String {
    let centi = secs * 100 / DAY_SECS;
    format!("{}.{:02}", centi / 100, (centi % 100).abs())
}

/// What the rules need besides the features.
pub struct Context<'a> {
    pub id: Uuid,
    /// Person or organization.
    pub kind: CustomerKind,
    /// The registry flags high expectations.
    pub high_expectations: bool,
    /// The registry flags a key account.
    pub key_account: bool,
    pub as_of: DateTime<Utc>,
    pub policy: &'a Policy,
    /// The population's cut-offs (None: none computed yet: the labels that depend on
    /// them are unspecified).
    pub population: Option<&'a Population>,
    /// The company's revenue in the window, kept current with the feed: the denominator
    /// of the share of sales.
    pub company_revenue: i64,
    /// Purchases in the window in other currencies, left out of revenue.
    pub left_out: &'a [LeftOut],
    /// Whether to say why: explanations and observations are built only then (a
    /// Reclassify needs the labels alone; formatting them was most of its rules' time).
    pub explain: bool,
}

/// A decision of `$cx`'s rules: the explanation and observation arguments are evaluated
/// only when it explains.
macro_rules! decide {
    ($cx:expr, $label:expr, $rule:expr, $en:expr, $es:expr, $observations:expr $(,)?) => {
        if $cx.explain {
            Decision::new($label, $rule, $en, $es, $observations)
        } else {
            Decision::unexplained($label, $rule)
        }
    };
    // `why` yields the explanations and observations together.
    ($cx:expr, $label:expr, $rule:expr, why: $why:expr $(,)?) => {
        if $cx.explain {
            let (en, es, observations) = $why;
            Decision::new($label, $rule, en, es, observations)
        } else {
            Decision::unexplained($label, $rule)
        }
    };
}

/// Every label of one customer.
pub fn classify(f: &Features, cx: &Context<'_>) -> Labels {
    let lifecycle_stage = lifecycle(f, cx);
    let activity = activity(f, cx);
    let satisfaction = satisfaction(f, cx);
    let volume = volume(f, cx);
    let influence = influence(f, cx);
    let account_tier = account_tier(f, cx, volume.label);
    let traits = traits(f, cx, &lifecycle_stage, &satisfaction, &influence);
    let rfm = rfm(f, cx);
    Labels {
        lifecycle_stage,
        activity,
        satisfaction,
        volume,
        influence,
        account_tier,
        traits,
        rfm,
    }
}

/// Lifecycle stage (seeds 003, 002).
pub fn lifecycle(f: &Features, cx: &Context<'_>) -> Decision<LifecycleStage> {
    use LifecycleStage::*;
    let p = cx.policy;
    let total = || Observation::new("purchases_total", f.purchases_total, ">=", 1);
    if f.purchases_total == 0 {
        return decide!(
            cx,
            Some(Prospect),
            "lifecycle.prospect",
            "identified, no purchase yet",
            "identificado, sin compras aún",
            vec![Observation::new("purchases_total", 0, "=", 0)],
        );
    }
    if f.purchases_total == 1 {
        return decide!(
            cx,
            Some(Buyer),
            "lifecycle.buyer",
            "one purchase",
            "una compra",
            vec![Observation::new("purchases_total", 1, "=", 1)],
        );
    }
    let bar = i64::from(p.frequent_min_purchases);
    let frequent = || Observation::new("purchases_in_window", f.purchases_in_window, ">=", bar);
    if f.purchases_in_window < bar {
        return decide!(
            cx,
            Some(Sporadic),
            "lifecycle.sporadic",
            format!(
                "{} purchases, {} in {} days < {bar}",
                f.purchases_total, f.purchases_in_window, p.window_days
            ),
            format!(
                "{} compras, {} en {} días < {bar}",
                f.purchases_total, f.purchases_in_window, p.window_days
            ),
            vec![
                total(),
                Observation::new("purchases_in_window", f.purchases_in_window, "<", bar),
            ],
        );
    }
    let nps_bar = p.unconditional_min_nps;
    let referral_bar = i64::from(p.unconditional_min_referrals);
    let promoter = f.latest_nps.is_some_and(|(score, _)| score >= nps_bar);
    let recommends = f.referrals_converted >= referral_bar;
    if promoter || recommends {
        let why = || {
            if promoter {
                let score = f.latest_nps.map_or(0, |(s, _)| s);
                (
                    format!(
                        "{} purchases in {} days >= {bar} and latest NPS {score} >= {nps_bar}",
                        f.purchases_in_window, p.window_days
                    ),
                    format!(
                        "{} compras en {} días >= {bar} y último NPS {score} >= {nps_bar}",
                        f.purchases_in_window, p.window_days
                    ),
                    vec![
                        frequent(),
                        Observation::new("latest_nps", score, ">=", nps_bar),
                    ],
                )
            } else {
                (
                    format!(
                        "{} purchases in {} days >= {bar} and {} converted referrals >= {referral_bar}",
                        f.purchases_in_window, p.window_days, f.referrals_converted
                    ),
                    format!(
                        "{} compras en {} días >= {bar} y {} referidos que compraron >= {referral_bar}",
                        f.purchases_in_window, p.window_days, f.referrals_converted
                    ),
                    vec![
                        frequent(),
                        Observation::new(
                            "referrals_converted",
                            f.referrals_converted,
                            ">=",
                            referral_bar,
                        ),
                    ],
                )
            }
        };
        return decide!(
            cx,
            Some(Unconditional),
            "lifecycle.unconditional",
            why: why());
    }
    decide!(
        cx,
        Some(Frequent),
        "lifecycle.frequent",
        format!(
            "{} purchases in {} days >= {bar}",
            f.purchases_in_window, p.window_days
        ),
        format!(
            "{} compras en {} días >= {bar}",
            f.purchases_in_window, p.window_days
        ),
        vec![frequent()],
    )
}

/// Activity (seeds 000, 002): active by a recent purchase or by keeping cadence.
pub fn activity(f: &Features, cx: &Context<'_>) -> Decision<Activity> {
    use Activity::*;
    let p = cx.policy;
    let Some(last) = f.last_purchase_at else {
        return decide!(
            cx,
            None,
            "activity.no_purchase",
            "no purchase yet",
            "sin compras aún",
            Vec::new(),
        );
    };
    let since = (cx.as_of - last).num_seconds();
    // One purchase ever: too early to call it a one-time buyer while it is new (the
    // active rules are for repeat buyers).
    if f.purchases_total == 1 {
        let new_bar = i64::from(p.new_customer_days) * DAY_SECS;
        let new = since <= new_bar;
        let (label, rule, cmp) = if new {
            (ActiveNew, "activity.active_new", "<=")
        } else {
            (InactiveOneTime, "activity.inactive_one_time", ">")
        };
        return decide!(
            cx,
            Some(label),
            rule,
            format!(
                "one purchase, {} days ago {cmp} {}",
                days(since),
                p.new_customer_days
            ),
            format!(
                "una compra, hace {} días {cmp} {}",
                days(since),
                p.new_customer_days
            ),
            vec![Observation::new(
                "days_since_last_purchase",
                days(since),
                cmp,
                p.new_customer_days
            )],
        );
    }
    let recent_bar = i64::from(p.active_window_days) * DAY_SECS;
    let recent = since <= recent_bar;
    // Cadence: more than `active_cadence_min_purchases` consecutive purchases, none of the
    // recent gaps (nor the time since the last) longer than factor × the mean gap.
    let needed = p.active_cadence_min_purchases as usize;
    let allowed =
        i128::from(f.mean_gap_secs) * i128::from(p.cadence_gap_factor_bp) / i128::from(BP);
    let on_cadence = f.gap_secs.len() >= needed
        && f.mean_gap_secs > 0
        && f.gap_secs[f.gap_secs.len() - needed..]
            .iter()
            .all(|g| i128::from(*g) <= allowed)
        && i128::from(since) <= allowed;
    let since_obs = || {
        Observation::new(
            "days_since_last_purchase",
            days(since),
            if recent { "<=" } else { ">" },
            p.active_window_days,
        )
    };
    if recent || on_cadence {
        let bar = i64::from(p.frequent_min_purchases);
        let frequent = f.purchases_in_window >= bar;
        let label = if frequent {
            ActiveFrequent
        } else {
            ActiveHabitual
        };
        let rule = if frequent {
            "activity.active_frequent"
        } else {
            "activity.active_habitual"
        };
        let why = || {
            let (why_en, why_es, mut observations) = if recent {
                (
                    format!(
                        "last purchase {} days ago <= {}",
                        days(since),
                        p.active_window_days
                    ),
                    format!(
                        "última compra hace {} días <= {}",
                        days(since),
                        p.active_window_days
                    ),
                    vec![since_obs()],
                )
            } else {
                (
                    format!(
                        "{} purchases at their cadence (gaps <= {} days)",
                        needed + 1,
                        days(allowed as i64)
                    ),
                    format!(
                        "{} compras a su ritmo (intervalos <= {} días)",
                        needed + 1,
                        days(allowed as i64)
                    ),
                    vec![Observation::new(
                        "days_since_last_purchase",
                        days(since),
                        "<=",
                        days(allowed as i64),
                    )],
                )
            };
            observations.push(Observation::new(
                "purchases_in_window",
                f.purchases_in_window,
                if frequent { ">=" } else { "<" },
                bar,
            ));
            let cmp = if frequent { ">=" } else { "<" };
            (
                format!(
                    "{why_en}; {} purchases in {} days {cmp} {bar}",
                    f.purchases_in_window, p.window_days
                ),
                format!(
                    "{why_es}; {} compras en {} días {cmp} {bar}",
                    f.purchases_in_window, p.window_days
                ),
                observations,
            )
        };
        return decide!(cx, Some(label), rule, why: why());
    }
    decide!(
        cx,
        Some(InactiveLapsed),
        "activity.inactive_lapsed",
        format!(
            "{} purchases, the last {} days ago > {}, off their cadence",
            f.purchases_total,
            days(since),
            p.active_window_days
        ),
        format!(
            "{} compras, la última hace {} días > {}, fuera de su ritmo",
            f.purchases_total,
            days(since),
            p.active_window_days
        ),
        vec![since_obs()],
    )
}

/// Satisfaction (seeds 000, 001): an open complaint overrides any score; else the most
/// recent survey answer, NPS or CSAT.
pub fn satisfaction(f: &Features, cx: &Context<'_>) -> Decision<Satisfaction> {
    use Satisfaction::*;
    let p = cx.policy;
    if f.open_complaints > 0 {
        return decide!(
            cx,
            Some(Dissatisfied),
            "satisfaction.open_complaint",
            format!("{} open complaint(s) override any score", f.open_complaints),
            format!(
                "{} reclamo(s) abierto(s) prevalecen sobre cualquier puntuación",
                f.open_complaints
            ),
            vec![Observation::new(
                "open_complaints",
                f.open_complaints,
                ">",
                0,
            )],
        );
    }
    let nps = f
        .latest_nps
        .map(|(score, at)| ("NPS", "latest_nps", score, at));
    let csat = f
        .latest_csat
        .map(|(score, at)| ("CSAT", "latest_csat", score, at));
    let latest = match (nps, csat) {
        (Some(n), Some(c)) => Some(if c.3 > n.3 { c } else { n }),
        (n, c) => n.or(c),
    };
    let Some((scale, feature, score, _)) = latest else {
        return decide!(
            cx,
            None,
            "satisfaction.no_survey",
            "no survey answer and no open complaint",
            "sin encuestas ni reclamos abiertos",
            Vec::new(),
        );
    };
    let (very, ok) = if scale == "NPS" {
        (p.nps_very_satisfied_min, p.nps_satisfied_min)
    } else {
        (p.csat_very_satisfied_min, p.csat_satisfied_min)
    };
    let (label, rule, cmp, bar) = if score >= very {
        (VerySatisfied, "satisfaction.very_satisfied", ">=", very)
    } else if score >= ok {
        (Satisfied, "satisfaction.satisfied", ">=", ok)
    } else {
        (Dissatisfied, "satisfaction.dissatisfied", "<", ok)
    };
    decide!(
        cx,
        Some(label),
        rule,
        format!("latest {scale} {score} {cmp} {bar}"),
        format!("último {scale} {score} {cmp} {bar}"),
        vec![Observation::new(feature, score, cmp, bar)],
    )
}

/// Why a label that needs the population is unspecified (TAXONOMY: population-relative
/// labels are never guessed).
#[derive(Debug, Clone, Copy)]
enum Unplaced {
    /// None is computed yet.
    NoPopulation,
    /// The one in use was computed before any buyer had revenue in the window, so it
    /// ranks no one like this customer (the first company revenue refreshes it at once).
    Unranked,
}

fn unplaced<L: Labeled>(
    cx: &Context<'_>,
    why: Unplaced,
    rule: &'static str,
    needs_en: &str,
    needs_es: &str,
) -> Decision<L> {
    let why = || match why {
        Unplaced::NoPopulation => (
            format!(
                "no population computed yet: {needs_en} are decided once the engine has caught \
                 up with the registry's feed"
            ),
            format!(
                "aún no hay población calculada: {needs_es} se deciden cuando el motor se ponga \
                 al día con el feed del registro"
            ),
            vec![Observation::new("population", "none", "=", "none")],
        ),
        Unplaced::Unranked => (
            format!(
                "the population in use was computed before any buyer had revenue in the window, \
                 so it cannot rank this one: {needs_en} are decided against the next population"
            ),
            format!(
                "la población en uso se calculó antes de que algún comprador tuviera ingresos en \
                 la ventana y no puede ordenar a este: {needs_es} se deciden con la próxima \
                 población"
            ),
            vec![Observation::new(
                "population_buyers_with_revenue",
                0,
                ">",
                0,
            )],
        ),
    };
    decide!(cx, None, rule, why: why())
}

/// Volume (seed 000): ABC over the population, or fixed amounts; the explanation names
/// the purchases in other currencies that revenue leaves out.
pub fn volume(f: &Features, cx: &Context<'_>) -> Decision<Volume> {
    let mut decision = volume_band(f, cx);
    if cx.explain && !cx.left_out.is_empty() {
        let list = |word: &str| {
            cx.left_out
                .iter()
                .map(|l| {
                    format!(
                        "{} {word} {} ({} {})",
                        l.purchases, l.currency_code, l.amount_minor, l.currency_code
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        decision.explanation_en += &format!(
            "; left out of revenue (not in {}): {}",
            cx.policy.currency_code,
            list("in")
        );
        decision.explanation_es += &format!(
            "; fuera de los ingresos (no en {}): {}",
            cx.policy.currency_code,
            list("en")
        );
        let purchases: i64 = cx.left_out.iter().map(|l| l.purchases).sum();
        decision.observations.push(Observation::new(
            "purchases_in_other_currencies",
            purchases,
            "not in",
            &cx.policy.currency_code,
        ));
    }
    decision
}

fn volume_band(f: &Features, cx: &Context<'_>) -> Decision<Volume> {
    use Volume::*;
    let p = cx.policy;
    if f.purchases_total == 0 {
        return decide!(
            cx,
            None,
            "volume.no_purchase",
            "no purchase yet",
            "sin compras aún",
            Vec::new(),
        );
    }
    let revenue = f.revenue_in_window;
    match p.volume_mode {
        VolumeMode::Fixed => {
            let (label, rule, cmp, bar) = if revenue >= p.fixed_high_min_minor {
                (High, "volume.fixed_high", ">=", p.fixed_high_min_minor)
            } else if revenue >= p.fixed_medium_min_minor {
                (
                    Medium,
                    "volume.fixed_medium",
                    ">=",
                    p.fixed_medium_min_minor,
                )
            } else {
                (Low, "volume.fixed_low", "<", p.fixed_medium_min_minor)
            };
            decide!(
                cx,
                Some(label),
                rule,
                format!(
                    "revenue {revenue} {} in {} days {cmp} {bar}",
                    p.currency_code, p.window_days
                ),
                format!(
                    "ingresos {revenue} {} en {} días {cmp} {bar}",
                    p.currency_code, p.window_days
                ),
                vec![Observation::new("revenue_in_window", revenue, cmp, bar)],
            )
        }
        VolumeMode::Abc => {
            let Some(pop) = cx.population else {
                return unplaced(
                    cx,
                    Unplaced::NoPopulation,
                    "volume.no_population",
                    "the volume bands",
                    "las bandas de volumen",
                );
            };
            if revenue > 0 && !pop.ranks_revenue() {
                return unplaced(
                    cx,
                    Unplaced::Unranked,
                    "volume.unranked",
                    "the volume bands",
                    "las bandas de volumen",
                );
            }
            let rank = Rank {
                value: revenue,
                id: cx.id,
            };
            let inside =
                |bound: Option<Rank>| revenue > 0 && bound.is_some_and(|b| rank.within(&b));
            let (high, medium) = (
                i64::from(p.abc_high_cumulative_bp),
                i64::from(p.abc_medium_cumulative_bp),
            );
            // The band's part of the running share: where the revenue ranked before the
            // customer lies (the curve's 1 % steps, narrowed to the band).
            let (label, rule, from, below) = if inside(pop.abc_high) {
                (High, "volume.abc_high", 0, high)
            } else if inside(pop.abc_medium) {
                (Medium, "volume.abc_medium", high, medium)
            } else {
                (Low, "volume.abc_low", medium, BP + 1)
            };
            let why = || {
                let share = pct(share_bp(revenue, cx.company_revenue));
                let (en, es, observed) = if revenue <= 0 {
                    (
                        "no revenue in the window ranks last".to_owned(),
                        "sin ingresos en la ventana queda al final".to_owned(),
                        pct(BP),
                    )
                } else if let Some(range) = pop.running_share_bp(&rank) {
                    // Narrowed to the band where the two meet; the curve's own range
                    // where they do not.
                    let (low, high) = match range {
                        (low, high) if low < below && high >= from => {
                            (low.max(from), high.min(below).min(BP))
                        }
                        range => range,
                    };
                    let range = if low >= high {
                        pct(low)
                    } else {
                        format!("{}-{}", pct(low), pct(high))
                    };
                    (
                        format!("the buyers ranked above it make {range} of revenue"),
                        format!("los compradores por encima suman {range} de los ingresos"),
                        range,
                    )
                } else {
                    (
                        "ranked against the population in use, stored before it kept running \
                         shares (the next one gives it)"
                            .to_owned(),
                        "ordenado con la población en uso, guardada antes de que guardara \
                         participaciones acumuladas (la próxima la da)"
                            .to_owned(),
                        "unknown".to_owned(),
                    )
                };
                let (band_en, band_es) = match label {
                    High => (
                        format!("below {}", pct(high)),
                        format!("bajo {}", pct(high)),
                    ),
                    Medium => (
                        format!("from {} to below {}", pct(high), pct(medium)),
                        format!("desde {} y bajo {}", pct(high), pct(medium)),
                    ),
                    Low => (
                        format!("{} or more", pct(medium)),
                        format!("{} o más", pct(medium)),
                    ),
                };
                let bar = match label {
                    High => format!("< {}", pct(high)),
                    Medium => format!("{} - {}", pct(high), pct(medium)),
                    Low => format!(">= {}", pct(medium)),
                };
                (
                    format!(
                        "revenue {revenue} {} in {} days ({share} of company revenue {}); {en}: \
                         {band_en}",
                        p.currency_code, p.window_days, cx.company_revenue
                    ),
                    format!(
                        "ingresos {revenue} {} en {} días ({share} de los ingresos de la empresa \
                         {}); {es}: {band_es}",
                        p.currency_code, p.window_days, cx.company_revenue
                    ),
                    vec![Observation::new(
                        "revenue_ranked_above",
                        observed,
                        "in",
                        bar,
                    )],
                )
            };
            decide!(cx, Some(label), rule, why: why())
        }
    }
}

/// Influence (seeds 000, 001).
pub fn influence(f: &Features, cx: &Context<'_>) -> Decision<Influence> {
    let bar = cx.policy.major_influencer_min_reach;
    if f.public_figure || f.audience_reach >= bar {
        let why = || {
            if f.public_figure {
                (
                    "a public figure".to_owned(),
                    "figura pública".to_owned(),
                    vec![Observation::new("is_public_figure", true, "=", true)],
                )
            } else {
                (
                    format!("audience reach {} >= {bar}", f.audience_reach),
                    format!("alcance de audiencia {} >= {bar}", f.audience_reach),
                    vec![Observation::new(
                        "audience_reach",
                        f.audience_reach,
                        ">=",
                        bar,
                    )],
                )
            }
        };
        return decide!(cx, Some(Influence::MajorInfluencer), "influence.major", why: why());
    }
    if f.decision_role == Some(DecisionRole::Household) && cx.kind == CustomerKind::Person {
        return decide!(
            cx,
            Some(Influence::Family),
            "influence.family",
            "a person who decides or sways their household's purchases",
            "una persona que decide o influye en las compras de su hogar",
            vec![Observation::new(
                "org_decision_role",
                "HOUSEHOLD",
                "=",
                "HOUSEHOLD"
            )],
        );
    }
    if let Some(role) = f
        .decision_role
        .filter(|r| !matches!(r, DecisionRole::None | DecisionRole::Household))
    {
        use clientela_domain::Labeled;
        return decide!(
            cx,
            Some(Influence::Organizational),
            "influence.organizational",
            format!("decision role {} inside an organization", role.code()),
            format!("rol de decisión {} en una organización", role.code()),
            vec![Observation::new(
                "org_decision_role",
                role.code(),
                "=",
                "any",
            )],
        );
    }
    decide!(
        cx,
        Some(Influence::None),
        "influence.none",
        "no public reach and no decision role",
        "sin alcance público ni rol de decisión",
        Vec::new(),
    )
}

/// Account tier (seed 004): first match wins.
pub fn account_tier(
    f: &Features,
    cx: &Context<'_>,
    volume: Option<Volume>,
) -> Decision<AccountTier> {
    use AccountTier::*;
    let p = cx.policy;
    if f.purchases_total == 0 {
        return decide!(
            cx,
            Some(Prospect),
            "tier.prospect",
            "identified, no purchase yet",
            "identificado, sin compras aún",
            vec![Observation::new("purchases_total", 0, "=", 0)],
        );
    }
    let Some(pop) = cx.population else {
        return unplaced(
            cx,
            Unplaced::NoPopulation,
            "tier.no_population",
            "the share of buyers that are KEY and the volume band",
            "la proporción de compradores CLAVE y la banda de volumen",
        );
    };
    let total = cx.company_revenue;
    let revenue = f.revenue_in_window;
    let share_bp = share_bp(revenue, total);
    // Exact: revenue / total >= boss / 10000, without rounding the share.
    let boss = total > 0
        && i128::from(revenue) * i128::from(BP)
            >= i128::from(total) * i128::from(p.boss_min_share_bp);
    let share_obs = |cmp: &str| {
        Observation::new(
            "share_of_sales",
            pct(share_bp),
            cmp,
            pct(i64::from(p.boss_min_share_bp)),
        )
    };
    if boss {
        return decide!(
            cx,
            Some(Boss),
            "tier.boss",
            format!(
                "share of sales {} >= {}",
                pct(share_bp),
                pct(i64::from(p.boss_min_share_bp))
            ),
            format!(
                "participación en ventas {} >= {}",
                pct(share_bp),
                pct(i64::from(p.boss_min_share_bp))
            ),
            vec![share_obs(">=")],
        );
    }
    let rank = Rank {
        value: revenue,
        id: cx.id,
    };
    let top = revenue > 0 && pop.key.is_some_and(|b| rank.within(&b));
    if !top && !cx.key_account && revenue > 0 && !pop.ranks_revenue() {
        return unplaced(
            cx,
            Unplaced::Unranked,
            "tier.unranked",
            "the share of buyers that are KEY and the volume band",
            "la proporción de compradores CLAVE y la banda de volumen",
        );
    }
    if top || cx.key_account {
        let observations = || {
            vec![Observation::new(
                "top_buyers_share",
                if top { "inside" } else { "flagged" },
                "<=",
                pct(i64::from(p.key_top_buyers_bp)),
            )]
        };
        let why = || {
            if top {
                (
                    format!(
                        "among the top {} of buyers by revenue",
                        pct(i64::from(p.key_top_buyers_bp))
                    ),
                    format!(
                        "entre el {} de compradores con más ingresos",
                        pct(i64::from(p.key_top_buyers_bp))
                    ),
                    observations(),
                )
            } else {
                (
                    "flagged as a key account in the registry".to_owned(),
                    "marcado como cuenta clave en el registro".to_owned(),
                    observations(),
                )
            }
        };
        return decide!(cx, Some(Key), "tier.key", why: why());
    }
    if let Some(growth) = f.revenue_growth_bp()
        && growth >= i64::from(p.strategic_min_growth_bp)
    {
        return decide!(
            cx,
            Some(Strategic),
            "tier.strategic",
            format!(
                "revenue growth {} >= {} with share of sales {} < {}",
                pct(growth),
                pct(i64::from(p.strategic_min_growth_bp)),
                pct(share_bp),
                pct(i64::from(p.boss_min_share_bp))
            ),
            format!(
                "crecimiento de ingresos {} >= {} con participación {} < {}",
                pct(growth),
                pct(i64::from(p.strategic_min_growth_bp)),
                pct(share_bp),
                pct(i64::from(p.boss_min_share_bp))
            ),
            vec![
                Observation::new(
                    "revenue_growth",
                    pct(growth),
                    ">=",
                    pct(i64::from(p.strategic_min_growth_bp)),
                ),
                share_obs("<"),
            ],
        );
    }
    // Below the top: the volume band, growth and share say the rest.
    let growth = f.revenue_growth_bp();
    let growth_text = growth.map_or_else(|| "no revenue before".to_owned(), pct);
    let growth_obs = || {
        Observation::new(
            "revenue_growth",
            growth_text.clone(),
            "<",
            pct(i64::from(p.strategic_min_growth_bp)),
        )
    };
    let band = volume.map_or("UNSPECIFIED", |v| v.code());
    let volume_obs = |cmp: &str, bar: &str| Observation::new("volume", band, cmp, bar.to_owned());
    match volume {
        Some(Volume::Medium | Volume::High) => decide!(
            cx,
            Some(Regular),
            "tier.regular",
            format!(
                "{band} volume, share of sales {} < {}, growth {growth_text} < {}, not a top buyer",
                pct(share_bp),
                pct(i64::from(p.boss_min_share_bp)),
                pct(i64::from(p.strategic_min_growth_bp))
            ),
            format!(
                "volumen {band}, participación {} < {}, crecimiento {growth_text} < {}, \
                 fuera de los mayores compradores",
                pct(share_bp),
                pct(i64::from(p.boss_min_share_bp)),
                pct(i64::from(p.strategic_min_growth_bp))
            ),
            vec![
                volume_obs("in", "MEDIUM, HIGH"),
                share_obs("<"),
                growth_obs()
            ],
        ),
        Some(Volume::Low) => {
            let margin = i128::from(revenue) * i128::from(p.margin_bp) / i128::from(BP);
            let of = format!("{} of {revenue}", pct(i64::from(p.margin_bp)));
            let de = format!("{} de {revenue}", pct(i64::from(p.margin_bp)));
            match f.cost_to_serve_minor {
                Some(cost) if i128::from(cost) > margin => decide!(
                    cx,
                    Some(Small),
                    "tier.small",
                    format!("LOW volume and cost to serve {cost} > margin {margin} ({of})"),
                    format!("volumen BAJO y costo de servir {cost} > margen {margin} ({de})"),
                    vec![
                        volume_obs("=", "LOW"),
                        Observation::new("cost_to_serve", cost, ">", margin as i64),
                    ],
                ),
                Some(cost) => decide!(
                    cx,
                    Some(Transactional),
                    "tier.transactional",
                    format!(
                        "LOW volume, cost to serve {cost} <= margin {margin} ({of}), growth \
                         {growth_text} < {}",
                        pct(i64::from(p.strategic_min_growth_bp))
                    ),
                    format!(
                        "volumen BAJO, costo de servir {cost} <= margen {margin} ({de}), \
                         crecimiento {growth_text} < {}",
                        pct(i64::from(p.strategic_min_growth_bp))
                    ),
                    vec![
                        volume_obs("=", "LOW"),
                        Observation::new("cost_to_serve", cost, "<=", margin as i64),
                        growth_obs(),
                    ],
                ),
                None => decide!(
                    cx,
                    Some(Transactional),
                    "tier.transactional",
                    format!(
                        "LOW volume, cost to serve unknown, growth {growth_text} < {}",
                        pct(i64::from(p.strategic_min_growth_bp))
                    ),
                    format!(
                        "volumen BAJO, costo de servir desconocido, crecimiento {growth_text} < {}",
                        pct(i64::from(p.strategic_min_growth_bp))
                    ),
                    vec![
                        volume_obs("=", "LOW"),
                        Observation::new("cost_to_serve", "unknown", "<=", margin as i64),
                        growth_obs(),
                    ],
                ),
            }
        }
        None => decide!(
            cx,
            None,
            "tier.no_volume",
            "no volume band to compare",
            "sin banda de volumen que comparar",
            vec![volume_obs("=", "UNSPECIFIED")],
        ),
    }
}

/// Behaviour traits (seed 001).
pub fn traits(
    f: &Features,
    cx: &Context<'_>,
    lifecycle: &Decision<LifecycleStage>,
    satisfaction: &Decision<Satisfaction>,
    influence: &Decision<Influence>,
) -> Vec<Decision<Trait>> {
    let p = cx.policy;
    let mut out = Vec::new();
    let tenure = f.first_purchase_at.map(|t| cx.as_of - t);
    let tenure_bar = Duration::days(i64::from(p.loyal_min_tenure_days));
    if matches!(
        lifecycle.label,
        Some(LifecycleStage::Frequent | LifecycleStage::Unconditional)
    ) && let Some(tenure) = tenure.filter(|t| *t >= tenure_bar)
    {
        out.push(decide!(
            cx,
            Some(Trait::Loyal),
            "trait.loyal",
            format!(
                "{} customer for {} days >= {}",
                lifecycle.code().unwrap_or_default(),
                tenure.num_days(),
                p.loyal_min_tenure_days
            ),
            format!(
                "cliente {} hace {} días >= {}",
                lifecycle.code().unwrap_or_default(),
                tenure.num_days(),
                p.loyal_min_tenure_days
            ),
            vec![Observation::new(
                "tenure_days",
                tenure.num_days(),
                ">=",
                p.loyal_min_tenure_days,
            )],
        ));
    }
    if f.gap_secs.len() >= 2 && f.cv_interpurchase_bp >= i64::from(p.occasional_min_cv_bp) {
        out.push(decide!(
            cx,
            Some(Trait::Occasional),
            "trait.occasional",
            format!(
                "irregular purchases: variation of the gaps {} >= {}",
                pct(f.cv_interpurchase_bp),
                pct(i64::from(p.occasional_min_cv_bp))
            ),
            format!(
                "compras irregulares: variación de los intervalos {} >= {}",
                pct(f.cv_interpurchase_bp),
                pct(i64::from(p.occasional_min_cv_bp))
            ),
            vec![Observation::new(
                "cv_interpurchase",
                pct(f.cv_interpurchase_bp),
                ">=",
                pct(i64::from(p.occasional_min_cv_bp)),
            )],
        ));
    }
    let complaints_bar = i64::from(p.demanding_min_complaints);
    if f.complaints_in_window >= complaints_bar || cx.high_expectations {
        let observations = || {
            vec![Observation::new(
                "complaints_in_window",
                f.complaints_in_window,
                ">=",
                complaints_bar,
            )]
        };
        let why = || {
            if f.complaints_in_window >= complaints_bar {
                (
                    format!(
                        "{} complaints in {} days >= {complaints_bar}",
                        f.complaints_in_window, p.window_days
                    ),
                    format!(
                        "{} reclamos en {} días >= {complaints_bar}",
                        f.complaints_in_window, p.window_days
                    ),
                    observations(),
                )
            } else {
                (
                    "the registry flags high expectations".to_owned(),
                    "el registro indica altas expectativas".to_owned(),
                    observations(),
                )
            }
        };
        out.push(decide!(cx, Some(Trait::Demanding), "trait.demanding", why: why()));
    }
    if satisfaction.label == Some(Satisfaction::Dissatisfied) {
        out.push(decide!(
            cx,
            Some(Trait::Dissatisfied),
            "trait.dissatisfied",
            satisfaction.explanation_en.clone(),
            satisfaction.explanation_es.clone(),
            satisfaction.observations.clone(),
        ));
    }
    let referral_bar = i64::from(p.influential_min_referrals);
    if influence.label == Some(Influence::MajorInfluencer) || f.referrals_converted >= referral_bar
    {
        let why = || {
            if influence.label == Some(Influence::MajorInfluencer) {
                (
                    influence.explanation_en.clone(),
                    influence.explanation_es.clone(),
                    influence.observations.clone(),
                )
            } else {
                (
                    format!(
                        "{} converted referrals >= {referral_bar}",
                        f.referrals_converted
                    ),
                    format!(
                        "{} referidos que compraron >= {referral_bar}",
                        f.referrals_converted
                    ),
                    vec![Observation::new(
                        "referrals_converted",
                        f.referrals_converted,
                        ">=",
                        referral_bar,
                    )],
                )
            }
        };
        out.push(decide!(cx, Some(Trait::Influential), "trait.influential", why: why()));
    }
    let price_purchases = i64::from(p.price_sensitive_min_purchases);
    if f.purchases_total >= price_purchases
        && f.discounted_share_bp >= i64::from(p.price_sensitive_min_share_bp)
    {
        out.push(decide!(
            cx,
            Some(Trait::PriceSensitive),
            "trait.price_sensitive",
            format!(
                "{} of {} purchases discounted ({} >= {})",
                f.discounted_purchases,
                f.purchases_total,
                pct(f.discounted_share_bp),
                pct(i64::from(p.price_sensitive_min_share_bp))
            ),
            format!(
                "{} de {} compras con descuento ({} >= {})",
                f.discounted_purchases,
                f.purchases_total,
                pct(f.discounted_share_bp),
                pct(i64::from(p.price_sensitive_min_share_bp))
            ),
            vec![
                Observation::new(
                    "discounted_share",
                    pct(f.discounted_share_bp),
                    ">=",
                    pct(i64::from(p.price_sensitive_min_share_bp)),
                ),
                Observation::new("purchases_total", f.purchases_total, ">=", price_purchases),
            ],
        ));
    }
    if f.purchases_total == 0 {
        out.push(decide!(
            cx,
            Some(Trait::Prospect),
            "trait.prospect",
            "identified, no purchase yet",
            "identificado, sin compras aún",
            vec![Observation::new("purchases_total", 0, "=", 0)],
        ));
    }
    out
}

/// RFM quintiles over the population and the named segment of (R, F).
pub fn rfm(f: &Features, cx: &Context<'_>) -> Rfm {
    let Some(last) = f.last_purchase_at else {
        return Rfm {
            recency: 0,
            frequency: 0,
            monetary: 0,
            segment: decide!(
                cx,
                None,
                "rfm.no_purchase",
                "no purchase yet",
                "sin compras aún",
                Vec::new(),
            ),
        };
    };
    let pop = match cx.population {
        None => Err(Unplaced::NoPopulation),
        Some(pop) if pop.buyers == 0 => Err(Unplaced::Unranked),
        Some(pop) => Ok(pop),
    };
    let pop = match pop {
        Ok(pop) => pop,
        Err(why) => {
            let rule = match why {
                Unplaced::NoPopulation => "rfm.no_population",
                Unplaced::Unranked => "rfm.unranked",
            };
            return Rfm {
                recency: 0,
                frequency: 0,
                monetary: 0,
                segment: unplaced(cx, why, rule, "the RFM quintiles", "los quintiles RFM"),
            };
        }
    };
    let score = |value: i64, bounds| quintile_score(&Rank { value, id: cx.id }, bounds);
    let r = score(last.timestamp(), &pop.recency);
    let fr = score(f.purchases_total, &pop.frequency);
    let m = score(f.revenue_total, &pop.monetary);
    let segment = rfm_segment(r, fr);
    Rfm {
        recency: r,
        frequency: fr,
        monetary: m,
        segment: decide!(
            cx,
            Some(segment),
            "rfm.segment",
            format!("R{r} F{fr} M{m}"),
            format!("R{r} F{fr} M{m}"),
            vec![
                Observation::new("recency_score", r, "=", r),
                Observation::new("frequency_score", fr, "=", fr),
            ],
        ),
    }
}

/// The usual RFM segment map on recency and frequency scores (1-5 each).
pub fn rfm_segment(r: u8, f: u8) -> RfmSegment {
    use RfmSegment::*;
    match (r, f) {
        (1, 1) => Lost,
        (1..=2, 1..=2) => Hibernating,
        (1..=2, 3..=4) => AtRisk,
        (1..=2, _) => CannotLoseThem,
        (3, 1..=2) => AboutToSleep,
        (3, 3) => NeedAttention,
        (3..=4, 4..=5) => Loyal,
        (4, 1) => Promising,
        (5, 1) => New,
        (4..=5, 2..=3) => PotentialLoyalist,
        _ => Champions,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
