//! Seed 003 as it reads: territories ("los clientes de la V Región, de la Zona Sur de
//! Santiago, de la zona Norte del país, desde la Primera a la Cuarta Región") and a
//! cartera "de 20 clientes" managed "por la empresa o por un vendedor".

use clientela_proto::clientela::territory::v1 as pb;

use crate::cartera::{activate, add_seller, buy, coverage_when, customer_at, primary_seller};
use crate::models::chile_2027;
use crate::realign::apply;
use crate::sellers::seller;
use crate::*;

const HOUSE: &str = "sellers/00000000-0000-7000-8000-000000000001";

/// Every coverage violation but KAM_WANTED: the classification engine's tiers make the
/// biggest buyers KEY and nobody here is a KAM, which is not this scenario's subject.
async fn violations_but_kam(client: &mut Client) -> Vec<pb::CoverageViolation> {
    let kam_wanted = pb::CoverageViolationKind::KamWanted as i32;
    let all = client
        .list_coverage_violations(pb::ListCoverageViolationsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .violations;
    all.into_iter().filter(|v| v.kind != kam_wanted).collect()
}

const COAST: [&str; 4] = ["Viña del Mar", "Valparaíso", "Quilpué", "Villa Alemana"];

clientela_testkit::both_engines!(
    crate::spawn_app,
    seed_003_three_territories_and_a_cartera_of_twenty,
    |app: TestApp| async move {
        let (mut client, mut registry) = (app.client.clone(), app.registry.clone());
        let model = chile_2027(&mut client).await;
        let mut coast = seller("Valeria Muñoz", "valeria", &["CL-V"], &[]);
        coast.capacity = 20;
        let coast = add_seller(&mut client, coast).await;
        let south = add_seller(
            &mut client,
            seller("Sergio Vera", "sergio", &["RM-SUR"], &[]),
        )
        .await;
        let north = add_seller(
            &mut client,
            seller("Norma Tapia", "norma", &["CL-NORTE"], &[]),
        )
        .await;
        activate(&mut client, &model).await;

        // Twenty-one buyers in the V Región: the cartera holds twenty, the last overflows.
        let mut v_region = Vec::new();
        for i in 0..21 {
            let c = customer_at(
                &mut registry,
                &format!("Cliente V{i:02}"),
                "Región de Valparaíso",
                COAST[i % COAST.len()],
            )
            .await;
            buy(&mut registry, &c, &format!("v-{i}"), 5, &["lubricantes"]).await;
            v_region.push(c);
        }
        let florida =
            customer_at(&mut registry, "Pedro", "Región Metropolitana", "La Florida").await;
        buy(&mut registry, &florida, "s-1", 5, &["lubricantes"]).await;
        // Antofagasta is the Second Region; Coquimbo the Fourth.
        let antofagasta = customer_at(&mut registry, "Rosa", "Antofagasta", "Calama").await;
        buy(&mut registry, &antofagasta, "n-1", 5, &["lubricantes"]).await;
        let coquimbo = customer_at(&mut registry, "Luis", "Coquimbo", "La Serena").await;
        buy(&mut registry, &coquimbo, "n-2", 5, &["lubricantes"]).await;
        // Providencia is Santiago but not its Zona Sur: nobody covers it, the company does.
        let providencia =
            customer_at(&mut registry, "Inés", "Región Metropolitana", "Providencia").await;
        buy(&mut registry, &providencia, "h-1", 5, &["lubricantes"]).await;

        let last = coverage_when(&mut client, &providencia, |c| c.primary.is_some()).await;
        assert_eq!(last.territory_path, ["CL", "CL-RM"]);
        assert_eq!(primary_seller(&last), HOUSE, "the company's own cartera");
        for (customer, path, who) in [
            (&florida, &["CL", "CL-RM", "RM-SUR"][..], &south),
            (&antofagasta, &["CL", "CL-NORTE"][..], &north),
            (&coquimbo, &["CL", "CL-NORTE"][..], &north),
        ] {
            let c = coverage_when(&mut client, customer, |c| c.primary.is_some()).await;
            assert_eq!(c.territory_path, path, "{customer}");
            assert_eq!(primary_seller(&c), who, "{customer}");
        }

        // The first twenty are Valeria's, by least load (she is the only one) and then
        // capacity; the twenty-first goes to her as OVERFLOW, listed as a violation.
        let mut causes = Vec::new();
        for c in &v_region {
            let got = coverage_when(&mut client, c, |c| c.primary.is_some()).await;
            assert_eq!(got.territory_path, ["CL", "CL-V"]);
            assert_eq!(primary_seller(&got), coast);
            causes.push(got.primary.unwrap().cause);
        }
        let overflowed: Vec<usize> = causes
            .iter()
            .enumerate()
            .filter(|(_, c)| **c == pb::AssignmentCause::Overflow as i32)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(
            overflowed,
            [20],
            "only the twenty-first is past her capacity"
        );

        let cartera = client
            .list_cartera(pb::ListCarteraRequest {
                seller: coast.clone(),
                role: pb::AssignmentRole::Primary as i32,
                page_size: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(cartera.assignments.len(), 21);
        assert!(cartera.next_page_token.is_empty());
        let weight: i64 = cartera
            .assignments
            .iter()
            .filter(|a| a.cause != pb::AssignmentCause::Overflow as i32)
            .map(|a| a.weight)
            .sum();
        assert_eq!(weight, 20, "a cartera of twenty within capacity");

        let violations = violations_but_kam(&mut client).await;
        let listed: Vec<(i32, &str, &str)> = violations
            .iter()
            .map(|v| (v.kind, v.customer.as_str(), v.seller.as_str()))
            .collect();
        assert_eq!(
            listed,
            [
                (
                    pb::CoverageViolationKind::HouseCartera as i32,
                    providencia.as_str(),
                    HOUSE
                ),
                (
                    pb::CoverageViolationKind::Overflow as i32,
                    v_region[20].as_str(),
                    coast.as_str()
                ),
                (
                    pb::CoverageViolationKind::OverCapacity as i32,
                    "",
                    coast.as_str()
                ),
            ]
        );
        assert_eq!(violations[2].detail, "carries 21 against a capacity of 20");

        // A second coast seller takes the overflow off her on the active model's rules:
        // the preview shows one move, the apply makes it, the violations clear.
        let second = add_seller(
            &mut client,
            seller("Camila Reyes", "camila", &["CL-V"], &[]),
        )
        .await;
        let preview = client
            .preview_realignment(pb::PreviewRealignmentRequest {
                territory_model: model.name.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let moved: Vec<(&str, &str, &str)> = preview
            .moves
            .iter()
            .map(|m| {
                (
                    m.customer.as_str(),
                    m.from_seller.as_str(),
                    m.to_seller.as_str(),
                )
            })
            .collect();
        assert_eq!(
            moved,
            [(v_region[20].as_str(), coast.as_str(), second.as_str())],
            "only the overflow moves: a customer within capacity keeps its seller"
        );
        let done = apply(&mut client, &preview.preview_token).await.unwrap();
        assert_eq!(done.last().unwrap().assignments_moved, 1);
        let resolved =
            coverage_when(&mut client, &v_region[20], |c| primary_seller(c) == second).await;
        assert_eq!(
            resolved.primary.unwrap().cause,
            pb::AssignmentCause::Rule as i32
        );
        let left = violations_but_kam(&mut client).await;
        assert_eq!(left.len(), 1, "{left:?}");
        assert_eq!(
            left[0].customer, providencia,
            "only the house's customer is left"
        );
    }
);
