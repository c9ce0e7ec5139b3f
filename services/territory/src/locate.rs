//! Where an address belongs in a territory model: the deepest territory whose criteria
//! it meets together with all of its ancestors' (TERRITORY.md), ties broken by priority
//! (higher first) and then by code, so the answer is always the same; when none matches,
//! UNASSIGNED with the reason, never a silent null.

use std::collections::HashMap;

use clientela_domain::text::fold;
use serde::{Deserialize, Serialize};

/// Criteria on the address fields, stored folded: every non-empty list must have an
/// entry the address meets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Criteria {
    /// ISO 3166-1 alpha-2, upper case.
    pub country_codes: Vec<String>,
    /// Folded ([`fold`]).
    pub regions: Vec<String>,
    /// Folded.
    pub localities: Vec<String>,
    /// Upper case, without spaces or '-'.
    pub postal_code_prefixes: Vec<String>,
}

/// A postal code as criteria compare it: "8320-000" and "8320 000" are "8320000".
pub fn postal_key(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// An address as criteria compare it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Place {
    pub country_code: String,
    pub region: String,
    pub locality: String,
    pub postal_code: String,
}

impl Place {
    /// From the address fields as given.
    pub fn new(country_code: &str, region: &str, locality: &str, postal_code: &str) -> Self {
        Self {
            country_code: country_code.trim().to_ascii_uppercase(),
            region: fold(region),
            locality: fold(locality),
            postal_code: postal_key(postal_code),
        }
    }
}

impl Criteria {
    /// Whether `place` meets every criterion set.
    pub fn matches(&self, place: &Place) -> bool {
        let any = |list: &[String], value: &str| list.is_empty() || list.iter().any(|v| v == value);
        any(&self.country_codes, &place.country_code)
            && any(&self.regions, &place.region)
            && any(&self.localities, &place.locality)
            && (self.postal_code_prefixes.is_empty()
                || self
                    .postal_code_prefixes
                    .iter()
                    .any(|p| place.postal_code.starts_with(p.as_str())))
    }
}

/// A territory as location reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub code: String,
    /// The parent's code (None: top level).
    pub parent: Option<String>,
    pub criteria: Criteria,
    pub priority: i32,
}

/// Where an address belongs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Located {
    /// The codes from the top-level territory down to the one it belongs to.
    In(Vec<String>),
    /// Why it belongs to none.
    Unassigned(String),
}

/// Where `place` belongs among `nodes` (a forest: every parent is one of them, no
/// cycles, as the store keeps it).
pub fn locate(nodes: &[Node], place: &Place) -> Located {
    Forest::new(nodes.to_vec()).locate(place)
}

/// A model's territories indexed for location: built once, asked for every customer.
#[derive(Debug, Clone, Default)]
pub struct Forest {
    nodes: Vec<Node>,
    roots: Vec<usize>,
    children: HashMap<String, Vec<usize>>,
}

impl Forest {
    pub fn new(nodes: Vec<Node>) -> Self {
        let mut roots = Vec::new();
        let mut children: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, node) in nodes.iter().enumerate() {
            match &node.parent {
                None => roots.push(i),
                Some(parent) => children.entry(parent.clone()).or_default().push(i),
            }
        }
        Self {
            nodes,
            roots,
            children,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Every territory's code.
    pub fn codes(&self) -> impl Iterator<Item = String> + '_ {
        self.nodes.iter().map(|n| n.code.clone())
    }

    /// The territory `code`'s node.
    pub fn node(&self, code: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.code == code)
    }

    /// Where `place` belongs.
    pub fn locate(&self, place: &Place) -> Located {
        if self.nodes.is_empty() {
            return Located::Unassigned("the model has no territories".into());
        }
        // Walk down from the roots through matching territories only: a child is
        // reached only if its parent matched.
        let mut best: Option<(usize, &Node, Vec<&str>)> = None;
        let mut stack: Vec<(&Node, Vec<&str>)> = self
            .roots
            .iter()
            .map(|&i| &self.nodes[i])
            .filter(|n| n.criteria.matches(place))
            .map(|n| (n, vec![n.code.as_str()]))
            .collect();
        while let Some((node, path)) = stack.pop() {
            let depth = path.len();
            let better = match &best {
                None => true,
                Some((d, b, _)) => {
                    depth > *d
                        || (depth == *d
                            && (node.priority > b.priority
                                || (node.priority == b.priority && node.code < b.code)))
                }
            };
            for &i in self.children.get(&node.code).into_iter().flatten() {
                let child = &self.nodes[i];
                if child.criteria.matches(place) {
                    let mut p = path.clone();
                    p.push(child.code.as_str());
                    stack.push((child, p));
                }
            }
            if better {
                best = Some((depth, node, path));
            }
        }
        match best {
            Some((_, _, path)) => Located::In(path.into_iter().map(str::to_owned).collect()),
            None => Located::Unassigned(format!(
                "no top-level territory matches the address ({})",
                describe(place)
            )),
        }
    }
}

fn describe(place: &Place) -> String {
    let mut parts = vec![format!("country {}", place.country_code)];
    for (what, value) in [
        ("region", &place.region),
        ("locality", &place.locality),
        ("postal code", &place.postal_code),
    ] {
        if !value.is_empty() {
            parts.push(format!("{what} {value}"));
        }
    }
    parts.join(", ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn node(code: &str, parent: Option<&str>, priority: i32, criteria: Criteria) -> Node {
        Node {
            code: code.into(),
            parent: parent.map(Into::into),
            criteria,
            priority,
        }
    }

    fn regions(list: &[&str]) -> Criteria {
        Criteria {
            regions: list.iter().map(|r| fold(r)).collect(),
            ..Criteria::default()
        }
    }

    /// Seed 003's examples: a country, "V Región", and Santiago's south zone by
    /// locality, with a postal-code zone beside it.
    fn chile() -> Vec<Node> {
        vec![
            node(
                "CL",
                None,
                0,
                Criteria {
                    country_codes: vec!["CL".into()],
                    ..Criteria::default()
                },
            ),
            node("CL-V", Some("CL"), 0, regions(&["Región de Valparaíso"])),
            node("CL-RM", Some("CL"), 0, regions(&["Región Metropolitana"])),
            node(
                "RM-SUR",
                Some("CL-RM"),
                0,
                Criteria {
                    localities: vec![fold("La Florida"), fold("Puente Alto")],
                    ..Criteria::default()
                },
            ),
            node(
                "RM-82",
                Some("CL-RM"),
                0,
                Criteria {
                    postal_code_prefixes: vec!["82".into()],
                    ..Criteria::default()
                },
            ),
        ]
    }

    #[test]
    fn the_deepest_matching_territory_wins() {
        let place = Place::new("cl", "REGION DE VALPARAISO", "Viña del Mar", "");
        assert_eq!(
            locate(&chile(), &place),
            Located::In(vec!["CL".into(), "CL-V".into()]),
            "case and accents do not matter"
        );
        let south = Place::new("CL", "Región Metropolitana", "La Florida", "");
        assert_eq!(
            locate(&chile(), &south),
            Located::In(vec!["CL".into(), "CL-RM".into(), "RM-SUR".into()])
        );
        let elsewhere = Place::new("CL", "Región Metropolitana", "Providencia", "7500000");
        assert_eq!(
            locate(&chile(), &elsewhere),
            Located::In(vec!["CL".into(), "CL-RM".into()]),
            "a region with no matching zone stays at the region"
        );
    }

    #[test]
    fn siblings_that_both_match_are_decided_by_priority_then_code() {
        let both = Place::new("CL", "Región Metropolitana", "La Florida", "8240-000");
        // RM-82 < RM-SUR by code.
        assert_eq!(
            locate(&chile(), &both),
            Located::In(vec!["CL".into(), "CL-RM".into(), "RM-82".into()])
        );
        let mut nodes = chile();
        nodes[3].priority = 10;
        assert_eq!(
            locate(&nodes, &both),
            Located::In(vec!["CL".into(), "CL-RM".into(), "RM-SUR".into()])
        );
    }

    #[test]
    fn a_child_never_matches_outside_its_parent() {
        let nodes = vec![
            node("NORTE", None, 0, regions(&["Antofagasta"])),
            // Criteria that alone would match; the parent does not.
            node("NORTE-1", Some("NORTE"), 0, Criteria::default()),
        ];
        let place = Place::new("CL", "Región de Aysén", "", "");
        assert_eq!(
            locate(&nodes, &place),
            Located::Unassigned(
                "no top-level territory matches the address (country CL, region region de aysen)"
                    .into()
            )
        );
        assert_eq!(
            locate(&[], &place),
            Located::Unassigned("the model has no territories".into())
        );
    }

    #[test]
    fn postal_codes_compare_without_spaces_or_dashes() {
        let criteria = Criteria {
            postal_code_prefixes: vec![postal_key("83 2")],
            ..Criteria::default()
        };
        assert!(criteria.matches(&Place::new("CL", "", "", "8320-000")));
        assert!(!criteria.matches(&Place::new("CL", "", "", "8420000")));
    }
}
