//! What the registry's feed does to carteras: a [`Book`] holds the customers a batch
//! touches with their open assignments, the sellers with their loads and the active
//! model, applies the batch's changes in order in memory, and says what to write.
//! Applying the same feed from zero gives the same assignments (the choice depends only
//! on the events, the sellers and the loads they left).

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use clientela_domain::text::fold;
use uuid::Uuid;

use crate::assign::{Assignment, Cause, Choice, EndCause, Explanation, Need, Role, Roster};
use crate::locate::{Forest, Located, Place};

/// How the registry last described a customer's standing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Prospect,
    Customer,
    Archived,
    Merged,
}

impl Standing {
    pub fn as_str(self) -> &'static str {
        match self {
            Standing::Prospect => "PROSPECT",
            Standing::Customer => "CUSTOMER",
            Standing::Archived => "ARCHIVED",
            Standing::Merged => "MERGED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Standing::Prospect,
            Standing::Customer,
            Standing::Archived,
            Standing::Merged,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }

    /// Whether its assignments stand (not archived or merged away).
    pub fn live(self) -> bool {
        matches!(self, Standing::Prospect | Standing::Customer)
    }
}

/// What one registry event says, as far as carteras care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A customer was created or changed.
    Profile {
        id: Uuid,
        standing: Standing,
        place: Place,
        /// When the registry changed it.
        at: DateTime<Utc>,
    },
    Purchase {
        customer: Uuid,
        at: DateTime<Utc>,
        /// Its lines' product lines, folded, each once.
        lines: Vec<String>,
    },
    /// `merged` was folded into `survivor` at `at`.
    Merged {
        survivor: Uuid,
        merged: Uuid,
        at: DateTime<Utc>,
    },
}

impl Change {
    /// The customers whose state it reads or writes.
    pub fn customers(&self) -> Vec<Uuid> {
        match self {
            Change::Profile { id, .. } => vec![*id],
            Change::Purchase { customer, .. } => vec![*customer],
            Change::Merged {
                survivor, merged, ..
            } => vec![*survivor, *merged],
        }
    }
}

/// A customer as the service keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    pub id: Uuid,
    pub standing: Standing,
    pub merged_into: Option<Uuid>,
    pub place: Place,
    /// Where the active model placed it: its path from the top, or why nowhere.
    pub territory: Option<String>,
    pub unassigned_reason: Option<String>,
    pub first_purchase_at: Option<DateTime<Utc>>,
    pub profile_at: DateTime<Utc>,
}

impl Customer {
    /// A customer the feed mentions before describing it (its profile is then newer).
    fn unseen(id: Uuid) -> Self {
        Self {
            id,
            standing: Standing::Customer,
            merged_into: None,
            place: Place::default(),
            territory: None,
            unassigned_reason: Some("the registry has not described the customer yet".into()),
            first_purchase_at: None,
            profile_at: DateTime::<Utc>::MIN_UTC,
        }
    }
}

/// The active model as assignments read it.
#[derive(Debug, Clone, Default)]
pub struct ActiveModel {
    /// (id, version); None: no model is active, every address is unassigned.
    pub id: Option<(Uuid, i64)>,
    pub forest: Forest,
    /// Each territory's path from the top, by code.
    pub paths: HashMap<String, Vec<String>>,
}

impl ActiveModel {
    pub fn new(id: Option<(Uuid, i64)>, forest: Forest) -> Self {
        let mut paths = HashMap::new();
        for code in forest.codes() {
            let mut path = vec![code.clone()];
            let mut at = forest.node(&code).and_then(|n| n.parent.clone());
            while let Some(parent) = at {
                at = forest.node(&parent).and_then(|n| n.parent.clone());
                path.push(parent);
            }
            path.reverse();
            paths.insert(code, path);
        }
        Self { id, forest, paths }
    }

    /// Where `place` belongs: the deepest territory's code, or why none.
    fn place(&self, place: &Place) -> Result<String, String> {
        if self.id.is_none() {
            return Err("no territory model is active".into());
        }
        match self.forest.locate(place) {
            Located::In(path) => path.last().cloned().ok_or_else(String::new),
            Located::Unassigned(reason) => Err(reason),
        }
    }

    fn path(&self, territory: Option<&str>) -> &[String] {
        territory
            .and_then(|code| self.paths.get(code))
            .map_or(&[], Vec::as_slice)
    }
}

/// The state a batch works on, and what it changed.
#[derive(Debug)]
pub struct Book {
    pub model: ActiveModel,
    pub roster: Roster,
    pub customers: HashMap<Uuid, Customer>,
    /// Open assignments by customer, loaded and opened.
    pub open: HashMap<Uuid, Vec<Assignment>>,
    /// Of customers whose purchases arrive earlier than their first: the seller and
    /// start of their earliest PRIMARY.
    pub earliest_primary: HashMap<Uuid, (Uuid, DateTime<Utc>)>,
    /// The last assignment change's sequence.
    pub sequence: i64,
    /// Assignments opened, in order (some closed again within the batch).
    pub opened: Vec<Assignment>,
    /// Stored assignments closed: id, end, cause.
    pub closed: Vec<(Uuid, DateTime<Utc>, EndCause)>,
    /// The changes in order, as the feed of assignment changes carries them.
    pub log: Vec<Logged>,
    /// Customers to write back.
    pub dirty: BTreeSet<Uuid>,
}

/// One assignment change, for the service's own feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    pub sequence: i64,
    pub assignment: Uuid,
    pub opened: bool,
    pub customer: Uuid,
    pub seller: Uuid,
    pub role: Role,
    pub product_line: String,
    pub at: DateTime<Utc>,
    /// The cause (opened) or end cause (closed).
    pub cause: &'static str,
}

impl Book {
    pub fn new(model: ActiveModel, roster: Roster, sequence: i64) -> Self {
        Self {
            model,
            roster,
            customers: HashMap::new(),
            open: HashMap::new(),
            earliest_primary: HashMap::new(),
            sequence,
            opened: Vec::new(),
            closed: Vec::new(),
            log: Vec::new(),
            dirty: BTreeSet::new(),
        }
    }

    /// Ends a page: its customers, assignments and changes are dropped (written by the
    /// caller), the sellers' loads and the sequence kept; the changes are returned.
    pub fn next_page(&mut self) -> Vec<Logged> {
        self.customers.clear();
        self.open.clear();
        self.earliest_primary.clear();
        self.opened.clear();
        self.closed.clear();
        self.dirty.clear();
        std::mem::take(&mut self.log)
    }

    /// Places customer `id` (loaded) in the active model again and hands each automatic
    /// PRIMARY or SPECIALIST whose seller does not serve its territory to one who does;
    /// how many moved.
    pub fn realign(&mut self, id: Uuid, at: DateTime<Utc>) -> usize {
        self.relocate(id);
        let c = &self.customers[&id];
        if !c.standing.live() {
            return 0;
        }
        let bought = c.first_purchase_at.is_some();
        let moved = self.follow_territory(id, at, EndCause::Realignment);
        if bought {
            self.ensure_primary(id, at);
        }
        moved
    }

    /// Applies `change`.
    pub fn apply(&mut self, change: &Change) {
        match change {
            Change::Profile {
                id,
                standing,
                place,
                at,
            } => self.profile(*id, *standing, place, *at),
            Change::Purchase {
                customer,
                at,
                lines,
            } => self.purchase(*customer, *at, lines),
            Change::Merged {
                survivor,
                merged,
                at,
            } => self.merged(*survivor, *merged, *at),
        }
    }

    fn customer(&mut self, id: Uuid) -> &mut Customer {
        self.dirty.insert(id);
        self.customers
            .entry(id)
            .or_insert_with(|| Customer::unseen(id))
    }

    /// Places `id` under the active model; whether its territory changed.
    fn relocate(&mut self, id: Uuid) -> bool {
        let placed = {
            let c = &self.customers[&id];
            self.model.place(&c.place)
        };
        let c = self.customer(id);
        let before = c.territory.clone();
        match placed {
            Ok(code) => {
                c.territory = Some(code);
                c.unassigned_reason = None;
            }
            Err(reason) => {
                c.territory = None;
                c.unassigned_reason = Some(reason);
            }
        }
        c.territory != before
    }

    fn profile(&mut self, id: Uuid, standing: Standing, place: &Place, at: DateTime<Utc>) {
        let seen = self.customers.get(&id).map(|c| c.profile_at);
        if seen.is_some_and(|seen| at < seen) {
            return;
        }
        let was_live = self.customers.get(&id).is_none_or(|c| c.standing.live());
        let c = self.customer(id);
        c.standing = standing;
        c.place = place.clone();
        c.profile_at = at;
        let moved = self.relocate(id);
        if !standing.live() {
            let cause = if standing == Standing::Merged {
                EndCause::Merge
            } else {
                EndCause::Archived
            };
            self.close_all(id, at, cause);
            return;
        }
        if !was_live {
            // Restored: a buyer needs its PRIMARY again.
            if self.customers[&id].first_purchase_at.is_some() {
                self.ensure_primary(id, at);
            }
            return;
        }
        if moved {
            self.follow_territory(id, at, EndCause::AddressChange);
        }
    }

    /// After a move: each PRIMARY or SPECIALIST whose seller does not serve the new
    /// territory is handed to one who does (pins stand; a house PRIMARY goes to a seller
    /// as soon as one covers); how many moved.
    fn follow_territory(&mut self, id: Uuid, at: DateTime<Utc>, why: EndCause) -> usize {
        let mut moved = 0;
        let path = self
            .model
            .path(self.customers[&id].territory.as_deref())
            .to_vec();
        let open: Vec<Assignment> = self.open.get(&id).cloned().unwrap_or_default();
        for a in open {
            let need = match a.role {
                Role::Primary => Need::Primary,
                Role::Specialist => Need::Specialist(a.product_line.clone()),
                Role::Kam | Role::Prospector => continue,
            };
            if a.pinned_at(at) || self.roster.covers(a.seller, &path, &need) {
                continue;
            }
            let Some(choice) = self.roster.choose(&path, &need, a.weight) else {
                continue;
            };
            if choice.seller == a.seller {
                continue;
            }
            self.close(id, a.id, at, why);
            self.open_choice(id, a.role, &a.product_line, at, choice, a.weight);
            moved += 1;
        }
        moved
    }

    fn purchase(&mut self, id: Uuid, at: DateTime<Utc>, lines: &[String]) {
        let c = self.customer(id);
        let first = c.first_purchase_at;
        if first.is_none_or(|first| at < first) {
            c.first_purchase_at = Some(at);
        }
        if !c.standing.live() {
            return;
        }
        if c.standing == Standing::Prospect {
            // The registry turns it into a customer in the same transaction; the
            // profile event may come after this one.
            c.standing = Standing::Customer;
        }
        match first {
            None => self.ensure_primary(id, at),
            Some(first) if at < first => self.extend_back(id, at, first),
            Some(_) => {}
        }
        for line in lines {
            self.ensure_specialist(id, line, at);
        }
    }

    /// An earlier purchase than the first known: the PRIMARY that began at the first
    /// purchase is preceded by an interval of the same seller (a correction is a new
    /// record: none is rewritten).
    fn extend_back(&mut self, id: Uuid, at: DateTime<Utc>, first: DateTime<Utc>) {
        let Some((seller, from)) = self.earliest_primary.get(&id).copied() else {
            return;
        };
        if from <= at {
            return;
        }
        let weight = 1;
        self.sequence += 1;
        let assignment = Assignment {
            id: Uuid::now_v7(),
            customer: id,
            seller,
            role: Role::Primary,
            product_line: String::new(),
            valid_from: at,
            valid_to: Some(from),
            cause: Cause::Rule,
            model: self.model.id,
            territory: self.customers[&id].territory.clone(),
            actor: None,
            reason: None,
            pinned: false,
            pin_expires_at: None,
            weight,
            end_cause: Some(EndCause::Continued),
            explanation: Explanation {
                rule: format!(
                    "a purchase dated before the first one known ({first}) arrived: the \
                     responsible salesperson from then on is taken back to it"
                ),
                ..Explanation::default()
            },
            sequence: self.sequence,
        };
        self.log(&assignment, true, at, Cause::Rule.as_str());
        self.sequence += 1;
        self.log(&assignment, false, from, EndCause::Continued.as_str());
        self.earliest_primary.insert(id, (seller, at));
        self.opened.push(assignment);
    }

    fn has_open(&self, id: Uuid, role: Role, line: &str) -> bool {
        self.open
            .get(&id)
            .is_some_and(|v| v.iter().any(|a| a.role == role && a.product_line == line))
    }

    fn ensure_primary(&mut self, id: Uuid, at: DateTime<Utc>) {
        if self.has_open(id, Role::Primary, "") {
            return;
        }
        let path = self
            .model
            .path(self.customers[&id].territory.as_deref())
            .to_vec();
        if let Some(choice) = self.roster.choose(&path, &Need::Primary, 1) {
            self.open_choice(id, Role::Primary, "", at, choice, 1);
        }
    }

    fn ensure_specialist(&mut self, id: Uuid, line: &str, at: DateTime<Utc>) {
        if self.has_open(id, Role::Specialist, line) {
            return;
        }
        let path = self
            .model
            .path(self.customers[&id].territory.as_deref())
            .to_vec();
        if let Some(choice) = self
            .roster
            .choose(&path, &Need::Specialist(line.to_owned()), 1)
        {
            self.open_choice(id, Role::Specialist, line, at, choice, 1);
        }
    }

    fn merged(&mut self, survivor: Uuid, merged: Uuid, at: DateTime<Utc>) {
        let tombstone_first = {
            let m = self.customer(merged);
            m.standing = Standing::Merged;
            m.merged_into = Some(survivor);
            m.first_purchase_at
        };
        let carried: Vec<Assignment> = self.open.get(&merged).cloned().unwrap_or_default();
        self.close_all(merged, at, EndCause::Merge);
        let s = self.customer(survivor);
        if let Some(first) = tombstone_first
            && s.first_purchase_at.is_none_or(|f| first < f)
        {
            s.first_purchase_at = Some(first);
        }
        if !s.standing.live() || s.first_purchase_at.is_none() {
            return;
        }
        if s.standing == Standing::Prospect {
            s.standing = Standing::Customer;
        }
        // The survivor keeps its own; what it lacks, the tombstone's sellers carry on.
        for a in carried {
            if a.role == Role::Kam || self.has_open(survivor, a.role, &a.product_line) {
                continue;
            }
            if self
                .roster
                .get(a.seller)
                .is_some_and(|d| d.status != crate::model::SellerStatus::Departed)
            {
                let choice = Choice {
                    seller: a.seller,
                    cause: Cause::Merge,
                    territory: a.territory.clone(),
                    explanation: Explanation {
                        rule: format!(
                            "customers/{merged} was merged into this customer: its seller in \
                             this role carries on"
                        ),
                        ..Explanation::default()
                    },
                };
                self.open_choice(survivor, a.role, &a.product_line, at, choice, a.weight);
            }
        }
        self.ensure_primary(survivor, at);
    }

    fn close_all(&mut self, id: Uuid, at: DateTime<Utc>, cause: EndCause) {
        let ids: Vec<Uuid> = self
            .open
            .get(&id)
            .into_iter()
            .flatten()
            .map(|a| a.id)
            .collect();
        for assignment in ids {
            self.close(id, assignment, at, cause);
        }
    }

    /// Closes open assignment `assignment` of `customer` at `at` (never before it began).
    pub fn close(&mut self, customer: Uuid, assignment: Uuid, at: DateTime<Utc>, cause: EndCause) {
        let Some(list) = self.open.get_mut(&customer) else {
            return;
        };
        let Some(i) = list.iter().position(|a| a.id == assignment) else {
            return;
        };
        let mut a = list.remove(i);
        let end = at.max(a.valid_from);
        a.valid_to = Some(end);
        a.end_cause = Some(cause);
        self.roster.charge(a.seller, -a.weight, None);
        self.sequence += 1;
        self.log(&a, false, end, cause.as_str());
        match self.opened.iter_mut().find(|o| o.id == a.id) {
            Some(o) => *o = a,
            None => self.closed.push((a.id, end, cause)),
        }
    }

    /// Opens the assignment `choice` made.
    pub fn open_choice(
        &mut self,
        customer: Uuid,
        role: Role,
        line: &str,
        at: DateTime<Utc>,
        choice: Choice,
        weight: i64,
    ) {
        self.sequence += 1;
        let automatic = matches!(choice.cause, Cause::Rule | Cause::Overflow);
        self.roster
            .charge(choice.seller, weight, automatic.then_some(self.sequence));
        let assignment = Assignment {
            id: Uuid::now_v7(),
            customer,
            seller: choice.seller,
            role,
            product_line: line.to_owned(),
            valid_from: at,
            valid_to: None,
            cause: choice.cause,
            model: self.model.id.filter(|_| automatic),
            territory: self
                .customers
                .get(&customer)
                .and_then(|c| c.territory.clone()),
            actor: None,
            reason: None,
            pinned: false,
            pin_expires_at: None,
            weight,
            end_cause: None,
            explanation: choice.explanation,
            sequence: self.sequence,
        };
        if role == Role::Primary
            && self
                .earliest_primary
                .get(&customer)
                .is_none_or(|(_, from)| at < *from)
        {
            self.earliest_primary.insert(customer, (choice.seller, at));
        }
        self.log(&assignment, true, at, choice.cause.as_str());
        self.open
            .entry(customer)
            .or_default()
            .push(assignment.clone());
        self.opened.push(assignment);
    }

    fn log(&mut self, a: &Assignment, opened: bool, at: DateTime<Utc>, cause: &'static str) {
        self.log.push(Logged {
            sequence: self.sequence,
            assignment: a.id,
            opened,
            customer: a.customer,
            seller: a.seller,
            role: a.role,
            product_line: a.product_line.clone(),
            at,
            cause,
        });
    }
}

/// A purchase's product lines as assignments key them: folded, each once, blanks left
/// out.
pub fn lines_of<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in lines {
        let line = fold(line);
        if !line.is_empty() && !out.contains(&line) {
            out.push(line);
        }
    }
    out
}
