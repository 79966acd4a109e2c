//! Many rows of one table inserted in a few statements.
//!
//! A write that produces hundreds of rows (a transaction bundle, its index entries, its
//! events) pays a round trip per statement; [`Rows`] sends them as multi-row `INSERT`s
//! instead. Statements take at most [`Rows::MAX_ROWS`] rows, and their sizes are powers of
//! four (256, 64, 16, 4, 1) so that the connection's prepared-statement cache sees a handful
//! of statement texts per table, not one per row count.

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

/// Rows waiting to be inserted into `table`.
#[derive(Debug, Clone)]
pub struct Rows {
    table: &'static str,
    columns: &'static [&'static str],
    cells: Vec<Cell>,
}

impl Rows {
    /// The most rows one statement carries. With up to 30 columns that stays under SQLite's
    /// limit of 32,766 bound values (PostgreSQL allows 65,535).
    pub const MAX_ROWS: usize = 256;

    pub fn new(table: &'static str, columns: &'static [&'static str]) -> Self {
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

    /// Adds a row; it must have one cell per column.
    pub fn push<const N: usize>(&mut self, row: [Cell; N]) {
        assert_eq!(N, self.columns.len(), "{}: row width", self.table);
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

    fn statement(&self, rows: usize) -> String {
        let width = self.columns.len();
        let mut sql = format!(
            "INSERT INTO {} ({}) VALUES ",
            self.table,
            self.columns.join(", ")
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_number_their_parameters_row_by_row() {
        let rows = Rows::new("t", &["a", "b"]);
        assert_eq!(
            rows.statement(2),
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)"
        );
    }

    #[test]
    #[should_panic(expected = "row width")]
    fn a_row_of_the_wrong_width_is_a_bug() {
        let mut rows = Rows::new("t", &["a", "b"]);
        rows.push([Cell::Int(1)]);
    }
}
