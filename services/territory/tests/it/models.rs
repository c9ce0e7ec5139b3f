//! Models, territories and LocateAddress as a user drives them.

use clientela_proto::clientela::territory::v1 as pb;
use tonic::Code;

use crate::*;

pub fn countries(codes: &[&str]) -> pb::AddressCriteria {
    pb::AddressCriteria {
        country_codes: codes.iter().map(|c| (*c).to_owned()).collect(),
        ..Default::default()
    }
}

pub fn regions(names: &[&str]) -> pb::AddressCriteria {
    pb::AddressCriteria {
        regions: names.iter().map(|c| (*c).to_owned()).collect(),
        ..Default::default()
    }
}

pub fn localities(names: &[&str]) -> pb::AddressCriteria {
    pb::AddressCriteria {
        localities: names.iter().map(|c| (*c).to_owned()).collect(),
        ..Default::default()
    }
}

async fn locate(
    client: &mut Client,
    model: &pb::TerritoryModel,
    region: &str,
    locality: &str,
) -> pb::LocateAddressResponse {
    client
        .locate_address(pb::LocateAddressRequest {
            territory_model: model.name.clone(),
            country_code: "CL".into(),
            region: region.into(),
            locality: locality.into(),
            postal_code: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
}

fn codes(path: &[pb::Territory]) -> Vec<&str> {
    path.iter().map(|t| t.code.as_str()).collect()
}

/// Seed 003's territories: Chile, "V Región", "Zona Sur de Santiago" and "Zona Norte
/// (Primera a Cuarta Región)".
/// A new PLANNING model "Chile 2027" holding seed 003's territories.
pub async fn chile_2027(client: &mut Client) -> pb::TerritoryModel {
    let model = new_model(client, "Chile 2027").await;
    seed_003(client, &model).await;
    model
}

pub async fn seed_003(client: &mut Client, model: &pb::TerritoryModel) {
    add(client, model, "CL", "", countries(&["cl"]))
        .await
        .unwrap();
    add(
        client,
        model,
        "CL-V",
        "CL",
        regions(&["Región de Valparaíso"]),
    )
    .await
    .unwrap();
    add(
        client,
        model,
        "CL-RM",
        "CL",
        regions(&["Región Metropolitana"]),
    )
    .await
    .unwrap();
    add(
        client,
        model,
        "RM-SUR",
        "CL-RM",
        localities(&["La Florida", "Puente Alto", "La Pintana"]),
    )
    .await
    .unwrap();
    add(
        client,
        model,
        "CL-NORTE",
        "CL",
        regions(&[
            "Arica y Parinacota",
            "Tarapacá",
            "Antofagasta",
            "Atacama",
            "Coquimbo",
        ]),
    )
    .await
    .unwrap();
}

clientela_testkit::both_engines!(
    crate::spawn_app,
    an_address_belongs_to_the_deepest_territory_that_matches,
    |app: TestApp| async move {
        let mut client = app.client.clone();
        let model = new_model(&mut client, "Chile 2027").await;
        assert_eq!(model.state, pb::TerritoryModelState::Planning as i32);
        seed_003(&mut client, &model).await;

        let south = locate(&mut client, &model, "REGION METROPOLITANA", "la florida").await;
        assert_eq!(codes(&south.path), ["CL", "CL-RM", "RM-SUR"]);
        assert!(south.unassigned_reason.is_empty());
        let center = locate(&mut client, &model, "Región Metropolitana", "Providencia").await;
        assert_eq!(codes(&center.path), ["CL", "CL-RM"]);
        let north = locate(&mut client, &model, "Tarapacá", "Iquique").await;
        assert_eq!(codes(&north.path), ["CL", "CL-NORTE"]);
        let abroad = client
            .locate_address(pb::LocateAddressRequest {
                territory_model: model.name.clone(),
                country_code: "AR".into(),
                region: "Mendoza".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(abroad.path.is_empty());
        assert_eq!(
            abroad.unassigned_reason,
            "no top-level territory matches the address (country AR, region mendoza)"
        );

        // Parents before children, siblings by priority then code.
        let listed = client
            .list_territories(pb::ListTerritoriesRequest {
                parent: model.name.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            codes(&listed.territories),
            ["CL", "CL-NORTE", "CL-RM", "RM-SUR", "CL-V"]
        );
        let got = client
            .get_territory_model(pb::GetTerritoryModelRequest {
                name: model.name.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .territory_model
            .unwrap();
        assert_eq!(got.territory_count, 5);
        assert_ne!(
            got.etag, model.etag,
            "editing territories moves the model's etag"
        );
    }
);

clientela_testkit::both_engines!(
    crate::spawn_app,
    the_hierarchy_stays_a_forest_and_edits_are_checked,
    |app: TestApp| async move {
        let mut client = app.client.clone();
        let model = new_model(&mut client, "Chile").await;
        seed_003(&mut client, &model).await;

        let taken = add(&mut client, &model, "CL-V", "CL", regions(&["Valparaíso"])).await;
        assert_eq!(taken.unwrap_err().code(), Code::AlreadyExists);
        let orphan = add(&mut client, &model, "X", "NOPE", Default::default()).await;
        assert_eq!(violation(&orphan.unwrap_err()), "territory.parent_code");
        let lower = add(&mut client, &model, "cl-x", "", Default::default()).await;
        assert_eq!(violation(&lower.unwrap_err()), "territory.code");
        let bad_country = add(&mut client, &model, "AR", "", countries(&["Argentina"])).await;
        assert_eq!(
            violation(&bad_country.unwrap_err()),
            "territory.criteria.country_codes[0]"
        );

        // CL cannot move under its own descendant.
        let cycle = client
            .update_territory(pb::UpdateTerritoryRequest {
                territory: Some(pb::Territory {
                    name: format!("{}/territories/CL", model.name),
                    parent_code: "RM-SUR".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["parent_code".into()],
                }),
            })
            .await
            .unwrap_err();
        assert_eq!(violation(&cycle), "territory.parent_code");
        let unknown_path = client
            .update_territory(pb::UpdateTerritoryRequest {
                territory: Some(pb::Territory {
                    name: format!("{}/territories/CL", model.name),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["code".into()],
                }),
            })
            .await
            .unwrap_err();
        assert_eq!(violation(&unknown_path), "update_mask.paths[0]");

        // A stale etag is ABORTED; the current one is taken.
        let sur = client
            .get_territory(pb::GetTerritoryRequest {
                name: format!("{}/territories/RM-SUR", model.name),
            })
            .await
            .unwrap()
            .into_inner()
            .territory
            .unwrap();
        let rename = |etag: String| pb::UpdateTerritoryRequest {
            territory: Some(pb::Territory {
                name: sur.name.clone(),
                display_name: "Zona Sur de Santiago".into(),
                priority: 5,
                etag,
                ..Default::default()
            }),
            update_mask: None,
        };
        let renamed = client
            .update_territory(rename(sur.etag.clone()))
            .await
            .unwrap()
            .into_inner()
            .territory
            .unwrap();
        assert_eq!(
            (renamed.display_name.as_str(), renamed.priority),
            ("Zona Sur de Santiago", 5)
        );
        assert_eq!(renamed.criteria, sur.criteria, "not in the mask: kept");
        let stale = client.update_territory(rename(sur.etag.clone())).await;
        assert_eq!(stale.unwrap_err().code(), Code::Aborted);

        // A territory with children is not deleted; a leaf is.
        let parent = client
            .delete_territory(pb::DeleteTerritoryRequest {
                name: format!("{}/territories/CL-RM", model.name),
                etag: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(parent.code(), Code::FailedPrecondition);
        assert!(parent.message().contains("RM-SUR"), "{}", parent.message());
        client
            .delete_territory(pb::DeleteTerritoryRequest {
                name: sur.name.clone(),
                etag: String::new(),
            })
            .await
            .unwrap();
        let gone = client
            .get_territory(pb::GetTerritoryRequest {
                name: sur.name.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(gone.code(), Code::NotFound);
    }
);

clientela_testkit::both_engines!(
    crate::spawn_app,
    a_copy_starts_from_another_model_and_an_archived_one_is_read_only,
    |app: TestApp| async move {
        let mut client = app.client.clone();
        let first = new_model(&mut client, "2026").await;
        seed_003(&mut client, &first).await;
        let create = |request_id: &str, name: &str| pb::CreateTerritoryModelRequest {
            territory_model: Some(pb::TerritoryModel {
                display_name: name.into(),
                ..Default::default()
            }),
            copy_from: first.name.clone(),
            request_id: request_id.into(),
        };
        let copy = client
            .create_territory_model(create("copy-2027", "2027"))
            .await
            .unwrap()
            .into_inner();
        assert!(copy.created);
        let copy = copy.territory_model.unwrap();
        assert_eq!(
            (copy.territory_count, copy.copied_from.as_str()),
            (5, first.name.as_str())
        );
        // The same key and body: the same model, nothing created.
        let again = client
            .create_territory_model(create("copy-2027", "2027"))
            .await
            .unwrap()
            .into_inner();
        assert!(!again.created);
        assert_eq!(again.territory_model.unwrap().name, copy.name);
        // The same key with another body is refused.
        let reused = client
            .create_territory_model(create("copy-2027", "2028"))
            .await
            .unwrap_err();
        assert_eq!(reused.code(), Code::AlreadyExists);
        let south = locate(&mut client, &copy, "Región Metropolitana", "Puente Alto").await;
        assert_eq!(codes(&south.path), ["CL", "CL-RM", "RM-SUR"]);

        // Archived: read only, kept, and archiving again changes nothing.
        let archived = client
            .archive_territory_model(pb::ArchiveTerritoryModelRequest {
                name: first.name.clone(),
                etag: "\"1\"".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(archived.code(), Code::Aborted, "stale etag");
        let archived = client
            .archive_territory_model(pb::ArchiveTerritoryModelRequest {
                name: first.name.clone(),
                etag: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .territory_model
            .unwrap();
        assert_eq!(archived.state, pb::TerritoryModelState::Archived as i32);
        let edit = add(&mut client, &first, "CL-X", "CL", Default::default()).await;
        let edit = edit.unwrap_err();
        assert_eq!(edit.code(), Code::FailedPrecondition);
        assert!(edit.message().contains("ARCHIVED"), "{}", edit.message());
        let located = locate(&mut client, &first, "Región de Valparaíso", "").await;
        assert_eq!(
            codes(&located.path),
            ["CL", "CL-V"],
            "history stays readable"
        );

        // Listing: newest first, by state, in pages.
        let planning = client
            .list_territory_models(pb::ListTerritoryModelsRequest {
                state: pb::TerritoryModelState::Planning as i32,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let names: Vec<&str> = planning
            .territory_models
            .iter()
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(names, [copy.name.as_str()]);
        let page = client
            .list_territory_models(pb::ListTerritoryModelsRequest {
                page_size: 1,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page.territory_models[0].name, copy.name);
        let next = client
            .list_territory_models(pb::ListTerritoryModelsRequest {
                page_size: 1,
                page_token: page.next_page_token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(next.territory_models[0].name, first.name);
    }
);

clientela_testkit::both_engines!(
    crate::spawn_app,
    bad_names_and_missing_models_get_clear_errors,
    |app: TestApp| async move {
        let mut client = app.client.clone();
        for name in [
            "",
            "territoryModels/not-a-uuid",
            "territoryModels/0192F0C1-0000-7000-8000-000000000000",
            "customers/0192f0c1-0000-7000-8000-000000000000",
        ] {
            let status = client
                .get_territory_model(pb::GetTerritoryModelRequest { name: name.into() })
                .await
                .unwrap_err();
            assert_eq!(violation(&status), "name", "{name:?}");
        }
        let missing = "territoryModels/0192f0c1-0000-7000-8000-000000000000";
        let status = client
            .get_territory_model(pb::GetTerritoryModelRequest {
                name: missing.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
        let status = client
            .create_territory_model(pb::CreateTerritoryModelRequest {
                territory_model: Some(pb::TerritoryModel {
                    display_name: "copy".into(),
                    ..Default::default()
                }),
                copy_from: missing.into(),
                request_id: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
        let status = client
            .create_territory_model(pb::CreateTerritoryModelRequest::default())
            .await
            .unwrap_err();
        assert_eq!(violation(&status), "territory_model");
        let model = new_model(&mut client, "m").await;
        let status = client
            .locate_address(pb::LocateAddressRequest {
                territory_model: model.name.clone(),
                country_code: "Chile".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(violation(&status), "country_code");
        let empty = client
            .locate_address(pb::LocateAddressRequest {
                territory_model: model.name.clone(),
                country_code: "CL".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(empty.unassigned_reason, "the model has no territories");
        let status = client
            .get_territory(pb::GetTerritoryRequest {
                name: format!("{}/territories/cl", model.name),
            })
            .await
            .unwrap_err();
        assert_eq!(violation(&status), "name");
    }
);
