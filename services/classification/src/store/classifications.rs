//! Stored classifications: written as the rules' inputs and label codes (explanations
//! are rendered when read), read by id or in full.

use super::*;

/// The first byte of `classifications.inputs`: the encoding that follows (postcard).
/// Format 2 added `left_out`; format 1 still reads.
pub(super) const INPUTS_FORMAT: u8 = 2;

/// A classification as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// Its inputs: rendered with the policy version and population when read.
    Inputs {
        customer: Uuid,
        /// The policy version.
        policy_version: i64,
        /// The population (0: none).
        population_id: i64,
        /// The company revenue its shares were measured against (None: stored before
        /// it was kept).
        company_revenue: Option<i64>,
        as_of: DateTime<Utc>,
        region: String,
        inputs: Box<Inputs>,
    },
    /// A whole result, written before results were stored as inputs (read as it was
    /// until that customer is classified again).
    Rendered(Box<Classification>),
}

impl Stored {
    /// Whose it is.
    pub fn customer(&self) -> Uuid {
        match self {
            Stored::Inputs { customer, .. } => *customer,
            Stored::Rendered(c) => c.customer,
        }
    }

    /// Its features and the company revenue its share was measured against (0 when
    /// stored before that was kept).
    pub fn features(&self) -> (&crate::facts::Features, i64) {
        match self {
            Stored::Inputs {
                inputs,
                company_revenue,
                ..
            } => (&inputs.features, company_revenue.unwrap_or(0)),
            Stored::Rendered(c) => (&c.features, c.company_revenue),
        }
    }
}

/// The columns of a stored classification ([`STORED_COLUMNS`]), as read.
pub(crate) struct StoredRow {
    pub(super) customer: Uuid,
    pub(super) policy_version: i64,
    pub(super) population_id: Option<i64>,
    pub(super) company_revenue: Option<i64>,
    pub(super) as_of: DateTime<Utc>,
    pub(super) region: String,
    pub(super) inputs: Option<Vec<u8>>,
    pub(super) data: Option<Vec<u8>>,
    pub(super) body: String,
}

impl StoredRow {
    fn read(row: &QueryResult) -> Result<Self, Error> {
        Ok(Self {
            customer: row.try_get("", "customer_id")?,
            policy_version: row.try_get("", "policy_version")?,
            population_id: row.try_get("", "population_id")?,
            company_revenue: row.try_get("", "company_revenue")?,
            as_of: row.try_get("", "as_of")?,
            region: row.try_get("", "region")?,
            inputs: row.try_get("", "inputs")?,
            data: row.try_get("", "data")?,
            body: row.try_get("", "body")?,
        })
    }

    /// The classification the row holds.
    pub(crate) fn decode(self) -> Result<Stored, Error> {
        let corrupt = |e: &dyn std::fmt::Display| {
            Error::Internal(format!("corrupt classification in the database: {e}"))
        };
        if let Some(data) = self.inputs {
            let inputs = Box::new(match data.first() {
                Some(1) => decode_binary::<InputsV1>(1, &data, "classification")?.into(),
                _ => decode_binary(INPUTS_FORMAT, &data, "classification")?,
            });
            return Ok(Stored::Inputs {
                customer: self.customer,
                policy_version: self.policy_version,
                population_id: self.population_id.unwrap_or(0),
                company_revenue: self.company_revenue,
                as_of: self.as_of,
                region: self.region,
                inputs,
            });
        }
        // Before inputs: the JSON, LZ4-compressed in `data`, or plain in `body`.
        let json = match &self.data {
            Some(data) => lz4_flex::decompress_size_prepended(data).map_err(|e| corrupt(&e))?,
            None => self.body.into_bytes(),
        };
        Ok(Stored::Rendered(
            serde_json::from_slice(&json).map_err(|e| corrupt(&e))?,
        ))
    }
}

pub(super) fn decode_stored(row: &QueryResult) -> Result<Stored, Error> {
    StoredRow::read(row)?.decode()
}

pub(super) fn encode_inputs(inputs: &Inputs) -> Result<Vec<u8>, Error> {
    encode_binary(INPUTS_FORMAT, inputs, "a classification")
}

/// The columns a stored classification is read from.
pub(super) const STORED_COLUMNS: [&str; 9] = [
    "customer_id",
    "policy_version",
    "population_id",
    "as_of",
    "region",
    "inputs",
    "data",
    "body",
    "company_revenue",
];

/// The current classifications of `ids` (customers not classified are left out).
pub async fn load_classifications(
    conn: &impl ConnectionTrait,
    ids: &[Uuid],
) -> Result<Vec<Stored>, Error> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(MAX_IN_LIST) {
        let select = Query::select()
            .columns(STORED_COLUMNS.map(t))
            .from(t("classifications"))
            .and_where(col("customer_id").is_in(chunk.iter().copied()))
            .to_owned();
        out.extend(rows(conn, &select, decode_stored).await?);
    }
    Ok(out)
}

/// The region and label codes of a stored classification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    pub region: String,
    /// The codes as stored ([`write_codes`]): compared as they are with a new
    /// classification's, and read only when they differ or a filter needs them.
    pub codes: String,
}

impl Current {
    /// The stored codes.
    pub fn codes(&self) -> Result<Codes, Error> {
        read_codes(&self.codes)
    }
}

/// The region and codes of the classifications of `ids`.
pub async fn load_current(
    conn: &impl ConnectionTrait,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Current>, Error> {
    let mut out = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(MAX_IN_LIST) {
        let mut select = current_select();
        select.and_where(col("customer_id").is_in(chunk.iter().copied()));
        out.extend(current_rows(conn, &select).await?);
    }
    Ok(out)
}

pub(super) fn current_select() -> SelectStatement {
    Query::select()
        .columns(["customer_id", "region", "codes"].map(t))
        .from(t("classifications"))
        .to_owned()
}

pub(super) async fn current_rows(
    conn: &impl ConnectionTrait,
    select: &SelectStatement,
) -> Result<Vec<(Uuid, Current)>, Error> {
    rows(conn, select, |row| {
        let current = Current {
            region: row.try_get("", "region")?,
            codes: row.try_get("", "codes")?,
        };
        Ok((row.try_get("", "customer_id")?, current))
    })
    .await
}

/// `codes` as stored: the label of each of [`Codes::DIMENSIONS`], then the traits
/// between commas, separated by `|` (`L1|...|L7|,T1,T2,`).
pub fn write_codes(codes: &Codes) -> String {
    let mut out = codes.labels.join("|");
    out.push_str("|,");
    for t in &codes.traits {
        out.push_str(t);
        out.push(',');
    }
    out
}

pub(super) fn read_codes(text: &str) -> Result<Codes, Error> {
    let mut parts = text.split('|');
    let labels: [&str; 7] = std::array::from_fn(|_| parts.next().unwrap_or(""));
    match (parts.next(), parts.next()) {
        (Some(traits), None) => Ok(Codes::read(
            labels,
            traits.split(',').filter(|t| !t.is_empty()),
        )),
        _ => Err(Error::Internal(format!(
            "corrupt label codes in the database: {text:?}"
        ))),
    }
}

/// A classification to store, encoded as it is stored (a Reclassify encodes a page on
/// the thread that reads it, ahead of the one that writes).
#[derive(Debug, Clone)]
pub struct Record {
    pub customer: Uuid,
    pub region: String,
    /// The label codes.
    pub codes: Codes,
    /// The same, as stored ([`write_codes`]).
    pub codes_text: String,
    /// The inputs, encoded.
    pub inputs: Vec<u8>,
    /// Revenue in the window (a column, for distributions).
    pub revenue_in_window: i64,
    /// Whether the codes differ from the stored ones (or none are stored): the label
    /// columns, and so their indexes, are written only then.
    pub codes_changed: bool,
}

impl Record {
    /// The record of `customer`'s classification (labels not known to have changed).
    pub fn new(
        customer: Uuid,
        region: String,
        codes: Codes,
        inputs: &Inputs,
    ) -> Result<Self, Error> {
        Ok(Self {
            customer,
            region,
            codes_text: write_codes(&codes),
            codes,
            inputs: encode_inputs(inputs)?,
            revenue_in_window: inputs.features.revenue_in_window,
            codes_changed: false,
        })
    }
}

/// The policy version, population and instant shared by the records of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The policy version.
    pub policy_version: i64,
    /// The population (0: none).
    pub population_id: i64,
    /// The company revenue the shares were measured against.
    pub company_revenue: i64,
    pub as_of: DateTime<Utc>,
}

/// Writes `records`, replacing the customers' previous classifications.
pub async fn save_classifications(
    conn: &impl ConnectionTrait,
    stamp: Stamp,
    records: &[Record],
) -> Result<(), Error> {
    let mut columns = vec!["customer_id", "policy_version", "population_id", "as_of"];
    columns.extend(["region", "revenue_in_window", "body", "data", "inputs"]);
    columns.extend(LABEL_COLUMNS);
    columns.extend(["traits", "codes", "company_revenue"]);
    let columns: [&str; 19] = columns
        .try_into()
        .map_err(|_| Error::Internal("classification columns".into()))?;
    let row = |r: &Record| -> Result<[SimpleExpr; 19], Error> {
        let [a, b, c, d, e, f, g] = r
            .codes
            .labels
            .clone()
            .map(|c| SimpleExpr::from(c.into_owned()));
        let traits: String = r
            .codes
            .traits
            .iter()
            .map(|t| format!(",{t}"))
            .collect::<String>()
            + ",";
        Ok([
            r.customer.into(),
            stamp.policy_version.into(),
            stamp.population_id.into(),
            stamp.as_of.into(),
            r.region.clone().into(),
            r.revenue_in_window.into(),
            String::new().into(),
            Option::<Vec<u8>>::None.into(),
            r.inputs.clone().into(),
            a,
            b,
            c,
            d,
            e,
            f,
            g,
            traits.into(),
            r.codes_text.clone().into(),
            stamp.company_revenue.into(),
        ])
    };
    let (changed, same): (Vec<&Record>, Vec<&Record>) =
        records.iter().partition(|r| r.codes_changed);
    let changed = changed
        .into_iter()
        .map(row)
        .collect::<Result<Vec<_>, _>>()?;
    upsert(conn, "classifications", &columns, changed, &columns[1..]).await?;
    update_kept(conn, stamp, &same).await
}

/// Removes the classifications of `ids` (archived or merged customers).
pub async fn delete_classifications(
    conn: &impl ConnectionTrait,
    ids: &[Uuid],
) -> Result<(), Error> {
    for chunk in ids.chunks(MAX_IN_LIST) {
        let delete = Query::delete()
            .from_table(t("classifications"))
            .and_where(col("customer_id").is_in(chunk.iter().copied()))
            .to_owned();
        conn.execute(&delete).await?;
    }
    Ok(())
}
