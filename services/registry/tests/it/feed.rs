//! The event feed: every write appends its events with gap-free, increasing sequence
//! numbers that survive restarts; a consumer that resumes misses nothing, even under
//! concurrent writers.

use std::collections::HashSet;

use clientela_proto::clientela::registry::v1 as pb;
use futures::StreamExt;

use crate::both_engines;
use crate::harness::*;

fn assert_consecutive(events: &[pb::Event], first: i64) {
    for (i, e) in events.iter().enumerate() {
        assert_eq!(
            e.sequence,
            first + i as i64,
            "gap or repeat at position {i}"
        );
    }
    let ids: HashSet<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids.len(), events.len(), "event ids repeat");
}

both_engines!(
    a_thousand_writes_survive_a_restart_and_resume_exactly,
    |app: TestApp| async move {
        let mut client = app.client.clone();
        // 500 customers, each with a first purchase: 500 created + 500 purchases + 500 status
        // changes = 1,500 events from 1,000 writes.
        for n in 0..500 {
            let c = create(&mut client, person(n)).await;
            buy(&mut client, &c.name, &format!("F-{n}"), &[(1, 990, false)]).await;
        }
        let all = drain_feed(&mut client, 0, 1500).await;
        assert_eq!(all.len(), 1500);
        assert_consecutive(&all, 1);
        let kinds = |e: &pb::Event| match e.payload.as_ref().unwrap() {
            pb::event::Payload::CustomerCreated(_) => "created",
            pb::event::Payload::PurchaseRecorded(_) => "purchase",
            pb::event::Payload::CustomerUpdated(c) => {
                assert_eq!(c.status, pb::CustomerStatus::Customer as i32);
                "updated"
            }
            other => panic!("unexpected {other:?}"),
        };
        let counts = all.iter().map(kinds).fold([0; 3], |mut acc, k| {
            acc[["created", "purchase", "updated"]
                .iter()
                .position(|x| *x == k)
                .unwrap()] += 1;
            acc
        });
        assert_eq!(counts, [500, 500, 500]);

        // Restart on the same database; a consumer resumes after 700. Events up to 1,000
        // lose their stored wire form, as if written before it existed: the feed encodes
        // those from the record, and they must read the same.
        let (url, dir) = app.stop().await;
        forget_wire_forms(&url, 1000).await;
        let app = spawn_with(url, dir, settings()).await;
        let mut client = app.client.clone();
        let c = create(&mut client, person(10_000)).await;
        assert!(!c.name.is_empty());
        let resumed = drain_feed(&mut client, 700, 1501).await;
        assert_eq!(resumed.len(), 801);
        assert_consecutive(&resumed, 701);
        assert_eq!(
            resumed[..800],
            all[700..],
            "history is the same after the restart"
        );
        app.stop().await;
    }
);

/// Clears the stored wire form of events up to `last`.
async fn forget_wire_forms(url: &str, last: i64) {
    use sea_orm::ConnectionTrait;
    let db = clientela_runtime::Db::connect(url, &Default::default())
        .await
        .unwrap();
    let conn = db.conn();
    let sql = format!("UPDATE events SET wire = NULL WHERE sequence <= {last}");
    let done = conn.execute_unprepared(&sql).await.unwrap();
    assert_eq!(done.rows_affected(), u64::try_from(last).unwrap());
}

both_engines!(
    a_live_watcher_sees_concurrent_writers_without_gaps,
    |app: TestApp| async move {
        let client = app.client.clone();
        let mut watcher = client.clone();
        let mut stream = watcher
            .watch_events(pb::WatchEventsRequest {
                after_sequence: 0,
                max_batch_size: 7,
            })
            .await
            .unwrap()
            .into_inner();
        let writers: Vec<_> = (0..8u32)
            .map(|w| {
                let mut client = client.clone();
                tokio::spawn(async move {
                    for n in 0..40 {
                        create(&mut client, person(w * 1000 + n)).await;
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.await.unwrap();
        }
        let mut live = Vec::new();
        while live.len() < 320 {
            let batch = tokio::time::timeout(std::time::Duration::from_secs(20), stream.next())
                .await
                .expect("the live feed stalled")
                .unwrap()
                .unwrap();
            assert!(batch.events.len() <= 7);
            live.extend(batch.events);
        }
        assert_eq!(live.len(), 320);
        assert_consecutive(&live, 1);
        let mut again = client.clone();
        let replay = drain_feed(&mut again, 0, 320).await;
        assert_eq!(replay, live, "live and replayed feeds agree");
    }
);

both_engines!(
    bad_watch_arguments_are_rejected,
    |app: TestApp| async move {
        let mut client = app.client.clone();
        let err = client
            .watch_events(pb::WatchEventsRequest {
                after_sequence: -1,
                max_batch_size: 0,
            })
            .await
            .unwrap_err();
        assert_invalid(&err, "after_sequence");
    }
);

both_engines!(
    an_open_watch_ends_with_unavailable_when_the_server_shuts_down,
    |app: TestApp| async move {
        let mut client = app.client.clone();
        create(&mut client, person(1)).await;
        let mut stream = client
            .watch_events(pb::WatchEventsRequest {
                after_sequence: 0,
                max_batch_size: 0,
            })
            .await
            .unwrap()
            .into_inner();
        let first = stream.next().await.unwrap().unwrap();
        assert_eq!(first.events.len(), 1);
        // Caught up and waiting: the server goes away.
        let stopping = tokio::spawn(app.stop());
        let end = tokio::time::timeout(std::time::Duration::from_secs(10), stream.next())
            .await
            .expect("the stream did not end at shutdown");
        let status = end
            .expect("the stream ended without a status, as if the feed were over")
            .expect_err("the stream ended with a message, not a status");
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        stopping.await.unwrap();
    }
);
