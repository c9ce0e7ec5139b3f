//! The classification policy: every threshold and window the rules use, with the
//! defaults of docs/CLASSIFICATION.md, its validation, and the treatment playbook.
//!
//! Shares and ratios are integer basis points (10 000 = 100 %), so a rule's edge
//! ("share of sales 9.99 % vs 10 %") is decided by exact integer arithmetic.

use chrono::{DateTime, Utc};
use clientela_domain::FieldViolation;
use clientela_domain::text::quote;
use serde::{Deserialize, Serialize};

use crate::labels::Dimension;

/// 100 % in basis points.
pub const BP: i64 = 10_000;

/// How volume is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum VolumeMode {
    /// ABC / Pareto over the customer base's revenue in the window.
    Abc,
    /// Fixed revenue amounts.
    Fixed,
}

/// A recommended action for a label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaybookEntry {
    /// The label's dimension.
    pub dimension: Dimension,
    /// The label's code.
    pub label: String,
    /// What to do, in Spanish.
    pub text_es: String,
    /// What to do, in English.
    pub text_en: String,
}

/// Characters of a policy's description.
pub const DESCRIPTION_MAX: usize = 1_000;
/// Entries of the playbook (there are about a hundred labels).
pub const PLAYBOOK_MAX: usize = 500;
/// Characters of an action's text, in each language.
pub const ACTION_TEXT_MAX: usize = 1_000;

/// Thresholds and windows (field docs: `proto/clientela/classification/v1`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Policy {
    pub description: String,
    pub currency_code: String,
    pub window_days: i32,
    pub active_window_days: i32,
    pub active_cadence_min_purchases: i32,
    pub cadence_gap_factor_bp: i32,
    pub frequent_min_purchases: i32,
    pub unconditional_min_nps: i32,
    pub unconditional_min_referrals: i32,
    pub nps_very_satisfied_min: i32,
    pub nps_satisfied_min: i32,
    pub csat_very_satisfied_min: i32,
    pub csat_satisfied_min: i32,
    pub volume_mode: VolumeMode,
    pub abc_high_cumulative_bp: i32,
    pub abc_medium_cumulative_bp: i32,
    pub fixed_high_min_minor: i64,
    pub fixed_medium_min_minor: i64,
    pub major_influencer_min_reach: i64,
    pub boss_min_share_bp: i32,
    pub key_top_buyers_bp: i32,
    pub strategic_min_growth_bp: i32,
    pub margin_bp: i32,
    pub loyal_min_tenure_days: i32,
    pub occasional_min_cv_bp: i32,
    pub demanding_min_complaints: i32,
    pub influential_min_referrals: i32,
    pub price_sensitive_min_share_bp: i32,
    pub price_sensitive_min_purchases: i32,
    pub as_of_future_tolerance_seconds: i32,
    pub new_customer_days: i32,
    pub playbook: Vec<PlaybookEntry>,
}

impl Default for Policy {
    /// docs/CLASSIFICATION.md's defaults.
    fn default() -> Self {
        Self {
            // Stored with every version: changing it would make a new version at start-up.
            description: "Defaults of TAXONOMY.md".to_owned(),
            currency_code: "CLP".to_owned(),
            window_days: 365,
            active_window_days: 180,
            active_cadence_min_purchases: 3,
            cadence_gap_factor_bp: 15_000,
            frequent_min_purchases: 4,
            unconditional_min_nps: 9,
            unconditional_min_referrals: 1,
            nps_very_satisfied_min: 9,
            nps_satisfied_min: 7,
            csat_very_satisfied_min: 5,
            csat_satisfied_min: 4,
            volume_mode: VolumeMode::Abc,
            abc_high_cumulative_bp: 8_000,
            abc_medium_cumulative_bp: 9_500,
            fixed_high_min_minor: 10_000_000,
            fixed_medium_min_minor: 1_000_000,
            major_influencer_min_reach: 10_000,
            boss_min_share_bp: 1_000,
            key_top_buyers_bp: 500,
            strategic_min_growth_bp: 2_000,
            margin_bp: 3_000,
            loyal_min_tenure_days: 365,
            occasional_min_cv_bp: 10_000,
            demanding_min_complaints: 2,
            influential_min_referrals: 3,
            price_sensitive_min_share_bp: 5_000,
            price_sensitive_min_purchases: 3,
            as_of_future_tolerance_seconds: 300,
            new_customer_days: 90,
            playbook: default_playbook(),
        }
    }
}

/// docs/CLASSIFICATION.md's treatment playbook (seed 001, "Trato" and "Estrategias de trato").
pub fn default_playbook() -> Vec<PlaybookEntry> {
    use Dimension::{AccountTier, Activity, Trait};
    let entry = |dimension, label: &str, es: &str, en: &str| PlaybookEntry {
        dimension,
        label: label.to_owned(),
        text_es: es.to_owned(),
        text_en: en.to_owned(),
    };
    vec![
        entry(
            Trait,
            "LOYAL",
            "Reconocer y recompensar: ofertas exclusivas, descuentos, programa de membresía; comunicación constante.",
            "Recognize and reward: exclusive offers, discounts, a membership program; keep in touch.",
        ),
        entry(
            Trait,
            "PROSPECT",
            "Información detallada, responder preguntas, incentivo para la primera compra.",
            "Detailed information, answer questions, an incentive for the first purchase.",
        ),
        entry(
            Trait,
            "OCCASIONAL",
            "Experiencias positivas en cada interacción; incentivo para volverse regular.",
            "A positive experience in every interaction; an incentive to become regular.",
        ),
        entry(
            Trait,
            "DEMANDING",
            "Calidad máxima, servicio excepcional, anticipar necesidades.",
            "Top quality, exceptional service, anticipate needs.",
        ),
        entry(
            Trait,
            "DISSATISFIED",
            "Escucha activa, solución rápida, empatía, seguimiento postventa.",
            "Active listening, a quick solution, empathy, after-sales follow-up.",
        ),
        entry(
            Trait,
            "INFLUENTIAL",
            "Servicio excepcional, incentivos de fidelización.",
            "Exceptional service, loyalty incentives.",
        ),
        entry(
            Trait,
            "PRICE_SENSITIVE",
            "Destacar beneficios y valor; ofertas especiales.",
            "Stress benefits and value; special offers.",
        ),
        entry(
            AccountTier,
            "KEY",
            "Asignar Key Account Manager; trato personalizado; plan de cuenta.",
            "Assign a Key Account Manager; personal treatment; an account plan.",
        ),
        entry(
            AccountTier,
            "BOSS",
            "Asignar Key Account Manager; trato personalizado; plan de cuenta.",
            "Assign a Key Account Manager; personal treatment; an account plan.",
        ),
        entry(
            AccountTier,
            "SMALL",
            "Reducir costo de servir (canal digital, autoservicio).",
            "Reduce the cost to serve (digital channel, self-service).",
        ),
        entry(
            Activity,
            "INACTIVE_LAPSED",
            "Campaña de reactivación.",
            "Reactivation campaign.",
        ),
    ]
}

impl Policy {
    /// The instant a classification is computed at: `requested`, or `now` when absent.
    /// It may lie at most the tolerance in the future: clocks differ a little, but labels
    /// of a day not yet lived are a mistake.
    pub fn as_of(
        &self,
        requested: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        horizon: Option<Option<DateTime<Utc>>>,
    ) -> Result<DateTime<Utc>, FieldViolation> {
        let Some(at) = requested else {
            return Ok(now);
        };
        let tolerance = self.as_of_future_tolerance_seconds;
        if at > now + chrono::Duration::seconds(i64::from(tolerance)) {
            return Err(FieldViolation::new(
                "",
                format!("{at} is in the future (tolerance {tolerance} s)"),
            ));
        }
        // Earlier than the first fact minus the window, no fact could count.
        if let Some(earliest) = horizon {
            let first = earliest.map_or(now, |e| e.min(now));
            let window = chrono::Duration::days(i64::from(self.window_days));
            let bound = first.checked_sub_signed(window).unwrap_or(first);
            if at < bound {
                let what = if earliest.is_some() {
                    "the first fact"
                } else {
                    "now (there is no fact yet)"
                };
                return Err(FieldViolation::new(
                    "",
                    format!(
                        "{at} is before {what} minus the {}-day window ({bound}): no fact \
                         could count",
                        self.window_days
                    ),
                ));
            }
        }
        Ok(at)
    }

    /// Every problem of the policy, each naming its field under `prefix` ("policy").
    pub fn violations(&self, prefix: &str) -> Vec<FieldViolation> {
        let mut out = Vec::new();
        let mut bad = |field: &str, why: String| {
            out.push(FieldViolation::new(format!("{prefix}.{field}"), why));
        };
        if !clientela_domain::money::is_known_currency(&self.currency_code) {
            bad(
                "currency_code",
                format!(
                    "{} is not an ISO 4217 currency code",
                    quote(&self.currency_code)
                ),
            );
        }
        for (field, days) in [
            ("window_days", self.window_days),
            ("active_window_days", self.active_window_days),
            ("new_customer_days", self.new_customer_days),
        ] {
            if !(1..=3_660).contains(&days) {
                bad(field, format!("{days} days: a window is 1 to 3660 days"));
            }
        }
        if self.active_window_days > self.window_days && self.window_days > 0 {
            bad(
                "active_window_days",
                format!(
                    "{} days is longer than window_days ({})",
                    self.active_window_days, self.window_days
                ),
            );
        }
        for (field, value, min) in [
            (
                "active_cadence_min_purchases",
                self.active_cadence_min_purchases,
                1,
            ),
            ("frequent_min_purchases", self.frequent_min_purchases, 2),
            (
                "unconditional_min_referrals",
                self.unconditional_min_referrals,
                1,
            ),
            ("demanding_min_complaints", self.demanding_min_complaints, 1),
            (
                "influential_min_referrals",
                self.influential_min_referrals,
                1,
            ),
            (
                "price_sensitive_min_purchases",
                self.price_sensitive_min_purchases,
                1,
            ),
            ("loyal_min_tenure_days", self.loyal_min_tenure_days, 0),
            (
                "as_of_future_tolerance_seconds",
                self.as_of_future_tolerance_seconds,
                0,
            ),
        ] {
            if value < min {
                bad(field, format!("{value} is below the minimum, {min}"));
            }
        }
        if self.cadence_gap_factor_bp < BP as i32 {
            bad(
                "cadence_gap_factor_bp",
                format!(
                    "{} is below 10000 (1 ×): no gap could be on cadence",
                    self.cadence_gap_factor_bp
                ),
            );
        }
        // Satisfaction bands must not overlap: very satisfied above satisfied.
        for (scale, very_field, very, ok_field, ok, range) in [
            (
                "NPS",
                "nps_very_satisfied_min",
                self.nps_very_satisfied_min,
                "nps_satisfied_min",
                self.nps_satisfied_min,
                0..=10,
            ),
            (
                "CSAT",
                "csat_very_satisfied_min",
                self.csat_very_satisfied_min,
                "csat_satisfied_min",
                self.csat_satisfied_min,
                1..=5,
            ),
        ] {
            for (field, v) in [(very_field, very), (ok_field, ok)] {
                if !range.contains(&v) {
                    bad(
                        field,
                        format!(
                            "{v} is outside the {scale} scale ({}-{})",
                            range.start(),
                            range.end()
                        ),
                    );
                }
            }
            if ok >= very {
                bad(
                    ok_field,
                    format!("{ok} overlaps the very-satisfied band, which starts at {very}"),
                );
            }
        }
        if !(0..=10).contains(&self.unconditional_min_nps) {
            bad(
                "unconditional_min_nps",
                format!(
                    "{} is outside the NPS scale (0-10)",
                    self.unconditional_min_nps
                ),
            );
        }
        for (field, value) in [
            ("abc_high_cumulative_bp", self.abc_high_cumulative_bp),
            ("abc_medium_cumulative_bp", self.abc_medium_cumulative_bp),
            ("boss_min_share_bp", self.boss_min_share_bp),
            ("key_top_buyers_bp", self.key_top_buyers_bp),
            ("margin_bp", self.margin_bp),
            (
                "price_sensitive_min_share_bp",
                self.price_sensitive_min_share_bp,
            ),
        ] {
            if !(1..=BP as i32).contains(&value) {
                bad(
                    field,
                    format!("{value} is not a share: 1 to 10000 basis points"),
                );
            }
        }
        if self.abc_medium_cumulative_bp <= self.abc_high_cumulative_bp {
            bad(
                "abc_medium_cumulative_bp",
                format!(
                    "{} overlaps the HIGH band, which ends at {}",
                    self.abc_medium_cumulative_bp, self.abc_high_cumulative_bp
                ),
            );
        }
        if self.fixed_medium_min_minor < 0 {
            bad("fixed_medium_min_minor", "must not be negative".to_owned());
        }
        if self.fixed_high_min_minor <= self.fixed_medium_min_minor {
            bad(
                "fixed_high_min_minor",
                format!(
                    "{} overlaps the MEDIUM band, which starts at {}",
                    self.fixed_high_min_minor, self.fixed_medium_min_minor
                ),
            );
        }
        for (field, value) in [
            (
                "major_influencer_min_reach",
                self.major_influencer_min_reach,
            ),
            (
                "strategic_min_growth_bp",
                i64::from(self.strategic_min_growth_bp),
            ),
            ("occasional_min_cv_bp", i64::from(self.occasional_min_cv_bp)),
        ] {
            if value <= 0 {
                bad(field, format!("{value} must be positive"));
            }
        }
        let printable = |text: &str, max: usize| {
            text.chars().count() <= max && !text.chars().any(char::is_control)
        };
        if !printable(&self.description, DESCRIPTION_MAX) {
            bad(
                "description",
                format!("at most {DESCRIPTION_MAX} printable characters"),
            );
        }
        if self.playbook.len() > PLAYBOOK_MAX {
            bad(
                "playbook",
                format!(
                    "at most {PLAYBOOK_MAX} entries (got {})",
                    self.playbook.len()
                ),
            );
            return out;
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, entry) in self.playbook.iter().enumerate() {
            if !entry.dimension.has_label(&entry.label) {
                bad(
                    &format!("playbook[{i}].label"),
                    format!(
                        "{} is not a label of {}",
                        quote(&entry.label),
                        entry.dimension.name()
                    ),
                );
                continue;
            }
            if entry.text_es.trim().is_empty() || entry.text_en.trim().is_empty() {
                bad(
                    &format!("playbook[{i}]"),
                    "an action needs its text in Spanish and in English".to_owned(),
                );
            }
            for (field, text) in [("text_es", &entry.text_es), ("text_en", &entry.text_en)] {
                if !printable(text, ACTION_TEXT_MAX) {
                    bad(
                        &format!("playbook[{i}].{field}"),
                        format!("at most {ACTION_TEXT_MAX} printable characters"),
                    );
                }
            }
            if !seen.insert((entry.dimension, entry.label.clone())) {
                bad(
                    &format!("playbook[{i}].label"),
                    format!(
                        "a second entry for {} {}",
                        entry.dimension.name(),
                        entry.label
                    ),
                );
            }
        }
        out
    }

    /// The actions of the playbook for a label.
    pub fn actions_for<'a>(
        &'a self,
        dimension: Dimension,
        label: &'a str,
    ) -> impl Iterator<Item = &'a PlaybookEntry> + 'a {
        self.playbook
            .iter()
            .filter(move |e| e.dimension == dimension && e.label == label)
    }
}

/// A stored policy version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyVersion {
    /// From 1.
    pub version: i64,
    /// When it was set.
    pub created_at: DateTime<Utc>,
    pub policy: Policy,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn fields(p: &Policy) -> Vec<String> {
        p.violations("policy")
            .into_iter()
            .map(|v| v.field)
            .collect()
    }

    #[test]
    fn the_defaults_are_valid_and_follow_taxonomy_md() {
        let p = Policy::default();
        assert_eq!(fields(&p), Vec::<String>::new());
        assert_eq!(p.window_days, 365);
        assert_eq!(p.frequent_min_purchases, 4);
        assert_eq!(
            p.boss_min_share_bp, 1_000,
            "BOSS: double-digit share of sales"
        );
        assert_eq!(p.key_top_buyers_bp, 500, "KEY: top 5 % of buyers");
        // Every label the playbook of docs/CLASSIFICATION.md names has an action.
        for (d, l) in [
            (Dimension::Trait, "LOYAL"),
            (Dimension::Trait, "PROSPECT"),
            (Dimension::Trait, "OCCASIONAL"),
            (Dimension::Trait, "DEMANDING"),
            (Dimension::Trait, "DISSATISFIED"),
            (Dimension::Trait, "INFLUENTIAL"),
            (Dimension::Trait, "PRICE_SENSITIVE"),
            (Dimension::AccountTier, "KEY"),
            (Dimension::AccountTier, "BOSS"),
            (Dimension::AccountTier, "SMALL"),
            (Dimension::Activity, "INACTIVE_LAPSED"),
        ] {
            assert_eq!(p.actions_for(d, l).count(), 1, "{l}");
        }
    }

    #[test]
    fn as_of_may_run_ahead_only_by_the_tolerance() {
        let p = Policy::default();
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        assert_eq!(p.as_of(None, now, None), Ok(now));
        let edge = now + chrono::Duration::seconds(300);
        assert_eq!(p.as_of(Some(edge), now, None), Ok(edge));
        let past = now - chrono::Duration::days(400);
        assert_eq!(p.as_of(Some(past), now, None), Ok(past));
        let beyond = p
            .as_of(Some(edge + chrono::Duration::seconds(1)), now, None)
            .unwrap_err();
        assert!(beyond.description.contains("tolerance 300 s"), "{beyond}");
    }

    #[test]
    fn as_of_may_not_precede_the_first_fact_by_more_than_the_window() {
        let p = Policy::default();
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let first = now - chrono::Duration::days(1_000);
        let window = chrono::Duration::days(i64::from(p.window_days));
        let edge = first - window;
        assert_eq!(p.as_of(Some(edge), now, Some(Some(first))), Ok(edge));
        let before = edge - chrono::Duration::seconds(1);
        let refused = p.as_of(Some(before), now, Some(Some(first))).unwrap_err();
        assert!(refused.description.contains("the first fact"), "{refused}");
        // No fact yet: the window before now. Unknown horizon: no bound.
        assert!(
            p.as_of(
                Some(now - window - chrono::Duration::days(1)),
                now,
                Some(None)
            )
            .is_err()
        );
        assert!(p.as_of(Some(before), now, None).is_ok());
        let year_one = DateTime::from_timestamp(clientela_runtime::time::MIN_SECONDS, 0).unwrap();
        assert!(p.as_of(Some(year_one), now, Some(Some(first))).is_err());
    }

    #[test]
    fn a_window_of_zero_days_is_named() {
        let p = Policy {
            window_days: 0,
            ..Policy::default()
        };
        assert!(fields(&p).contains(&"policy.window_days".to_owned()));
    }

    #[test]
    fn overlapping_thresholds_are_named() {
        let p = Policy {
            nps_satisfied_min: 9,
            abc_medium_cumulative_bp: 8_000,
            fixed_high_min_minor: 5,
            fixed_medium_min_minor: 5,
            ..Policy::default()
        };
        let f = fields(&p);
        for field in [
            "policy.nps_satisfied_min",
            "policy.abc_medium_cumulative_bp",
            "policy.fixed_high_min_minor",
        ] {
            assert!(f.contains(&field.to_owned()), "{field} in {f:?}");
        }
    }

    #[test]
    fn a_playbook_entry_for_an_unknown_label_is_named() {
        let mut p = Policy::default();
        p.playbook[0].label = "GOLD".into();
        assert_eq!(fields(&p), vec!["policy.playbook[0].label".to_owned()]);
    }

    #[test]
    fn a_policy_file_may_set_only_some_fields() {
        let p: Policy =
            serde_json::from_str(r#"{"window_days": 90, "description": "quarter"}"#).unwrap();
        assert_eq!(p.window_days, 90);
        assert_eq!(p.frequent_min_purchases, 4);
        assert!(serde_json::from_str::<Policy>(r#"{"windw_days": 90}"#).is_err());
    }
}
