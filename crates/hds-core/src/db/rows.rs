//! Many rows of several tables inserted in few statements.
//!
//! A write that produces hundreds of rows (a transaction bundle, its index entries, its
//! events) pays a round trip and PostgreSQL's per-statement work for each statement; [`Rows`]
//! collects a table's rows so that they go in together.
//!
//! - On PostgreSQL every table's rows go in as one array per column, and the tables of one
//!   write together in a single statement (`WITH a AS (INSERT ... SELECT * FROM unnest(...))
//!   INSERT ...`): one round trip whatever the number of rows and tables, and one statement
//!   text, which the connection prepares once. The arrays travel as text (the `Any` driver
//!   binds no arrays) and are cast by PostgreSQL.
//! - SQLite has neither arrays nor data-modifying `WITH`: each table's rows go in as multi-row
//!   `INSERT`s of at most [`Rows::MAX_ROWS`] rows, whose sizes are powers of four (256, 64, 16,
//!   4, 1) so that the prepared-statement cache sees a handful of texts per table.

use std::fmt::Write as _;

use sqlx::{Any, Transaction};

/// One value of a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Text(String),
    Int(i64),
    Float(f64),
    Bytes(Vec<u8>),
    /// SQL NULL in a text column (PostgreSQL types parameters: a NULL has a column type too).
    NullText,
    /// SQL NULL in a binary column.
    NullBytes,
}

impl From<String> for Cell {
    fn from(v: String) -> Self {
        Cell::Text(v)
    }
}
impl From<&str> for Cell {
    fn from(v: &str) -> Self {
        Cell::Text(v.to_owned())
    }
}
impl From<i64> for Cell {
    fn from(v: i64) -> Self {
        Cell::Int(v)
    }
}
impl From<Vec<u8>> for Cell {
    fn from(v: Vec<u8>) -> Self {
        Cell::Bytes(v)
    }
}
impl From<Option<String>> for Cell {
    fn from(v: Option<String>) -> Self {
        v.map_or(Cell::NullText, Cell::Text)
    }
}

/// What a column holds, as PostgreSQL names it: the type its array of values is cast to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlType {
    BigInt,
    Double,
    Text,
    Bytea,
}

impl SqlType {
    fn array(self) -> &'static str {
        match self {
            SqlType::BigInt => "bigint[]",
            SqlType::Double => "float8[]",
            SqlType::Text => "text[]",
            SqlType::Bytea => "bytea[]",
        }
    }

    fn holds(self, cell: &Cell) -> bool {
        matches!(
            (self, cell),
            (SqlType::BigInt, Cell::Int(_))
                | (SqlType::Double, Cell::Float(_))
                | (SqlType::Text, Cell::Text(_) | Cell::NullText)
                | (SqlType::Bytea, Cell::Bytes(_) | Cell::NullBytes)
        )
    }
}

/// A column of a table [`Rows`] inserts into.
pub type Column = (&'static str, SqlType);

/// Rows waiting to be inserted into `table`.
#[derive(Debug, Clone)]
pub struct Rows {
    table: &'static str,
    columns: &'static [Column],
    cells: Vec<Cell>,
}

impl Rows {
    /// The most rows one SQLite statement carries. With up to 30 columns that stays under
    /// SQLite's limit of 32,766 bound values.
    pub const MAX_ROWS: usize = 256;

    pub fn new(table: &'static str, columns: &'static [Column]) -> Self {
        assert!(
            !columns.is_empty() && columns.len() * Self::MAX_ROWS <= 32_766,
            "{table}: too many columns for one statement"
        );
        Self {
            table,
            columns,
            cells: Vec::new(),
        }
    }

    /// Adds a row; it must have one cell per column, each of its column's type.
    pub fn push<const N: usize>(&mut self, row: [Cell; N]) {
        assert_eq!(N, self.columns.len(), "{}: row width", self.table);
        for (cell, (name, ty)) in row.iter().zip(self.columns) {
            assert!(
                ty.holds(cell),
                "{}.{name}: {cell:?} is not {ty:?}",
                self.table
            );
        }
        self.cells.extend(row);
    }

    pub fn len(&self) -> usize {
        self.cells.len() / self.columns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// Drops every queued row (the write that queued them failed).
    pub fn clear(&mut self) {
        self.cells.clear();
    }

    /// Moves every row of `other` (rows for the same table, made elsewhere) to the end of these.
    pub fn append(&mut self, other: &mut Rows) {
        assert_eq!(
            (self.table, self.columns),
            (other.table, other.columns),
            "rows of another table"
        );
        self.cells.append(&mut other.cells);
    }

    /// Inserts every row in `tx` and empties the list.
    pub async fn insert(&mut self, tx: &mut Transaction<'_, Any>) -> Result<(), sqlx::Error> {
        insert_all(tx, &mut [self]).await
    }

    /// SQLite: multi-row `INSERT`s of decreasing sizes.
    async fn insert_in_chunks(&mut self, tx: &mut Transaction<'_, Any>) -> Result<(), sqlx::Error> {
        let width = self.columns.len();
        let mut cells = std::mem::take(&mut self.cells).into_iter();
        let mut left = cells.len() / width;
        while left > 0 {
            let n = [Self::MAX_ROWS, 64, 16, 4, 1]
                .into_iter()
                .find(|&n| n <= left)
                .unwrap_or(1);
            let sql = self.statement(n);
            let mut q = sqlx::query(&sql);
            for cell in cells.by_ref().take(n * width) {
                q = match cell {
                    Cell::Text(v) => q.bind(v),
                    Cell::Int(v) => q.bind(v),
                    Cell::Float(v) => q.bind(v),
                    Cell::Bytes(v) => q.bind(v),
                    Cell::NullText => q.bind(None::<String>),
                    Cell::NullBytes => q.bind(None::<Vec<u8>>),
                };
            }
            q.execute(&mut **tx).await?;
            left -= n;
        }
        Ok(())
    }

    fn column_names(&self) -> String {
        let names: Vec<&str> = self.columns.iter().map(|(name, _)| *name).collect();
        names.join(", ")
    }

    fn statement(&self, rows: usize) -> String {
        let width = self.columns.len();
        let mut sql = format!(
            "INSERT INTO {} ({}) VALUES ",
            self.table,
            self.column_names()
        );
        for r in 0..rows {
            if r > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            for c in 0..width {
                if c > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("${}", r * width + c + 1));
            }
            sql.push(')');
        }
        sql
    }

    /// PostgreSQL: `INSERT INTO t (...) SELECT * FROM unnest($k::type[], ...)`, its parameters
    /// numbered from `first`.
    fn unnest_insert(&self, first: usize) -> String {
        let arrays: Vec<String> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, (_, ty))| format!("${}::{}", first + i, ty.array()))
            .collect();
        format!(
            "INSERT INTO {} ({}) SELECT * FROM unnest({})",
            self.table,
            self.column_names(),
            arrays.join(", ")
        )
    }

    /// Each column's values as a PostgreSQL array literal; empties the list.
    fn take_arrays(&mut self) -> Vec<String> {
        let width = self.columns.len();
        let mut arrays: Vec<String> = vec![String::from("{"); width];
        for (i, cell) in std::mem::take(&mut self.cells).into_iter().enumerate() {
            let out = &mut arrays[i % width];
            if out.len() > 1 {
                out.push(',');
            }
            push_element(out, &cell);
        }
        for a in &mut arrays {
            a.push('}');
        }
        arrays
    }
}

/// Appends `cell` as an element of an array literal (PostgreSQL's `array_in` syntax).
fn push_element(out: &mut String, cell: &Cell) {
    match cell {
        Cell::Int(v) => out.push_str(itoa::Buffer::new().format(*v)),
        Cell::Float(v) if v.is_nan() => out.push_str("NaN"),
        Cell::Float(v) if v.is_infinite() => {
            out.push_str(if *v > 0.0 { "Infinity" } else { "-Infinity" })
        }
        // Rust writes the shortest text that reads back as the same double.
        Cell::Float(v) => {
            let _ = write!(out, "{v}");
        }
        Cell::Text(s) => {
            out.push('"');
            let mut rest = s.as_str();
            while let Some(at) = rest.find(['"', '\\']) {
                out.push_str(&rest[..at]);
                out.push('\\');
                out.push_str(&rest[at..at + 1]);
                rest = &rest[at + 1..];
            }
            out.push_str(rest);
            out.push('"');
        }
        // bytea's hex form, `\x0a0b`, its backslash escaped inside the quoted element.
        // A table, not `write!` per byte: every outbox event's payload is bytes, and the
        // formatting machinery showed in the profile of a FHIR bundle load.
        Cell::Bytes(b) => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.reserve(b.len() * 2 + 6);
            out.push_str("\"\\\\x");
            for byte in b {
                out.push(HEX[usize::from(byte >> 4)] as char);
                out.push(HEX[usize::from(byte & 0xf)] as char);
            }
            out.push('"');
        }
        Cell::NullText | Cell::NullBytes => out.push_str("NULL"),
    }
}

/// Inserts the rows of every table of `tables` in `tx` and empties them. On PostgreSQL that
/// is one statement for all of them (its text depends only on the tables, not on how many
/// rows each has, and names every table even when it has none); on SQLite, table by table.
pub async fn insert_all(
    tx: &mut Transaction<'_, Any>,
    tables: &mut [&mut Rows],
) -> Result<(), sqlx::Error> {
    if tables.iter().all(|t| t.is_empty()) {
        return Ok(());
    }
    if super::Backend::of(tx) == super::Backend::Sqlite {
        for rows in tables.iter_mut() {
            rows.insert_in_chunks(tx).await?;
        }
        return Ok(());
    }
    let mut sql = String::new();
    let mut first = 1;
    let last = tables.len() - 1;
    for (i, rows) in tables.iter().enumerate() {
        let insert = rows.unnest_insert(first);
        first += rows.columns.len();
        if i == last {
            sql.push_str(&insert);
        } else {
            let _ = write!(
                sql,
                "{}w{i} AS ({insert}) ",
                if i == 0 { "WITH " } else { ", " }
            );
        }
    }
    let mut q = sqlx::query(&sql);
    for rows in tables.iter_mut() {
        for array in rows.take_arrays() {
            q = q.bind(array);
        }
    }
    q.execute(&mut **tx).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLUMNS: &[Column] = &[("a", SqlType::BigInt), ("b", SqlType::Text)];

    #[test]
    fn statements_number_their_parameters_row_by_row() {
        let rows = Rows::new("t", COLUMNS);
        assert_eq!(
            rows.statement(2),
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)"
        );
        assert_eq!(
            rows.unnest_insert(3),
            "INSERT INTO t (a, b) SELECT * FROM unnest($3::bigint[], $4::text[])"
        );
    }

    #[test]
    fn arrays_quote_what_their_syntax_reserves() {
        let mut rows = Rows::new(
            "t",
            &[
                ("i", SqlType::BigInt),
                ("f", SqlType::Double),
                ("s", SqlType::Text),
                ("b", SqlType::Bytea),
            ],
        );
        rows.push([
            Cell::Int(-7),
            Cell::Float(0.1),
            Cell::Text(r#"a "quoted" \ {b,c} NULL"#.into()),
            Cell::Bytes(vec![0, 0xff]),
        ]);
        rows.push([
            Cell::Int(8),
            Cell::Float(f64::NEG_INFINITY),
            Cell::NullText,
            Cell::NullBytes,
        ]);
        assert_eq!(
            rows.take_arrays(),
            [
                "{-7,8}",
                "{0.1,-Infinity}",
                r#"{"a \"quoted\" \\ {b,c} NULL",NULL}"#,
                r#"{"\\x00ff",NULL}"#,
            ]
        );
        assert!(rows.is_empty());
    }

    #[test]
    #[should_panic(expected = "row width")]
    fn a_row_of_the_wrong_width_is_a_bug() {
        let mut rows = Rows::new("t", COLUMNS);
        rows.push([Cell::Int(1)]);
    }

    #[test]
    #[should_panic(expected = "is not")]
    fn a_cell_of_the_wrong_type_is_a_bug() {
        let mut rows = Rows::new("t", COLUMNS);
        rows.push([Cell::Text("1".into()), Cell::Text("x".into())]);
    }
}
