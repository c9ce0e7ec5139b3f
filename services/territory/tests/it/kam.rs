//! KAMs from the classification engine's account tiers (TERRITORY.md invariant 3, seed
//! 004): a KEY or BOSS account gets a KAM, waits on the violations list while no KAM
//! seller can take it, keeps its KAM through a tier that flickers, and loses it only
//! when the grace period ends.

use clientela_proto::clientela::registry::v1 as rpb;
use clientela_proto::clientela::territory::v1 as pb;

use crate::cartera::{
    activate, add_seller, buy_worth, coverage, coverage_when, customer_at, history,
};
use crate::models::chile_2027;
use crate::sellers::seller;
use crate::*;

async fn flag_key_account(registry: &mut Registry, customer: &str, key: bool) {
    registry
        .update_customer(rpb::UpdateCustomerRequest {
            customer: Some(rpb::Customer {
                name: customer.into(),
                key_account: key,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["key_account".into()],
            }),
        })
        .await
        .unwrap();
}

async fn kam_wanted(client: &mut Client) -> Vec<String> {
    client
        .list_coverage_violations(pb::ListCoverageViolationsRequest {
            kind: pb::CoverageViolationKind::KamWanted as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .violations
        .into_iter()
        .map(|v| v.customer)
        .collect()
}

fn kam_of(c: &pb::GetCoverageResponse) -> Option<&pb::Assignment> {
    c.kam.as_ref()
}

fn instant(t: &prost_types::Timestamp) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(t.seconds, t.nanos as u32).unwrap()
}

clientela_testkit::both_engines!(
    crate::spawn_app,
    a_key_account_gets_a_kam_and_loses_it_only_after_the_grace_period,
    |app: TestApp| async move {
        let (mut client, mut registry) = (app.client.clone(), app.registry.clone());
        let model = chile_2027(&mut client).await;
        add_seller(&mut client, seller("Ana Rojas", "ana", &["CL-V"], &[])).await;
        activate(&mut client, &model).await;

        // BOSS (all of the sales) before any seller can be a KAM: it waits, listed.
        let huge = customer_at(
            &mut registry,
            "Minera Grande",
            "Región de Valparaíso",
            "Quintero",
        )
        .await;
        buy_worth(&mut registry, &huge, "o-1", 2, &["lubricantes"], 10_000_000).await;
        let waiting = coverage_when(&mut client, &huge, |c| c.account_tier == "BOSS").await;
        assert!(waiting.kam.is_none());
        assert!(waiting.primary.is_some(), "a PRIMARY all the same");
        assert_eq!(kam_wanted(&mut client).await, std::slice::from_ref(&huge));

        // A KAM seller joins: the sweep gives the waiting account its KAM.
        let mut kam = seller("Karla Mena", "karla", &[], &[]);
        kam.kam = true;
        let karla = add_seller(&mut client, kam).await;
        assert_eq!(
            app.territories
                .sweep_kams(chrono::Utc::now())
                .await
                .unwrap(),
            1
        );
        let boss = coverage(&mut client, &huge).await.unwrap();
        let boss_kam = kam_of(&boss).expect("a KAM");
        assert_eq!(boss_kam.seller, karla);
        assert_eq!(boss_kam.cause, pb::AssignmentCause::TierChange as i32);
        assert!(kam_wanted(&mut client).await.is_empty());

        // Flagged a key account in the registry (a small share: KEY, not BOSS).
        let big = customer_at(
            &mut registry,
            "Transportes Costa",
            "Región de Valparaíso",
            "Viña del Mar",
        )
        .await;
        flag_key_account(&mut registry, &big, true).await;
        buy_worth(&mut registry, &big, "o-2", 1, &["lubricantes"], 10_000).await;
        let key = coverage_when(&mut client, &big, |c| c.kam.is_some()).await;
        assert_eq!(key.account_tier, "KEY");
        let first_kam = key.kam.clone().unwrap();
        assert_eq!(first_kam.seller, karla);
        assert_eq!(first_kam.cause, pb::AssignmentCause::TierChange as i32);
        assert!(key.kam_grace_end_time.is_none());

        // The tier falls and comes back: the same KAM, no churn.
        flag_key_account(&mut registry, &big, false).await;
        let fallen = coverage_when(&mut client, &big, |c| c.kam_grace_end_time.is_some()).await;
        assert_ne!(fallen.account_tier, "KEY");
        assert_eq!(
            fallen.kam.as_ref().unwrap().name,
            first_kam.name,
            "kept in grace"
        );
        flag_key_account(&mut registry, &big, true).await;
        let back = coverage_when(&mut client, &big, |c| c.kam_grace_end_time.is_none()).await;
        assert_eq!(back.account_tier, "KEY");
        assert_eq!(back.kam.as_ref().unwrap().name, first_kam.name);

        // It falls for good: the KAM stays the 30 days, then ends at their end.
        flag_key_account(&mut registry, &big, false).await;
        let fallen = coverage_when(&mut client, &big, |c| c.kam_grace_end_time.is_some()).await;
        let grace_end = instant(fallen.kam_grace_end_time.as_ref().unwrap());
        let hours = (grace_end - chrono::Utc::now()).num_hours();
        assert!(
            (29 * 24..=30 * 24).contains(&hours),
            "30 days of grace: {hours} h"
        );
        assert_eq!(
            app.territories
                .sweep_kams(grace_end - chrono::Duration::days(1))
                .await
                .unwrap(),
            0,
            "not before the grace period ends"
        );
        assert_eq!(
            app.territories
                .sweep_kams(grace_end + chrono::Duration::seconds(1))
                .await
                .unwrap(),
            1
        );
        let kams: Vec<pb::Assignment> = history(&mut client, &big)
            .await
            .into_iter()
            .filter(|a| a.role == pb::AssignmentRole::Kam as i32)
            .collect();
        assert_eq!(kams.len(), 1, "{kams:?}");
        assert_eq!(kams[0].name, first_kam.name);
        assert_eq!(instant(kams[0].valid_to.as_ref().unwrap()), grace_end);
        assert_eq!(kams[0].end_cause, pb::AssignmentEndCause::TierChange as i32);
        let after = coverage(&mut client, &big).await.unwrap();
        assert!(after.kam_grace_end_time.is_none());
        // Asked at an instant after the grace period: no KAM; the BOSS keeps its own.
        let later = client
            .get_coverage(pb::GetCoverageRequest {
                customer: big.clone(),
                as_of: Some(prost_types::Timestamp {
                    seconds: (grace_end + chrono::Duration::days(1)).timestamp(),
                    nanos: 0,
                }),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(later.kam.is_none());
        assert!(later.primary.is_some());
        let boss = coverage(&mut client, &huge).await.unwrap();
        assert_eq!(
            kam_of(&boss).map(|k| k.name.clone()),
            Some(boss_kam.name.clone())
        );
    }
);
