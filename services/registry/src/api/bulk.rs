//! Bulk machinery: a batch of unary writes run together with every row's outcome in its
//! place, and the import streams built on it.

use super::*;

/// Runs the valid rows of a batch together and puts every row's outcome back in its
/// place; rows that failed validation keep their error. If the batch as a whole fails
/// (nothing was committed), each of its rows reports that.
pub(super) async fn in_batch<I, O, Fut>(
    parsed: Vec<Result<I, Error>>,
    run: impl FnOnce(Vec<I>) -> Fut,
) -> Vec<Result<O, Error>>
where
    Fut: std::future::Future<Output = Result<Vec<Result<O, Error>>, Error>>,
{
    let mut valid = Vec::new();
    let mut slots = Vec::with_capacity(parsed.len());
    for row in parsed {
        match row {
            Ok(input) => {
                valid.push(input);
                slots.push(None);
            }
            Err(e) => slots.push(Some(Err(e))),
        }
    }
    let ran = if valid.is_empty() {
        Ok(Vec::new())
    } else {
        run(valid).await
    };
    match ran {
        Ok(results) => {
            let mut results = results.into_iter();
            slots
                .into_iter()
                .map(|slot| {
                    slot.unwrap_or_else(|| {
                        results.next().unwrap_or_else(|| {
                            Err(Error::Internal("a batch lost a row's result".into()))
                        })
                    })
                })
                .collect()
        }
        Err(e) => slots
            .into_iter()
            .map(|slot| {
                slot.unwrap_or_else(|| match &e {
                    Error::Unavailable(m) => Err(Error::Unavailable(m.clone())),
                    other => Err(Error::Internal(other.to_string())),
                })
            })
            .collect(),
    }
}

pub(super) fn import_result(
    row: i64,
    outcome: Result<(String, bool), Error>,
) -> pb::ImportRowResult {
    match outcome {
        Ok((name, created)) => pb::ImportRowResult {
            row,
            outcome: if created {
                pb::ImportOutcome::Created
            } else {
                pb::ImportOutcome::Unchanged
            } as i32,
            name,
            ..Default::default()
        },
        Err(error) => {
            if let Error::Internal(detail) = &error {
                tracing::error!(row, %detail, "import row failed");
            }
            pb::ImportRowResult {
                row,
                outcome: pb::ImportOutcome::Failed as i32,
                name: String::new(),
                error_code: clientela_runtime::error::code_name(error.code()).to_owned(),
                error_message: error.public_message(),
                field_violations: error
                    .field_violations()
                    .iter()
                    .map(|v| common::FieldViolation {
                        field: v.field.clone(),
                        description: v.description.clone(),
                    })
                    .collect(),
            }
        }
    }
}

/// Runs an import: the rows of each request (a batch) are handled in order, each as its
/// own call, and the batch is answered with the outcome of every row. A bad row never
/// stops the good ones; a message that cannot be read (or too many rows in one) ends the
/// stream with an error naming the rows handled before it, which stay handled.
///
/// After a stream of at least [`ANALYZE_AFTER_ROWS`] rows, the statistics of `tables`
/// are refreshed ([`clientela_runtime::Db::refresh_statistics`]), once the client has
/// its last answer.
pub(super) fn import<Req, F, Fut>(
    mut incoming: Streaming<Req>,
    stopping: CancellationToken,
    (registry, tables): (Registry, &'static [&'static str]),
    handle_batch: F,
) -> BoxStream<Req::Response>
where
    Req: ImportBatch,
    F: Fn(Vec<Req::Row>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Vec<Result<(String, bool), Error>>> + Send,
{
    let (tx, rx) = mpsc::channel(2);
    tokio::spawn(async move {
        let mut next_row: i64 = 0;
        // A stream that stops early ends with an error saying how far it got, so it
        // never looks like a complete import; the rows before stay imported.
        let stopped = |why: Status, rows: i64| {
            Status::with_details(
                why.code(),
                format!(
                    "the import stopped after {rows} rows; resend from row {rows}: {}",
                    why.message()
                ),
                why.details().to_vec().into(),
            )
        };
        loop {
            let message = tokio::select! {
                () = stopping.cancelled() => Some(Err(Status::unavailable("the server is shutting down"))),
                m = incoming.next() => m,
            };
            let batch = match message {
                None => break,
                Some(Err(status)) => {
                    tracing::debug!(%status, rows = next_row, "import stream broke");
                    // The client may be gone; then nobody reads this.
                    let _ = tx.send(Err(stopped(status, next_row))).await;
                    break;
                }
                Some(Ok(batch)) => batch,
            };
            let rows = batch.into_rows();
            if rows.len() > IMPORT_BATCH_MAX {
                let why = Error::invalid(
                    "rows",
                    format!(
                        "at most {IMPORT_BATCH_MAX} rows per message (got {})",
                        rows.len()
                    ),
                );
                let _ = tx.send(Err(stopped(why.into(), next_row))).await;
                break;
            }
            let mut results = Vec::new();
            let mut appended = false;
            for outcome in handle_batch(rows).await {
                appended |= outcome.as_ref().is_ok_and(|(_, created)| *created);
                results.push(import_result(next_row, outcome));
                next_row += 1;
            }
            let answer = registry
                .visible_at(appended)
                .await
                .map(|sequence| Req::respond(results, sequence))
                .map_err(Status::from);
            if tx.send(answer).await.is_err() {
                break;
            }
        }
        drop(tx);
        if next_row >= ANALYZE_AFTER_ROWS
            && let Err(e) = registry.db().refresh_statistics(tables).await
        {
            tracing::warn!(error = %e, "refreshing statistics after an import failed");
        }
    });
    Box::pin(ReceiverStream::new(rx))
}

/// Rows of one import message: a batch is one transaction, so it is bounded.
pub(super) const IMPORT_BATCH_MAX: usize = 1000;

/// Rows of an import after which the planner's statistics are refreshed.
pub(super) const ANALYZE_AFTER_ROWS: i64 = 10_000;

/// A request of an import stream: a batch of rows.
pub(super) trait ImportBatch: Send + 'static {
    /// One row: exactly the request of the matching unary call.
    type Row: Send;
    /// The response carrying a batch's outcomes.
    type Response: Send + 'static;
    fn into_rows(self) -> Vec<Self::Row>;
    /// The answer to a batch: its outcomes, and the sequence they are visible at.
    fn respond(results: Vec<pb::ImportRowResult>, event_sequence: i64) -> Self::Response;
}

impl ImportBatch for pb::ImportCustomersRequest {
    type Row = pb::CreateCustomerRequest;
    type Response = pb::ImportCustomersResponse;
    fn into_rows(self) -> Vec<Self::Row> {
        let pb::ImportCustomersRequest { rows } = self;
        rows
    }
    fn respond(results: Vec<pb::ImportRowResult>, event_sequence: i64) -> Self::Response {
        pb::ImportCustomersResponse {
            results,
            event_sequence,
        }
    }
}

impl ImportBatch for pb::ImportPurchasesRequest {
    type Row = pb::RecordPurchaseRequest;
    type Response = pb::ImportPurchasesResponse;
    fn into_rows(self) -> Vec<Self::Row> {
        let pb::ImportPurchasesRequest { rows } = self;
        rows
    }
    fn respond(results: Vec<pb::ImportRowResult>, event_sequence: i64) -> Self::Response {
        pb::ImportPurchasesResponse {
            results,
            event_sequence,
        }
    }
}
