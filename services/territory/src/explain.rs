//! Why an assignment went to its seller, in English and Spanish (salespeople and their
//! managers read both): the stored [`Explanation`] is data, rendered when asked.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::assign::{Assignment, Role};

/// The rule that made an assignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Rule {
    /// The least loaded of the candidates with capacity left.
    LeastLoaded,
    /// Every candidate was full: the least overloaded.
    Overflow,
    /// Nobody covers the customer's path (`last`: its deepest territory; None: its
    /// address is in none).
    House { last: Option<String> },
    /// A purchase dated before the first one known took the PRIMARY back to it.
    EarlierPurchase { first: DateTime<Utc> },
    /// Carried over from a customer merged into this one.
    Merged { from: Uuid },
    /// By hand (actor and reason on the assignment).
    Manual,
    /// Handed by name from seller `from` (a transfer or an offboarding; actor and reason
    /// on the assignment).
    Handover { from: Uuid },
}

impl Rule {
    /// As the API names it.
    pub fn code(&self) -> &'static str {
        match self {
            Rule::LeastLoaded => "LEAST_LOADED",
            Rule::Overflow => "OVERFLOW",
            Rule::House { .. } => "HOUSE",
            Rule::EarlierPurchase { .. } => "EARLIER_PURCHASE",
            Rule::Merged { .. } => "MERGED",
            Rule::Manual => "MANUAL",
            Rule::Handover { .. } => "HANDOVER",
        }
    }
}

/// How the winner was told from the others.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TieBreak {
    #[default]
    None,
    /// `tied` on load: the one chosen longest ago.
    RoundRobin { tied: usize },
    /// `tied` on load and turn: the lowest id.
    LowestId { tied: usize },
}

/// A language explanations are given in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Es,
}

fn what(a: &Assignment, lang: Lang) -> String {
    match (a.role, lang) {
        (Role::Specialist, Lang::En) => format!("the specialists in {}", a.product_line),
        (Role::Specialist, Lang::Es) => format!("los especialistas en {}", a.product_line),
        (Role::Kam, Lang::En) => "the KAMs".into(),
        (Role::Kam, Lang::Es) => "los KAM".into(),
        (_, Lang::En) => "the sellers".into(),
        (_, Lang::Es) => "los vendedores".into(),
    }
}

fn place(a: &Assignment, lang: Lang) -> String {
    match (&a.explanation.territory, lang) {
        (Some(code), Lang::En) => format!("of territory {code}"),
        (Some(code), Lang::Es) => format!("del territorio {code}"),
        (None, Lang::En) => "of the company".into(),
        (None, Lang::Es) => "de la empresa".into(),
    }
}

/// The rule of `a`, in a sentence.
pub fn rule_text(a: &Assignment, lang: Lang) -> String {
    let actor = a.actor.as_deref().unwrap_or("?");
    let reason = a.reason.as_deref().unwrap_or("");
    match (&a.explanation.rule, lang) {
        (Rule::LeastLoaded, Lang::En) => format!(
            "the least loaded of {} {} with capacity left",
            what(a, lang),
            place(a, lang)
        ),
        (Rule::LeastLoaded, Lang::Es) => format!(
            "el de menor carga entre {} {} con capacidad disponible",
            what(a, lang),
            place(a, lang)
        ),
        (Rule::Overflow, Lang::En) => format!(
            "none of {} {} has capacity left: the least overloaded takes it",
            what(a, lang),
            place(a, lang)
        ),
        (Rule::Overflow, Lang::Es) => format!(
            "ninguno de {} {} tiene capacidad disponible: lo toma el menos sobrecargado",
            what(a, lang),
            place(a, lang)
        ),
        (Rule::House { last: Some(code) }, Lang::En) => format!(
            "no active seller covers the customer on territory {code}'s path: the \
             company's own cartera holds it until a seller does"
        ),
        (Rule::House { last: Some(code) }, Lang::Es) => format!(
            "ningún vendedor activo cubre al cliente en la ruta del territorio {code}: la \
             cartera de la empresa lo mantiene hasta que un vendedor lo tome"
        ),
        (Rule::House { last: None }, Lang::En) => "no active seller covers the customer (its \
             address is in no territory): the company's own cartera holds it until a seller does"
            .into(),
        (Rule::House { last: None }, Lang::Es) => "ningún vendedor activo cubre al cliente (su \
             dirección no está en ningún territorio): la cartera de la empresa lo mantiene \
             hasta que un vendedor lo tome"
            .into(),
        (Rule::EarlierPurchase { first }, Lang::En) => format!(
            "a purchase dated before the first one known ({first}) arrived: the responsible \
             salesperson from then on is taken back to it"
        ),
        (Rule::EarlierPurchase { first }, Lang::Es) => format!(
            "llegó una compra anterior a la primera conocida ({first}): el vendedor \
             responsable desde entonces se extiende hasta ella"
        ),
        (Rule::Merged { from }, Lang::En) => format!(
            "customers/{from} was merged into this customer: its seller in this role carries on"
        ),
        (Rule::Merged { from }, Lang::Es) => format!(
            "customers/{from} se fusionó con este cliente: su vendedor en este rol continúa"
        ),
        (Rule::Manual, Lang::En) => format!("assigned by hand by {actor}: {reason}"),
        (Rule::Manual, Lang::Es) => format!("asignado a mano por {actor}: {reason}"),
        (Rule::Handover { from }, Lang::En) => {
            format!("handed over from sellers/{from} by {actor}: {reason}")
        }
        (Rule::Handover { from }, Lang::Es) => {
            format!("traspasado desde sellers/{from} por {actor}: {reason}")
        }
    }
}

/// Why `c` stands where it does on its salesperson's worklist, in a sentence.
pub fn urgency_text(
    c: &crate::cartera::Customer,
    u: crate::cartera::Urgency,
    lang: Lang,
) -> String {
    use crate::cartera::Urgency as U;
    let tier = c.tier.as_deref().unwrap_or("");
    match (u, lang) {
        (U::Attention, Lang::En) => {
            "dissatisfied (or with an open complaint): listen, solve fast, follow up".into()
        }
        (U::Attention, Lang::Es) => {
            "insatisfecho (o con un reclamo abierto): escucha activa, solución rápida, \
             seguimiento"
                .into()
        }
        (U::KeyAccount, Lang::En) => format!("a {tier} account: its KAM's first point of contact"),
        (U::KeyAccount, Lang::Es) => format!("cuenta {tier}: primer punto de contacto de su KAM"),
        (U::Reactivate, Lang::En) => "lapsed: to reactivate".into(),
        (U::Reactivate, Lang::Es) => "inactivo: a reactivar".into(),
        (U::Rest, Lang::En) => "routine care of the cartera".into(),
        (U::Rest, Lang::Es) => "atención habitual de la cartera".into(),
    }
}

/// The tie-break of `a`, in a sentence ("" when there was none).
pub fn tie_break_text(a: &Assignment, lang: Lang) -> String {
    match (a.explanation.tie_break, lang) {
        (TieBreak::None, _) => String::new(),
        (TieBreak::RoundRobin { tied }, Lang::En) => {
            format!("{tied} tied on load: the one chosen longest ago (round robin)")
        }
        (TieBreak::RoundRobin { tied }, Lang::Es) => {
            format!("{tied} empatados en carga: el elegido hace más tiempo (rotación)")
        }
        (TieBreak::LowestId { tied }, Lang::En) => {
            format!("{tied} tied on load and turn: the lowest id")
        }
        (TieBreak::LowestId { tied }, Lang::Es) => {
            format!("{tied} empatados en carga y turno: el id menor")
        }
    }
}
