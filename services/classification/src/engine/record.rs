//! Classifying a page and recording it: the rules over each customer's facts, what the
//! new results replace, the label changes they make, in the caller's transaction.

use super::*;
use crate::filter::Subject;
use crate::revenue::share_bp;

/// When the customers `facts` referred first bought (by `as_of`), from `known` or the
/// store.
pub(super) async fn first_purchases(
    conn: &impl Conn,
    facts: &[CustomerFacts],
    known: &HashMap<Uuid, &CustomerFacts>,
    as_of: DateTime<Utc>,
) -> Result<HashMap<Uuid, DateTime<Utc>>, Error> {
    let referred: BTreeSet<Uuid> = facts
        .iter()
        .flat_map(|f| f.referrals.iter().map(|r| r.referred))
        .collect();
    let mut out = HashMap::new();
    let mut missing = Vec::new();
    for id in referred {
        match known.get(&id) {
            Some(f) => {
                if let Some(at) = f.first_purchase_at(as_of) {
                    out.insert(id, at);
                }
            }
            None => missing.push(id),
        }
    }
    for f in store::load_facts(conn, &missing).await? {
        if let Some(at) = f.first_purchase_at(as_of) {
            out.insert(f.id, at);
        }
    }
    Ok(out)
}

/// A customer classified: what to store, or None when no longer live.
pub(super) struct Classified {
    pub(super) id: Uuid,
    pub(super) new: Option<Record>,
}

/// Classifies `facts` under `run`.
pub(super) async fn classify_all(
    conn: &impl Conn,
    run: &Run<'_>,
    facts: &[CustomerFacts],
) -> Result<Vec<Classified>, Error> {
    let known: HashMap<Uuid, &CustomerFacts> = facts.iter().map(|f| (f.id, f)).collect();
    let firsts = first_purchases(conn, facts, &known, run.as_of).await?;
    facts
        .iter()
        .map(|f| {
            let new = run
                .classify(f, &firsts)
                .map(|(codes, inputs)| Record::new(f.id, f.region.clone(), codes, &inputs))
                .transpose()?;
            Ok(Classified { id: f.id, new })
        })
        .collect()
}

/// Classifies `facts` under `run` and records the results (see [`record`]).
pub(super) async fn classify_and_record(
    tx: &WriteTx,
    changes: &store::Changes,
    run: &Run<'_>,
    facts: &[CustomerFacts],
) -> Result<Recorded, Error> {
    let classified = classify_all(tx.conn(), run, facts).await?;
    record(tx, changes, run, classified, None, None).await
}

/// What [`record`] did.
pub(super) struct Recorded {
    /// Customers whose results were stored (written or stamped).
    pub(super) stored: usize,
    /// The label changes appended.
    pub(super) changes: Vec<LabelChange>,
    /// The transaction's number among those that wrote classifications.
    pub(super) write: i64,
}

/// A page of a full Reclassify: the customers after the first id up to the second are
/// exactly those classified; with their comparison read ahead, if still valid.
pub(super) struct Page {
    pub(super) after: Option<Uuid>,
    pub(super) last: Uuid,
    pub(super) replaced: Option<HashMap<Uuid, store::Replaced>>,
}

/// Stores `classified` (only the customers whose current classification `only`
/// accepts, if given), removes the results of customers no longer live, and appends the
/// label changes. With `page` (a page of a full Reclassify), the results that did not
/// move are stamped by one statement over the page's range rather than written one by
/// one, and a comparison read ahead is used as it is.
pub(super) async fn record(
    tx: &WriteTx,
    outbox: &store::Changes,
    run: &Run<'_>,
    classified: Vec<Classified>,
    only: Option<&Filter>,
    page: Option<Page>,
) -> Result<Recorded, Error> {
    let conn = tx.conn();
    let write = store::count_write(conn).await?;
    // What each new classification replaces. A filter reads every stored
    // classification; else only those that differ come back, and a customer left out
    // kept its result (labels, inputs and region).
    let (range, ahead) = match page {
        Some(Page {
            after,
            last,
            replaced,
        }) => (Some((after, last)), replaced),
        None => (None, None),
    };
    // A filter is evaluated on what is stored: the features it may compare, too.
    let mut inputs: HashMap<Uuid, Stored> = HashMap::new();
    let replaced: HashMap<Uuid, store::Replaced> = match (only, ahead) {
        (Some(_), _) => {
            let ids: Vec<Uuid> = classified.iter().map(|c| c.id).collect();
            for s in store::load_classifications(conn, &ids).await? {
                inputs.insert(s.customer(), s);
            }
            let mut found = store::load_current(conn, &ids).await?;
            classified
                .iter()
                .map(|c| {
                    let stored = found.remove(&c.id);
                    let codes =
                        stored.as_ref().map(|s| &s.codes) != c.new.as_ref().map(|r| &r.codes_text);
                    (c.id, store::Replaced { stored, codes })
                })
                .collect()
        }
        (None, Some(replaced)) => replaced,
        (None, None) => {
            let candidates = classified.iter().map(|c| (c.id, c.new.as_ref())).collect();
            store::differing(conn, candidates).await?
        }
    };
    let mut records = Vec::new();
    let mut gone = Vec::new();
    let mut recorded = Vec::new();
    let mut kept = 0;
    for Classified { id, new } in classified {
        let previous = replaced.get(&id);
        let stored = previous.and_then(|p| p.stored.as_ref());
        if let Some(only) = only {
            let (Some(current), Some(held)) = (stored, inputs.get(&id)) else {
                continue;
            };
            let codes = current.codes()?;
            let (features, company_revenue) = held.features();
            let subject = Subject {
                region: &current.region,
                codes: &codes,
                features,
                share_of_sales_bp: share_bp(features.revenue_in_window, company_revenue),
                company_revenue,
            };
            if !only.matches(&subject) {
                continue;
            }
        }
        let Some(mut new) = new else {
            if let Some(current) = stored {
                gone.push(id);
                let old = current.codes()?;
                recorded.extend(changes(id, Some(&old), None, run.as_of, run.policy_version));
            }
            continue;
        };
        new.codes_changed = previous.is_some_and(|p| p.codes);
        if new.codes_changed {
            let old = stored.map(store::Current::codes).transpose()?;
            recorded.extend(changes(
                id,
                old.as_ref(),
                Some(&new.codes),
                run.as_of,
                run.policy_version,
            ));
        }
        if previous.is_none() && range.is_some() {
            kept += 1;
        } else {
            records.push(new);
        }
    }
    let stamp = Stamp {
        policy_version: run.policy_version,
        population_id: run.population_id,
        company_revenue: run.company_revenue,
        as_of: run.as_of,
    };
    if let Some((after, last)) = range {
        store::stamp_range(conn, stamp, after, last).await?;
    }
    store::save_classifications(conn, stamp, &records).await?;
    store::delete_classifications(conn, &gone).await?;
    Ok(Recorded {
        stored: records.len() + kept,
        changes: store::append_changes(outbox, tx, recorded).await?,
        write,
    })
}
